"""Read a webhook body without ever holding more than the configured limit in memory.

Signatures are computed over the exact raw bytes, so the body is read whole - but a body that
announces (Content-Length) or turns out (chunked) to be larger than the limit is refused as soon
as that is known, without buffering the rest.
"""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"webhook body exceeds the {limit}-byte limit")
        self.limit = limit


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
