"""``POST /webhooks/{gateway}[/{account}]``: verify, normalize, hand to Kafka, then answer.

``account`` defaults to ``default``. The body is the gateway's webhook, as the gateway sent it;
the answer is the gateway's expected acknowledgement (2xx) or problem+json: 400 signature or
payload rejected, 404 unknown gateway or account, 413 body too large, 429 (Retry-After) too many
rejected webhooks from this source, 503 (Retry-After) broker or gateway verification unavailable.

The order of checks is deliberate and cheap-first: rate limit (no work for a flooding source),
endpoint known (404), body size (413, without reading it all), signature (400), and only then
publishing. The gateway gets 2xx only after the broker acknowledged every event of the webhook
with acks=all; 503 + Retry-After tells it to retry later when the broker is not there.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from payrail.gateways.base import GatewayUnavailable, WebhookRejected
from payrail.logging import get_logger
from payrail.web.problems import Problem
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
        return bool(ce_ids) and all(ce_id in self._ids for ce_id in ce_ids)

    def add(self, ce_ids: list[str]) -> None:
        for ce_id in ce_ids:
            self._ids[ce_id] = None
            self._ids.move_to_end(ce_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class WebhookIngest:
    """The request pipeline, kept apart from FastAPI routing so its collaborators are explicit."""

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

    async def handle(self, request: Request, gateway: str, account: str) -> Response:
        started = time.perf_counter()
        outcome = "error"
        try:
            response, outcome = await self._handle(request, gateway, account)
            return response
        except Refusal as refusal:
            outcome = refusal.outcome
            raise
        finally:
            WEBHOOKS.labels(gateway, outcome).inc()
            LATENCY.labels(gateway, outcome).observe(time.perf_counter() - started)

    async def _handle(self, request: Request, gateway: str, account: str) -> tuple[Response, str]:
        source = request.client.host if request.client else "unknown"
        retry_after = {"Retry-After": str(self.settings.retry_after_seconds)}
        if self.limiter.exhausted(source):
            raise Refusal(
                "rate_limited",
                429,
                "Too many rejected webhooks",
                "this source sent too many unverifiable webhooks; slow down",
                headers=retry_after,
            )
        try:
            verifier = self.verifiers.get(gateway, account)
        except UnknownEndpoint as exc:
            self.limiter.record_rejection(source)
            raise Refusal("unknown_gateway", 404, "Unknown webhook endpoint", str(exc)) from None
        try:
            body = await read_limited(request, self.settings.max_body_bytes)
        except BodyTooLarge as exc:
            self.limiter.record_rejection(source)
            raise Refusal("too_large", 413, "Webhook body too large", str(exc)) from None
        try:
            events = await verifier.verify(request.headers, body)
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
                headers=retry_after,
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
            return Response(ack_body, media_type=ack_type), "ignored"
        ce_ids = [event.ce_id for event in events]
        if self.recent.all_seen(ce_ids):
            return Response(ack_body, media_type=ack_type), "duplicate"
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
                headers=retry_after,
            ) from None
        self.recent.add(ce_ids)
        for event in events:
            EVENTS_PUBLISHED.labels(gateway, event.kind.value).inc()
        return Response(ack_body, media_type=ack_type), "published"


async def receive(request: Request) -> Response:
    """Starlette endpoint for both webhook paths.

    A plain Starlette route, not a FastAPI one: the path parameters are plain strings and the
    body is read raw, so FastAPI's dependency solving and endpoint wrapping had nothing to do but
    cost about a tenth of the request's CPU (docs/benchmarks.md). FastAPI does not describe such
    routes, so :mod:`webhook_ingest.openapi` adds them to ``/docs`` by hand.
    """
    pipeline: WebhookIngest = request.app.state.webhook_ingest
    params = request.path_params
    return await pipeline.handle(request, params["gateway"], params.get("account", "default"))


routes = [
    Route("/webhooks/{gateway}", receive, methods=["POST"]),
    Route("/webhooks/{gateway}/{account}", receive, methods=["POST"]),
]
