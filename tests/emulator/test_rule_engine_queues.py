"""Rule-engine queues as ThingsBoard runs them (devstack/tb_emulator/queues.py), through the shipped chain
and a real HTTP server in the cloud API's place: what a pack re-submits under each processing strategy,
the consumer's sleep holding back its partition, a message still pending at the pack timeout reaching a
slow API a second time, sequential submission holding back an originator; and the shipped design, where
a refused or hanging feedback webhook never holds up a dispatcher's RPC."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from devstack.tb_emulator.devices import DevicesFileError, device_id_for, load_devices_file
from devstack.tb_emulator.harness import (
    SHIPPED_DEVICES,
    SHIPPED_QUEUES,
    InProcessEmulator,
    shipped_transport_queues,
)
from devstack.tb_emulator.hub import HubSettings
from devstack.tb_emulator.queues import (
    DEFAULT_QUEUES,
    MAIN_QUEUE,
    ProcessingStrategy,
    ProcessingStrategyType,
    QueueConfig,
    QueueError,
    SubmitStrategy,
    SubmitStrategyType,
    load_queue_file,
    partition_of,
    with_queues,
)
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.tb_emulator.server import SHIPPED_CHAIN
from devstack.tb_emulator.versions import TbVersion
from tests.emulator.conftest import DEVICES, DISPATCHER_TOKEN, GATEWAY_TOKEN
from tests.emulator.test_rule_chain import CaptureServer

P = ProcessingStrategyType
TEST_QUEUE = "Feedback"  # the motor profile's queue in these tests
REFUSED = 503  # what the API answers while its Redis restarts


def queue(
    processing: ProcessingStrategyType,
    *,
    retries: int = 2,
    pause_s: int = 0,
    pack_timeout_ms: int = 2000,
    partitions: int = 1,
    submit: SubmitStrategyType = SubmitStrategyType.BURST,
    name: str = TEST_QUEUE,
) -> QueueConfig:
    return QueueConfig(
        name=name,
        topic=f"tb_rule_engine.{name.lower()}",
        poll_interval_ms=5,
        partitions=partitions,
        consumer_per_partition=True,
        pack_processing_timeout_ms=pack_timeout_ms,
        submit_strategy=SubmitStrategy(type=submit, batch_size=100),
        processing_strategy=ProcessingStrategy(
            type=processing,
            retries=retries,
            pause_between_retries_s=pause_s,
            max_pause_between_retries_s=pause_s,
        ),
    )


def on_queue(config: QueueConfig, url: str, **profiles: str) -> InProcessEmulator:
    """The test devices with the motor profile (and ``profiles``: profile -> queue) on ``config``."""
    names = {"motor": config.name, **profiles}
    return InProcessEmulator(
        DEVICES,
        profiles=[{"name": profile, "queue": name} for profile, name in names.items()],
        queues=[config],
        webhook_url=url,
    )


async def gateway(tb: InProcessEmulator) -> RawMqttClient:
    client = RawMqttClient(tb.host, tb.mqtt_port)
    assert (await client.connect(GATEWAY_TOKEN)).reason_code == 0
    return client


async def post_telemetry(gw: RawMqttClient, telemetry: dict[str, Any]) -> None:
    assert await gw.publish("v1/gateway/telemetry", orjson.dumps(telemetry)) == 0


def posts_by_device(api: CaptureServer) -> Counter[str]:
    return Counter(request["headers"]["x-device-name"] for request in api.received)


@pytest.mark.parametrize(
    ("strategy", "posts"),
    [
        (P.SKIP_ALL_FAILURES, {"motor_01": 1, "motor_02": 1}),
        (P.SKIP_ALL_FAILURES_AND_TIMED_OUT, {"motor_01": 1, "motor_02": 1}),
        (P.RETRY_FAILED, {"motor_01": 1, "motor_02": 3}),
        (P.RETRY_FAILED_AND_TIMED_OUT, {"motor_01": 1, "motor_02": 3}),
        (P.RETRY_TIMED_OUT, {"motor_01": 1, "motor_02": 1}),  # a failure is not a timeout
        (P.RETRY_ALL, {"motor_01": 3, "motor_02": 3}),  # the successful message goes again too
    ],
)
async def test_a_failed_message_is_retried_with_its_pack_as_the_strategy_says(
    strategy: ProcessingStrategyType, posts: dict[str, int]
) -> None:
    """Both motors' webhooks in one pack, motor_02's refused every time: retries=2 means 3 attempts."""
    api = CaptureServer(status_for=lambda r: REFUSED if r["headers"]["x-device-name"] == "motor_02" else 200)
    async with api as url, on_queue(queue(strategy, retries=2), url) as tb, await gateway(tb) as gw:
        await post_telemetry(gw, {"motor_01": [{"roundsCompleted": 1}], "motor_02": [{"roundsCompleted": 1}]})
        await tb.settled()
    assert posts_by_device(api) == posts
    stats = tb.hub.queues.by_name[TEST_QUEUE].stats
    assert stats.skipped == 1  # motor_02's webhook, given up on: after the retries, or at once
    assert stats.timed_out == 0


@pytest.mark.parametrize(("partitions", "stalled"), [(1, True), (10, False)])
async def test_the_consumer_sleeps_between_retries_and_holds_back_its_partition(
    partitions: int, stalled: bool
) -> None:
    """RETRY_FAILED_AND_TIMED_OUT with a 1 s pause: a refused webhook sleeps its partition's consumer,
    so a message for another motor on that partition waits for the retry; on another partition it
    does not."""
    one, two = (partition_of(device_id_for(m), 10) for m in ("motor_01", "motor_02"))
    assert one != two  # with 10 partitions the two motors' messages have a consumer each
    api = CaptureServer(status_for=lambda r: REFUSED if r["headers"]["x-device-name"] == "motor_01" else 200)
    config = queue(P.RETRY_FAILED_AND_TIMED_OUT, retries=1, pause_s=1, partitions=partitions)
    async with api as url, on_queue(config, url) as tb, await gateway(tb) as gw:
        await post_telemetry(gw, {"motor_01": [{"roundsCompleted": 1}]})
        await asyncio.wait_for(api.requests.get(), 5)  # refused: the consumer goes to sleep
        await post_telemetry(gw, {"motor_02": [{"roundsCompleted": 1}]})
        await tb.settled()
    order = [request["headers"]["x-device-name"] for request in api.received]
    if stalled:
        assert order == ["motor_01", "motor_01", "motor_02"]  # motor_02 only after the retry
    else:
        assert order == ["motor_01", "motor_02", "motor_01"]
    assert tb.hub.queues.by_name[TEST_QUEUE].stats.pauses == 1


@pytest.mark.parametrize(("pack_timeout_ms", "posts", "timeouts"), [(300, 2, 2), (10_000, 1, 0)])
async def test_a_message_pending_at_the_pack_timeout_is_sent_again_while_the_first_post_runs(
    pack_timeout_ms: int, posts: int, timeouts: int
) -> None:
    """The API takes 1 s (the REST node would wait 5 s): past a 300 ms packProcessingTimeout the message
    is re-submitted while its first POST is still in flight, so the API holds the same POST twice at
    once; with the shipped feedback queue's 10 s it gets one."""
    api = CaptureServer(delay_s=1.0)
    config = queue(P.RETRY_FAILED_AND_TIMED_OUT, retries=1, pack_timeout_ms=pack_timeout_ms)
    async with api as url, on_queue(config, url) as tb, await gateway(tb) as gw:
        await post_telemetry(gw, {"motor_01": [{"ts": 1700000000000, "values": {"commandDone": True}}]})
        await tb.settled()  # retries=1: two attempts, each given up on after the pack timeout
    bodies = [request["body"] for request in api.received]
    assert bodies == [b'{"commandDone":true}'] * posts
    assert api.max_in_flight == posts
    assert tb.hub.queues.by_name[TEST_QUEUE].stats.timed_out == timeouts


