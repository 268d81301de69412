"""Kafka topic names, and the per-consumer-group retry and dead-letter topics derived from them.

Payment topics are keyed by payrail's payment id (ordering per payment), ``entitlements.events``
by user id. A dead letter belongs to the consumer group that failed to handle it, and a replay
must reach only that group again; hence one ``.retry`` and one ``.dlt`` topic per
(source topic, group) pair, which only that group subscribes to.
"""

from __future__ import annotations

import re
from typing import Final, Literal

PAYMENTS_INTENTS: Final = "payments.intents"
PAYMENTS_GATEWAY_EVENTS: Final = "payments.gateway-events"
PAYMENTS_LIFECYCLE: Final = "payments.lifecycle"
ENTITLEMENTS_EVENTS: Final = "entitlements.events"
RECONCILIATION_DISCREPANCIES: Final = "reconciliation.discrepancies"

#: the audit trail of dead-letter replays (who replayed what, when), kept forever
DLQ_REPLAYS: Final = "payrail.dlq-replays"

DLT_SUFFIX: Final = ".dlt"
RETRY_SUFFIX: Final = ".retry"

# Group ids carry no dots, so "<topic>.<group>.dlt" splits unambiguously from the right even
# though topic names do contain dots.
_GROUP_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def validate_group_id(group: str) -> str:
    """Return ``group`` when it can be embedded in a retry/DLT topic name, else raise ValueError."""
    if not _GROUP_ID.match(group):
        raise ValueError(
            f"consumer group id {group!r} must match {_GROUP_ID.pattern} "
            "(no dots: it is embedded in retry and dead-letter topic names)"
        )
    return group


def dlt_topic(topic: str, group: str) -> str:
    """The dead-letter topic of ``group`` for messages it could not handle from ``topic``."""
    return f"{topic}.{validate_group_id(group)}{DLT_SUFFIX}"


def retry_topic(topic: str, group: str) -> str:
    """The topic replays of ``topic``'s dead letters go to; only ``group`` subscribes to it."""
    return f"{topic}.{validate_group_id(group)}{RETRY_SUFFIX}"


def split_group_topic(name: str) -> tuple[str, str, Literal["dlt", "retry"]]:
    """Split ``<topic>.<group>.dlt`` / ``<topic>.<group>.retry`` into (topic, group, kind).

    Raises ValueError for any other name.
    """
    parts = name.rsplit(".", 2)
    if len(parts) == 3 and parts[0] and _GROUP_ID.match(parts[1]):
        if parts[2] == "dlt":
            return parts[0], parts[1], "dlt"
        if parts[2] == "retry":
            return parts[0], parts[1], "retry"
    raise ValueError(f"{name!r} is not a '<topic>.<group>.dlt' or '<topic>.<group>.retry' topic")
