"""The access rules: what each lifecycle event does to a payment's access, in any order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitlements.domain import (
    AccessState,
    Effect,
    Policy,
    Verdict,
    classify,
    decide,
    moves,
)
from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle

KEEP = Policy()
STRICT = Policy(revoke_on_partial_refund=True)

#: (ce_type, status, amount_refunded) as checkout publishes them for a 1999-cent payment
EVENTS = {
    "created": (LifecycleEventType.CREATED, "initiated", 0),
    "processing": (LifecycleEventType.PROCESSING, "processing", 0),
    "succeeded": (LifecycleEventType.SUCCEEDED, "succeeded", 0),
    "failed": (LifecycleEventType.FAILED, "failed", 0),
    "canceled": (LifecycleEventType.CANCELED, "canceled", 0),
    "partial": (LifecycleEventType.PARTIALLY_REFUNDED, "partially_refunded", 500),
    "refunded": (LifecycleEventType.REFUNDED, "refunded", 1999),
    "dispute_opened": (LifecycleEventType.DISPUTE_OPENED, "disputed", 0),
    "dispute_won": (LifecycleEventType.DISPUTE_WON, "dispute_won", 0),
    "dispute_lost": (LifecycleEventType.DISPUTE_LOST, "dispute_lost", 0),
}


def payment(status: str, amount_refunded: int = 0) -> PaymentLifecycle:
    return PaymentLifecycle(
        payment_id="pay_1",
        status=status,
        amount=1999,
        currency="USD",
        amount_refunded=amount_refunded,
        user_id="u_1",
        sku="pro-monthly",
        gateway="stripe",
        occurred_at=datetime(2026, 11, 25, tzinfo=UTC),
    )


def verdict(name: str, policy: Policy = KEEP) -> Verdict:
    kind, status, refunded = EVENTS[name]
    return classify(kind, payment(status, refunded), policy)


def run(names: list[str], policy: Policy = KEEP) -> tuple[AccessState, list[Effect]]:
    state, effects = AccessState.PENDING, []
    for name in names:
        decision = decide(state, verdict(name, policy))
        state = decision.state
        effects.append(decision.effect)
    return state, [e for e in effects if e is not Effect.NONE]


@pytest.mark.parametrize(
    ("names", "state", "effects"),
    [
        (["created", "processing", "succeeded"], AccessState.GRANTED, [Effect.GRANT]),
        (["succeeded"] * 5, AccessState.GRANTED, [Effect.GRANT]),
        (["succeeded", "refunded"], AccessState.REVOKED, [Effect.GRANT, Effect.REVOKE]),
        (["succeeded", "dispute_opened", "dispute_lost"], AccessState.REVOKED,
         [Effect.GRANT, Effect.REVOKE]),
        (["succeeded", "dispute_opened", "dispute_won"], AccessState.GRANTED, [Effect.GRANT]),
        (["succeeded", "partial"], AccessState.GRANTED, [Effect.GRANT]),
        (["refunded", "succeeded"], AccessState.DENIED, []),
        (["failed", "succeeded"], AccessState.DENIED, []),
        (["canceled", "succeeded"], AccessState.DENIED, []),
        (["dispute_lost", "succeeded"], AccessState.DENIED, []),
        # a late failure never overrides a confirmed success
        (["succeeded", "failed"], AccessState.GRANTED, [Effect.GRANT]),
        # a revocation is final: a late success or dispute win does not grant again
        (["succeeded", "refunded", "succeeded", "dispute_won"], AccessState.REVOKED,
         [Effect.GRANT, Effect.REVOKE]),
        (["processing", "dispute_opened"], AccessState.PENDING, []),
    ],
)  # fmt: skip
def test_lifecycles(names: list[str], state: AccessState, effects: list[Effect]) -> None:
    assert run(names) == (state, effects)


def test_partial_refund_revokes_only_when_configured() -> None:
    assert run(["succeeded", "partial"], STRICT) == (
        AccessState.REVOKED,
        [Effect.GRANT, Effect.REVOKE],
    )
    assert run(["partial", "succeeded"], STRICT) == (AccessState.DENIED, [])
    # kept partial refunds neither grant nor deny: the success decides
    assert run(["partial", "succeeded"], KEEP) == (AccessState.GRANTED, [Effect.GRANT])


def test_the_whole_state_counts_not_only_the_event_type() -> None:
    # a success carried by another event type (e.g. a dispute closed in the merchant's favour)
    won = payment("dispute_won")
    assert classify(LifecycleEventType.DISPUTE_WON, won, KEEP) is Verdict.CONFIRMS
    attention = payment("succeeded")
    assert classify(LifecycleEventType.NEEDS_ATTENTION, attention, KEEP) is Verdict.CONFIRMS
    # a partial-refund event whose amounts say everything went back is a full refund
    full = payment("partially_refunded", amount_refunded=1999)
    assert classify(LifecycleEventType.PARTIALLY_REFUNDED, full, KEEP) is Verdict.ENDS
    # a success event whose state is already refunded (the refund overtook it) ends access
    overtaken = payment("refunded", 1999)
    assert classify(LifecycleEventType.SUCCEEDED, overtaken, KEEP) is Verdict.ENDS
    # a late "failed" carrying the succeeded state confirms
    assert classify(LifecycleEventType.FAILED, payment("succeeded"), KEEP) is Verdict.CONFIRMS


@given(
    names=st.lists(st.sampled_from(sorted(EVENTS)), max_size=12),
    strict=st.booleans(),
)
def test_any_order_grants_at_most_once_and_only_before_any_refund_or_failure(
    names: list[str], strict: bool
) -> None:
    policy = STRICT if strict else KEEP
    state, effects = run(names, policy)
    assert effects in ([], [Effect.GRANT], [Effect.GRANT, Effect.REVOKE])
    verdicts = [verdict(name, policy) for name in names]
    decisive = [v for v in verdicts if v is not Verdict.NEUTRAL]
    if decisive and decisive[0] in (Verdict.ENDS, Verdict.NEVER_PAID):
        assert state is AccessState.DENIED
    if Effect.GRANT in effects:
        assert decisive[0] is Verdict.CONFIRMS
    if state.is_final:
        # nothing that arrives later changes a final state
        for name in EVENTS:
            assert decide(state, verdict(name, policy)).state is state


@pytest.mark.parametrize("name", sorted(EVENTS))
@pytest.mark.parametrize("policy", [KEEP, STRICT])
def test_moves_are_the_decisions_for_every_state(name: str, policy: Policy) -> None:
    # the store applies a verdict's moves to whatever state the database holds, and tells a
    # grant or a revocation by the state the move ended in
    planned = moves(verdict(name, policy))
    for state in AccessState:
        decision = decide(state, verdict(name, policy))
        assert planned.next.get(state, state) is decision.state
        if decision.effect is Effect.GRANT:
            assert planned.granting is decision.state
        elif decision.effect is Effect.REVOKE:
            assert planned.revoking is decision.state
        elif decision.state is not state:  # a move without a grant change
            assert decision.state not in (planned.granting, planned.revoking)
