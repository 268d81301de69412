"""Staging ``payments.lifecycle`` events: what checkout tells the rest of payrail.

Every event carries the payment's whole state after the change (amount, currency, user, sku,
status, refunded amount), keyed by payment id, so consumers that see events late or twice
converge. Events are staged in the outbox of the transaction that made the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from checkout.adapters.repository import Announcement, PaymentRecord, timeline_row
from checkout.domain.payment import PaymentStatus
from payrail.contracts import sources
from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle
from payrail.contracts.topics import PAYMENTS_LIFECYCLE
from payrail.messaging.envelope import Envelope

#: the lifecycle event announcing that a payment reached a status
EVENT_FOR_STATUS: dict[PaymentStatus, LifecycleEventType] = {
    PaymentStatus.PENDING: LifecycleEventType.PENDING,
    PaymentStatus.PROCESSING: LifecycleEventType.PROCESSING,
    PaymentStatus.SUCCEEDED: LifecycleEventType.SUCCEEDED,
    PaymentStatus.FAILED: LifecycleEventType.FAILED,
    PaymentStatus.CANCELED: LifecycleEventType.CANCELED,
    PaymentStatus.PARTIALLY_REFUNDED: LifecycleEventType.PARTIALLY_REFUNDED,
    PaymentStatus.REFUNDED: LifecycleEventType.REFUNDED,
    PaymentStatus.DISPUTED: LifecycleEventType.DISPUTE_OPENED,
    PaymentStatus.DISPUTE_WON: LifecycleEventType.DISPUTE_WON,
    PaymentStatus.DISPUTE_LOST: LifecycleEventType.DISPUTE_LOST,
}


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """A lifecycle event about to be staged, and the timeline entry that notes it."""

    envelope: Envelope[PaymentLifecycle]
    noted: dict[str, Any]

    @property
    def announcement(self) -> Announcement:
        """What the repository stages with the change (keyed by payment id)."""
        return Announcement(PAYMENTS_LIFECYCLE, self.envelope.data.payment_id, self.envelope)


def lifecycle_event(
    record: PaymentRecord,
    event_type: LifecycleEventType,
    *,
    occurred_at: datetime | None = None,
    refund_id: str | None = None,
    gateway_refund_id: str | None = None,
    refund_amount: int | None = None,
    dispute_id: str | None = None,
    dispute_amount: int | None = None,
    reason: str | None = None,
) -> LifecycleEvent:
    """``event_type`` for ``record`` as it stands now (pure: nothing is written).

    Built before the change is saved, its timeline entry and its outbox row go in the same
    statement as the change (:meth:`~checkout.adapters.repository.PaymentRepository.save`).
    """
    payment = record.payment
    moment = occurred_at or datetime.now(UTC)
    data = PaymentLifecycle(
        payment_id=payment.id,
        status=payment.status.value,
        amount=payment.money.amount,
        currency=payment.money.currency,
        amount_refunded=payment.amount_refunded,
        user_id=payment.user_id,
        sku=payment.sku,
        gateway=payment.gateway,
        gateway_payment_id=payment.gateway_payment_id,
        occurred_at=moment,
        refund_id=refund_id,
        gateway_refund_id=gateway_refund_id,
        refund_amount=refund_amount,
        dispute_id=dispute_id,
        dispute_amount=dispute_amount,
        failure_code=record.failure_code,
        reason=reason,
    )
    envelope = Envelope.create(
        event_type.value, sources.CHECKOUT, data, subject=payment.id, time=moment
    )
    noted = timeline_row(
        payment.id,
        f"lifecycle.{event_type.value}",
        source=sources.CHECKOUT,
        ce_id=envelope.id,
        detail={"topic": PAYMENTS_LIFECYCLE},
    )
    return LifecycleEvent(envelope, noted)
