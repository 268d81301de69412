"""A faulty network between checkout and a gateway: an HTTP proxy that forwards to the real one.

It sits in front of localstripe (configured as the Stripe account's ``api_base``) and records
every request (:class:`~tests.fakes.http_fake.FakeGateway`), so a test can count what reached
the gateway - e.g. that two janitors made one status sync per step. Faults:

* ``delay(seconds, ...)`` (inherited): the request is forwarded and *handled* by the gateway,
  the answer held back past the client's timeout - "the gateway timed out on create" while the
  intent does exist;
* :meth:`black_hole`: matching requests are never forwarded and never answered - the gateway
  never hears of them.

:meth:`heal` removes every fault.
"""

from __future__ import annotations

import asyncio

import httpx
from aiohttp import web

from tests.fakes.http_fake import FakeGateway

#: hop-by-hop and length headers the proxy does not copy (it re-frames bodies itself)
_SKIP = frozenset(
    {"host", "connection", "content-length", "transfer-encoding", "content-encoding", "keep-alive"}
)


class GatewayProxy(FakeGateway):
    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self._holes: list[tuple[str, str]] = []
        self._client: httpx.AsyncClient | None = None

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/{tail:.*}", self._forward)]

    def black_hole(self, *, method: str, path: str) -> None:
        """Swallow requests to exactly ``path``: never forwarded, never answered."""
        with self.lock:
            self._holes.append((method, path))

    def heal(self) -> None:
        """The network is fine again: no delays, no black holes."""
        with self.lock:
            self._holes.clear()
            self._faults.clear()

    def stop(self) -> None:
        if self._loop is not None and self._client is not None:
            closing = asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop)
            closing.result(10)
        super().stop()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            swallowed = any(
                request.method == method and request.path == path for method, path in self._holes
            )
        if swallowed:
            await asyncio.sleep(3600)  # until the client gives up and the connection closes
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.upstream, timeout=30)
        answer = await self._client.request(
            request.method,
            request.path_qs,
            content=await request.read(),
            headers={k: v for k, v in request.headers.items() if k.lower() not in _SKIP},
        )
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in _SKIP}
        return web.Response(body=answer.content, status=answer.status_code, headers=headers)
