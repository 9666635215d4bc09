"""What reading JSON strictly (a key given twice refused) costs per event and per batch.

Run:  .venv/bin/python -m bench.strict_json [--calls 20000]

Best of 5 timeit runs, in process: ``parse_gift`` (strict JSON, then validation) against pydantic's
``model_validate_json`` of the same 200-byte event, which keeps the last of two values for a key;
and ``strict_json.loads`` of a 1,000-event batch body against ``orjson.loads``, plain and with a
key given twice (the slow path that names the key).
"""

from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable

import orjson

from giftwheel.contracts import GiftBounds, parse_gift, strict_json
from giftwheel.contracts.gift import GiftEventIn


def best_us(call: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    now = int(time.time() * 1000)
    event = {
        "eventId": "tiktok:7301:3",
        "event": "gift",
        "platform": "tiktok",
        "userId": "user_123",
        "userName": "Ada",
        "giftName": "Rose",
        "diamond": 1,
        "quantity": 5,
        "timestamp": now,
    }
    body, bounds = orjson.dumps(event), GiftBounds()
    batch = orjson.dumps({"events": [event] * 1000})
    twice = batch[:-3] + b',"diamond":2}]}'  # the last event names "diamond" twice
    batches = max(1, args.calls // 1000)
    rows = [
        ("one event: parse_gift (strict)", best_us(lambda: parse_gift(body, bounds, now), args.calls)),
        (
            "one event: model_validate_json",
            best_us(lambda: GiftEventIn.model_validate_json(body), args.calls),
        ),
        ("1,000-event batch: strict_json.loads", best_us(lambda: strict_json.loads(batch), batches)),
        ("1,000-event batch: orjson.loads", best_us(lambda: orjson.loads(batch), batches)),
        ("1,000-event batch, a key twice: refused", best_us(lambda: _refused(twice), batches)),
    ]
    for name, us in rows:
        print(f"{name:42} {us:10.1f} us")


def _refused(body: bytes) -> None:
    try:
        strict_json.loads(body)
    except strict_json.DuplicateKeyError:
        return
    raise AssertionError("a key given twice was not refused")


if __name__ == "__main__":
    main()
