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

from collections.abc import Iterable
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle
from payrail.messaging.envelope import Envelope
from reconciler.domain import CAPTURED_STATUSES
from reconciler.frames import LEDGER_DISPUTES, LEDGER_REFUNDS
from reconciler.tables import ReconcilerTables

_REFUNDS = {LifecycleEventType.REFUNDED, LifecycleEventType.PARTIALLY_REFUNDED}
_DISPUTE_OUTCOMES: dict[str, str] = {
    LifecycleEventType.DISPUTE_OPENED: "open",
    LifecycleEventType.DISPUTE_WON: "won",
    LifecycleEventType.DISPUTE_LOST: "lost",
}
_PAYMENT_COLUMNS = (
    "payment_id",
    "gateway",
    "gateway_payment_id",
    "status",
    "amount",
    "currency",
    "amount_refunded",
    "user_id",
    "sku",
    "captured_at",
    "last_event_at",
)


class LifecycleProjection:
    """The inbox handler of ``payments.lifecycle`` that keeps the projection.

    Its statements are written once, as SQL text: built per event with SQLAlchemy's expression
    language they cost more CPU than the database spends running them (the projection runs for
    every lifecycle event of every payment).
    """

    def __init__(self, tables: ReconcilerTables) -> None:
        self.t = tables
        q = f'"{tables.schema}"'
        # the newest state by event time wins; money captured and refunded only ever grows
        self._payment: TextClause = text(
            f"{_insert(f'{q}.payments AS p', _PAYMENT_COLUMNS)} "
            "ON CONFLICT (payment_id) DO UPDATE SET "
            "status = CASE WHEN EXCLUDED.last_event_at >= p.last_event_at "
            "  THEN EXCLUDED.status ELSE p.status END, "
            "amount = CASE WHEN EXCLUDED.last_event_at >= p.last_event_at "
            "  THEN EXCLUDED.amount ELSE p.amount END, "
            "gateway_payment_id = coalesce(CASE WHEN EXCLUDED.last_event_at >= p.last_event_at "
            "  THEN EXCLUDED.gateway_payment_id ELSE p.gateway_payment_id END, "
            "  p.gateway_payment_id), "
            "amount_refunded = greatest(p.amount_refunded, EXCLUDED.amount_refunded), "
            "captured_at = least(p.captured_at, EXCLUDED.captured_at), "
            "last_event_at = greatest(p.last_event_at, EXCLUDED.last_event_at), "
            "updated_at = now()"
        )
        self._refund: TextClause = text(
            f"{_insert(f'{q}.refunds', LEDGER_REFUNDS.columns)} ON CONFLICT DO NOTHING"
        )
        self._dispute: TextClause = text(
            f"{_insert(f'{q}.disputes AS d', LEDGER_DISPUTES.columns)} "
            "ON CONFLICT (dispute_id) DO UPDATE SET "
            # an outcome, once known, is never reopened by a late "opened"
            "status = CASE WHEN EXCLUDED.status = 'open' THEN d.status ELSE EXCLUDED.status END, "
            "opened_at = least(d.opened_at, EXCLUDED.opened_at), "
            "closed_at = coalesce(EXCLUDED.closed_at, d.closed_at), "
            # the gateway's disputed amount replaces a payment amount assumed
            "amount = CASE WHEN :amount_known THEN EXCLUDED.amount ELSE d.amount END"
        )

    async def __call__(self, session: AsyncSession, envelope: Envelope[PaymentLifecycle]) -> None:
        event = envelope.data
        await session.execute(
            self._payment,
            {
                "payment_id": event.payment_id,
                "gateway": event.gateway,
                "gateway_payment_id": event.gateway_payment_id,
                "status": event.status,
                "amount": event.amount,
                "currency": event.currency,
                "amount_refunded": event.amount_refunded,
                "user_id": event.user_id,
                "sku": event.sku,
                "captured_at": event.occurred_at if event.status in CAPTURED_STATUSES else None,
                "last_event_at": event.occurred_at,
            },
        )
        refund = refund_record(envelope.type, event)
        if refund is not None:
            await session.execute(self._refund, refund)
        dispute = dispute_record(envelope.type, event)
        if dispute is not None:
            amount_known = event.dispute_amount is not None
            await session.execute(self._dispute, {**dispute, "amount_known": amount_known})


def _insert(table: str, columns: Iterable[str]) -> str:
    """``INSERT INTO table (columns) VALUES (:column, ...)``: a row from a dict of its columns."""
    names = list(columns)
    return (
        f"INSERT INTO {table} ({', '.join(names)}) "
        f"VALUES ({', '.join(f':{name}' for name in names)})"
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
