"""The payment aggregate and its state machine.

Gateway events arrive late, twice and out of order (webhooks are retried, the janitor's status
syncs race with webhooks, Kafka redelivers). So a payment's status is not the result of the
*last* event: it is a function of the *set of facts* observed so far. Facts only accumulate
(a set union), and the status is derived from them by precedence:

    dispute lost > dispute open > dispute won > refunded > partially refunded > succeeded
      > canceled > failed > processing > pending > initiated

Consequences that DESIGN asks for fall out of the construction rather than from special cases:

* any order and any duplication of the same events gives the same final status;
* a late ``failed`` never overrides ``succeeded`` (succeeded has precedence);
* a refund seen before the success means the money was captured and returned: the payment ends
  ``refunded`` and never passes through ``succeeded``, so no access is ever granted for it;
* "the gateway call timed out" is a fact of its own (``outcome_unknown``), distinct from
  "the gateway said failed".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.money import Money


class PaymentStatus(StrEnum):
    INITIATED = "initiated"
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    DISPUTE_WON = "dispute_won"
    DISPUTE_LOST = "dispute_lost"

    @property
    def is_terminal_for_sync(self) -> bool:
        """No status sync can change it any more without a new customer action."""
        return self not in {
            PaymentStatus.INITIATED,
            PaymentStatus.PENDING,
            PaymentStatus.PROCESSING,
        }


#: statuses from which money was captured and may be refunded
REFUNDABLE = frozenset(
    {PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.DISPUTE_WON}
)


class DisputeState(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


_DISPUTE_RANK = {DisputeState.OPEN: 0, DisputeState.WON: 1, DisputeState.LOST: 2}


@dataclass(slots=True)
class Facts:
    """Everything observed about a payment at its gateway. Merging is a set union (monotonic)."""

    intent_created: bool = False
    outcome_unknown: bool = False
    requires_action: bool = False
    processing: bool = False
    succeeded: bool = False
    failed: bool = False
    canceled: bool = False
    #: confirmed refunds: gateway refund id -> amount (minor units)
    refunds: dict[str, int] = field(default_factory=dict)
    #: the largest cumulative refunded amount the gateway ever reported
    reported_refunded: int = 0
    #: gateway dispute id -> strongest state seen
    disputes: dict[str, DisputeState] = field(default_factory=dict)

    def refunded_amount(self) -> int:
        return max(sum(self.refunds.values()), self.reported_refunded)

    def to_json(self) -> dict[str, object]:
        return {
            "intent_created": self.intent_created,
            "outcome_unknown": self.outcome_unknown,
            "requires_action": self.requires_action,
            "processing": self.processing,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "canceled": self.canceled,
            "refunds": dict(self.refunds),
            "reported_refunded": self.reported_refunded,
            "disputes": {k: v.value for k, v in self.disputes.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Facts:
        refunds = data.get("refunds") or {}
        disputes = data.get("disputes") or {}
        assert isinstance(refunds, dict)
        assert isinstance(disputes, dict)
        return cls(
            intent_created=bool(data.get("intent_created")),
            outcome_unknown=bool(data.get("outcome_unknown")),
            requires_action=bool(data.get("requires_action")),
            processing=bool(data.get("processing")),
            succeeded=bool(data.get("succeeded")),
            failed=bool(data.get("failed")),
            canceled=bool(data.get("canceled")),
            refunds={str(k): int(v) for k, v in refunds.items()},
            reported_refunded=int(str(data.get("reported_refunded") or 0)),
            disputes={str(k): DisputeState(v) for k, v in disputes.items()},
        )


def derive_status(facts: Facts, amount: int) -> PaymentStatus:
    """The status implied by ``facts`` for a payment of ``amount`` (see module docstring)."""
    states = set(facts.disputes.values())
    if DisputeState.LOST in states:
        return PaymentStatus.DISPUTE_LOST
    if DisputeState.OPEN in states:
        return PaymentStatus.DISPUTED
    if DisputeState.WON in states:
        return PaymentStatus.DISPUTE_WON
    refunded = facts.refunded_amount()
    if refunded >= amount > 0:
        return PaymentStatus.REFUNDED
    if refunded > 0:
        return PaymentStatus.PARTIALLY_REFUNDED
    if facts.succeeded:
        return PaymentStatus.SUCCEEDED
    if facts.canceled:
        return PaymentStatus.CANCELED
    if facts.failed:
        return PaymentStatus.FAILED
    if facts.processing:
        return PaymentStatus.PROCESSING
    if facts.intent_created or facts.requires_action:
        return PaymentStatus.PENDING
    return PaymentStatus.INITIATED


class RefundRejected(ValueError):
    """A refund request the rules forbid; ``reason`` is a stable code for the API."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(slots=True)
