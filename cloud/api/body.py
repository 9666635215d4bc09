"""Reading a request body without ever holding more than the configured limit in memory."""

from __future__ import annotations

from fastapi import Request

from cloud.api.problems import ApiProblem


def too_large(limit: int) -> ApiProblem:
    return ApiProblem(413, "too_large", f"body larger than {limit} bytes")


async def read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit() or int(declared) > limit:
            raise too_large(limit)
        # The HTTP parser holds the body to its declared length, so it cannot exceed the limit.
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
