"""Creating the topics messaging needs, with the right partition counts and retention.

A consumer group's retry and dead-letter topics get the partition count of their source topic,
so a replayed record lands in the partition its key would have had. Dead-letter topics keep
their records for the replay horizon (30 days by default) instead of the broker's default of
seven, so a dead letter never expires unseen over a long weekend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

DEFAULT_PARTITIONS = 6


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create when it is missing.

    ``partitions_like`` names a topic whose partition count to copy; when that topic does not
    exist either, ``partitions`` is used.
    """

    name: str
    partitions: int = DEFAULT_PARTITIONS
    partitions_like: str | None = None
    config: Mapping[str, str] = field(default_factory=dict)


def retention_config(retention: timedelta | None) -> dict[str, str]:
    """Topic config for a time retention (None: keep forever)."""
    millis = -1 if retention is None else int(retention.total_seconds() * 1000)
    return {"retention.ms": str(millis)}


async def ensure_topics(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> list[str]:
    """Create the topics of ``specs`` that do not exist yet; returns the names created.

    Existence is read from the cluster's topic list (a metadata request naming a missing topic
    would auto-create it with the broker's defaults on brokers that allow that).
    """
    existing = set(await admin.list_topics())
    missing = [spec for spec in specs if spec.name not in existing]
    if not missing:
        return []
    counts = await partition_counts(
        admin, sorted({s.partitions_like for s in missing if s.partitions_like} & existing)
    )
    cluster: dict[str, Any] = await admin.describe_cluster()
    replication = max(1, min(3, len(cluster.get("brokers", []))))
    new_topics = [
        NewTopic(
            name=spec.name,
            num_partitions=counts.get(spec.partitions_like or "", spec.partitions),
            replication_factor=replication,
            topic_configs=dict(spec.config),
        )
        for spec in {s.name: s for s in missing}.values()
    ]
    response = await admin.create_topics(new_topics)
    created: list[str] = []
    for topic_error in response.to_object()["topic_errors"]:
        code = topic_error["error_code"]
        if code:
            error = for_code(code)(topic_error.get("error_message") or f"error code {code}")
            if not isinstance(error, TopicAlreadyExistsError):  # a concurrent starter won
                raise error
        else:
            created.append(topic_error["topic"])
    return created


async def partition_counts(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> dict[str, int]:
    """Partition count of each existing topic of ``topics``."""
    if not topics:
        return {}
    described = await admin.describe_topics(list(topics))
    return {t["topic"]: len(t["partitions"]) for t in described if not t["error_code"]}
