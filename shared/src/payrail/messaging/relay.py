"""The outbox relay: publishes staged outbox rows to Kafka, in order per key, at least once.

One cycle (:meth:`OutboxRelay.publish_batch`) runs in one database transaction:

1. **claim** up to ``batch_size`` unpublished rows in ``id`` order with
   ``FOR UPDATE SKIP LOCKED``;
2. **send** them all (aiokafka, ``acks=all``, idempotent producer) and await every
   acknowledgement;
3. **mark** the acknowledged rows ``published_at`` and commit.

Why nothing is skipped: a row is eligible exactly while ``published_at IS NULL``; there is no
"last id seen" cursor, so a row whose transaction commits late (ids are allocated before
commit) is simply claimed by a later cycle.

Why a crash loses nothing: rows are marked only after Kafka acknowledged them, in the same
transaction that holds their locks. A relay killed at any point leaves its rows unmarked and
unlocked (PostgreSQL rolls back the dead session), so they are published again; consumers
deduplicate by ``ce_id`` (:mod:`payrail.messaging.inbox`).

Ordering per key with several relays: a relay may only publish a row when no OLDER unpublished
row of the same key exists outside its own claim. The claim query computes that with a
``NOT EXISTS`` over the ``(key, id) WHERE published_at IS NULL`` index. So when relay A holds a
key's row 1 and relay B claims the same key's rows 5 and 7, B publishes neither: they stay
unpublished (B skips them for this cycle and releases them at commit) until row 1 is marked.
Within one claim rows go out in ``id`` order through one idempotent producer, which keeps their
order per partition even across its internal retries. A relay therefore never needs to know
about the others: no leader election, no partition ownership, any number of instances.

The relay wakes on ``LISTEN``/``NOTIFY`` (the outbox notifies on commit) and polls every
``poll_interval`` as a fallback, so a lost notification or a dropped listener costs latency,
never events. After a wake-up it lingers (``linger``, 20 ms) so that the commits of a burst
are published by one cycle instead of one cycle per commit: a little latency for much less CPU
on both the relay and the database (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from sqlalchemy import Row, TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

from payrail.logging import get_logger
from payrail.messaging.connection import KEEP_FOR_SECONDS, HeldConnection
from payrail.messaging.errors import describe_exception, exception_fqcn
from payrail.messaging.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_BATCH_SECONDS,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISHED,
    OUTBOX_PURGED,
)
from payrail.messaging.outbox import load_headers
from payrail.messaging.schema import messaging_tables

DEFAULT_OUTBOX_RETENTION = timedelta(days=7)
_PURGE_CHUNK = 5000
_FIXED_PRODUCER_OPTIONS = frozenset({"acks", "enable_idempotence"})

log = get_logger(__name__)


class RelayPublishError(RuntimeError):
    """Kafka refused some rows of a batch; they stay unpublished and are retried."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one relay cycle did."""

    claimed: int  # rows locked by this cycle
    published: int  # rows acknowledged by Kafka and marked
    blocked: int  # rows held back because an older row of their key is held elsewhere


