"""payrail's normalized gateway event: what any gateway said happened to a payment.

webhook-ingest produces these from verified webhooks, the checkout janitor produces them from
status syncs, and both publish them to ``payments.gateway-events`` keyed by payrail's payment id.
``ce_id`` is ``<gateway>:<gateway event id>`` so a re-sent webhook is recognisably the same event.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class GatewayEventKind(StrEnum):
    PAYMENT_PROCESSING = "payment.processing"
    PAYMENT_REQUIRES_ACTION = "payment.requires_action"
    # the customer approved / the card was authorized, but nothing is captured yet: checkout
    # calls PaymentsClient.capture (PayPal approved orders, manual-capture Stripe/Razorpay)
    PAYMENT_AUTHORIZED = "payment.authorized"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_CANCELED = "payment.canceled"
    REFUND_SUCCEEDED = (
        "refund.succeeded"  # amount = this refund; full vs partial is decided by checkout
    )
    REFUND_FAILED = "refund.failed"
    DISPUTE_OPENED = "dispute.opened"
    DISPUTE_WON = "dispute.won"
    DISPUTE_LOST = "dispute.lost"


class GatewayEvent(BaseModel):
    """A verified, normalized gateway event (the payload of ``payments.gateway-events``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gateway: str
    account: str = "default"
    gateway_event_id: str
    kind: GatewayEventKind
    payment_id: str | None = Field(
        default=None, description="payrail's payment id, from the metadata checkout set"
    )
    gateway_payment_id: str | None = None
    gateway_refund_id: str | None = None
    gateway_dispute_id: str | None = None
    amount: int | None = Field(default=None, description="minor units")
    currency: str | None = None
    amount_refunded: int | None = Field(
        default=None, description="cumulative refunded amount at the gateway, when it says"
    )
    failure_code: str | None = None
    failure_message: str | None = None
    occurred_at: datetime
    source: str = Field(default="webhook", description="'webhook' or 'status-sync'")
    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def ce_id(self) -> str:
        return f"{self.gateway}:{self.gateway_event_id}"

    @property
    def partition_key(self) -> str:
        """Key on the topic: payrail's payment id, else the gateway's object id."""
        return self.payment_id or self.gateway_payment_id or self.gateway_event_id
