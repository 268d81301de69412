"""What the API (and a replayed Idempotency-Key) answers: payments and refunds as JSON.

Bodies are serialized here once, compactly and with a fixed key order, because the first
response to an ``Idempotency-Key`` is stored as bytes and replayed byte for byte.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from checkout.adapters.repository import PaymentRecord, RefundRecord
from checkout.domain.payment import PaymentStatus


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def payment_view(record: PaymentRecord) -> dict[str, Any]:
    payment = record.payment
    return {
        "id": payment.id,
        "status": payment.status.value,
        "outcome_unknown": payment.facts.outcome_unknown,
        "amount": payment.money.amount,
        "currency": payment.money.currency,
        "amount_refunded": payment.amount_refunded,
        "amount_refundable": payment.refundable,
        "user_id": payment.user_id,
        "sku": payment.sku,
        "gateway": payment.gateway,
        "account": payment.account,
        "gateway_payment_id": payment.gateway_payment_id,
        "client_secret": record.client_secret,
        "redirect_url": record.redirect_url,
        "description": record.description,
        "metadata": record.metadata,
        "failure_code": record.failure_code,
        "failure_message": record.failure_message,
        "needs_attention": record.needs_attention,
        "attention_reason": record.attention_reason,
        "created_at": _time(record.created_at),
        "updated_at": _time(record.updated_at),
    }


def refund_view(refund: RefundRecord) -> dict[str, Any]:
    return {
        "id": refund.id,
        "payment_id": refund.payment_id,
        "status": refund.status,
        "amount": refund.amount,
        "currency": refund.currency,
        "reason": refund.reason,
        "gateway_refund_id": refund.gateway_refund_id,
        "failure_message": refund.failure_message,
        "created_at": _time(refund.created_at),
    }


def create_status(record: PaymentRecord) -> int:
    """``201`` once the gateway answered (accepted or declined); ``202`` while its answer is
    unknown (timeout, unavailable): the payment exists, ``initiated``, and is being resolved."""
    payment = record.payment
    answered = payment.facts.intent_created or payment.status is not PaymentStatus.INITIATED
    return 201 if answered else 202


def to_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
