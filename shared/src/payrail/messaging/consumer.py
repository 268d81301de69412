"""Inbox consumers: FastStream Kafka subscribers whose effects happen exactly once.

For every message, in this order:

1. decode and validate it (:func:`payrail.messaging.envelope.decode`); poison goes to the
   dead-letter topic at once;
2. in ONE PostgreSQL transaction, insert ``(consumer, ce_id)`` into the inbox (nothing
   inserted: a duplicate, skip it), run the handler with the session (it applies its effects
   and stages outgoing events in the outbox), commit (several messages of a batch may share
   the transaction, see below);
3. retry transient failures of step 2 with exponential backoff and full jitter, within the
   consumer's budget (attempts and seconds); when the budget is spent, or at once for any
   other failure, produce the message (``acks=all``) to ``<topic>.<group>.dlt``;
4. only then commit the Kafka offset (batched: at most every :data:`COMMIT_INTERVAL`, and
   before the partitions move or the consumer stops).

A crash anywhere before step 4 redelivers the message, and the inbox makes the redelivery a
no-op. FastStream's default ``ACK_FIRST`` (auto-commit, at-most-once) is never used: the
subscriber runs with ``AckPolicy.MANUAL`` and this module commits explicit offsets.

Messages are fetched in batches. Within a batch each key's messages are handled strictly in
offset order while different keys proceed concurrently in lanes, and the offsets are committed
once the batch is done. A lane applies its messages in group transactions of up to
:data:`GROUP_MAX` messages (one inbox statement for the group, each handler, one COMMIT): the
inbox rows and effects of those messages commit together, before their offsets, which is the
same exactly-once as a transaction per message at a fraction of the CPU. A failure inside a
group rolls it back and the messages are applied again with the failing one alone, so a bad
message never takes its neighbours' effects with it nor applies them twice. One bad message
holds back its key, and the batch, for at most its retry budget. If the dead-letter topic
itself cannot be written, the partition is rewound to that message and nothing from it on is
committed.

Each consumer group also subscribes to ``<topic>.<group>.retry``, where SREs replay that group's
dead letters (:mod:`payrail.messaging.dlq`); a retried message that fails again goes to the
dead-letter topic of its original topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker, KafkaRouter, Topic
from faststream.kafka.message import FAKE_CONSUMER
from faststream.kafka.message import KafkaMessage as KafkaStreamMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.middlewares import AckPolicy
from opentelemetry import context as otel_context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from payrail.contracts.topics import dlt_topic, retry_topic, validate_group_id
from payrail.logging import get_logger
from payrail.messaging.connection import HeldConnection
from payrail.messaging.deadletter import dead_letter_headers
from payrail.messaging.envelope import Envelope, PoisonMessage, decode
from payrail.messaging.errors import describe_exception, exception_fqcn, is_retryable
from payrail.messaging.inbox import Inbox
from payrail.messaging.metrics import (
    CONSUMER_DEAD_LETTERED,
    CONSUMER_DUPLICATES,
    CONSUMER_HANDLE_SECONDS,
    CONSUMER_PROCESSED,
    CONSUMER_RETRIES,
)

M = TypeVar("M", bound=BaseModel)

#: A group transaction carries at most this many messages: enough to spread BEGIN, the inbox
#: insert and COMMIT thin, few enough that a rollback repeats little and locks stay short.
GROUP_MAX = 100
#: Completed records' offsets are committed at most this often rather than after every batch:
#: their effects are in PostgreSQL already, so a commit deferred costs at worst a redelivery the
#: inbox absorbs, and a busy consumer sends one OffsetCommit per interval, not one per batch.
COMMIT_INTERVAL = 0.1
#: A batch is split over fewer lanes than the consumer's concurrency when each lane would get
#: fewer messages than this: on two cores, CPU (not round-trip latency) is what runs out first.
GROUP_MIN = 16

#: ``async def handle(session, envelope) -> None``: apply the effects of ``envelope`` (and stage
#: outgoing events) in ``session``; never commit, roll back or close it, the consumer does. The
#: session's transaction may also hold the effects of messages handled just before this one
#: (they commit together), and a handler may run again after a rollback: it must keep its
#: effects inside the session and let its exceptions propagate.
Handler = Callable[[AsyncSession, Envelope[M]], Awaitable[None]]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A consumer's retry budget for transient failures of one message.

    The budget bounds how long one message may stall its partition: at most ``max_attempts``
    attempts, and no attempt starts after ``max_seconds``. Waits grow exponentially from
    ``initial_backoff`` up to ``max_backoff`` with full jitter, so instances that failed
    together do not retry together.
    """

    max_attempts: int = 5
    max_seconds: float = 30.0
    initial_backoff: float = 0.2
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_seconds <= 0:
            raise ValueError("a retry budget needs at least one attempt and a positive duration")
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ValueError("backoff must satisfy 0 < initial_backoff <= max_backoff")


