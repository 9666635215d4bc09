"""The telemetry forwarder against a real redis-server: woken by the ledger's writes, one message per
device per batch, and nothing lost or reordered when ThingsBoard does not acknowledge a device."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from devstack.waiting import wait_until
from edge.buffer.ledger import CommandLedger
from edge.buffer.outbox import Outbox, OutboxEntry
from edge.forwarder import Flush, TelemetryForwarder


class CountingOutbox(Outbox):
    def __init__(self, client: redis_lib.Redis) -> None:
        super().__init__(client)
        self.reads = 0

    def read(self, limit: int) -> list[OutboxEntry]:
        self.reads += 1
        return super().read(limit)


class FakePublisher:
    """Acknowledges every device except those in ``refused``; records each publish."""

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.messages: list[dict[str, list[dict[str, Any]]]] = []
        self.acknowledged: dict[str, list[str]] = {}  # device -> commandIds, in delivery order
        self._lock = threading.Lock()

    def is_connected(self) -> bool:
        return True

    def publish(self, telemetry: dict[str, list[dict[str, Any]]]) -> set[str]:
        with self._lock:
            self.messages.append(telemetry)
            confirmed = set(telemetry) - self.refused
            for device in confirmed:
                self.acknowledged.setdefault(device, []).extend(
                    item["values"]["commandId"] for item in telemetry[device] if "commandId" in item["values"]
                )
            return confirmed


@pytest.fixture
def counting_outbox(sync_redis: redis_lib.Redis) -> CountingOutbox:
    return CountingOutbox(sync_redis)


@pytest.fixture
def notified_ledger(sync_redis: redis_lib.Redis, counting_outbox: CountingOutbox) -> CommandLedger:
    return CommandLedger(
        sync_redis, dedupe_ttl_s=3600, max_queued_rounds=1000, on_outbox_write=counting_outbox.notify
    )


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def forwarder(
    counting_outbox: CountingOutbox, notified_ledger: CommandLedger, publisher: FakePublisher
) -> Iterator[TelemetryForwarder]:
    forwarder = TelemetryForwarder(
        counting_outbox,
        notified_ledger,
        ["m1", "m2"],
        publisher,
        batch=100,
        heartbeat_interval_s=300,
        poll_s=0.02,
    )
    forwarder.start()
    yield forwarder
    forwarder.close()


def test_writes_are_forwarded_without_polling_the_outbox(
    forwarder: TelemetryForwarder, counting_outbox: CountingOutbox, notified_ledger: CommandLedger
) -> None:
    wait_until(lambda: forwarder.sent == 2, 5, 0.01, what="start-up heartbeats forwarded")
    # A notice taken after its entries were read costs one more, empty, read; then none while idle.
    threading.Event().wait(0.2)
    reads = counting_outbox.reads
    threading.Event().wait(0.5)  # 25 connection checks
    assert counting_outbox.reads == reads
    notified_ledger.submit("m1", "c-00000001", 1, None)
    wait_until(lambda: len(counting_outbox) == 0, 5, 0.01, what="queued telemetry forwarded")
    assert forwarder.sent == 3  # two heartbeats and the queued report


def test_one_message_per_device_and_an_unacknowledged_device_keeps_its_entries(
    counting_outbox: CountingOutbox, notified_ledger: CommandLedger, publisher: FakePublisher
) -> None:
    cids = [f"c-{i:08x}" for i in range(1, 7)]
    for i, cid in enumerate(cids):
        notified_ledger.submit(("m1", "m2")[i % 2], cid, 1, None)
    forwarder = TelemetryForwarder(
        counting_outbox, notified_ledger, [], publisher, batch=100, heartbeat_interval_s=300
    )
    publisher.refused = {"m2"}
    assert forwarder.flush_once() is Flush.UNCONFIRMED
    assert [sorted(m) for m in publisher.messages] == [["m1", "m2"]]  # interleaved entries, one each
    assert [e.values["commandId"] for e in counting_outbox.read(100)] == cids[1::2]  # m2's, in order
    publisher.refused = set()
    assert forwarder.flush_once() is Flush.DRAINED
    assert forwarder.flush_once() is Flush.EMPTY
    assert publisher.acknowledged == {"m1": cids[0::2], "m2": cids[1::2]}  # each once, in order


def test_writes_following_a_batch_are_gathered_into_one_message(
    counting_outbox: CountingOutbox, notified_ledger: CommandLedger, publisher: FakePublisher
) -> None:
    forwarder = TelemetryForwarder(
        counting_outbox, notified_ledger, [], publisher, batch=100, heartbeat_interval_s=300, gather_s=0.5
    )
    forwarder.start()
    try:
        notified_ledger.submit("m1", "c-00000001", 1, None)
        wait_until(lambda: forwarder.sent == 1, 5, 0.001, what="the first entry forwarded")
        # The forwarder now waits out its gather window: these all go in its next batch.
        cids = [f"c-{i:08x}" for i in range(2, 8)]
        for i, cid in enumerate(cids):
            notified_ledger.submit(("m1", "m2")[i % 2], cid, 1, None)
        wait_until(lambda: forwarder.sent == 7, 5, 0.01, what="the gathered entries forwarded")
    finally:
        forwarder.close()
    assert [sorted(m) for m in publisher.messages] == [["m1"], ["m1", "m2"]]
    assert publisher.acknowledged == {"m1": ["c-00000001", *cids[0::2]], "m2": cids[1::2]}
