"""Prometheus metrics of webhook-ingest: a counter per gateway and outcome, a latency histogram."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOKS = Counter(
    "payrail_webhooks_total",
    "Webhooks received, by gateway and outcome (published, duplicate, ignored, rejected_<reason>,"
    " broker_unavailable, rate_limited, unknown_gateway, too_large)",
    ["gateway", "outcome"],
)
EVENTS_PUBLISHED = Counter(
    "payrail_webhook_events_published_total",
    "Normalized gateway events acknowledged by the broker",
    ["gateway", "kind"],
)
LATENCY = Histogram(
    "payrail_webhook_latency_seconds",
    "Time from request received to response, by gateway and outcome",
    ["gateway", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
