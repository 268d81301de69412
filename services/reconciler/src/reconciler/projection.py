"""payrail's records as the reconciler sees them: a projection of ``payments.lifecycle``.

The reconciler never reads checkout's tables; it keeps its own copy of every payment, refund and
dispute from the lifecycle events, applied through an inbox consumer (exactly once per event,
in the same transaction as the inbox row). Each event carries the payment's whole state, so the
projection keeps the newest state by event time - a late or replayed event never rolls a payment
back - and remembers when the money was first captured, which is the date a reconciliation
books the payment on.
"""

from __future__ import annotations

from sqlalchemy import case, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle
from payrail.messaging.envelope import Envelope
from reconciler.domain import CAPTURED_STATUSES
from reconciler.tables import ReconcilerTables

_REFUNDS = {LifecycleEventType.REFUNDED, LifecycleEventType.PARTIALLY_REFUNDED}
_DISPUTE_OUTCOMES = {
    LifecycleEventType.DISPUTE_OPENED: "open",
    LifecycleEventType.DISPUTE_WON: "won",
    LifecycleEventType.DISPUTE_LOST: "lost",
}


class LifecycleProjection:
    def __init__(self, tables: ReconcilerTables) -> None:
        self.t = tables

    async def __call__(self, session: AsyncSession, envelope: Envelope[PaymentLifecycle]) -> None:
        event = envelope.data
        await self._payment(session, event)
        kind = envelope.type
        if kind in _REFUNDS and event.refund_id and event.refund_amount:
            await session.execute(
                insert(self.t.refunds)
                .values(
                    refund_id=event.refund_id,
                    payment_id=event.payment_id,
                    status="succeeded",
                    amount=event.refund_amount,
                    currency=event.currency,
                    occurred_at=event.occurred_at,
                )
                .on_conflict_do_nothing()
            )
        if kind in _DISPUTE_OUTCOMES:
            await self._dispute(session, event, _DISPUTE_OUTCOMES[LifecycleEventType(kind)])

    async def _payment(self, session: AsyncSession, event: PaymentLifecycle) -> None:
        t = self.t.payments
        captured = event.occurred_at if event.status in CAPTURED_STATUSES else None
        statement = insert(t).values(
            payment_id=event.payment_id,
            gateway=event.gateway,
            gateway_payment_id=event.gateway_payment_id,
            status=event.status,
            amount=event.amount,
            currency=event.currency,
            amount_refunded=event.amount_refunded,
            user_id=event.user_id,
            sku=event.sku,
            captured_at=captured,
            last_event_at=event.occurred_at,
        )
        new = statement.excluded
        newer = new.last_event_at >= t.c.last_event_at

        def latest(column: str) -> object:
            return case((newer, new[column]), else_=t.c[column])

        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[t.c.payment_id],
                set_={
                    "status": latest("status"),
                    "amount": latest("amount"),
                    "gateway_payment_id": func.coalesce(
                        latest("gateway_payment_id"), t.c.gateway_payment_id
                    ),
                    "amount_refunded": func.greatest(t.c.amount_refunded, new.amount_refunded),
                    "captured_at": func.least(t.c.captured_at, new.captured_at),
                    "last_event_at": func.greatest(t.c.last_event_at, new.last_event_at),
                    "updated_at": func.now(),
                },
            )
        )

    async def _dispute(self, session: AsyncSession, event: PaymentLifecycle, status: str) -> None:
        t = self.t.disputes
        closed = None if status == "open" else event.occurred_at
        statement = insert(t).values(
            dispute_id=event.dispute_id or f"{event.payment_id}:dispute",
            payment_id=event.payment_id,
            gateway_dispute_id=event.dispute_id,
            status=status,
            amount=event.amount,  # the contract carries no dispute amount: the payment's
            currency=event.currency,
            opened_at=event.occurred_at,
            closed_at=closed,
        )
        new = statement.excluded
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[t.c.dispute_id],
                set_={
                    # an outcome, once known, is never reopened by a late "opened"
                    "status": case((new.status == "open", t.c.status), else_=new.status),
                    "opened_at": func.least(t.c.opened_at, new.opened_at),
                    "closed_at": func.coalesce(new.closed_at, t.c.closed_at),
                },
            )
        )
