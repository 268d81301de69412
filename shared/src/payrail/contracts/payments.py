"""Payment events: intents requested by internal services, and the payment lifecycle checkout
publishes on ``payments.lifecycle`` (keyed by payment id)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import AwareDatetime, BaseModel, Field

from payrail.contracts.types import (
    CONTRACT_CONFIG,
    Currency,
    Id,
    MinorUnits,
    NonNegativeMinorUnits,
)

PAYMENT_INTENT_REQUESTED: Final = "payment.intent.requested"


class PaymentIntentRequested(BaseModel):
    """``payment.intent.requested`` on ``payments.intents``: an internal service asks for a payment.

    Same body as ``POST /v1/payments`` plus the client-chosen ``payment_id``, which makes the
    request idempotent: asking twice with one id creates one payment.
    """

    model_config = CONTRACT_CONFIG

    payment_id: Id
    amount: MinorUnits = Field(gt=0)
    currency: Currency
    user_id: Id
    sku: Id
    gateway: Id
    description: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class LifecycleEventType(StrEnum):
    """The ``ce_type`` values of ``payments.lifecycle``."""

    CREATED = "payment.created"
    PENDING = "payment.pending"
    PROCESSING = "payment.processing"
    SUCCEEDED = "payment.succeeded"
    FAILED = "payment.failed"
    CANCELED = "payment.canceled"
    REFUNDED = "payment.refunded"
    PARTIALLY_REFUNDED = "payment.partially_refunded"
    DISPUTE_OPENED = "payment.dispute_opened"
    DISPUTE_WON = "payment.dispute_won"
    DISPUTE_LOST = "payment.dispute_lost"
    #: the gateway's outcome is unknown or contradictory; a human or the janitor must look
    NEEDS_ATTENTION = "payment.needs_attention"


class PaymentLifecycle(BaseModel):
    """The payload of every ``payments.lifecycle`` event: the payment as it stands after it.

    Carrying the whole state (not just the change) lets consumers that see events late, twice or
    out of order converge by keeping the most advanced state.
    """

    model_config = CONTRACT_CONFIG

    payment_id: Id
    #: checkout's state-machine state after this event (checkout owns the vocabulary)
    status: Id
    amount: NonNegativeMinorUnits
    currency: Currency
    amount_refunded: NonNegativeMinorUnits = 0
    user_id: Id
    sku: Id
    gateway: Id
    gateway_payment_id: str | None = None
    occurred_at: AwareDatetime
    refund_id: str | None = None
    refund_amount: NonNegativeMinorUnits | None = None
    dispute_id: str | None = None
    fee: MinorUnits | None = None
    failure_code: str | None = None
    reason: str | None = None
