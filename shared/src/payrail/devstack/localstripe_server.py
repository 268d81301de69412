"""localstripe, made to behave like Stripe where payrail depends on it.

localstripe (the fake Stripe API from PyPI) differs from Stripe in two ways that matter here:

* it ignores the ``Idempotency-Key`` header, so a retried create opens a second PaymentIntent -
  the very thing payrail's idempotency keys prevent at the real Stripe;
* it persists its objects to one fixed file, ``/tmp/localstripe.pickle``, shared by every
  instance on the machine.

This entry point runs localstripe's own aiohttp app with Stripe's documented idempotent-request
behaviour (https://docs.stripe.com/api/idempotent_requests) as a middleware, and with its
state in a file of the caller's choosing (none: in memory only). The first answer to a POST with
a key is kept (per API key) and returned for every repeat with ``Idempotent-Replayed: true``; a
repeat with other parameters is refused with 400 ``idempotency_error``; a repeat while the first
is still running gets 409 ``idempotency_key_in_use``; 5xx answers are not kept.

Run: ``python -m payrail.devstack.localstripe_server --port 8420 [--state-file F]``
(``--from-scratch`` ignores a saved state).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import pickle
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from localstripe import server
from localstripe.resources import store

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _StoredAnswer:
    fingerprint: str
    status: int
    body: bytes


class IdempotentRequests:
    """Stripe's idempotency-key semantics as an aiohttp middleware (kept in memory)."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], _StoredAnswer] = {}
        self._running: set[tuple[str, str]] = set()

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        return web.json_response(
            {"error": {"type": "idempotency_error", "code": code, "message": message}},
            status=status,
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return await handler(request)
        scope = (request.headers.get("Authorization", ""), key)
        body = await request.read()
        fingerprint = hashlib.sha256(request.path.encode() + b"\0" + body).hexdigest()
        stored = self._answers.get(scope)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                return self._error(
                    400,
                    "idempotency_key_reused",
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                )
            return web.Response(
                body=stored.body,
                status=stored.status,
                content_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        if scope in self._running:
            return self._error(
                409, "idempotency_key_in_use", "A request with this key is in progress."
            )
        self._running.add(scope)
        try:
            response = await handler(request)
        finally:
            self._running.discard(scope)
        answer = response.body if isinstance(response, web.Response) else None
        if isinstance(answer, bytes) and response.status < 500:
            self._answers[scope] = _StoredAnswer(fingerprint, response.status, answer)
        return response


#: how long writes are coalesced before the state file is rewritten
SAVE_DELAY_SECONDS = 0.5


class StateFile:
    """localstripe's persistence, in a file of ours and coalesced.

    localstripe pickles its whole store on every single write, which makes each write cost
    O(objects) - thousands of payments in, the emulator spends its time pickling. Here a write
    only schedules a save ``SAVE_DELAY_SECONDS`` later (one per burst), and stopping the server
    saves what is pending. A crash may lose the last half second of a development emulator's
    state, never leave a half-written file (write then rename).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: asyncio.TimerHandle | None = None

    def load(self) -> None:
        if self.path.is_file():
            store.clear()
            # the file is this dev server's own state, written by save(): trusted input
            store.update(pickle.loads(self.path.read_bytes()))  # noqa: S301

    def schedule_save(self) -> None:
        if self._pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a write outside the server's loop (start-up): save at once
            self.save()
            return
        self._pending = loop.call_later(SAVE_DELAY_SECONDS, self.save)

    def save(self) -> None:
        self._pending = None
        partial = self.path.with_suffix(".tmp")
        partial.write_bytes(pickle.dumps(dict(store), protocol=pickle.HIGHEST_PROTOCOL))
        partial.replace(self.path)

    async def flush(self, _app: web.Application) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self.save()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state-file", type=Path, help="keep objects here across restarts")
    parser.add_argument("--from-scratch", action="store_true", help="ignore a saved state")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # aiohttp's access log
    if args.state_file is None:
        store.dump_to_disk = lambda: None
    else:
        state = StateFile(args.state_file)
        if not args.from_scratch:
            state.load()
        store.dump_to_disk = state.schedule_save
        server.app.on_shutdown.append(state.flush)
    server.app.middlewares.insert(0, IdempotentRequests().middleware)
    web.run_app(server.app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
