"""``POST /webhooks/{gateway}[/{account}]``: verify, normalize, hand to Kafka, then answer.

``account`` defaults to ``default``. The body is the gateway's webhook, as the gateway sent it;
the answer is the gateway's expected acknowledgement (2xx) or problem+json: 400 signature or
payload rejected, 404 unknown gateway or account, 413 body too large, 429 (Retry-After) too many
rejected webhooks from this source, 503 (Retry-After) broker or gateway verification unavailable.

The order of checks is deliberate and cheap-first: rate limit (no work for a flooding source),
endpoint known (404), body size (413, without reading it all), signature (400), and only then
publishing. The gateway gets 2xx only after the broker acknowledged every event of the webhook
with acks=all; 503 + Retry-After tells it to retry later when the broker is not there.

The paths are served by :class:`WebhookRoutes`, a pure ASGI middleware in front of FastAPI's
exception middleware and router, not by routes: see its docstring for why and what it keeps.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers, State
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from payrail.gateways.base import GatewayUnavailable, WebhookRejected
from payrail.logging import get_logger
from payrail.web.problems import Problem, problem_response
from webhook_ingest.body import BodyTooLarge, read_limited
from webhook_ingest.metrics import EVENTS_PUBLISHED, LATENCY, WEBHOOKS
from webhook_ingest.publisher import BrokerUnavailable, GatewayEventPublisher
from webhook_ingest.ratelimit import RejectionLimiter
from webhook_ingest.settings import WebhookIngestSettings
from webhook_ingest.verifiers import UnknownEndpoint, Verifiers

log = get_logger("webhook_ingest")


class Refusal(Problem):
    """A problem+json answer that also names the metrics outcome (not sent to the client)."""

    def __init__(
        self, outcome: str, status: int, title: str, detail: str, **kwargs: object
    ) -> None:
        super().__init__(status, title, detail, **kwargs)  # type: ignore[arg-type]
        self.outcome = outcome


class RecentEvents:
    """ce_ids the broker already acknowledged, so a re-sent webhook is counted as a duplicate
    and answered 2xx without being published again (consumers would dedupe it anyway)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def all_seen(self, ce_ids: list[str]) -> bool:
        for ce_id in ce_ids:  # a loop, not all(<generator>): this runs for every webhook
            if ce_id not in self._ids:
                return False
        return bool(ce_ids)

    def add(self, ce_ids: list[str]) -> None:
        for ce_id in ce_ids:
            self._ids[ce_id] = None
            self._ids.move_to_end(ce_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class WebhookIngest:
    """The request pipeline, kept apart from HTTP routing so its collaborators are explicit."""

    def __init__(
        self,
        settings: WebhookIngestSettings,
        verifiers: Verifiers,
        publisher: GatewayEventPublisher,
    ) -> None:
        self.settings = settings
        self.verifiers = verifiers
        self.publisher = publisher
        self.limiter = RejectionLimiter(
            settings.reject_budget_per_source, settings.reject_window_seconds
        )
        self.recent = RecentEvents(settings.recent_event_ids)
        self._retry_after = {"Retry-After": str(settings.retry_after_seconds)}
        # Labelled metric children of configured gateways, looked up once: prometheus_client's
        # labels() takes a lock and builds the label tuple on every call (~3 % of a webhook's
        # CPU). Unknown gateways (any path a client sends) are not kept, so this stays bounded.
        self._outcomes: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._published: dict[tuple[str, str], Counter] = {}
        self._acks: dict[tuple[str, str], Response] = {}

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, gateway: str, account: str
    ) -> None:
        """Answer one webhook on the raw ASGI channels (see :class:`WebhookRoutes`)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            response, outcome = await self._handle(scope, receive, gateway, account)
        except Refusal as refusal:
            outcome = refusal.outcome
            response = problem_response(refusal, Request(scope).url.path)
        finally:
            self._observe(gateway, outcome, time.perf_counter() - started)
        await response(scope, receive, send)

    def _observe(self, gateway: str, outcome: str, seconds: float) -> None:
        children = self._outcomes.get((gateway, outcome))
        if children is None:
            children = (WEBHOOKS.labels(gateway, outcome), LATENCY.labels(gateway, outcome))
            if gateway in self.settings.gateways:
                self._outcomes[gateway, outcome] = children
        children[0].inc()
        children[1].observe(seconds)

    def _count_published(self, gateway: str, kind: str) -> None:
        counter = self._published.get((gateway, kind))
        if counter is None:
            counter = self._published[gateway, kind] = EVENTS_PUBLISHED.labels(gateway, kind)
        counter.inc()

    def _ack(self, body: str, media_type: str) -> Response:
        """The acknowledgement a gateway expects, built once per distinct answer (a verifier has
        one or two): sending a Starlette Response only reads it."""
        response = self._acks.get((body, media_type))
        if response is None:
            response = self._acks[body, media_type] = Response(body, media_type=media_type)
        return response

    async def _handle(
        self, scope: Scope, receive: Receive, gateway: str, account: str
    ) -> tuple[Response, str]:
        client = scope.get("client")
        source = client[0] if client else "unknown"
        if self.limiter.exhausted(source):
            raise Refusal(
                "rate_limited",
                429,
                "Too many rejected webhooks",
                "this source sent too many unverifiable webhooks; slow down",
                headers=self._retry_after,
            )
        try:
            verifier = self.verifiers.get(gateway, account)
        except UnknownEndpoint as exc:
            self.limiter.record_rejection(source)
            raise Refusal("unknown_gateway", 404, "Unknown webhook endpoint", str(exc)) from None
        headers = Headers(scope=scope)
        try:
            body = await read_limited(headers, receive, self.settings.max_body_bytes)
        except BodyTooLarge as exc:
            self.limiter.record_rejection(source)
            raise Refusal("too_large", 413, "Webhook body too large", str(exc)) from None
        try:
            events = await verifier.verify(headers, body)
        except GatewayUnavailable as exc:
            # verification needed the gateway (PayPal's certificate or verify API) and it is not
            # answering: not the sender's fault, so no rate-limit charge; the gateway retries
            log.warning(
                "webhook verification needs the gateway, which is unavailable",
                gateway=gateway,
                error=type(exc).__name__,
            )
            raise Refusal(
                "verification_unavailable",
                503,
                "Verification unavailable",
                "the gateway could not be asked to verify this webhook; retry later",
                headers=self._retry_after,
            ) from None
        except WebhookRejected as exc:
            self.limiter.record_rejection(source)
            log.warning("webhook rejected", gateway=gateway, account=account, reason=exc.reason)
            raise Refusal(
                f"rejected_{exc.reason}",
                400,
                "Webhook rejected",
                str(exc),
                type_=f"webhook-{exc.reason}",
                reason=exc.reason,
            ) from None

        ack_body, ack_type = verifier.acknowledgement(events)
        # The success paths write no log line: the metrics count them and the topic holds every
        # published event by its ce_id, while a line per webhook (even a filtered-out debug one:
        # structlog runs its processors first) cost 15-20 % of the request's CPU under load
        # (docs/benchmarks.md). Rejections and failures are still logged.
        if not events:
            return self._ack(ack_body, ack_type), "ignored"
        ce_ids = [event.ce_id for event in events]
        if self.recent.all_seen(ce_ids):
            return self._ack(ack_body, ack_type), "duplicate"
        try:
            await self.publisher.publish(events, deadline=self.settings.publish_timeout_seconds)
        except BrokerUnavailable as exc:
            log.error(
                "broker unavailable; asking the gateway to retry", gateway=gateway, error=str(exc)
            )
            raise Refusal(
                "broker_unavailable",
                503,
                "Event store unavailable",
                "the webhook was not stored; retry later",
                headers=self._retry_after,
            ) from None
        self.recent.add(ce_ids)
        for event in events:
            self._count_published(gateway, event.kind.value)
        return self._ack(ack_body, ack_type), "published"


_PREFIX = "/webhooks/"
_METHOD_NOT_ALLOWED = Problem(
    405, "Method Not Allowed", "Method Not Allowed", headers={"Allow": "POST"}
)


def webhook_target(scope: Scope) -> tuple[str, str] | None:
    """``(gateway, account)`` when the request's path is ``/webhooks/{gateway}[/{account}]``.

    Matched as Starlette's router matched these paths when they were routes: on the path below
    ``root_path``, each parameter one non-empty segment (a trailing slash does not match, so the
    router still redirects it).
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path + "/"):
        path = path[len(root_path) :]
    if not path.startswith(_PREFIX):
        return None
    gateway, slash, account = path[len(_PREFIX) :].partition("/")
    if not gateway or "/" in account or (slash and not account):
        return None
    return gateway, account or "default"


class WebhookRoutes:
    """Pure ASGI middleware serving ``/webhooks/{gateway}[/{account}]`` (all else passes on).

    Added with ``app.add_middleware``, so it sits inside FastAPI's outer layers - a crash is
    still a 500 (ServerErrorMiddleware), and when OpenTelemetry is configured FastAPI's request
    span still wraps the webhook, so the events published carry its trace - but in front of the
    exception middleware, the exit-stack middleware, the router and Starlette's request/response
    wrapping. Those layers did nothing for a webhook (the pipeline renders its own problem+json,
    reads the raw body and has no dependencies) yet cost about a fifth of its CPU, mostly by
    being resumed on every await of the request (docs/benchmarks.md). A method other than POST
    is 405 problem+json with ``Allow: POST``, as from the router before.
    """

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = webhook_target(scope) if scope["type"] == "http" else None
        if target is None:
            await self.app(scope, receive, send)
        elif scope["method"] == "POST":
            pipeline: WebhookIngest = self.state.webhook_ingest
            await pipeline(scope, receive, send, *target)
        else:
            await problem_response(_METHOD_NOT_ALLOWED, Request(scope).url.path)(
                scope, receive, send
            )
