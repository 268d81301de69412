"""localstripe with Stripe's idempotent-request semantics in front of it.

localstripe ignores the ``Idempotency-Key`` header, so against it a retried create opens a second
PaymentIntent - the very thing payrail's keys prevent at Stripe. This wrapper adds Stripe's
documented behaviour (https://docs.stripe.com/api/idempotent_requests) as an aiohttp middleware
around localstripe's app: the first answer to a POST with a key is stored (per API key) and
returned for every repeat of the key with ``Idempotent-Replayed: true``; a repeat with other
parameters is refused with 400 ``idempotency_error``; a repeat while the first is still running
gets 409 ``idempotency_key_in_use``; 5xx answers are not stored. It also keeps localstripe from
writing its state to the machine-wide ``/tmp/localstripe.pickle``.

Run: ``python -m tests.fakes.localstripe_idempotent --port N --from-scratch``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from aiohttp import web
from localstripe import server
from localstripe.resources import store

from tests.fakes.http_fake import Handler


@dataclass(frozen=True)
class _Result:
    fingerprint: str
    status: int
    body: bytes


_results: dict[tuple[str, str], _Result] = {}
_running: set[tuple[str, str]] = set()


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"type": "idempotency_error", "code": code, "message": message}}, status=status
    )


@web.middleware
async def idempotency(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    scope = (request.headers.get("Authorization", ""), key)
    body = await request.read()
    fingerprint = hashlib.sha256(request.path.encode() + b"\0" + body).hexdigest()
    stored = _results.get(scope)
    if stored is not None:
        if stored.fingerprint != fingerprint:
            return _error(
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
    if scope in _running:
        return _error(409, "idempotency_key_in_use", "A request with this key is in progress.")
    _running.add(scope)
    try:
        response = await handler(request)
    finally:
        _running.discard(scope)
    body_out = response.body if isinstance(response, web.Response) else None
    if isinstance(body_out, bytes) and response.status < 500:
        _results[scope] = _Result(fingerprint, response.status, body_out)
    return response


def main() -> None:
    store.dump_to_disk = lambda: None
    server.app.middlewares.insert(0, idempotency)
    server.start()


if __name__ == "__main__":
    main()