class Payment:
    """One payment as payrail knows it. Mutated only through the methods below."""

    id: str
    money: Money
    user_id: str
    sku: str
    gateway: str
    account: str = "default"
    gateway_payment_id: str | None = None
    facts: Facts = field(default_factory=Facts)
    status: PaymentStatus = PaymentStatus.INITIATED
    #: refunds requested through payrail and not yet confirmed or failed at the gateway
    pending_refunds: int = 0

    def _observe(self) -> PaymentStatus | None:
        """Recompute the status; return the new one when it changed."""
        new = derive_status(self.facts, self.money.amount)
        if new == self.status:
            return None
        self.status = new
        return new

    def record_intent(self, gateway_payment_id: str) -> PaymentStatus | None:
        """The gateway accepted the create call and gave its id."""
        self.gateway_payment_id = self.gateway_payment_id or gateway_payment_id
        self.facts.intent_created = True
        self.facts.outcome_unknown = False
        return self._observe()

    def record_outcome_unknown(self) -> None:
        """The create call timed out / kept failing: the janitor must ask the gateway."""
        if not self.facts.intent_created:
            self.facts.outcome_unknown = True

    def apply(self, event: GatewayEvent) -> PaymentStatus | None:
        """Merge a verified gateway event; return the new status when it changed."""
        facts = self.facts
        if event.gateway_payment_id and not self.gateway_payment_id:
            self.gateway_payment_id = event.gateway_payment_id
        match event.kind:
            case GatewayEventKind.PAYMENT_REQUIRES_ACTION:
                facts.requires_action = True
                facts.intent_created = True
            case GatewayEventKind.PAYMENT_PROCESSING | GatewayEventKind.PAYMENT_AUTHORIZED:
                facts.processing = True
                facts.intent_created = True
            case GatewayEventKind.PAYMENT_SUCCEEDED:
                facts.succeeded = True
            case GatewayEventKind.PAYMENT_FAILED:
                facts.failed = True
            case GatewayEventKind.PAYMENT_CANCELED:
                facts.canceled = True
            case GatewayEventKind.REFUND_SUCCEEDED:
                if event.gateway_refund_id and event.amount is not None:
                    facts.refunds[event.gateway_refund_id] = event.amount
                if event.amount_refunded is not None:
                    facts.reported_refunded = max(facts.reported_refunded, event.amount_refunded)
                elif not event.gateway_refund_id and event.amount is not None:
                    # no refund id and no cumulative figure: the event id identifies the refund
                    facts.refunds[f"event:{event.gateway_event_id}"] = event.amount
            case GatewayEventKind.REFUND_FAILED:
                pass  # money stays captured; the refund row records the failure
            case GatewayEventKind.DISPUTE_OPENED:
                self._dispute(event, DisputeState.OPEN)
            case GatewayEventKind.DISPUTE_WON:
                self._dispute(event, DisputeState.WON)
            case GatewayEventKind.DISPUTE_LOST:
                self._dispute(event, DisputeState.LOST)
        return self._observe()

    def _dispute(self, event: GatewayEvent, state: DisputeState) -> None:
        key = event.gateway_dispute_id or event.gateway_payment_id or event.gateway_event_id
        current = self.facts.disputes.get(key)
        if current is None or _DISPUTE_RANK[state] > _DISPUTE_RANK[current]:
            self.facts.disputes[key] = state

    @property
    def amount_refunded(self) -> int:
        return self.facts.refunded_amount()

    @property
    def refundable(self) -> int:
        """What may still be refunded: captured minus confirmed minus in-flight refunds."""
        if self.status not in REFUNDABLE:
            return 0
        return max(self.money.amount - self.amount_refunded - self.pending_refunds, 0)

    def request_refund(self, amount: int | None) -> int:
        """Validate a refund request (None = everything refundable); reserve and return it."""
        if self.status not in REFUNDABLE:
            raise RefundRejected(
                "payment-not-refundable",
                f"payment is {self.status.value}; only a succeeded payment can be refunded",
            )
        wanted = self.refundable if amount is None else amount
        if wanted <= 0:
            raise RefundRejected("invalid-refund-amount", "refund amount must be positive")
        if wanted > self.refundable:
            raise RefundRejected(
                "refund-exceeds-refundable",
                f"refund of {wanted} exceeds the refundable {self.refundable}"
                f" {self.money.currency}",
            )
        self.pending_refunds += wanted
        return wanted

    def settle_refund_request(self, amount: int) -> None:
        """A requested refund was confirmed or failed: it is no longer in flight."""
        self.pending_refunds = max(self.pending_refunds - amount, 0)
