"""The payment projection keeps the newest state whatever order lifecycle events arrive in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle
from payrail.db import migrate_async
from payrail.messaging.envelope import Envelope
from reconciler.app import MIGRATIONS
from reconciler.projection import LifecycleProjection
from reconciler.tables import ReconcilerTables, reconciler_tables


@pytest.fixture
async def tables(database_url: str) -> AsyncIterator[tuple[AsyncEngine, ReconcilerTables]]:
    schema = f"recon_proj_{uuid.uuid4().hex[:8]}"
    await migrate_async(database_url, schema, MIGRATIONS)
    engine = create_async_engine(database_url)
    yield engine, reconciler_tables(schema)
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()


def event(
    kind: LifecycleEventType, status: str, hour: int, **extra: Any
) -> Envelope[PaymentLifecycle]:
    payload = {
        "payment_id": "p1",
        "status": status,
        "amount": 5_000,
        "currency": "EUR",
        "user_id": "u1",
        "sku": "pro",
        "gateway": "stripe",
        "gateway_payment_id": "pi_1",
        "occurred_at": datetime(2025, 3, 3, hour, tzinfo=UTC),
        **extra,
    }
    return Envelope.create(str(kind), "/payrail/tests", PaymentLifecycle(**payload))


async def apply(
    engine: AsyncEngine, t: ReconcilerTables, *events: Envelope[PaymentLifecycle]
) -> None:
    project = LifecycleProjection(t)
    sessions = async_sessionmaker(engine, class_=AsyncSession)
    for envelope in events:
        async with sessions.begin() as session:
            await project(session, envelope)


async def test_late_and_replayed_events_never_roll_a_payment_back(
    tables: tuple[AsyncEngine, ReconcilerTables],
) -> None:
    engine, t = tables
    succeeded = event(LifecycleEventType.SUCCEEDED, "succeeded", 10)
    refunded = event(
        LifecycleEventType.PARTIALLY_REFUNDED,
        "partially_refunded",
        12,
        amount_refunded=2_000,
        refund_id="r1",
        refund_amount=2_000,
    )
    pending = event(LifecycleEventType.PENDING, "pending", 9)
    await apply(engine, t, refunded, succeeded, pending, refunded)  # out of order, and twice

    async with engine.connect() as conn:
        payment = (await conn.execute(select(t.payments))).mappings().one()
        refunds = (await conn.execute(select(t.refunds))).mappings().all()
    assert payment["status"] == "partially_refunded"
    assert payment["amount_refunded"] == 2_000
    assert payment["captured_at"] == datetime(
        2025, 3, 3, 10, tzinfo=UTC
    )  # the success, not the refund
    assert [(r["refund_id"], r["amount"]) for r in refunds] == [("r1", 2_000)]


async def test_a_dispute_outcome_is_not_reopened_by_a_late_opening(
    tables: tuple[AsyncEngine, ReconcilerTables],
) -> None:
    engine, t = tables
    opened = event(LifecycleEventType.DISPUTE_OPENED, "disputed", 11, dispute_id="dp_1")
    lost = event(LifecycleEventType.DISPUTE_LOST, "lost", 15, dispute_id="dp_1")
    await apply(engine, t, lost, opened)

    async with engine.connect() as conn:
        dispute = (await conn.execute(select(t.disputes))).mappings().one()
    assert (dispute["status"], dispute["gateway_dispute_id"], dispute["amount"]) == (
        "lost",
        "dp_1",
        5_000,
    )
    assert dispute["opened_at"] == datetime(2025, 3, 3, 11, tzinfo=UTC)
    assert dispute["closed_at"] == datetime(2025, 3, 3, 15, tzinfo=UTC)