def chain_with_parallel_limit(tmp_path: Path, limit: int) -> Path:
    """The shipped chain with its REST node's maxParallelRequestsCount set to ``limit``."""
    chain = json.loads(SHIPPED_CHAIN.read_text())
    rest = next(n for n in chain["metadata"]["nodes"] if n["type"].endswith("TbRestApiCallNode"))
    rest["configuration"]["maxParallelRequestsCount"] = limit
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(chain))
    return path


def limited(config: QueueConfig, url: str, chain: Path, version: TbVersion) -> InProcessEmulator:
    """The test devices' motor profile on ``config``, ``chain`` as the rule chain, at ``version``."""
    return InProcessEmulator(
        DEVICES,
        profiles=[{"name": "motor", "queue": config.name}],
        queues=[config],
        webhook_url=url,
        rule_chain=chain,
        hub_settings=HubSettings(thingsboard_version=version, transport_queues=shipped_transport_queues()),
    )


def test_the_shipped_chain_bounds_its_webhooks_in_flight_below_the_pool() -> None:
    chain = json.loads(SHIPPED_CHAIN.read_text())
    rest = next(n for n in chain["metadata"]["nodes"] if n["type"].endswith("TbRestApiCallNode"))
    assert 0 < rest["configuration"]["maxParallelRequestsCount"] <= HubSettings().webhook_connections


