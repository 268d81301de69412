"""Inbox consumers against the real broker and database: duplicates, retries, dead letters, poison.

Each test produces real records, runs a real consumer group, waits until the group committed
every record, and then asserts on the effect rows, the inbox, the dead-letter topic and the
metrics.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from payrail.contracts import PaymentIntentRequested, dlt_topic
from payrail.messaging import deadletter as dlh
from payrail.messaging.consumer import ConsumerSpec, RetryPolicy
from payrail.messaging.envelope import EncodedRecord, Envelope, current_traceparent
from payrail.messaging.errors import RetryableError
from tests.integration.messaging.support import (
    apply_effect,
    consume_all,
    create_topics,
    encoded,
    produce,
    read_topic,
    recorder,
    rows,
    unique,
)

FAST_RETRIES = RetryPolicy(max_attempts=4, max_seconds=20, initial_backoff=0.01, max_backoff=0.05)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_message_delivered_twice_takes_effect_once(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    group, name = unique("g"), unique("c-")
    first, other = encoded("pay_1"), encoded("pay_2")
    await create_topics(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, [first, other, first])  # pay_1 arrives twice

    spec = ConsumerSpec(name, group, (topic,), PaymentIntentRequested, recorder(schema, name))
    await consume_all(kafka_bootstrap, engine, schema, spec)

    effects = await rows(engine, f'SELECT payment_id FROM "{schema}".effects ORDER BY 1')
    assert effects == [("pay_1",), ("pay_2",)]
    inbox = await rows(engine, f'SELECT consumer, ce_type FROM "{schema}".inbox')
    assert inbox == [(name, "payment.intent.requested")] * 2
    assert metric("payrail_consumer_duplicates_total", consumer=name) == 1
    assert metric("payrail_consumer_processed_total", consumer=name) == 2


async def test_transient_failures_are_retried_and_the_effect_happens_once(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    group, name = unique("g"), unique("c-")
    await create_topics(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, [encoded("pay_flaky")])
    attempts = 0

    async def handle(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        nonlocal attempts
        attempts += 1
        await apply_effect(session, schema, name, envelope)  # rolled back when we raise
        if attempts <= 2:
            raise RetryableError("gateway timed out")

    spec = ConsumerSpec(name, group, (topic,), PaymentIntentRequested, handle, FAST_RETRIES)
    await consume_all(kafka_bootstrap, engine, schema, spec)

    assert attempts == 3
    assert await rows(engine, f'SELECT payment_id FROM "{schema}".effects') == [("pay_flaky",)]
    retries = metric(
        "payrail_consumer_retries_total",
        consumer=name,
        exception="payrail.messaging.errors.RetryableError",
    )
    assert retries == 2
    assert metric("payrail_consumer_processed_total", consumer=name) == 1
    assert await read_topic(kafka_bootstrap, dlt_topic(topic, group)) == []


async def test_a_failure_inside_a_shared_transaction_neither_loses_nor_repeats_its_neighbours(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    # one partition, so the consumer fetches the 41 records in one batch and applies them in
    # shared transactions; the one failing message rolls its neighbours' effects back with it
    group, name = unique("g"), unique("c-")
    await create_topics(kafka_bootstrap, topic, partitions=1)
    records = [
        encoded(f"pay_{k}_{seq}", key=f"k{k}", seq=seq) for seq in range(10) for k in range(4)
    ]
    records.append(records[5])  # a redelivery of an earlier message, in the same batch
    await produce(kafka_bootstrap, topic, records)
    calls: Counter[str] = Counter()

    async def handle(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        calls[envelope.data.payment_id] += 1
        await apply_effect(session, schema, name, envelope)
        if envelope.data.payment_id == "pay_2_5" and calls["pay_2_5"] == 1:
            raise RetryableError("ledger busy")

    spec = ConsumerSpec(name, group, (topic,), PaymentIntentRequested, handle, FAST_RETRIES)
    await consume_all(kafka_bootstrap, engine, schema, spec)

    effects = await rows(engine, f'SELECT key, seq, ce_id FROM "{schema}".effects ORDER BY id')
    assert Counter(ce_id for _, _, ce_id in effects) == Counter(
        dict(r.headers)["ce_id"].decode() for r in records[:40]
    )  # every message once, the redelivery not at all
    for k in range(4):
        assert [seq for key, seq, _ in effects if key == f"k{k}"] == list(range(10))
    assert calls["pay_2_5"] == 2
    retries = metric(
        "payrail_consumer_retries_total",
        consumer=name,
        exception="payrail.messaging.errors.RetryableError",
    )
    assert retries == 1
    assert metric("payrail_consumer_processed_total", consumer=name) == 40
    assert metric("payrail_consumer_duplicates_total", consumer=name) == 1


async def test_a_handler_continues_the_trace_of_the_message_it_handles(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    group, name = unique("g"), unique("c-")
    await create_topics(kafka_bootstrap, topic)
    records = [encoded("pay_traced_1"), encoded("pay_traced_2")]
    await produce(kafka_bootstrap, topic, records)
    seen: dict[str | None, str] = {}

    async def handle(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        seen[envelope.traceparent] = current_traceparent()  # what an event staged here carries

    spec = ConsumerSpec(name, group, (topic,), PaymentIntentRequested, handle)
    await consume_all(kafka_bootstrap, engine, schema, spec)

    sent = {dict(record.headers)["traceparent"].decode() for record in records}
    assert seen == {traceparent: traceparent for traceparent in sent}


async def test_a_lost_database_connection_is_retried_on_a_new_one(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    group, name = unique("g"), unique("c-")
    await create_topics(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, [encoded("pay_failover")])
    backends: list[object] = []

    async def handle(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        backends.append((await session.execute(text("SELECT pg_backend_pid()"))).scalar())
        if len(backends) == 1:  # the database drops the connection mid-transaction
            async with engine.connect() as admin:
                await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backends[0]})
        await apply_effect(session, schema, name, envelope)

    spec = ConsumerSpec(name, group, (topic,), PaymentIntentRequested, handle, FAST_RETRIES)
    await consume_all(kafka_bootstrap, engine, schema, spec)

    assert await rows(engine, f'SELECT payment_id FROM "{schema}".effects') == [("pay_failover",)]
    assert len(backends) == 2
    assert backends[0] != backends[1]
    retried = metric(
        "payrail_consumer_retries_total",
        consumer=name,
        exception="sqlalchemy.exc.OperationalError",
    )
    assert retried == 1


async def test_a_permanent_failure_is_dead_lettered_with_every_header_and_the_partition_moves_on(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    group, name = unique("g"), unique("c-")
    await create_topics(kafka_bootstrap, topic)
    # one key, so all three share a partition: the bad one sits between two good ones
    batch = [encoded(p, key="order-7") for p in ("pay_before", "pay_bad", "pay_after")]
    await produce(kafka_bootstrap, topic, batch)
    bad_attempts = 0

    async def handle(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        nonlocal bad_attempts
        if envelope.data.payment_id == "pay_bad":
            bad_attempts += 1
            raise ValueError("amount exceeds the card limit")
        await apply_effect(session, schema, name, envelope)

    spec = ConsumerSpec(name, group, (topic,), PaymentIntentRequested, handle, FAST_RETRIES)
    await consume_all(kafka_bootstrap, engine, schema, spec)

    effects = await rows(engine, f'SELECT payment_id FROM "{schema}".effects ORDER BY id')
    assert effects == [("pay_before",), ("pay_after",)]
    assert bad_attempts == 1  # not retryable: no retry budget spent on it
    [original] = [r for r in await read_topic(kafka_bootstrap, topic) if r.value == batch[1].value]
    [letter] = await read_topic(kafka_bootstrap, dlt_topic(topic, group))
    assert (letter.key, letter.value) == (b"order-7", batch[1].value)
    headers = {name: value.decode() for name, value in letter.headers}
    for ce_header, value in batch[1].headers:
        assert headers[ce_header] == value.decode()
    assert headers[dlh.ORIGINAL_TOPIC] == topic
    assert headers[dlh.ORIGINAL_PARTITION] == str(original.partition)
    assert headers[dlh.ORIGINAL_OFFSET] == str(original.offset)
    assert headers[dlh.ORIGINAL_TIMESTAMP] == str(original.timestamp)
    assert headers[dlh.ORIGINAL_CONSUMER_GROUP] == group
    assert headers[dlh.EXCEPTION_FQCN] == "builtins.ValueError"
    assert headers[dlh.EXCEPTION_MESSAGE] == "amount exceeds the card limit"
    assert headers[dlh.ATTEMPTS] == "1"
    assert headers[dlh.ORIGINAL_KEY] == "order-7"
    first = datetime.fromisoformat(headers[dlh.FIRST_FAILURE])
    last = datetime.fromisoformat(headers[dlh.LAST_FAILURE])
    assert first.tzinfo is not None
    assert first <= last
    dead = metric(
        "payrail_consumer_dead_lettered_total", consumer=name, exception="builtins.ValueError"
    )
    assert dead == 1


async def test_a_spent_retry_budget_dead_letters_with_the_attempt_count(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    group, name = unique("g"), unique("c-")
    await create_topics(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, [encoded("pay_db_down"), encoded("pay_next")])

    async def handle(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        if envelope.data.payment_id == "pay_db_down":
            raise TimeoutError("ledger did not answer")
        await apply_effect(session, schema, name, envelope)

    spec = ConsumerSpec(name, group, (topic,), PaymentIntentRequested, handle, FAST_RETRIES)
    await consume_all(kafka_bootstrap, engine, schema, spec)

    assert await rows(engine, f'SELECT payment_id FROM "{schema}".effects') == [("pay_next",)]
    [letter] = await read_topic(kafka_bootstrap, dlt_topic(topic, group))
    headers = {name: value.decode() for name, value in letter.headers}
    assert headers[dlh.ATTEMPTS] == str(FAST_RETRIES.max_attempts)
    assert headers[dlh.EXCEPTION_FQCN] == "builtins.TimeoutError"
    retries = metric(
        "payrail_consumer_retries_total", consumer=name, exception="builtins.TimeoutError"
    )
    assert retries == FAST_RETRIES.max_attempts - 1


async def test_poison_messages_are_dead_lettered_at_once_without_retries(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    group, name = unique("g"), unique("c-")
    await create_topics(kafka_bootstrap, topic, partitions=1)
    good = encoded("pay_good")
    headers = dict(good.headers)

    def variant(value: bytes, **changes: bytes | None) -> EncodedRecord:
        changed = {**headers, **changes}
        return EncodedRecord(b"k", value, [(k, v) for k, v in changed.items() if v is not None])

    poison = [
        variant(b"{not json"),  # undecodable body
        variant(good.value, ce_type=b"payment.teleported"),  # unknown type
        variant(good.value, ce_id=None),  # a required header missing
        variant(good.value, ce_source=b"\xff\xfe"),  # a header that is not UTF-8
        variant(b'{"payment_id": "p", "amount": 19.99, "currency": "USD"}'),  # schema-invalid
    ]
    await produce(kafka_bootstrap, topic, [*poison, good])
    calls = 0

    async def handle(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        nonlocal calls
        calls += 1
        await apply_effect(session, schema, name, envelope)

    spec = ConsumerSpec(name, group, (topic,), PaymentIntentRequested, handle, FAST_RETRIES)
    await consume_all(kafka_bootstrap, engine, schema, spec)

    assert calls == 1  # only the good message reached the handler
    assert await rows(engine, f'SELECT payment_id FROM "{schema}".effects') == [("pay_good",)]
    letters = await read_topic(kafka_bootstrap, dlt_topic(topic, group))
    assert [letter.value for letter in letters] == [p.value for p in poison]
    assert [
        list(letter.headers)[: len(p.headers)] for letter, p in zip(letters, poison, strict=True)
    ] == [p.headers for p in poison]
    for letter in letters:
        found = dict(letter.headers)
        assert found[dlh.EXCEPTION_FQCN] == b"payrail.messaging.envelope.PoisonMessage"
        assert found[dlh.ATTEMPTS] == b"1"
    assert b"amount" in dict(letters[-1].headers)[dlh.EXCEPTION_MESSAGE]
    assert b"19.99" not in dict(letters[-1].headers)[dlh.EXCEPTION_MESSAGE]  # no payload values
    assert (
        metric(
            "payrail_consumer_retries_total",
            consumer=name,
            exception="payrail.messaging.envelope.PoisonMessage",
        )
        == 0
    )
    poisoned = metric(
        "payrail_consumer_dead_lettered_total",
        consumer=name,
        exception="payrail.messaging.envelope.PoisonMessage",
    )
    assert poisoned == len(poison)
