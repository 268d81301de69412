"""Dead-letter topics from an SRE's chair: replay after a fix, audit trail, filters, purge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from payrail.contracts import PaymentIntentRequested, dlt_topic, retry_topic
from payrail.messaging import deadletter as dlh
from payrail.messaging.consumer import ConsumerSpec, RetryPolicy
from payrail.messaging.deadletter import dead_letter_headers
from payrail.messaging.dlq import DeadLetterFilter, DeadLetterQueue, UnknownTopic
from payrail.messaging.envelope import EncodedRecord, Envelope, PoisonMessage
from tests.integration.messaging.support import (
    apply_effect,
    caught_up,
    create_topics,
    encoded,
    end_offsets,
    eventually,
    produce,
    read_topic,
    rows,
    service_messaging,
    unique,
)


async def test_a_replay_after_the_fix_reaches_only_the_failed_group_and_applies_once(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    failing, healthy = unique("ga"), unique("gb")
    name_a, name_b = unique("a-"), unique("b-")
    await create_topics(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, [encoded("pay_1"), encoded("pay_bug"), encoded("pay_2")])
    bug_fixed = False
    calls_b = 0

    async def handle_a(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        if envelope.data.payment_id == "pay_bug" and not bug_fixed:
            raise KeyError("sku 'pro-monthly' has no price in EUR")
        await apply_effect(session, schema, name_a, envelope)

    async def handle_b(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        nonlocal calls_b
        calls_b += 1
        await apply_effect(session, schema, name_b, envelope)

    retry = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)
    messaging = service_messaging(
        kafka_bootstrap,
        engine,
        schema,
        ConsumerSpec(name_a, failing, (topic,), PaymentIntentRequested, handle_a, retry),
        ConsumerSpec(name_b, healthy, (topic,), PaymentIntentRequested, handle_b),
    )
    dead_letters = dlt_topic(topic, failing)
    source_end = await end_offsets(kafka_bootstrap, topic)

    async def applied(consumer: str) -> list[str]:
        sql = f'SELECT payment_id FROM "{schema}".effects WHERE consumer = :c ORDER BY payment_id'
        return [str(row[0]) for row in await rows(engine, sql, c=consumer)]

    async with messaging, DeadLetterQueue(kafka_bootstrap) as dlq:
        await eventually(lambda: caught_up(kafka_bootstrap, failing, topic), what="group A")
        await eventually(lambda: caught_up(kafka_bootstrap, healthy, topic), what="group B")
        assert await applied(name_a) == ["pay_1", "pay_2"]
        assert [letter.ce_type for letter in await dlq.read(dead_letters)] == [
            "payment.intent.requested"
        ]

        bug_fixed = True
        report = await dlq.replay(dead_letters, replayed_by="sre-alice", rate_per_second=20)
        assert report.target_topic == retry_topic(topic, failing)
        assert len(report.letters) == 1

        async def fixed() -> bool:
            return "pay_bug" in await applied(name_a) and await caught_up(
                kafka_bootstrap, failing, report.target_topic
            )

        await eventually(fixed, what="the failed group applies the replay")
        # replaying the same dead letter again changes nothing: the inbox already has it
        again = await dlq.replay(dead_letters, replayed_by="sre-bob")
        await eventually(
            lambda: caught_up(kafka_bootstrap, failing, report.target_topic), what="second replay"
        )
        trail = await dlq.replays(dead_letters)

    assert await applied(name_a) == ["pay_1", "pay_2", "pay_bug"]
    duplicates = REGISTRY.get_sample_value(
        "payrail_consumer_duplicates_total", {"consumer": name_a}
    )
    assert duplicates == 1
    # the other group on the same source topic saw nothing new
    assert calls_b == 3
    assert await applied(name_b) == ["pay_1", "pay_2", "pay_bug"]
    assert await end_offsets(kafka_bootstrap, topic) == source_end
    assert await read_topic(kafka_bootstrap, retry_topic(topic, healthy)) == []
    # the replayed copy says where it came from, and the audit trail says who did what when
    [first_copy, _] = await read_topic(kafka_bootstrap, report.target_topic)
    copy_headers = {name: value.decode() for name, value in first_copy.headers}
    assert copy_headers[dlh.REPLAY_ID] == report.replay_id
    assert copy_headers[dlh.REPLAYED_BY] == "sre-alice"
    assert copy_headers["ce_type"] == "payment.intent.requested"
    assert not any(name.startswith("kafka_dlt-") for name in copy_headers)
    assert [(r.replay_id, r.replayed_by) for r in trail] == [
        (report.replay_id, "sre-alice"),
        (again.replay_id, "sre-bob"),
    ]
    assert trail[0].ce_id == report.letters[0].ce_id
    assert trail[0].dead_letter_topic == dead_letters
    assert trail[0].exception_fqcn == "builtins.KeyError"


@dataclass(frozen=True)
class Consumed:
    """A record as a consumer saw it (what dead_letter_headers copies)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    headers: list[tuple[str, bytes]]


