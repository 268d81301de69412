"""The projection keeps the gateway facts the lifecycle contract carries: the gateway's refund
id of each refund and the disputed amount of each dispute, on the reconciler's own tables."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payrail.contracts.payments import LifecycleEventType
from reconciler.tables import ReconcilerTables
from tests.integration.reconciler.test_projection import apply, event, tables

__all__ = ["tables"]  # the scratch-schema fixture, shared with the projection's other tests


async def test_refunds_keep_the_gateways_refund_id(
    tables: tuple[AsyncEngine, ReconcilerTables],
) -> None:
    engine, t = tables
    new = event(
        LifecycleEventType.PARTIALLY_REFUNDED,
        "partially_refunded",
        12,
        amount_refunded=1_000,
        refund_id="rf_1",
        gateway_refund_id="re_1",
        refund_amount=1_000,
    )
    old = event(  # an event from before the field: the reconciler pairs it on amount
        LifecycleEventType.PARTIALLY_REFUNDED,
        "partially_refunded",
        13,
        amount_refunded=2_000,
        refund_id="rf_2",
        refund_amount=1_000,
    )
    await apply(engine, t, new, old)

    async with engine.connect() as conn:
        rows = (await conn.execute(select(t.refunds).order_by("refund_id"))).mappings().all()
    assert [(r["refund_id"], r["gateway_refund_id"], r["amount"]) for r in rows] == [
        ("rf_1", "re_1", 1_000),
        ("rf_2", None, 1_000),
    ]


async def test_a_dispute_keeps_the_disputed_amount_whatever_the_order(
    tables: tuple[AsyncEngine, ReconcilerTables],
) -> None:
    engine, t = tables
    older_opening = event(LifecycleEventType.DISPUTE_OPENED, "disputed", 11, dispute_id="dp_1")
    lost = event(
        LifecycleEventType.DISPUTE_LOST, "dispute_lost", 15, dispute_id="dp_1", dispute_amount=1_200
    )
    await apply(engine, t, older_opening, lost, older_opening)

    async with engine.connect() as conn:
        dispute = (await conn.execute(select(t.disputes))).mappings().one()
    assert (dispute["status"], dispute["gateway_dispute_id"], dispute["amount"]) == (
        "lost",
        "dp_1",
        1_200,
    )