@pytest.mark.parametrize("version", list(TbVersion))
@pytest.mark.parametrize(("limit", "in_flight"), [(0, 16), (16, 16), (8, 8)])
async def test_a_burst_past_the_connection_pool_waits_for_a_permit_instead_of_failing(
    tmp_path: Path, version: TbVersion, limit: int, in_flight: int
) -> None:
    """100 webhooks in one pack against an API that takes 0.2 s: without maxParallelRequestsCount the
    node puts them all to the pool (16 connections, 32 waiting) and the rest fail at once; with it
    they wait for a permit (v4.3.0.1: the node's actor blocks in tryAcquire; dfe65d5: the node's
    pending queue) and every one is posted once, at most ``limit`` at a time."""
    api = CaptureServer(delay_s=0.2)
    config = queue(P.SKIP_ALL_FAILURES, pack_timeout_ms=30_000)
    async with (
        api as url,
        limited(config, url, chain_with_parallel_limit(tmp_path, limit), version) as tb,
        await gateway(tb) as gw,
    ):
        entries = [{"ts": 1700000000000 + n, "values": {"roundsCompleted": n}} for n in range(100)]
        await post_telemetry(gw, {"motor_01": entries})
        await tb.settled(timeout_s=20)
    stats = tb.hub.queues.by_name[TEST_QUEUE].stats
    assert api.max_in_flight == in_flight
    if limit == 0:
        assert stats.failed == 100 - 16 - 32  # the pool's connections and wait list took 48
        assert len(api.received) == 48
    else:
        assert stats.failed == 0
        assert sorted(r["body"] for r in api.received) == sorted(
            json.dumps({"roundsCompleted": n}, separators=(",", ":")).encode() for n in range(100)
        )


@pytest.mark.parametrize(("version", "posts"), [(TbVersion.V4_3, 3), (TbVersion.V4_4, 2)])
async def test_a_webhook_whose_pack_timed_out_while_it_waited_for_a_permit(
    tmp_path: Path, version: TbVersion, posts: int
) -> None:
    """One permit, an API that takes 0.4 s, five webhooks in a pack that times out at 0.6 s. At
    v4.3.0.1 the node's actor took the third message at 0.4 s, while it was valid, and blocks in
    tryAcquire until 0.8 s, then posts it; the fourth reaches the actor invalid and is skipped. At
    dfe65d5 the pending queue checks validity when a permit frees: the third is dropped at 0.8 s."""
    api = CaptureServer(delay_s=0.4)
    config = queue(P.SKIP_ALL_FAILURES_AND_TIMED_OUT, pack_timeout_ms=600)
    async with (
        api as url,
        limited(config, url, chain_with_parallel_limit(tmp_path, 1), version) as tb,
        await gateway(tb) as gw,
    ):
        entries = [{"ts": 1700000000000 + n, "values": {"roundsCompleted": n}} for n in range(5)]
        await post_telemetry(gw, {"motor_01": entries})
        await asyncio.sleep(1.5)  # past the last post either version makes
        await tb.settled()
    assert [r["body"] for r in api.received] == [
        json.dumps({"roundsCompleted": n}, separators=(",", ":")).encode() for n in range(posts)
    ]
    assert tb.hub.queues.by_name[TEST_QUEUE].stats.timed_out == 1


