"""Requesting a refund: reserve the amount on the locked payment, owe the gateway the call.

The domain refuses refunds of a payment that did not succeed and refunds above what is still
refundable (captured minus confirmed minus in-flight refunds), so two concurrent refund requests
can never together exceed the captured amount: the second sees the first one's reservation.
"""

from __future__ import annotations

from datetime import timedelta

from checkout.adapters.repository import GatewayCall, RefundRecord
from checkout.service_layer.unit_of_work import UnitOfWork


class PaymentNotFound(LookupError):
    pass


def refund_key(refund_id: str) -> str:
    """The gateway idempotency key of the refund ``refund_id``."""
    return f"{refund_id}:refund"


async def request_refund(
    uow: UnitOfWork,
    payment_id: str,
    *,
    refund_id: str,
    amount: int | None,
    reason: str | None,
    source: str,
    call_delay: timedelta,
) -> tuple[RefundRecord, GatewayCall]:
    """Raises :class:`PaymentNotFound` or :class:`~checkout.domain.payment.RefundRejected`."""
    record = await uow.payments.get(payment_id, lock=True)
    if record is None:
        raise PaymentNotFound(payment_id)
    reserved = record.payment.request_refund(amount)
    refund = RefundRecord(
        id=refund_id,
        payment_id=payment_id,
        amount=reserved,
        currency=record.payment.money.currency,
        status="requested",
        reason=reason,
    )
    await uow.payments.add_refund(refund)
    await uow.payments.save(record)
    call = await uow.payments.add_call(
        payment_id, "refund", refund_key(refund_id), refund_id=refund_id, delay=call_delay
    )
    assert call is not None  # the refund id is new, so is its call
    await uow.payments.record_event(
        payment_id,
        "refund.requested",
        source=source,
        detail={"refund_id": refund_id, "amount": reserved, "reason": reason},
    )
    stored = await uow.payments.get_refund(refund_id)
    assert stored is not None
    return stored, call
