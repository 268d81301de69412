"""The entitlements process killed with SIGKILL while it consumes a burst of payments, then
restarted: every succeeded payment ends with exactly one grant and one announced grant.

SIGKILL leaves no chance to clean up: transactions in flight roll back, offsets of handled
messages may not be committed (so they are redelivered), outbox rows may be published and not
yet marked (so the relay of the next process sends them again). The inbox makes a redelivery a
no-op, ``UNIQUE(payment_id)`` makes a second grant impossible, and the announced event's
``ce_id`` is derived from the payment, so a relay re-send is the same event, never a second one.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from payrail.contracts.payments import LifecycleEventType as T
from payrail.contracts.topics import ENTITLEMENTS_EVENTS
from tests.integration.entitlements.support import (
    consumed,
    entitlements_service,
    lifecycle,
    payloads,
    publish,
    unique,
)
from tests.integration.messaging.support import eventually
from tests.support.kafka import TopicReader

BURST = 200
USERS = 20


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


async def grants_per_payment(engine: AsyncEngine, payment_ids: list[str]) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT payment_id, count(*) FROM entitlements.grants "
                "WHERE payment_id = ANY(:ids) AND status = 'granted' GROUP BY payment_id"
            ),
            {"ids": payment_ids},
        )
        return {str(payment_id): int(count) for payment_id, count in rows.all()}


async def test_sigkill_during_a_burst_then_restart_grants_every_payment_exactly_once(
    kafka_bootstrap: str, database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    users = [unique("u_") for _ in range(USERS)]
    payments = {unique("pay_"): users[n % USERS] for n in range(BURST)}
    ids = list(payments)
    announced = TopicReader(kafka_bootstrap, ENTITLEMENTS_EVENTS)
    await announced.mark()

    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with entitlements_service(kafka_bootstrap, database_url, tmp_path / "first") as first:
        burst = asyncio.create_task(
            publish(kafka_bootstrap, [lifecycle(T.SUCCEEDED, p, u) for p, u in payments.items()])
        )

        async def some_granted() -> bool:
            return bool(await grants_per_payment(engine, ids))

        await eventually(some_granted, what="the burst is being consumed")
        first.stop(signal.SIGKILL)
        await burst
        granted_before_restart = len(await grants_per_payment(engine, ids))

    with entitlements_service(kafka_bootstrap, database_url, tmp_path / "second"):

        async def all_granted() -> bool:
            return len(await grants_per_payment(engine, ids)) == BURST

        await eventually(all_granted, what="every payment granted", timeout=120)
        await consumed(kafka_bootstrap)
        records = await announced.read(expect=BURST, timeout=60)

    assert set((await grants_per_payment(engine, ids)).values()) == {1}
    events: defaultdict[str, set[str]] = defaultdict(set)
    for record, body in payloads(records, set(ids)):
        assert record.headers["ce_type"] == "entitlement.granted"
        assert record.key == payments[body["payment_id"]]
        events[body["payment_id"]].add(record.headers["ce_id"])
    # one announced grant per payment (a relay re-send after the kill repeats its ce_id)
    assert Counter(len(ce_ids) for ce_ids in events.values()) == {1: BURST}
    assert set(events) == set(ids)
    print(f"granted when killed: {granted_before_restart}/{BURST}")