@dataclass(frozen=True, slots=True)
class ConsumerSpec(Generic[M]):
    """What a consumer is: its inbox name, group, source topics, payload type and handler.

    ``name`` keys the inbox (two consumers with different names in one schema each apply an
    event once); ``payload`` is the contract the handler expects, and a message of another
    shape is poison for this consumer.
    """

    name: str
    group_id: str
    topics: tuple[str, ...]
    payload: type[M]
    handler: Handler[M]
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        validate_group_id(self.group_id)
        if not self.topics:
            raise ValueError("a consumer needs at least one source topic")

    @property
    def retry_topics(self) -> tuple[str, ...]:
        return tuple(retry_topic(topic, self.group_id) for topic in self.topics)

    @property
    def dead_letter_topics(self) -> tuple[str, ...]:
        return tuple(dlt_topic(topic, self.group_id) for topic in self.topics)

    def source_of(self, topic: str) -> str:
        """The source topic a record read from ``topic`` (a source or a retry topic) belongs to."""
        for source in self.topics:
            if topic in (source, retry_topic(source, self.group_id)):
                return source
        raise ValueError(f"{self.name} does not consume {topic!r}")


class DeadLetterProducer:
    """The producer (``acks=all``, idempotent) that writes dead letters for a service's consumers.

    A raw aiokafka producer rather than the FastStream broker's publisher: a dead letter must
    carry the original headers byte for byte, including ones that are not valid UTF-8.
    """

    def __init__(self, bootstrap_servers: str, *, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"{client_id}-dlt",
            acks="all",
            enable_idempotence=True,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> None:
        """Write one record and wait until every in-sync replica has it."""
        await self._producer.send_and_wait(topic, value=value, key=key, headers=headers)


class InboxConsumer(Generic[M]):
    """Runs one :class:`ConsumerSpec` on a FastStream broker against a service schema."""

    def __init__(
        self,
        spec: ConsumerSpec[M],
        *,
        engine: AsyncEngine,
        schema: str,
        dead_letters: DeadLetterProducer,
        concurrency: int = 8,
        failure_pause: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.spec = spec
        self._engine = engine
        self._inbox = Inbox(schema)
        self._dead_letters = dead_letters
        self._failure_pause = failure_pause
        self._concurrency = concurrency
        self._log = log.bind(consumer=spec.name, group_id=spec.group_id)
        self._processed = CONSUMER_PROCESSED.labels(spec.name)
        self._duplicates = CONSUMER_DUPLICATES.labels(spec.name)
        self._handle_seconds = CONSUMER_HANDLE_SECONDS.labels(spec.name)
        #: every batch's first lane: its connection is held between batches (see _Lane)
        self._first_lane = _Lane(engine)
        #: offsets of completed records not committed yet, and the task that commits them
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committer: asyncio.Task[None] | None = None
        self._subscriber: BatchSubscriber | None = None

    async def flush(self) -> None:
        """Commit the offsets of the records completed so far (before the partitions move to
        another member, and before the subscriber stops)."""
        consumer = self._subscriber.consumer if self._subscriber is not None else None
        if consumer is not None:
            await self._commit(consumer)

    async def close(self) -> None:
        """Stop committing and give back the connection held between batches (after the
        subscriber stopped)."""
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        await self._first_lane.release()

    async def _commit_soon(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what completed every :data:`COMMIT_INTERVAL` until nothing is left."""
        while self._uncommitted:
            await asyncio.sleep(COMMIT_INTERVAL)
            await self._commit(consumer)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        offsets, self._uncommitted = self._uncommitted, {}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # typically a rebalance: the new owner gets these records again, and the inbox
            # makes that redelivery a no-op
            self._log.warning("offset commit failed", error=type(exc).__name__)

    def subscribe(
        self,
        broker: KafkaBroker | KafkaRouter,
        *,
        max_records: int | None = None,
        batch_timeout_ms: int = 50,
    ) -> None:
        """Register the subscriber (source and retry topics, manual offset commits) on ``broker``,
        which must be built with ``apply_types=False``: the handler is called with the fetched
        records as they are (FastStream's dependency injection would resolve its arguments in a
        worker thread and a task group, per batch).

        ``max_records`` caps a batch; the default (everything fetched) keeps every assigned
        partition in each batch, so partitions are worked concurrently rather than one after the
        other. ``batch_timeout_ms`` is how long an idle consumer waits for records before polling
        again; it bounds the extra latency of the first record after a quiet period.
        """
        budget_ms = int(self.spec.retry.max_seconds * 1000)
        subscriber = broker.subscriber(
            # declare=False: FastStream would create missing topics with one partition; the
            # service runtime creates them with the right counts (payrail.messaging.admin)
            *(Topic(name, declare=False) for name in (*self.spec.topics, *self.spec.retry_topics)),
            batch=True,
            group_id=self.spec.group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            max_records=max_records,
            batch_timeout_ms=batch_timeout_ms,
            # a batch may legitimately spend a few retry budgets; beyond this the group moves the
            # partitions elsewhere and the inbox absorbs the redelivery
            max_poll_interval_ms=max(600_000, 10 * budget_ms),
            parser=_raw_batch,
            decoder=_records,
            listener=_CommitOnRevoke(self),
        )
        self._subscriber = subscriber

        async def on_batch(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
            consumer = subscriber.consumer
            assert consumer is not None  # set while the subscriber runs, which is when it calls
            await self.handle_batch(records, consumer)

        subscriber(on_batch)

    async def handle_batch(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], consumer: AIOKafkaConsumer
    ) -> None:
        """Handle a fetched batch, then queue the offsets of what was completed for commit.

        Records are worked in chains of one (partition, key): a key's records strictly in
        offset order, different keys concurrently in up to ``concurrency`` lanes. Per-key order
        is what the topics promise (keys are payment or user ids), and it lets a partition's
        independent payments proceed side by side. Each lane commits its records in group
        transactions (:meth:`_apply_group`); a batch uses fewer lanes than ``concurrency`` when
        it is small, so that a group is worth its BEGIN and COMMIT.
        """
        chains: dict[tuple[TopicPartition, bytes | None], list[ConsumerRecord[bytes, bytes]]] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            chains.setdefault((tp, record.key), []).append(record)
        pending = deque(chains.values())
        batch = _Batch()
        lanes = min(self._concurrency, len(pending), -(-len(records) // GROUP_MIN))
        share = min(GROUP_MAX, -(-len(records) // lanes))

        async def lane(connection: _Lane) -> None:
            try:
                group: list[ConsumerRecord[bytes, bytes]] = []
                while pending:
                    group += pending.popleft()
                    while len(group) >= share:  # a long chain spans consecutive groups
                        await self._work(group[:share], batch, connection)
                        del group[:share]
                if group:
                    await self._work(group, batch, connection)
            finally:
                if connection is not self._first_lane:
                    await connection.release()

        extra = (_Lane(self._engine) for _ in range(lanes - 1))
        for failure in await asyncio.gather(
            *(lane(connection) for connection in (self._first_lane, *extra)),
            return_exceptions=True,
        ):
            if isinstance(failure, Exception):  # a lane's own plumbing, not a handler: the
                # records it did not complete are rewound below like any other
                self._log.error("consumer lane failed", error=exception_fqcn(failure))
        offsets: dict[TopicPartition, int] = {}
        rewind: dict[TopicPartition, int] = {}
        for record in sorted(records, key=lambda r: r.offset):
            tp = TopicPartition(record.topic, record.partition)
            if tp in rewind:
                continue
            if (tp, record.offset) in batch.done:
                offsets[tp] = record.offset + 1
            else:
                rewind[tp] = record.offset  # the first record of tp that did not complete
        if offsets:
            self._uncommitted.update(offsets)
            if self._committer is None or self._committer.done():
                self._committer = asyncio.create_task(self._commit_soon(consumer))
        for tp, offset in rewind.items():
            try:
                consumer.seek(tp, offset)  # later records that completed come back as duplicates
            except KafkaError as exc:  # the partition was revoked meanwhile
                self._log.warning("rewind failed", topic=tp.topic, error=type(exc).__name__)
        if rewind:
            await asyncio.sleep(self._failure_pause)

    async def _work(
        self, records: list[ConsumerRecord[bytes, bytes]], batch: _Batch, lane: _Lane
    ) -> None:
        """Decode a group of records (poison is dead-lettered at once) and apply the rest."""
        items: list[_Item[M]] = []
        for record in records:
            if batch.blocked(record):
                continue
            try:
                items.append(_Item(record, self._decode(record)))
            except PoisonMessage as exc:
                now = datetime.now(UTC)
                await batch.settle(
                    record,
                    self._dead_letter(record, exc, attempts=1, first_failure=now, last_failure=now),
                    self._log,
                )
        await self._apply_group(items, batch, lane)

    async def _apply_group(self, items: list[_Item[M]], batch: _Batch, lane: _Lane) -> None:
        """Apply ``items`` (in order) in ONE transaction: their inbox rows in one statement, then
        each fresh message's handler, then one COMMIT.

        Per message this saves BEGIN, COMMIT and the inbox round trip, which with a session per
        message cost more CPU than a typical handler. It is exactly-once all the same: the
        messages' inbox rows and effects commit together, before any of their offsets. When a
        handler fails, the group rolls back; the messages before it are applied again as a
        group, the failing one goes through :meth:`_apply_one` with this failure counted as its
        first attempt (so retries, budgets and dead letters are what they would be alone), and
        the messages after it form the next group. Any other failure (the inbox insert, the
        COMMIT, the connection) sends every message of the group through :meth:`_apply_one`.
        """
        items = [item for item in items if not batch.blocked(item.record)]
        if len(items) <= 1:
            for item in items:
                await batch.settle(item.record, self._apply_one(item, lane), self._log)
            return
        started = time.perf_counter()
        try:
            fresh = await self._try_group(items, lane)
        except _HandlerFailed as failed:
            await self._apply_group(items[: failed.index], batch, lane)
            failing = items[failed.index]
            await batch.settle(failing.record, self._apply_one(failing, lane, failed), self._log)
            await self._apply_group(items[failed.index + 1 :], batch, lane)
            return
        except Exception as exc:
            self._log.warning(
                "group transaction failed; applying its messages one by one",
                messages=len(items),
                error=exception_fqcn(exc),
                detail=describe_exception(exc),
            )
            for item in items:
                if not batch.blocked(item.record):
                    await batch.settle(item.record, self._apply_one(item, lane), self._log)
            return
        elapsed = time.perf_counter() - started
        for item, applied in zip(items, fresh, strict=True):
            self._count(item.record, applied)
            self._handle_seconds.observe(elapsed)
            batch.done.add(
                (TopicPartition(item.record.topic, item.record.partition), item.record.offset)
            )

    async def _try_group(self, items: list[_Item[M]], lane: _Lane) -> list[bool]:
        """One group transaction; which messages were fresh (False: already in the inbox)."""
        try:
            async with await lane.session() as session, session.begin():
                new = await self._inbox.receive_many(
                    session,
                    consumer=self.spec.name,
                    messages=[
                        (
                            item.envelope.id,
                            item.envelope.type,
                            item.record.topic,
                            item.record.partition,
                            item.record.offset,
                        )
                        for item in items
                    ],
                )
                fresh: list[bool] = []
                for index, item in enumerate(items):
                    fresh.append(item.envelope.id in new)
                    new.discard(item.envelope.id)  # a second copy in the group is a duplicate
                    if fresh[-1]:
                        try:
                            with self._handling(item.envelope):
                                await self.spec.handler(session, item.envelope)
                        except Exception as exc:
                            raise _HandlerFailed(index, exc) from exc
        except Exception:
            await lane.drop_if_broken()
            raise
        return fresh

    async def _apply_one(
        self, item: _Item[M], lane: _Lane, failed: _HandlerFailed | None = None
    ) -> None:
        """Apply one message in its own transaction, with retries, or dead-letter it; raises
        only when the dead letter cannot be written (then the record must be consumed again).
        ``failed`` is the attempt already made in a group transaction."""
        started = time.perf_counter()
        with self._handling(item.envelope):
            await self._apply_with_retries(item.record, item.envelope, lane, failed)
        self._handle_seconds.observe(time.perf_counter() - started)

    @contextmanager
    def _handling(self, envelope: Envelope[M]) -> Iterator[None]:
        """The trace and log context of handling ``envelope``: the producer's trace continues,
        so the events the handler stages carry the same trace id (and a tracer, when one is
        configured, parents its spans on it), and log lines name the message.

        Built from tokens rather than ``structlog``'s ``bound_contextvars`` and the W3C
        propagator, which copy the whole log context and re-parse the header per message."""
        logged = structlog.contextvars.bind_contextvars(
            consumer=self.spec.name, ce_id=envelope.id, ce_type=envelope.type
        )
        traced = (
            otel_context.attach(_remote_parent(envelope.traceparent))
            if envelope.traceparent
            else None
        )
        try:
            yield
        finally:
            if traced is not None:
                otel_context.detach(traced)
            structlog.contextvars.reset_contextvars(**logged)

    def _count(self, record: ConsumerRecord[bytes, bytes], applied: bool) -> None:
        if applied:
            self._processed.inc()
        else:
            self._duplicates.inc()
            self._log.info("duplicate skipped", topic=record.topic, offset=record.offset)

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> Envelope[M]:
        envelope = decode(record)
        if not isinstance(envelope.data, self.spec.payload):
            raise PoisonMessage(
                f"{envelope.type} carries {type(envelope.data).__name__}; "
                f"consumer {self.spec.name} handles {self.spec.payload.__name__}"
            )
        return envelope  # type: ignore[return-value]  # data checked against M just above

    async def _apply_with_retries(
        self,
        record: ConsumerRecord[bytes, bytes],
        envelope: Envelope[M],
        lane: _Lane,
        failed: _HandlerFailed | None,
    ) -> None:
        policy = self.spec.retry
        failures: list[datetime] = []

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            fqcn = exception_fqcn(exc) if exc else "unknown"
            CONSUMER_RETRIES.labels(self.spec.name, fqcn).inc()
            self._log.warning(
                "handler failed; retrying",
                attempt=state.attempt_number,
                max_attempts=policy.max_attempts,
                retry_in=round(state.upcoming_sleep, 3),
                error=fqcn,
                detail=describe_exception(exc) if exc else "",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_seconds),
            wait=wait_random_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff),
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if failed is not None:  # the group's attempt: count it, do not repeat it
                        failures.append(failed.at)
                        error, failed = failed.error, None
                        raise error
                    try:
                        applied = await self._apply(record, envelope, lane)
                    except Exception:
                        failures.append(datetime.now(UTC))
                        raise
        except Exception as exc:
            await self._dead_letter(
                record,
                exc,
                attempts=len(failures),
                first_failure=failures[0],
                last_failure=failures[-1],
            )
            return
        self._count(record, applied)

    async def _apply(
        self, record: ConsumerRecord[bytes, bytes], envelope: Envelope[M], lane: _Lane
    ) -> bool:
        """One attempt: inbox row + handler effects in one transaction. False for a duplicate."""
        try:
            async with await lane.session() as session, session.begin():
                fresh = await self._inbox.receive(
                    session,
                    consumer=self.spec.name,
                    ce_id=envelope.id,
                    ce_type=envelope.type,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )
                if fresh:
                    await self.spec.handler(session, envelope)
        except Exception:
            await lane.drop_if_broken()
            raise
        return fresh

    async def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        exc: BaseException,
        *,
        attempts: int,
        first_failure: datetime,
        last_failure: datetime,
    ) -> None:
        target = dlt_topic(self.spec.source_of(record.topic), self.spec.group_id)
        headers = dead_letter_headers(
            record,
            group=self.spec.group_id,
            exc=exc,
            attempts=attempts,
            first_failure=first_failure,
            last_failure=last_failure,
        )
        await self._dead_letters.send(target, key=record.key, value=record.value, headers=headers)
        fqcn = exception_fqcn(exc)
        CONSUMER_DEAD_LETTERED.labels(self.spec.name, fqcn).inc()
        self._log.error(
            "message dead-lettered",
            dead_letter_topic=target,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            attempts=attempts,
            error=fqcn,
            detail=describe_exception(exc),
        )


@dataclass(frozen=True, slots=True)
class _Item(Generic[M]):
    """A decoded record, ready to apply."""

    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope[M]


class _HandlerFailed(Exception):
    """A handler raised ``error`` in a group transaction, on the group's ``index``-th message."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error
        self.at = datetime.now(UTC)


class _Batch:
    """What a batch's lanes share: the records completed, and the chains (partition, key)
    stopped at a record that could not complete (their later records must wait for it)."""

    def __init__(self) -> None:
        self.done: set[tuple[TopicPartition, int]] = set()
        self._stopped: set[tuple[str, int, bytes | None]] = set()

    def blocked(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        return (record.topic, record.partition, record.key) in self._stopped

    async def settle(
        self, record: ConsumerRecord[bytes, bytes], outcome: Awaitable[None], logger: Any
    ) -> None:
        """Await ``record``'s outcome; mark it done, or stop its chain when it raises."""
        try:
            await outcome
        except Exception as exc:
            self._stopped.add((record.topic, record.partition, record.key))
            logger.error(
                "message could not be completed; partition rewound to it",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                error=exception_fqcn(exc),
                detail=describe_exception(exc),
            )
        else:
            self.done.add((TopicPartition(record.topic, record.partition), record.offset))


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Commits what completed before a rebalance takes the partitions away."""

    def __init__(self, consumer: InboxConsumer[Any]) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: object) -> None:
        await self._consumer.flush()

    async def on_partitions_assigned(self, assigned: object) -> None:
        """Nothing to do: a partition starts at its committed offset."""


class _Lane(HeldConnection):
    """One of a batch's concurrent transaction lanes, on one database connection.

    A lane checks a connection out of the service's pool once per batch rather than once per
    message, and the consumer's first lane holds its connection from batch to batch while they
    come often (:class:`~payrail.messaging.connection.HeldConnection`); each message group still
    gets a fresh session and its own transaction on it.
    """

    async def session(self) -> AsyncSession:
        """A new session bound to the lane's connection (connected on first use)."""
        return AsyncSession(bind=await self.connection(), expire_on_commit=False)


def _remote_parent(traceparent: str) -> otel_context.Context:
    """The context of a remote parent span from a ``traceparent`` that
    :func:`payrail.messaging.envelope.decode` validated (``vv-<trace>-<span>-ff``)."""
    span = SpanContext(
        trace_id=int(traceparent[3:35], 16),
        span_id=int(traceparent[36:52], 16),
        is_remote=True,
        trace_flags=TraceFlags(int(traceparent[53:55], 16)),
    )
    return set_span_in_context(NonRecordingSpan(span))


async def _raw_batch(records: tuple[ConsumerRecord[bytes, bytes], ...]) -> KafkaStreamMessage:
    """FastStream parser that leaves records untouched (its default decodes every header as
    UTF-8 and would fail, and so silently skip, a poison message before any handler runs)."""
    return KafkaStreamMessage(
        raw_message=records,
        body=b"",
        consumer=FAKE_CONSUMER,  # offsets are committed on the real consumer explicitly
    )


async def _records(message: KafkaStreamMessage) -> Any:
    """FastStream decoder: the handler gets the raw records, not a decoded body."""
    return message.raw_message
