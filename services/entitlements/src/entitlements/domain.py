"""The access decision: what one ``payments.lifecycle`` event means for a payment's access.

Pure logic, no I/O: the consumer reads the payment's current :class:`AccessState`, asks
:func:`decide` what the event changes, and writes the answer in the same transaction.

Every lifecycle event carries the payment's whole state, so an event is judged by its type
*and* by the status it carries (checkout's vocabulary, see ``checkout.domain.payment``). A
judgement is one of four :class:`Verdict` values, the strongest signal winning:

* ``ends`` - the money went back: a full refund (``payment.refunded``, status ``refunded``, or
  ``amount_refunded >= amount``), a lost dispute, and a partial refund when the policy says so;
* ``confirms`` - the gateway confirmed the money: ``payment.succeeded`` or a status of
  ``succeeded`` / ``dispute_won`` carried by any event;
* ``never_paid`` - the payment failed or was canceled;
* ``neutral`` - anything else (created, pending, an opened dispute, a kept partial refund).

Access is a small monotonic state machine; events may arrive late, twice or out of order (a
dead letter replayed days later), so nothing ever moves a payment backwards:

    pending --confirms--> granted --ends--> revoked
    pending --ends / never_paid--> denied

``revoked`` and ``denied`` are final. A refund or failure seen before (or without) the success
therefore denies the payment for good: a ``payment.succeeded`` arriving afterwards grants
nothing. A ``never_paid`` verdict after the grant changes nothing (a late ``failed`` never
overrides a confirmed success), and a kept partial refund leaves access alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle


class AccessState(StrEnum):
    """What ``GET /v1/payments/{id}/access`` answers."""

    #: nothing decided yet (or never heard of the payment)
    PENDING = "pending"
    #: the sku is the user's
    GRANTED = "granted"
    #: it was granted, then the money went back (full refund, lost dispute)
    REVOKED = "revoked"
    #: the payment failed, was canceled, or its money went back before it was ever confirmed
    DENIED = "denied"

    @property
    def is_final(self) -> bool:
        return self in (AccessState.REVOKED, AccessState.DENIED)


class Verdict(StrEnum):
    """What one lifecycle event says about access (strongest first)."""

    ENDS = "ends"
    CONFIRMS = "confirms"
    NEVER_PAID = "never_paid"
    NEUTRAL = "neutral"


class Effect(StrEnum):
    """The entitlement change a decision makes (each one is announced on entitlements.events)."""

    NONE = "none"
    GRANT = "grant"
    REVOKE = "revoke"


@dataclass(frozen=True, slots=True)
class Policy:
    """The configurable part of the rules."""

    #: a partial refund ends access like a full one (default: the customer keeps it)
    revoke_on_partial_refund: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    state: AccessState
    effect: Effect


_CONFIRMED_STATUSES = frozenset({"succeeded", "dispute_won"})
_ENDED_STATUSES = frozenset({"refunded", "dispute_lost"})
_NEVER_PAID_STATUSES = frozenset({"failed", "canceled"})
_ENDING_TYPES = frozenset({LifecycleEventType.REFUNDED, LifecycleEventType.DISPUTE_LOST})
_CONFIRMING_TYPES = frozenset({LifecycleEventType.SUCCEEDED, LifecycleEventType.DISPUTE_WON})
_NEVER_PAID_TYPES = frozenset({LifecycleEventType.FAILED, LifecycleEventType.CANCELED})
_PARTIAL = "partially_refunded"


def classify(event_type: str, payment: PaymentLifecycle, policy: Policy) -> Verdict:
    """The verdict of one event (``event_type`` is its ``ce_type``)."""
    status = payment.status
    fully_refunded = payment.amount > 0 and payment.amount_refunded >= payment.amount
    partial = event_type == LifecycleEventType.PARTIALLY_REFUNDED or status == _PARTIAL
    if (
        event_type in _ENDING_TYPES
        or status in _ENDED_STATUSES
        or fully_refunded
        or (partial and policy.revoke_on_partial_refund)
    ):
        return Verdict.ENDS
    if event_type in _CONFIRMING_TYPES or status in _CONFIRMED_STATUSES:
        return Verdict.CONFIRMS
    if event_type in _NEVER_PAID_TYPES or status in _NEVER_PAID_STATUSES:
        return Verdict.NEVER_PAID
    return Verdict.NEUTRAL


def decide(current: AccessState, verdict: Verdict) -> Decision:
    """The next access state of a payment in ``current`` state after an event of ``verdict``."""
    if current is AccessState.PENDING:
        if verdict is Verdict.CONFIRMS:
            return Decision(AccessState.GRANTED, Effect.GRANT)
        if verdict in (Verdict.ENDS, Verdict.NEVER_PAID):
            return Decision(AccessState.DENIED, Effect.NONE)
    elif current is AccessState.GRANTED and verdict is Verdict.ENDS:
        return Decision(AccessState.REVOKED, Effect.REVOKE)
    return Decision(current, Effect.NONE)


@dataclass(frozen=True, slots=True)
class Moves:
    """What one verdict does to a payment in whichever state the database holds it: the store
    applies it in one statement, before anyone in Python knows the state (see
    :meth:`entitlements.store.AccessStore.decide`)."""

    #: state -> next state, for the states the verdict changes
    next: dict[AccessState, AccessState]
    #: the state a grant / a revocation moves the payment into (None: the verdict makes none,
    #: and it makes at most one of the two); no other move reaches that state, so the store
    #: tells the grant change by the state a move ended in
    granting: AccessState | None
    revoking: AccessState | None


def moves(verdict: Verdict) -> Moves:
    """:func:`decide` for every state at once."""
    nxt: dict[AccessState, AccessState] = {}
    effect_into: dict[AccessState, Effect] = {}
    for state in AccessState:
        decision = decide(state, verdict)
        if decision.state is state:
            continue
        nxt[state] = decision.state
        if effect_into.setdefault(decision.state, decision.effect) is not decision.effect:
            raise ValueError(f"moves into {decision.state} make different effects")
    ending = {
        effect: [state for state, made in effect_into.items() if made is effect]
        for effect in (Effect.GRANT, Effect.REVOKE)
    }
    if any(len(states) > 1 for states in ending.values()) or all(ending.values()):
        raise ValueError(f"a verdict's grant change must end in one state: {ending}")
    granting, revoking = ending[Effect.GRANT], ending[Effect.REVOKE]
    return Moves(nxt, granting[0] if granting else None, revoking[0] if revoking else None)
