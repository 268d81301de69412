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
    #: the refund a ``payment.refunded`` / ``payment.partially_refunded`` event announces:
    #: payrail's refund id when it was requested through payrail; for a refund payrail did not
    #: ask for (made in the gateway's dashboard) the gateway's refund id, else the gateway
    #: event's id - so every refund event names its refund, unique per payment
    refund_id: str | None = None
    #: the gateway's id of that refund (Stripe ``re_...``, Razorpay ``rfnd_...``, PayPal refund
    #: id, Adyen pspReference), when the gateway named it: what its reports call the refund,
    #: so reconciliation pairs refund lines exactly rather than on amount. Absent in events
    #: older than the field and when the gateway's event did not name the refund
    gateway_refund_id: str | None = None
    #: the amount of this refund alone (``amount_refunded`` is the cumulative figure)
    refund_amount: NonNegativeMinorUnits | None = None
    #: the gateway's dispute id (Stripe ``dp_...``, PayPal ``PP-D-...``, Razorpay ``disp_...``,
    #: Adyen pspReference) on ``payment.dispute_*`` events; payrail has no dispute id of its own
    dispute_id: str | None = None
    #: the disputed amount, in the payment's currency, on ``payment.dispute_*`` events when the
    #: gateway said it: a partial chargeback disputes less than ``amount``. Absent in events
    #: older than the field and when the gateway gave no amount in the payment's currency;
    #: consumers then take the payment's ``amount``
    dispute_amount: NonNegativeMinorUnits | None = None
    fee: MinorUnits | None = None
    failure_code: str | None = None
    reason: str | None = None