async def test_sequential_by_originator_holds_an_originators_later_messages_behind_a_failure() -> None:
    """SEQUENTIAL_BY_ORIGINATOR submits the next message of an originator only after the previous one
    succeeded: the second webhook waits for the pack timeout and goes after the first one's retry."""
    attempts = Counter[bytes]()

    def refuse_first_attempt(request: dict[str, Any]) -> int:
        attempts[request["body"]] += 1
        return REFUSED if request["body"] == b'{"n":1}' and attempts[request["body"]] == 1 else 200

    api = CaptureServer(status_for=refuse_first_attempt)
    config = queue(
        P.RETRY_FAILED_AND_TIMED_OUT,
        retries=1,
        pack_timeout_ms=300,
        submit=SubmitStrategyType.SEQUENTIAL_BY_ORIGINATOR,
    )
    async with api as url, on_queue(config, url) as tb, await gateway(tb) as gw:
        telemetry = {"motor_01": [{"ts": 1, "values": {"n": 1}}, {"ts": 2, "values": {"n": 2}}]}
        await post_telemetry(gw, telemetry)
        await tb.settled()
    assert [request["body"] for request in api.received] == [b'{"n":1}', b'{"n":1}', b'{"n":2}']
    assert tb.hub.queues.by_name[TEST_QUEUE].stats.timed_out == 1  # the held-back messages timed out
    assert [ts for ts, _ in tb.hub.registry.by_name["motor_01"].history] == [1, 2]


# ------------------------------------------------------------------------------- the shipped design


def shipped_profiles() -> list[dict[str, Any]]:
    return [p.model_dump() for p in load_devices_file(SHIPPED_DEVICES).profiles]


def one_retrying_queue_for_all() -> tuple[list[dict[str, Any]], list[QueueConfig]]:
    """What docs/thingsboard.md used to recommend, every profile on Main and Main retrying failures;
    one partition, so the dispatcher and the motor share it (with ten, 1 chance in 10 per pair)."""
    profiles = [{**p, "queue": None} for p in shipped_profiles()]
    return profiles, [queue(P.RETRY_FAILED_AND_TIMED_OUT, retries=1, pause_s=1, name=MAIN_QUEUE)]


