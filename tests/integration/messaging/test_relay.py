"""The outbox relay: per-key order with several relays, late commits, purge, metrics."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from payrail.contracts import PaymentIntentRequested
from payrail.messaging.consumer import ConsumerSpec
from payrail.messaging.outbox import Outbox
from payrail.messaging.relay import OutboxRelay
from tests.integration.messaging.support import (
    applied_counts,
    caught_up,
    create_topics,
    eventually,
    intent,
    read_topic,
    recorder,
    rows,
    scalar,
    service_messaging,
    unique,
)


class Abandoned(Exception):
    """A business transaction that rolls back after staging."""


def relay(engine: AsyncEngine, schema: str, bootstrap: str, **options: object) -> OutboxRelay:
    return OutboxRelay(engine, schema, bootstrap_servers=bootstrap, **options)  # type: ignore[arg-type]


def ce_ids(records: list) -> list[str]:  # type: ignore[type-arg]
    return [dict(r.headers)["ce_id"].decode() for r in records]


async def stage(
    engine: AsyncEngine, schema: str, topic: str, *events: tuple[str, str]
) -> list[str]:
    """Stage (key, payment_id) events, one transaction each, in order; returns their ce_ids."""
    outbox, sessions, ids = Outbox(schema), async_sessionmaker(engine), []
    for key, payment_id in events:
        envelope = intent(payment_id, key=key)
        async with sessions() as session, session.begin():
            await outbox.stage(session, topic, key, envelope)
        ids.append(envelope.id)
    return ids


async def test_a_row_held_by_another_relay_holds_back_its_key_but_not_other_keys(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    await create_topics(kafka_bootstrap, topic)
    ids = await stage(engine, schema, topic, ("k1", "p1"), ("k2", "p2"), ("k1", "p3"), ("k3", "p4"))
    second = relay(engine, schema, kafka_bootstrap)
    await second.connect()
    try:
        async with engine.connect() as first, first.begin():
            # "relay A" is mid-batch on k1's oldest row
            await first.execute(
                text(f'SELECT id FROM "{schema}".outbox WHERE ce_id = :id FOR UPDATE'),
                {"id": ids[0]},
            )
            result = await second.publish_batch()
            assert (result.claimed, result.published, result.blocked) == (3, 2, 1)
            assert sorted(ce_ids(await read_topic(kafka_bootstrap, topic))) == sorted(
                [ids[1], ids[3]]
            )  # k1's newer row did not overtake its older one
        result = await second.publish_batch()  # relay A gave up its row (e.g. it crashed)
        assert (result.published, result.blocked) == (2, 0)
    finally:
        await second.stop()
    by_key = defaultdict(list)
    for record in await read_topic(kafka_bootstrap, topic):
        by_key[record.key].append(dict(record.headers)["ce_id"].decode())
    assert by_key[b"k1"] == [ids[0], ids[2]]


async def test_events_of_one_key_are_consumed_in_staging_order_with_two_relays(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    await create_topics(kafka_bootstrap, topic)
    keys, per_key = [f"pay_{n}" for n in range(8)], 40
    group, name = unique("g"), unique("c-")

    async def stage_key(key: str) -> None:
        outbox, sessions = Outbox(schema), async_sessionmaker(engine)
        for seq in range(per_key):
            async with sessions() as session, session.begin():
                await outbox.stage(session, topic, key, intent(f"{key}-{seq}", key=key, seq=seq))

    spec = ConsumerSpec(name, group, (topic,), PaymentIntentRequested, recorder(schema, name))
    messaging = service_messaging(kafka_bootstrap, engine, schema, spec)
    small = {"batch_size": 7, "poll_interval": 0.05}
    async with (
        relay(engine, schema, kafka_bootstrap, **small),
        relay(engine, schema, kafka_bootstrap, **small),
        messaging,
    ):
        await asyncio.gather(*(stage_key(key) for key in keys))

        async def all_applied() -> bool:
            count = await scalar(engine, f'SELECT count(*) FROM "{schema}".effects')
            return count == len(keys) * per_key and await caught_up(kafka_bootstrap, group, topic)

        await eventually(all_applied, what="every event applied")

    applied = await rows(engine, f'SELECT key, seq FROM "{schema}".effects ORDER BY id')
    order: dict[object, list[object]] = defaultdict(list)
    for key, seq in applied:
        order[key].append(seq)
    assert order == {key: list(range(per_key)) for key in keys}
    published: dict[bytes, list[int]] = defaultdict(list)
    for record in await read_topic(kafka_bootstrap, topic):
        published[record.key].append(
            int(PaymentIntentRequested.model_validate_json(record.value).metadata["seq"])
        )
    for key in keys:  # first publications in order (a re-publish could only repeat, not reorder)
        firsts = list(dict.fromkeys(published[key.encode()]))
        assert firsts == list(range(per_key))


async def test_concurrent_and_late_committing_transactions_are_all_published_once(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    await create_topics(kafka_bootstrap, topic)
    outbox, sessions = Outbox(schema), async_sessionmaker(engine)
    rng = random.Random(7)
    committed_ids: list[str] = []
    rolled_back_ids: list[str] = []

    async def business_transaction(n: int) -> None:
        envelopes = [intent(f"pay_{n}_{i}") for i in range(rng.randint(1, 3))]
        late = rng.random() < 0.25  # ids allocated now, committed after later ids are published
        fails = rng.random() < 0.1
        try:
            async with sessions() as session, session.begin():
                for envelope in envelopes:
                    await outbox.stage(session, topic, envelope.data.payment_id, envelope)
                if late:
                    await asyncio.sleep(rng.uniform(0.3, 1.5))
                if fails:
                    raise Abandoned
        except Abandoned:
            rolled_back_ids.extend(e.id for e in envelopes)
        else:
            committed_ids.extend(e.id for e in envelopes)

    group, name = unique("g"), unique("c-")

    spec = ConsumerSpec(name, group, (topic,), PaymentIntentRequested, recorder(schema, name))
    messaging = service_messaging(kafka_bootstrap, engine, schema, spec)
    async with (
        relay(engine, schema, kafka_bootstrap, batch_size=50, poll_interval=0.2),
        relay(engine, schema, kafka_bootstrap, batch_size=50, poll_interval=0.2),
        messaging,
    ):
        await asyncio.gather(*(business_transaction(n) for n in range(300)))

        async def drained() -> bool:
            unpublished = f'SELECT count(*) FROM "{schema}".outbox WHERE published_at IS NULL'
            return await scalar(engine, unpublished) == 0 and await caught_up(
                kafka_bootstrap, group, topic
            )

        await eventually(drained, what="outbox drained and consumed")

    assert len(committed_ids) > 300
    assert rolled_back_ids
    on_kafka = ce_ids(await read_topic(kafka_bootstrap, topic))
    assert set(on_kafka) == set(committed_ids)  # none skipped, late commits included
    assert not set(on_kafka) & set(rolled_back_ids)  # nothing that was rolled back
    # each applied exactly once
    assert await applied_counts(engine, schema) == dict.fromkeys(committed_ids, 1)


async def test_relay_reports_backlog_and_purges_published_rows_past_retention(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    await create_topics(kafka_bootstrap, topic)
    await stage(engine, schema, topic, ("k1", "p1"), ("k2", "p2"), ("k3", "p3"))
    async with engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE \"{schema}\".outbox SET created_at = created_at - interval '1 hour'")
        )
    idle = relay(engine, schema, kafka_bootstrap)
    await idle.refresh_metrics()
    assert REGISTRY.get_sample_value("payrail_outbox_backlog", {"schema": schema}) == 3
    oldest = REGISTRY.get_sample_value(
        "payrail_outbox_oldest_unpublished_age_seconds", {"schema": schema}
    )
    assert oldest is not None
    assert oldest >= 3600

    await idle.connect()
    try:
        assert (await idle.publish_batch()).published == 3
    finally:
        await idle.stop()
    await idle.refresh_metrics()
    assert REGISTRY.get_sample_value("payrail_outbox_backlog", {"schema": schema}) == 0
    published = REGISTRY.get_sample_value(
        "payrail_outbox_published_total", {"schema": schema, "topic": topic}
    )
    assert published == 3

    async with engine.begin() as conn:  # two rows were published 8 days ago
        await conn.execute(
            text(
                f"UPDATE \"{schema}\".outbox SET published_at = now() - interval '8 days' "
                "WHERE key IN ('k1', 'k2')"
            )
        )
    assert await idle.purge() == 2
    assert await rows(engine, f'SELECT key FROM "{schema}".outbox') == [("k3",)]


async def test_the_relay_wakes_on_commit_without_waiting_for_its_poll(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    await create_topics(kafka_bootstrap, topic)
    unpublished = f'SELECT count(*) FROM "{schema}".outbox WHERE published_at IS NULL'
    # an hour between polls: only the NOTIFY sent by each staging commit can wake it
    async with relay(engine, schema, kafka_bootstrap, poll_interval=3600):
        await asyncio.sleep(0.5)  # the relay is now idle, listening
        for n in range(3):
            await stage(engine, schema, topic, (f"k{n}", f"p{n}"))

            async def published() -> bool:
                return await scalar(engine, unpublished) == 0

            await eventually(published, what="the relay woke up", timeout=30)
    assert len(await read_topic(kafka_bootstrap, topic)) == 3
