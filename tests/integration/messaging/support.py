"""Helpers shared by the messaging integration tests and their child-process scripts.

The "effect" every test handler applies is a row in ``<schema>.effects`` without a uniqueness
constraint, so applying an event twice is visible as two rows instead of being hidden by a key.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from payrail.contracts import PAYMENT_INTENT_REQUESTED, PaymentIntentRequested
from payrail.messaging.admin import TopicSpec, ensure_topics, partition_counts
from payrail.messaging.consumer import ConsumerSpec, Handler
from payrail.messaging.envelope import EncodedRecord, Envelope, encode
from payrail.messaging.schema import messaging_tables
from payrail.messaging.service import ServiceMessaging

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def intent(
    payment_id: str, *, key: str | None = None, seq: int = 0, size: int = 0
) -> Envelope[PaymentIntentRequested]:
    """A ``payment.intent.requested`` event whose subject is its partition key; ``seq`` travels
    in metadata for order checks, ``size`` pads the description."""
    return Envelope.create(
        PAYMENT_INTENT_REQUESTED,
        "/payrail/tests",
        PaymentIntentRequested(
            payment_id=payment_id,
            amount=1999,
            currency="USD",
            user_id="u_1",
            sku="pro-monthly",
            gateway="stripe",
            description="x" * size or None,
            metadata={"seq": str(seq)},
        ),
        subject=key or payment_id,
    )


def encoded(payment_id: str, *, key: str | None = None, seq: int = 0) -> EncodedRecord:
    return encode(intent(payment_id, key=key, seq=seq), key or payment_id)


async def create_schema(engine: AsyncEngine, schema: str) -> None:
    """The service schema: outbox + inbox (as a migration would create them) and ``effects``."""
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(messaging_tables(schema).metadata.create_all)
        await conn.execute(
            text(
                f'CREATE TABLE "{schema}".effects (id bigserial PRIMARY KEY, consumer text, '
                "ce_id text, payment_id text, key text, seq int)"
            )
        )


async def apply_effect(
    session: AsyncSession, schema: str, consumer: str, envelope: Envelope[PaymentIntentRequested]
) -> None:
    await session.execute(
        text(
            f'INSERT INTO "{schema}".effects (consumer, ce_id, payment_id, key, seq) '
            "VALUES (:consumer, :ce_id, :payment_id, :key, :seq)"
        ),
        {
            "consumer": consumer,
            "ce_id": envelope.id,
            "payment_id": envelope.data.payment_id,
            "key": envelope.subject,
            "seq": int(envelope.data.metadata.get("seq", "0")),
        },
    )


def recorder(schema: str, consumer: str) -> Handler[PaymentIntentRequested]:
    """A handler that only applies the effect."""

    async def handle(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        await apply_effect(session, schema, consumer, envelope)

    return handle


def service_messaging(
    bootstrap: str, engine: AsyncEngine, schema: str, *specs: ConsumerSpec[PaymentIntentRequested]
) -> ServiceMessaging:
    """A service's messaging with ``specs`` as its consumers and no relay."""
    messaging = ServiceMessaging(
        service="tests", bootstrap_servers=bootstrap, engine=engine, schema=schema, relay=False
    )
    for spec in specs:
        messaging.consume(spec)
    return messaging


async def consume_all(
    bootstrap: str, engine: AsyncEngine, schema: str, spec: ConsumerSpec[PaymentIntentRequested]
) -> None:
    """Run the consumer until its group committed every record now on its topics."""
    async with service_messaging(bootstrap, engine, schema, spec):
        await eventually(
            lambda: caught_up(bootstrap, spec.group_id, *spec.topics), what="the group commits"
        )


async def scalar(engine: AsyncEngine, sql: str, **params: object) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def rows(engine: AsyncEngine, sql: str, **params: object) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]


async def applied_counts(engine: AsyncEngine, schema: str) -> dict[str, int]:
    """How many effect rows each ce_id produced."""
    sql = f'SELECT ce_id, count(*) FROM "{schema}".effects GROUP BY ce_id'
    async with engine.connect() as conn:
        return {str(ce_id): int(count) for ce_id, count in (await conn.execute(text(sql))).all()}


async def create_topics(bootstrap: str, *names: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await ensure_topics(admin, [TopicSpec(name, partitions=partitions) for name in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: Sequence[EncodedRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(
                topic, value=record.value, key=record.key, headers=record.headers
            )
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    tps = await partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic`` now, in offset order per partition."""
    tps = await partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets as {(topic, partition): offset} (none while the broker
    still creates its offsets topic: on a fresh broker the first group's question comes early)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        except GroupCoordinatorNotAvailableError:
            return {}
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


async def caught_up(bootstrap: str, group: str, *topics: str) -> bool:
    """Whether ``group`` committed every record now on ``topics``."""
    done = await committed(bootstrap, group)
    for topic in topics:
        for partition, end in (await end_offsets(bootstrap, topic)).items():
            if end and done.get((topic, partition), 0) < end:
                return False
    return True


async def eventually(
    check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 60.0
) -> None:
    """Wait until ``check`` holds (an upper bound for something that must happen, not a
    measurement: the assertions are made on the resulting state)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.2)


async def partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        count = (await partition_counts(admin, [topic]))[topic]
    finally:
        await admin.close()
    return [TopicPartition(topic, partition) for partition in range(count)]
