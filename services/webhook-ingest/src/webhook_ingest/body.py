"""Read a webhook body without ever holding more than the configured limit in memory.

Signatures are computed over the exact raw bytes, so the body is read whole - but a body that
announces (Content-Length) or turns out (chunked) to be larger than the limit is refused as soon
as that is known, without buffering the rest.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import Receive


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"webhook body exceeds the {limit}-byte limit")
        self.limit = limit


async def read_limited(headers: Headers, receive: Receive, limit: int) -> bytes:
    """The request body from the ASGI ``receive`` channel, at most ``limit`` bytes.

    Read from the channel itself rather than through ``starlette.requests.Request.stream`` (an
    async generator around the same loop): a webhook nearly always arrives in one message, and
    the generator's machinery cost more than the read. A client gone mid-body raises
    :class:`~starlette.requests.ClientDisconnect`, as reading through Starlette did.
    """
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)
