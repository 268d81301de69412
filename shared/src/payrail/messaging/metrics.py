"""Prometheus metrics of the outbox relay and the inbox consumers (default registry, so every
service's ``/metrics`` exposes them).

The two numbers an SRE alerts on are ``payrail_outbox_oldest_unpublished_age_seconds`` (events
stuck before Kafka) and ``payrail_consumer_dead_lettered_total`` (events that gave up).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OUTBOX_BACKLOG = Gauge(
    "payrail_outbox_backlog",
    "Outbox rows committed but not yet published to Kafka",
    ["schema"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "payrail_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest unpublished outbox row (0 when the backlog is empty)",
    ["schema"],
)
OUTBOX_PUBLISHED = Counter(
    "payrail_outbox_published_total",
    "Outbox rows published to Kafka and marked published",
    ["schema", "topic"],
)
OUTBOX_BATCH_SECONDS = Histogram(
    "payrail_outbox_batch_seconds",
    "Time to claim, publish (acks=all) and mark one relay batch",
    ["schema"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
OUTBOX_PURGED = Counter(
    "payrail_outbox_purged_total",
    "Published outbox rows deleted after the retention",
    ["schema"],
)

CONSUMER_PROCESSED = Counter(
    "payrail_consumer_processed_total",
    "Messages whose effects were committed",
    ["consumer"],
)
CONSUMER_DUPLICATES = Counter(
    "payrail_consumer_duplicates_total",
    "Messages skipped because the inbox already held their ce_id",
    ["consumer"],
)
CONSUMER_RETRIES = Counter(
    "payrail_consumer_retries_total",
    "Handler attempts that failed with a retryable error and were retried",
    ["consumer", "exception"],
)
CONSUMER_DEAD_LETTERED = Counter(
    "payrail_consumer_dead_lettered_total",
    "Messages sent to the consumer group's dead-letter topic",
    ["consumer", "exception"],
)
CONSUMER_HANDLE_SECONDS = Histogram(
    "payrail_consumer_handle_seconds",
    "Time from picking a message up to its outcome (committed, skipped or dead-lettered)",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0),
)
INBOX_PRUNED = Counter(
    "payrail_inbox_pruned_total",
    "Inbox rows deleted after the retention",
    ["schema"],
)
