"""payrail webhook-ingest: verifies gateway webhook signatures over the raw bytes and hands
verified events to Kafka (payments.gateway-events), answering 2xx only once the broker holds
them. It owns no database: Kafka is its store, so it scales by adding instances."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from payrail.web import components
from payrail.web.app import create_app as create_service_app
from webhook_ingest.openapi import describe_webhook_routes
from webhook_ingest.publisher import GatewayEventPublisher
from webhook_ingest.routes import WebhookIngest, WebhookRoutes
from webhook_ingest.settings import WebhookIngestSettings
from webhook_ingest.verifiers import Verifiers


@asynccontextmanager
async def ingest_pipeline(app: FastAPI) -> AsyncIterator[None]:
    settings: WebhookIngestSettings = app.state.settings
    verifiers = Verifiers(settings)
    verifiers.build_all()
    publisher = GatewayEventPublisher(settings.kafka_bootstrap_servers)
    app.state.webhook_ingest = WebhookIngest(settings, verifiers, publisher)
    try:
        yield
    finally:
        await publisher.close()


def create_app(settings: WebhookIngestSettings | None = None) -> FastAPI:
    settings = settings or WebhookIngestSettings()
    app = create_service_app(
        settings,
        title="payrail webhook-ingest",
        description=__doc__ or "",
        components=[components.kafka_probe, ingest_pipeline],
        probes=components.standard_probes,
    )
    app.add_middleware(WebhookRoutes, state=app.state)
    describe_webhook_routes(app)
    return app