class OutboxRelay:
    """Publishes one schema's outbox. Use as an async context manager (or start/stop)."""

    def __init__(
        self,
        engine: AsyncEngine,
        schema: str,
        *,
        bootstrap_servers: str,
        client_id: str = "payrail-relay",
        batch_size: int = 500,
        poll_interval: float = 1.0,
        linger: float = 0.02,
        retention: timedelta = DEFAULT_OUTBOX_RETENTION,
        purge_interval: float = 60.0,
        metrics_interval: float = 5.0,
        stop_timeout: float = 10.0,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        options = dict(producer_options or {})
        if _FIXED_PRODUCER_OPTIONS & options.keys():
            raise ValueError("the relay always produces with acks='all' and idempotence on")
        self._engine = engine
        #: the cycles' connection: a cycle runs at least every poll_interval, so it is held as
        #: long as the relay runs; one broken meanwhile fails a cycle, retried on a new one
        self._held = HeldConnection(engine, keep_for=max(KEEP_FOR_SECONDS, 2 * poll_interval))
        self._tables = messaging_tables(schema)
        self.schema = schema
        self.batch_size = batch_size
        self._poll_interval = poll_interval
        self._linger = linger
        self._retention = retention
        self._purge_interval = purge_interval
        self._metrics_interval = metrics_interval
        self._stop_timeout = stop_timeout
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            **{"linger_ms": 2, "max_batch_size": 256 * 1024, **options},
        )
        self._listener: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._waiting = False
        self._next_purge = 0.0
        self._next_metrics = 0.0
        self._log = log.bind(schema=schema)
        q = f'"{schema}".outbox'
        # Lock a window of unpublished rows; flag those an older unpublished row of the same key
        # outside the window keeps back (held by another relay, or skipped: see module doc).
        self._claim: TextClause = text(
            f"WITH claimed AS MATERIALIZED ("
            f"  SELECT id FROM {q} WHERE published_at IS NULL"
            f"  ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED) "
            f"SELECT o.id, o.topic, o.key, o.payload, o.headers, EXISTS ("
            f"  SELECT 1 FROM {q} AS older"
            f"  WHERE older.key = o.key AND older.published_at IS NULL AND older.id < o.id"
            f"    AND older.id NOT IN (SELECT id FROM claimed)) AS blocked "
            f"FROM {q} AS o WHERE o.id IN (SELECT id FROM claimed) ORDER BY o.id"
        )
        self._mark: TextClause = text(
            f"UPDATE {q} SET published_at = clock_timestamp() "
            "WHERE id = ANY(CAST(:ids AS bigint[]))"
        )
        self._stats: TextClause = text(
            f"SELECT count(*), EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)) "
            f"FROM {q} WHERE published_at IS NULL"
        )
        self._purge: TextClause = text(
            f"DELETE FROM {q} WHERE id = ANY(ARRAY(SELECT id FROM {q} "
            f"WHERE published_at < clock_timestamp() - :age ORDER BY published_at "
            f"LIMIT {_PURGE_CHUNK}))"
        )

    async def __aenter__(self) -> OutboxRelay:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def connect(self) -> None:
        """Connect the producer (enough to call :meth:`publish_batch` by hand)."""
        await self._producer.start()

    async def start(self) -> None:
        """Connect and start relaying in the background."""
        await self.connect()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.schema}")

    async def stop(self) -> None:
        """Finish the batch in flight (up to ``stop_timeout``), then disconnect."""
        self._stopping.set()
        if self._task is not None:
            if self._waiting:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, self._stop_timeout)
            self._task = None
        await self._close_listener()
        await self._held.release()
        await self._producer.stop()

    async def publish_batch(self) -> BatchResult:
        """One claim -> send -> mark cycle (see the module doc)."""
        started = time.perf_counter()
        conn = await self._held.connection()
        try:
            async with conn.begin():
                rows = (await conn.execute(self._claim, {"limit": self.batch_size})).all()
                ready = [row for row in rows if not row.blocked]
                if not ready:
                    return BatchResult(claimed=len(rows), published=0, blocked=len(rows))
                published, failure = await self._send(ready)
                if published:
                    await conn.execute(self._mark, {"ids": [row.id for row in published]})
        except Exception:
            await self._held.drop_if_broken()
            raise
        OUTBOX_BATCH_SECONDS.labels(self.schema).observe(time.perf_counter() - started)
        for topic, count in Counter(row.topic for row in published).items():
            OUTBOX_PUBLISHED.labels(self.schema, topic).inc(count)
        if failure is not None:
            raise RelayPublishError(
                f"{len(ready) - len(published)} of {len(ready)} rows not acknowledged: "
                f"{exception_fqcn(failure)}: {describe_exception(failure)}"
            ) from failure
        return BatchResult(
            claimed=len(rows), published=len(published), blocked=len(rows) - len(ready)
        )

    async def _send(self, ready: list[Row[Any]]) -> tuple[list[Row[Any]], BaseException | None]:
        """Send ``ready`` in order and await every acknowledgement; the rows Kafka acknowledged
        and the first failure, if any (nothing after a row that could not be sent is sent)."""
        failure: BaseException | None = None
        pending: list[asyncio.Future[Any]] = []
        for row in ready:
            try:
                pending.append(
                    await self._producer.send(
                        row.topic,
                        value=row.payload,
                        key=row.key.encode(),
                        headers=load_headers(row.headers),
                    )
                )
            except Exception as exc:  # e.g. no metadata for the topic: stop here, in order
                failure = exc
                break
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        published = []
        for row, outcome in zip(ready, outcomes, strict=False):
            if isinstance(outcome, BaseException):
                failure = failure or outcome
            else:
                published.append(row)
        return published, failure

    async def purge(self) -> int:
        """Delete rows published longer ago than the retention, in small transactions."""
        total = 0
        while True:
            async with self._engine.begin() as conn:
                deleted = (await conn.execute(self._purge, {"age": self._retention})).rowcount
            total += deleted
            if deleted < _PURGE_CHUNK:
                break
        OUTBOX_PURGED.labels(self.schema).inc(total)
        return total

    async def refresh_metrics(self) -> None:
        """Update the backlog gauges (how many rows wait, and for how long the oldest has)."""
        async with self._engine.connect() as conn:
            backlog, oldest = (await conn.execute(self._stats)).one()
        OUTBOX_BACKLOG.labels(self.schema).set(backlog)
        OUTBOX_OLDEST_AGE.labels(self.schema).set(float(oldest or 0))

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await self._ensure_listener()
                result = await self.publish_batch()
                await self._housekeeping()
            except Exception as exc:
                self._log.error(
                    "relay cycle failed",
                    error=exception_fqcn(exc),
                    detail=describe_exception(exc),
                    retry_in=backoff,
                )
                await self._idle(backoff, listen=False)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            if result.published and result.claimed >= self.batch_size:
                continue  # a full batch: more is probably waiting
            if result.blocked:
                # another relay holds older rows of these keys; it does not notify when it
                # finishes, so look again soon rather than at the next poll
                await self._idle(min(0.05, self._poll_interval), listen=False)
            else:
                await self._idle(self._poll_interval, listen=True)

    async def _idle(self, seconds: float, *, listen: bool) -> None:
        """Sleep ``seconds``, or less when a notification arrives (``listen``)."""
        if self._stopping.is_set():
            return
        self._waiting = True
        try:
            if listen and self._listener is not None:
                try:
                    if await self._notified(self._listener, seconds):
                        # let the commits of a burst land, so one cycle publishes them together,
                        # then forget the notifications that cycle will answer anyway
                        await asyncio.sleep(self._linger)
                        async for _ in self._listener.notifies(timeout=0):
                            pass
                except psycopg.Error:
                    self._log.warning("outbox listener lost; polling until it reconnects")
                    await self._close_listener()
            else:
                await asyncio.sleep(seconds)
        finally:
            self._waiting = False

    @staticmethod
    async def _notified(listener: psycopg.AsyncConnection[Any], seconds: float) -> bool:
        """Wait up to ``seconds`` for a notification; True when one arrived."""
        notifications = listener.notifies(timeout=seconds)
        try:
            async for _ in notifications:
                return True
            return False
        finally:
            await notifications.aclose()  # releases the connection's lock now, not at GC

    async def _ensure_listener(self) -> None:
        """LISTEN before claiming, so a commit between a claim and the wait still wakes us."""
        if self._listener is not None:
            return
        url = self._engine.url.set(drivername="postgresql")
        try:
            self._listener = await psycopg.AsyncConnection.connect(
                url.render_as_string(hide_password=False), autocommit=True
            )
            await self._listener.execute(f'LISTEN "{self._tables.channel}"')
        except psycopg.Error as exc:
            self._log.warning("outbox listener unavailable; polling", error=type(exc).__name__)
            await self._close_listener()

    async def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(psycopg.Error):
                await self._listener.close()
            self._listener = None

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_metrics:
            self._next_metrics = now + self._metrics_interval
            await self.refresh_metrics()
        if now >= self._next_purge:
            self._next_purge = now + self._purge_interval
            purged = await self.purge()
            if purged:
                self._log.info("outbox purged", rows=purged)