@pytest.mark.parametrize("api_fault", ["refusing", "hanging"])
@pytest.mark.parametrize("design", ["shipped", "one retrying queue"])
async def test_a_refused_or_hanging_feedback_webhook_never_holds_up_a_dispatcher_rpc(
    design: str, api_fault: str
) -> None:
    """A motor's webhook is refused (its retry 1 s away) or hangs (3 s, under the REST node's 5 s
    read timeout); meanwhile the dispatcher sends that motor a command. With the shipped queues the
    command reaches the motor before anything more happens to the webhook, and exactly once; with
    one retrying queue for all it waits behind the webhook's pack, which by then sent a second POST."""
    api = CaptureServer(status=REFUSED) if api_fault == "refusing" else CaptureServer(delay_s=3.0)
    queues: list[Path | QueueConfig]
    if design == "shipped":
        profiles, queues = shipped_profiles(), list(SHIPPED_QUEUES)
    else:
        profiles, [main] = one_retrying_queue_for_all()
        queues = [main]
    async with (
        api as url,
        InProcessEmulator(DEVICES, profiles=profiles, queues=queues, webhook_url=url) as tb,
        await gateway(tb) as gw,
        RawMqttClient(tb.host, tb.mqtt_port) as dispatcher,
    ):
        await gw.subscribe("v1/gateway/rpc")
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        assert (await dispatcher.connect(DISPATCHER_TOKEN)).reason_code == 0
        await dispatcher.subscribe("v1/devices/me/rpc/response/+")
        await post_telemetry(gw, {"motor_01": [{"commandDone": True}]})
        await asyncio.wait_for(api.requests.get(), 5)
        command = {
            "method": "rotate",
            "params": {"device": "motor_01", "commandId": "c-0123456789", "rounds": 1},
        }
        await dispatcher.publish("v1/devices/me/rpc/request/7", orjson.dumps(command))
        rpc = await gw.next_message(timeout_s=10)
        posts_before_the_command_arrived = len(api.received)
        request = orjson.loads(rpc.payload)
        reply = {"device": "motor_01", "id": request["data"]["id"], "data": {"accepted": True}}
        await gw.publish("v1/gateway/rpc", orjson.dumps(reply))
        answer = await dispatcher.next_message(timeout_s=10)
        with pytest.raises(TimeoutError):
            await gw.next_message(timeout_s=0.5)  # no second RPC for the same command
    assert request["data"]["params"]["commandId"] == "c-0123456789"
    assert (answer.topic, orjson.loads(answer.payload)) == (
        "v1/devices/me/rpc/response/7",
        {"accepted": True},
    )
    if design == "shipped":
        assert posts_before_the_command_arrived == 1
        assert tb.hub.queues.by_name["GiftwheelDispatch"].stats.retries == 0
    else:
        assert posts_before_the_command_arrived == 2


# ------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pollInterval": 0}, "Queue poll interval should be more then 0!"),
        ({"partitions": 0}, "Queue partitions should be more then 0!"),
        ({"packProcessingTimeout": 0}, "Queue pack processing timeout should be more then 0!"),
        ({"name": "Feed back"}, "Queue name contains a character other than ASCII alphanumerics"),
        ({"name": "CalculatedFields"}, "reserved for internal use"),
        ({"topic": ""}, "Queue topic should be specified!"),
        ({"submitStrategy": None}, "Queue submit strategy can't be null!"),
        ({"submitStrategy": {"type": "BATCH", "batchSize": 0}}, "batch size should be more then 0!"),
        ({"processingStrategy": {"retries": 1}}, "Queue processing strategy type can't be null!"),
        ({"processingStrategy": {"type": "RETRY_ALL", "retries": -1}}, "retries can't be less then 0!"),
        ({"processingStrategy": {"type": "RETRY_ALL", "failurePercentage": 101}}, "range from 0 to 100!"),
        (
            {
                "processingStrategy": {
                    "type": "RETRY_ALL",
                    "pauseBetweenRetries": 5,
                    "maxPauseBetweenRetries": 3,
                }
            },
            "MAX pause between retries can't be less then pause",
        ),
        ({"submitStrategy": {"type": "BURST", "batchSize": 1, "size": 2}}, "Extra inputs are not permitted"),
    ],
)
def test_a_queue_thingsboard_refuses_is_refused(change: dict[str, Any], message: str) -> None:
    """QueueValidator's checks and messages, on ThingsBoard's Queue JSON."""
    body = {**json.loads(SHIPPED_QUEUES[0].read_text()), **change}
    with pytest.raises(ValueError, match=message):
        QueueConfig.model_validate(body)