def _dead_letter(
    record: EncodedRecord, topic: str, group: str, offset: int, exc: BaseException, at: datetime
) -> EncodedRecord:
    consumed = Consumed(topic, 0, offset, int(at.timestamp() * 1000), record.key, record.headers)
    headers = dead_letter_headers(
        consumed, group=group, exc=exc, attempts=1, first_failure=at, last_failure=at
    )
    return EncodedRecord(record.key, record.value, headers)


async def test_dead_letters_are_listed_filtered_dry_run_replayed_and_purged(
    kafka_bootstrap: str, topic: str
) -> None:
    group = unique("g")
    dead_letters = dlt_topic(topic, group)
    await create_topics(kafka_bootstrap, dead_letters, retry_topic(topic, group), partitions=1)
    now = datetime.now(UTC)
    letters = [
        _dead_letter(encoded("p1", key="k1"), topic, group, 10, ValueError("bad"), now),
        _dead_letter(encoded("p2", key="k2"), topic, group, 11, PoisonMessage("junk"), now),
        _dead_letter(encoded("p3", key="k1"), topic, group, 12, ValueError("worse"), now),
    ]
    await produce(kafka_bootstrap, dead_letters, letters)

    async with DeadLetterQueue(kafka_bootstrap) as dlq:
        listed = {summary.topic: summary for summary in await dlq.list_topics()}
        summary = listed[dead_letters]
        assert (summary.source_topic, summary.group, summary.count) == (topic, group, 3)
        assert summary.top_exceptions == [
            ("builtins.ValueError", 2),
            ("payrail.messaging.envelope.PoisonMessage", 1),
        ]
        assert summary.oldest is not None
        assert summary.newest is not None

        by_key = await dlq.read(dead_letters, DeadLetterFilter(keys=frozenset({"k1"})))
        assert [letter.offset for letter in by_key] == [0, 2]
        by_class = await dlq.read(
            dead_letters, DeadLetterFilter(exception_classes=frozenset({"PoisonMessage"}))
        )
        assert [letter.payload()["payment_id"] for letter in by_class] == ["p2"]
        by_offset = await dlq.read(dead_letters, DeadLetterFilter(min_offset=1, max_offset=1))
        assert [letter.key_text for letter in by_offset] == ["k2"]
        by_type = await dlq.read(
            dead_letters, DeadLetterFilter(event_types=frozenset({"payment.refunded"}))
        )
        assert by_type == []
        later = DeadLetterFilter(since=datetime.now(UTC) + timedelta(minutes=5))
        assert await dlq.read(dead_letters, later) == []
        assert by_key[0].original_topic == topic
        assert by_key[0].attempts == 1
        assert by_key[0].exception_message == "bad"

        dry = await dlq.replay(
            dead_letters, DeadLetterFilter(keys=frozenset({"k1"})), replayed_by="sre", dry_run=True
        )
        assert [letter.offset for letter in dry.letters] == [0, 2]
        assert await read_topic(kafka_bootstrap, retry_topic(topic, group)) == []
        assert await dlq.replays(dead_letters) == []  # a dry run records nothing

        assert await dlq.purge(dead_letters, before_offsets={0: 2}) == {0: 2}
        assert [letter.offset for letter in await dlq.read(dead_letters)] == [2]
        assert await dlq.purge(dead_letters) == {0: 1}
        assert (await dlq.summarize(dead_letters)).count == 0

        with pytest.raises(UnknownTopic):
            await dlq.read(dlt_topic(topic, unique("nobody")))
        with pytest.raises(UnknownTopic):
            await dlq.read(topic)  # not a dead-letter topic
