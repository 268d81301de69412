"""payrail webhook-ingest: Verifies gateway webhook signatures over the raw bytes and hands
verified events to Kafka (payments.gateway-events), answering 2xx only once the broker holds
them."""

from __future__ import annotations

from fastapi import FastAPI

from payrail.web import components
from payrail.web.app import create_app as create_service_app
from webhook_ingest.settings import WebhookIngestSettings


def create_app(settings: WebhookIngestSettings | None = None) -> FastAPI:
    settings = settings or WebhookIngestSettings()
    return create_service_app(
        settings,
        title="payrail webhook-ingest",
        description=__doc__ or "",
        components=[components.kafka_probe],
        probes=components.standard_probes,
    )
