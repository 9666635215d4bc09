"""The yardstick: a FastAPI endpoint that only reads, validates the same model and answers.

It parses exactly as POST /v1/events does (raw body, GiftEventIn through parse_gift), with no
auth, no Redis and no metrics, so ingest/bare isolates what durability and dedupe cost.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import Response

from giftwheel import gc_tuning
from giftwheel.contracts import GiftBounds, GiftRejected, parse_gift

_BOUNDS = GiftBounds()


def create() -> FastAPI:
    """The factory uvicorn calls; the same GC tuning as the real API, so the comparison is fair."""
    app = FastAPI()

    @app.post("/v1/events")
    async def post_event(request: Request) -> Response:
        body = await request.body()
        try:
            event = parse_gift(body, _BOUNDS, int(time.time() * 1000))
        except GiftRejected as exc:
            return Response(str(exc), status_code=422)
        return Response(
            b'{"eventId":"' + event.event_id.encode() + b'","duplicate":false}',
            status_code=202,
            media_type="application/json",
        )

    gc_tuning.tune_for_server()
    return app
