"""payrail's records as the reconciler sees them: a projection of ``payments.lifecycle``.

The reconciler never reads checkout's tables; it keeps its own copy of every payment, refund and
dispute from the lifecycle events, applied through an inbox consumer (exactly once per event,
in the same transaction as the inbox row). Each event carries the payment's whole state, so the
projection keeps the newest state by event time - a late or replayed event never rolls a payment
back - and remembers when the money was first captured, which is the date a reconciliation
books the payment on.

Refunds keep the gateway's refund id when the event carries it (``gateway_refund_id``), so the
engine pairs them with the gateway's refund lines exactly; disputes keep the disputed amount
(``dispute_amount``), so a partial chargeback is booked at what was charged back. Events from
before those fields fall back to pairing on amount and to the payment's full amount.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle
from payrail.messaging.envelope import Envelope
from reconciler.domain import CAPTURED_STATUSES
from reconciler.tables import ReconcilerTables

_REFUNDS = {LifecycleEventType.REFUNDED, LifecycleEventType.PARTIALLY_REFUNDED}
_DISPUTE_OUTCOMES: dict[str, str] = {
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
        refund = refund_record(envelope.type, event)
        if refund is not None:
            await session.execute(insert(self.t.refunds).values(refund).on_conflict_do_nothing())
        dispute = dispute_record(envelope.type, event)
        if dispute is not None:
            await self._dispute(session, dispute, amount_known=event.dispute_amount is not None)

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

    async def _dispute(
        self, session: AsyncSession, record: dict[str, Any], *, amount_known: bool
    ) -> None:
        t = self.t.disputes
        statement = insert(t).values(record)
        new = statement.excluded
        merged: dict[str, Any] = {
            # an outcome, once known, is never reopened by a late "opened"
            "status": case((new.status == "open", t.c.status), else_=new.status),
            "opened_at": func.least(t.c.opened_at, new.opened_at),
            "closed_at": func.coalesce(new.closed_at, t.c.closed_at),
        }
        if amount_known:  # the gateway's disputed amount replaces a payment amount assumed
            merged["amount"] = new.amount
        await session.execute(
            statement.on_conflict_do_update(index_elements=[t.c.dispute_id], set_=merged)
        )


def refund_record(kind: str, event: PaymentLifecycle) -> dict[str, Any] | None:
    """The ledger refund (a :data:`~reconciler.frames.LEDGER_REFUNDS` row) that the lifecycle
    event ``kind`` announces, or None when it announces none."""
    if kind not in _REFUNDS or not event.refund_id or not event.refund_amount:
        return None
    return {
        "refund_id": event.refund_id,
        "payment_id": event.payment_id,
        "gateway_refund_id": event.gateway_refund_id,
        "status": "succeeded",
        "amount": event.refund_amount,
        "currency": event.currency,
        "occurred_at": event.occurred_at,
    }


def dispute_record(kind: str, event: PaymentLifecycle) -> dict[str, Any] | None:
    """The ledger dispute (a :data:`~reconciler.frames.LEDGER_DISPUTES` row) as the lifecycle
    event ``kind`` leaves it, or None for an event about no dispute.

    ``dispute_id`` is the gateway's dispute id; an event without one (a gateway that names no
    dispute) stands for the payment's one dispute. The amount is the disputed amount when the
    event carries it, else the payment's.
    """
    status = _DISPUTE_OUTCOMES.get(kind)
    if status is None:
        return None
    return {
        "dispute_id": event.dispute_id or f"{event.payment_id}:dispute",
        "payment_id": event.payment_id,
        "gateway_dispute_id": event.dispute_id,
        "status": status,
        "amount": event.amount if event.dispute_amount is None else event.dispute_amount,
        "currency": event.currency,
        "opened_at": event.occurred_at,
        "closed_at": None if status == "open" else event.occurred_at,
    }
