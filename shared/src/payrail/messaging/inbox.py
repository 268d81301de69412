"""The inbox: a consumer's memory of the events it has applied, for exactly-once effects.

Kafka delivers at least once (a redelivery after a rebalance, a crash between the database
commit and the offset commit, a relay re-publishing after a crash). Each message is therefore
handled in one transaction that first inserts ``(consumer, ce_id)``; the primary key turns a
second delivery into "nothing inserted", and the consumer skips it. Because the insert and the
effects commit together, there is no window in which one exists without the other.

Rows must outlive every way a message can come back (redelivery, a relay re-publish, an SRE
replay), so the default retention is 30 days, matching the dead-letter topics' retention.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from payrail.logging import get_logger
from payrail.messaging.metrics import INBOX_PRUNED
from payrail.messaging.schema import validate_schema

DEFAULT_INBOX_RETENTION = timedelta(days=30)
_PRUNE_CHUNK = 5000

log = get_logger(__name__)


class Inbox:
    """The inbox table of one service schema."""

    def __init__(self, schema: str) -> None:
        self.schema = validate_schema(schema)
        self._receive: TextClause = text(
            f'INSERT INTO "{schema}".inbox (consumer, ce_id, ce_type, topic, partition, "offset") '
            "VALUES (:consumer, :ce_id, :ce_type, :topic, :partition, :offset) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        )
        self._receive_many: TextClause = text(
            f'INSERT INTO "{schema}".inbox (consumer, ce_id, ce_type, topic, partition, "offset") '
            "SELECT :consumer, * FROM unnest(CAST(:ce_ids AS text[]), CAST(:ce_types AS text[]), "
            "CAST(:topics AS text[]), CAST(:partitions AS integer[]), CAST(:offsets AS bigint[])) "
            "ON CONFLICT DO NOTHING RETURNING ce_id"
        )
        self._prune: TextClause = text(
            f'DELETE FROM "{schema}".inbox WHERE ctid = ANY(ARRAY('
            f'SELECT ctid FROM "{schema}".inbox WHERE processed_at < clock_timestamp() - :age '
            f"LIMIT {_PRUNE_CHUNK}))"
        )

    async def receive(
        self,
        session: AsyncSession,
        *,
        consumer: str,
        ce_id: str,
        ce_type: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> bool:
        """Record the message in ``session``'s transaction; False when it was applied before.

        A concurrent transaction inserting the same key (a redelivery racing the original after
        a rebalance) makes this wait for it, then see its row: the effect still happens once.
        """
        result = await session.execute(
            self._receive,
            {
                "consumer": consumer,
                "ce_id": ce_id,
                "ce_type": ce_type,
                "topic": topic,
                "partition": partition,
                "offset": offset,
            },
        )
        return result.first() is not None

    async def receive_many(
        self,
        session: AsyncSession,
        *,
        consumer: str,
        messages: Sequence[tuple[str, str, str, int, int]],
    ) -> set[str]:
        """Record several messages, each ``(ce_id, ce_type, topic, partition, offset)``, in one
        statement (one round trip); returns the ce_ids that were new. A ce_id given twice is
        recorded once."""
        ce_ids, ce_types, topics, partitions, offsets = zip(*messages, strict=True)
        result = await session.execute(
            self._receive_many,
            {
                "consumer": consumer,
                "ce_ids": list(ce_ids),
                "ce_types": list(ce_types),
                "topics": list(topics),
                "partitions": list(partitions),
                "offsets": list(offsets),
            },
        )
        return set(result.scalars())

    async def prune(self, engine: AsyncEngine, retention: timedelta) -> int:
        """Delete rows older than ``retention`` in small transactions; returns how many."""
        total = 0
        while True:
            async with engine.begin() as conn:
                deleted = (await conn.execute(self._prune, {"age": retention})).rowcount
            total += deleted
            if deleted < _PRUNE_CHUNK:
                break
        INBOX_PRUNED.labels(self.schema).inc(total)
        return total


class InboxPruner:
    """A background job pruning the inbox every ``interval`` (an async context manager)."""

    def __init__(
        self,
        engine: AsyncEngine,
        schema: str,
        *,
        retention: timedelta = DEFAULT_INBOX_RETENTION,
        interval: timedelta = timedelta(hours=1),
    ) -> None:
        self._engine = engine
        self._inbox = Inbox(schema)
        self._retention = retention
        self._interval = interval.total_seconds()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InboxPruner:
        self._task = asyncio.create_task(self._run(), name=f"inbox-pruner-{self._inbox.schema}")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                pruned = await self._inbox.prune(self._engine, self._retention)
            except Exception as exc:  # the database may be away; try again next interval
                log.warning(
                    "inbox prune failed", schema=self._inbox.schema, error=type(exc).__name__
                )
            else:
                if pruned:
                    log.info("inbox pruned", schema=self._inbox.schema, rows=pruned)
            await asyncio.sleep(self._interval)
