"""Settings of the webhook-ingest service (PAYRAIL_* environment variables)."""

from __future__ import annotations

from typing import ClassVar

from payrail.settings import ServiceSettings


class WebhookIngestSettings(ServiceSettings):
    service_name: ClassVar[str] = "webhook-ingest"
    db_schema: ClassVar[str] = ""

    http_port: int = 8002
    #: largest webhook body accepted; larger ones get 413 without being read whole
    max_body_bytes: int = 512 * 1024
    #: how long to wait for the broker's acks=all before answering 503
    publish_timeout_seconds: float = 5.0
    #: Retry-After sent with 503 / 429
    retry_after_seconds: int = 30
    #: rejected (unverifiable) requests allowed per source IP per window before 429
    reject_budget_per_source: int = 20
    reject_window_seconds: float = 60.0
    #: recently acknowledged ce_ids remembered to count (and not re-send) duplicate webhooks
    recent_event_ids: int = 10_000
