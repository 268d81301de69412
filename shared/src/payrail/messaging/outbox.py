"""Staging outgoing events in the business transaction (the transactional outbox).

Services never publish domain events to Kafka directly: a crash between "commit" and "publish"
would lose the event, and a publish before a rollback would announce something that never
happened. Instead :meth:`Outbox.stage` inserts the encoded record into the service's ``outbox``
table in the caller's transaction, and the relay (:mod:`payrail.messaging.relay`) publishes it
after the commit. The same statement calls ``pg_notify`` so the relay wakes at once; PostgreSQL
delivers the notification only if, and when, the transaction commits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy import TextClause, text

from payrail.db import Executor
from payrail.messaging.envelope import Envelope, encode
from payrail.messaging.schema import MessagingTables, messaging_tables


def dump_headers(headers: Sequence[tuple[str, bytes]]) -> str:
    """Headers as a JSON array of ``[name, text]`` pairs (how the outbox stores them)."""
    return json.dumps([[name, value.decode("utf-8")] for name, value in headers])


def load_headers(stored: Sequence[Sequence[str]]) -> list[tuple[str, bytes]]:
    """The inverse of :func:`dump_headers`, from the JSONB value the driver returns."""
    return [(name, value.encode("utf-8")) for name, value in stored]


class Outbox:
    """The outbox of one service schema."""

    def __init__(self, schema: str) -> None:
        self.tables: MessagingTables = messaging_tables(schema)
        #: the one statement staging runs: the insert, with the notification riding on it
        self.statement: TextClause = text(
            f'INSERT INTO "{schema}".outbox (topic, key, ce_id, ce_type, payload, headers) '
            "SELECT :topic, :key, :ce_id, :ce_type, :payload, CAST(:headers AS jsonb) "
            "FROM (SELECT pg_notify(:channel, '')) AS wake"
        )

    def staging_from(self, rows: str) -> str:
        """SQL staging one event per row of ``rows``, with the bind parameters of
        :meth:`parameters`: the staging folded into a service's own statement (a data-modifying
        CTE of it), one round trip instead of two.

        ``rows`` is a relation of that statement, typically a CTE returning one row when the
        business change happened and none when it did not (then nothing is staged). The relay's
        wake-up rides on each staged row, so it is sent only when a row is.
        """
        return (
            f'INSERT INTO "{self.tables.schema}".outbox '
            "(topic, key, ce_id, ce_type, payload, headers) "
            "SELECT :topic, :key, :ce_id, :ce_type, :payload, CAST(:headers AS jsonb) "
            f"FROM {rows} WHERE pg_notify(:channel, '') IS NOT NULL"
        )

    def parameters(self, topic: str, key: str, envelope: Envelope[BaseModel]) -> dict[str, Any]:
        """The bind parameters of :attr:`statement` for one event."""
        record = encode(envelope, key)
        return {
            "topic": topic,
            "key": key,
            "ce_id": envelope.id,
            "ce_type": envelope.type,
            "payload": record.value,
            "headers": dump_headers(record.headers),
            "channel": self.tables.channel,
        }

    async def stage(
        self, session: Executor, topic: str, key: str, envelope: Envelope[BaseModel]
    ) -> None:
        """Stage ``envelope`` for ``topic`` with partition key ``key`` in ``session``'s transaction.

        Events staged for one key are published in the order they were staged, provided the
        transactions that stage them for a key are serialized (as a service's lock on the
        aggregate row does); two transactions racing on one key have no order to preserve.
        """
        await session.execute(self.statement, self.parameters(topic, key, envelope))
