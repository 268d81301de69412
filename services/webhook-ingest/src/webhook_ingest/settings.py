"""Settings of the webhook-ingest service (PAYRAIL_* environment variables)."""

from __future__ import annotations

from typing import ClassVar

from payrail.settings import ServiceSettings


class WebhookIngestSettings(ServiceSettings):
    service_name: ClassVar[str] = "webhook-ingest"
    db_schema: ClassVar[str] = ""

    http_port: int = 8002
