"""The dead-letter record format: the failed record's key, value and headers, plus headers that
say where it came from and why it failed.

Header names follow Spring Kafka's ``kafka_dlt-*`` convention (tools and people already know
them), with payrail's additions under ``payrail_dlt-*``. All values are UTF-8 text. The
``payrail dlq`` CLI and :mod:`payrail.messaging.dlq` read exactly these names; changing one is a
breaking change for every dead letter already on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, Protocol

from payrail.messaging.envelope import format_time
from payrail.messaging.errors import describe_exception, exception_fqcn

ORIGINAL_TOPIC: Final = "kafka_dlt-original-topic"
ORIGINAL_PARTITION: Final = "kafka_dlt-original-partition"
ORIGINAL_OFFSET: Final = "kafka_dlt-original-offset"
ORIGINAL_TIMESTAMP: Final = "kafka_dlt-original-timestamp"
ORIGINAL_CONSUMER_GROUP: Final = "kafka_dlt-original-consumer-group"
EXCEPTION_FQCN: Final = "kafka_dlt-exception-fqcn"
EXCEPTION_MESSAGE: Final = "kafka_dlt-exception-message"
ATTEMPTS: Final = "payrail_dlt-attempts"
FIRST_FAILURE: Final = "payrail_dlt-first-failure"
LAST_FAILURE: Final = "payrail_dlt-last-failure"
ORIGINAL_KEY: Final = "payrail_dlt-original-key"

# Replays (payrail.messaging.dlq) add these to the copy they send to the retry topic.
REPLAY_ID: Final = "payrail_replay-id"
REPLAYED_AT: Final = "payrail_replayed-at"
REPLAYED_BY: Final = "payrail_replayed-by"
REPLAY_SOURCE: Final = "payrail_replay-source"

DEAD_LETTER_PREFIXES: Final = ("kafka_dlt-", "payrail_dlt-")
REPLAY_PREFIX: Final = "payrail_replay"


class FailedRecord(Protocol):
    """The part of a consumed record a dead letter copies (aiokafka's ``ConsumerRecord`` fits)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def dead_letter_headers(
    record: FailedRecord,
    *,
    group: str,
    exc: BaseException,
    attempts: int,
    first_failure: datetime,
    last_failure: datetime,
) -> list[tuple[str, bytes]]:
    """The headers of the dead letter of ``record``: its own headers (minus those of an earlier
    dead-lettering, so a replayed message that fails again carries one consistent set) plus
    the failure's."""
    kept = [
        (name, value) for name, value in record.headers if not name.startswith(DEAD_LETTER_PREFIXES)
    ]
    added = {
        ORIGINAL_TOPIC: record.topic,
        ORIGINAL_PARTITION: str(record.partition),
        ORIGINAL_OFFSET: str(record.offset),
        ORIGINAL_TIMESTAMP: str(record.timestamp),
        ORIGINAL_CONSUMER_GROUP: group,
        EXCEPTION_FQCN: exception_fqcn(exc),
        EXCEPTION_MESSAGE: describe_exception(exc),
        ATTEMPTS: str(attempts),
        FIRST_FAILURE: format_time(first_failure),
        LAST_FAILURE: format_time(last_failure),
        ORIGINAL_KEY: (record.key or b"").decode("utf-8", errors="replace"),
    }
    return kept + [(name, value.encode("utf-8")) for name, value in added.items()]
