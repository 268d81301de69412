"""The common machinery of payrail's fake gateway servers.

A fake is a small stateful aiohttp app run on its own event loop in a background thread, on a
free port of 127.0.0.1, so synchronous SDKs (in worker threads) and async clients can both call
it. Every request is recorded (method, path, query, headers, body) for assertions, and faults can
be injected for the next matching requests:

* ``fail(status, times=N)``: answer ``status`` (optionally with ``Retry-After``) without handling
  the request - the gateway is down or rate limiting, nothing happened;
* ``delay(seconds, times=N)``: handle the request, then hold the answer back - the gateway acted
  but its answer comes too late for the client's timeout (an "outcome unknown").

Idempotency (PayPal-Request-Id, Adyen's Idempotency-Key) is provided by :meth:`FakeGateway.once`:
the first answer for a key is stored and replayed for every repeat of that key.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class _Fault:
    method: str | None
    path_contains: str
    remaining: int
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0

    def matches(self, request: web.Request) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method == request.method)
            and self.path_contains in request.path
        )


@dataclass
class _Stored:
    status: int
    body: Any
    request_body: bytes = field(repr=False, default=b"")


class FakeGateway:
    """Base of the fakes: subclasses add routes in :meth:`routes` and keep their state."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.recorded: list[Recorded] = []
        self._faults: list[_Fault] = []
        self._idempotent: dict[tuple[str, str], _Stored] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            started.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=0.5)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def stop(self) -> None:
        if self._loop is None or self._thread is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ faults and records

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        path_contains: str = "",
        retry_after: str | None = None,
    ) -> None:
        """Answer ``status`` to the next ``times`` matching requests without handling them."""
        with self.lock:
            self._faults.append(
                _Fault(method, path_contains, times, status=status, retry_after=retry_after)
            )

    def delay(
        self,
        seconds: float,
        *,
        times: int = 1,
        method: str | None = None,
        path_contains: str = "",
    ) -> None:
        """Handle the next ``times`` matching requests, then answer ``seconds`` late."""
        with self.lock:
            self._faults.append(_Fault(method, path_contains, times, delay=seconds))

    def requests_to(self, method: str, path_contains: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.recorded if r.method == method and path_contains in r.path]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        with self.lock:
            self.recorded.append(
                Recorded(
                    method=request.method,
                    path=request.path,
                    query=dict(request.query),
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                )
            )
            fault = next((f for f in self._faults if f.matches(request)), None)
            if fault is not None:
                fault.remaining -= 1
        if fault is not None and fault.status is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return web.json_response(
                self.fault_body(fault.status), status=fault.status, headers=headers
            )
        refused = self.refuse(request)
        if refused is not None:
            return refused
        response = await handler(request)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        return response

    def refuse(self, request: web.Request) -> web.Response | None:
        """The gateway's answer to a request without valid credentials; None lets it through."""
        return None

    def fault_body(self, status: int) -> Any:
        """The error body of an injected fault, in the gateway's format."""
        return {"status": status, "message": "injected fault"}

    # ------------------------------------------------------------------ idempotency

    async def once(
        self,
        request: web.Request,
        key: str | None,
        produce: Callable[[Any], tuple[int, Any]],
        *,
        mismatch: Callable[[], web.Response],
    ) -> web.Response:
        """Run ``produce(json body)`` once per idempotency ``key`` (scoped by path).

        A repeat with the same key replays the stored answer; a repeat with another body gets
        ``mismatch()``. 5xx answers are not stored, so a retry after them runs again.
        """
        raw = await request.read()
        payload = json.loads(raw) if raw else None
        with self.lock:
            stored = self._idempotent.get((request.path, key)) if key else None
            if stored is not None:
                if stored.request_body != raw:
                    return mismatch()
                return web.json_response(stored.body, status=stored.status)
            status, answer = produce(payload)
            if key and status < 500:
                self._idempotent[(request.path, key)] = _Stored(status, answer, raw)
        return web.json_response(answer, status=status)
