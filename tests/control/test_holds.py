"""The holds hash: placed once per device or for all, lifted whole or one device out of a hold of all."""

from __future__ import annotations

from redis.asyncio import Redis

from cloud.control.holds import Holds
from giftwheel.contracts.control import ALL_MOTORS, HoldRecord


def record(by: str) -> HoldRecord:
    return HoldRecord(by=by, reason="r", at_ms=1)


async def test_a_hold_placed_again_keeps_its_first_record(redis: Redis) -> None:
    holds = Holds(redis)
    await holds.place("m1", record("first"))
    await holds.place("m1", record("second"))
    held = await holds.read()
    assert held.covers("m1")
    assert not held.covers("m2")
    assert held.record_for("m1") == record("first")


async def test_a_hold_of_all_covers_motors_not_known_yet(redis: Redis) -> None:
    holds = Holds(redis)
    await holds.place(ALL_MOTORS, record("ops"))
    held = await holds.read()
    assert held.covers("brand-new")
    assert held.record_for("brand-new") == record("ops")


async def test_one_motor_lifted_out_of_a_hold_of_all_leaves_the_others_held(redis: Redis) -> None:
    holds = Holds(redis)
    await holds.place(ALL_MOTORS, record("all"))
    await holds.place("m3", record("own"))
    await holds.lift("m1", known={"m1", "m2", "m3"})
    held = await holds.read()
    assert sorted(held.records) == ["m2", "m3"]
    assert held.record_for("m2") == record("all")
    assert held.record_for("m3") == record("own")  # its own hold stays as it was


async def test_lifting_all_keeps_the_motors_told_to_stay(redis: Redis) -> None:
    holds = Holds(redis)
    await holds.place(ALL_MOTORS, record("all"))
    await holds.place("m2", record("own"))
    await holds.lift(ALL_MOTORS, known={"m1", "m2", "m3"}, keep=["m1", "m2"])
    held = await holds.read()
    assert held.records == {"m1": record("all"), "m2": record("own")}
    await holds.lift(ALL_MOTORS, known=set())
    assert (await holds.read()).records == {}