def test_a_fresh_install_has_thingsboards_three_queues() -> None:
    """DefaultSystemDataLoaderService.createQueues, field by field."""
    by_name = {q.name: q for q in DEFAULT_QUEUES}
    assert {n: (q.topic, q.poll_interval_ms, q.partitions, q.consumer_per_partition,
                q.pack_processing_timeout_ms) for n, q in by_name.items()} == {
        "Main": ("tb_rule_engine.main", 25, 10, True, 2000),
        "HighPriority": ("tb_rule_engine.hp", 25, 10, True, 2000),
        "SequentialByOriginator": ("tb_rule_engine.sq", 25, 10, True, 2000),
    }  # fmt: skip
    assert {n: (q.submit.type, q.submit.batch_size) for n, q in by_name.items()} == {
        "Main": ("BURST", 1000),
        "HighPriority": ("BURST", 100),
        "SequentialByOriginator": ("SEQUENTIAL_BY_ORIGINATOR", 100),
    }
    processing = {n: q.processing for n, q in by_name.items()}
    assert {n: (p.type, p.retries, p.failure_percentage, p.pause_between_retries_s,
                p.max_pause_between_retries_s) for n, p in processing.items()} == {
        "Main": ("SKIP_ALL_FAILURES", 3, 0, 3, 3),
        "HighPriority": ("RETRY_FAILED_AND_TIMED_OUT", 0, 0, 5, 5),
        "SequentialByOriginator": ("RETRY_FAILED_AND_TIMED_OUT", 3, 0, 5, 5),
    }  # fmt: skip


def test_added_queues_replace_by_name_and_may_not_share_a_topic() -> None:
    shipped = [load_queue_file(path) for path in SHIPPED_QUEUES]
    names = [q.name for q in with_queues(shipped)]
    assert names == [
        "Main",
        "HighPriority",
        "SequentialByOriginator",
        "GiftwheelDispatch",
        "GiftwheelFeedback",
    ]
    faster_main = DEFAULT_QUEUES[0].model_copy(update={"poll_interval_ms": 5})
    assert with_queues([faster_main])[0].poll_interval_ms == 5
    clash = shipped[0].model_copy(update={"name": "Other"})
    with pytest.raises(
        QueueError, match=re.escape("Queue with topic: tb_rule_engine.giftwheel_dispatch already exists!")
    ):
        with_queues([*shipped, clash])


def test_a_profile_naming_a_queue_that_does_not_exist_is_refused() -> None:
    """DeviceProfileDataValidator: "Device profile is referencing to non-existent queue!" """
    with pytest.raises(DevicesFileError, match=r"non-existent queue! \(motor -> GiftwheelFeedback\)"):
        InProcessEmulator(DEVICES, profiles=[{"name": "motor", "queue": "GiftwheelFeedback"}], queues=())


def test_the_shipped_profiles_and_queues_hold_the_design_together() -> None:
    """Each profile's defaultQueueName (JSON for ThingsBoard, devices.yaml for the emulator) is a shipped
    queue; dispatch never re-submits or sleeps; feedback retries, and its pack outlasts the REST node's
    read timeout twice over, so a slow API is not sent the same POST twice at once."""
    queues = {q.name: q for q in (load_queue_file(path) for path in SHIPPED_QUEUES)}
    emulated = {p.name: p.queue for p in load_devices_file(SHIPPED_DEVICES).profiles}
    profiles_dir = SHIPPED_CHAIN.parent / "device_profiles"
    shipped = {p.stem: json.loads(p.read_text())["defaultQueueName"] for p in profiles_dir.glob("*.json")}
    assert (
        shipped
        == emulated
        == {"dispatcher": "GiftwheelDispatch", "gateway": None, "motor": "GiftwheelFeedback"}
    )
    dispatch, feedback = queues["GiftwheelDispatch"], queues["GiftwheelFeedback"]
    assert dispatch.processing.type is P.SKIP_ALL_FAILURES
    assert feedback.processing.type is P.RETRY_FAILED_AND_TIMED_OUT
    assert feedback.processing.retries > 0  # 0 would retry for ever, stalling its partition
    chain = json.loads(SHIPPED_CHAIN.read_text())
    [rest] = [n for n in chain["metadata"]["nodes"] if n["type"].endswith("TbRestApiCallNode")]
    assert feedback.pack_processing_timeout_ms >= 2 * rest["configuration"]["readTimeoutMs"]
