"""The payment state machine: monotonic, order- and duplicate-independent, refunds bounded."""

from __future__ import annotations

import contextlib
import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkout.domain.payment import Payment, PaymentStatus, RefundRejected
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.money import Money

AMOUNT = 1000
K = GatewayEventKind


def event(kind: GatewayEventKind, n: int = 0, **fields: object) -> GatewayEvent:
    return GatewayEvent(
        gateway="stripe",
        gateway_event_id=f"evt_{kind.value}_{n}",
        kind=kind,
        payment_id="pay_1",
        gateway_payment_id="pi_1",
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        **fields,
    )


def new_payment() -> Payment:
    return Payment(
        id="pay_1", money=Money(AMOUNT, "USD"), user_id="u_1", sku="pro", gateway="stripe"
    )


def replay(events: list[GatewayEvent]) -> tuple[Payment, list[PaymentStatus]]:
    payment = new_payment()
    changes = [s for e in events if (s := payment.apply(e)) is not None]
    return payment, changes


def test_happy_path_walks_the_documented_states() -> None:
    payment = new_payment()
    assert payment.status is PaymentStatus.INITIATED
    assert payment.record_intent("pi_1") is PaymentStatus.PENDING
    assert payment.apply(event(K.PAYMENT_PROCESSING)) is PaymentStatus.PROCESSING
    assert payment.apply(event(K.PAYMENT_SUCCEEDED)) is PaymentStatus.SUCCEEDED
    refund = event(K.REFUND_SUCCEEDED, 1, amount=300, gateway_refund_id="re_1")
    assert payment.apply(refund) is PaymentStatus.PARTIALLY_REFUNDED
    assert payment.apply(refund) is None  # the same refund twice changes nothing
    last = event(K.REFUND_SUCCEEDED, 2, amount=700, gateway_refund_id="re_2")
    assert payment.apply(last) is PaymentStatus.REFUNDED
    assert payment.amount_refunded == AMOUNT


def test_a_late_failure_never_overrides_success() -> None:
    payment, changes = replay([event(K.PAYMENT_SUCCEEDED), event(K.PAYMENT_FAILED)])
    assert payment.status is PaymentStatus.SUCCEEDED
    assert changes == [PaymentStatus.SUCCEEDED]


def test_a_refund_seen_before_the_success_ends_refunded_without_passing_through_succeeded() -> None:
    refund = event(K.REFUND_SUCCEEDED, amount=AMOUNT, gateway_refund_id="re_1")
    payment, changes = replay([refund, event(K.PAYMENT_SUCCEEDED)])
    assert payment.status is PaymentStatus.REFUNDED
    assert PaymentStatus.SUCCEEDED not in changes


def test_dispute_lost_wins_over_everything_and_won_restores_captured_state() -> None:
    opened = event(K.DISPUTE_OPENED, gateway_dispute_id="dp_1")
    payment, _ = replay([event(K.PAYMENT_SUCCEEDED), opened])
    assert payment.status is PaymentStatus.DISPUTED
    assert (
        payment.apply(event(K.DISPUTE_WON, gateway_dispute_id="dp_1")) is PaymentStatus.DISPUTE_WON
    )
    assert (
        payment.apply(event(K.DISPUTE_LOST, gateway_dispute_id="dp_1"))
        is PaymentStatus.DISPUTE_LOST
    )
    assert payment.apply(opened) is None


def test_timeout_is_unknown_not_failed() -> None:
    payment = new_payment()
    payment.record_outcome_unknown()
    assert payment.status is PaymentStatus.INITIATED
    assert payment.facts.outcome_unknown
    assert payment.record_intent("pi_1") is PaymentStatus.PENDING
    assert not payment.facts.outcome_unknown


def test_refund_rules() -> None:
    payment = new_payment()
    with pytest.raises(RefundRejected) as not_refundable:
        payment.request_refund(100)
    assert not_refundable.value.reason == "payment-not-refundable"
    payment.apply(event(K.PAYMENT_SUCCEEDED))
    assert payment.request_refund(600) == 600
    with pytest.raises(RefundRejected) as too_much:
        payment.request_refund(500)  # 600 already in flight
    assert too_much.value.reason == "refund-exceeds-refundable"
    assert payment.request_refund(None) == 400
    with pytest.raises(RefundRejected):
        payment.request_refund(1)


# --------------------------------------------------------------------------- properties

EVENTS = [
    event(K.PAYMENT_REQUIRES_ACTION),
    event(K.PAYMENT_PROCESSING),
    event(K.PAYMENT_SUCCEEDED),
    event(K.PAYMENT_FAILED),
    event(K.PAYMENT_CANCELED),
    event(K.REFUND_SUCCEEDED, 1, amount=250, gateway_refund_id="re_1"),
    event(K.REFUND_SUCCEEDED, 2, amount=750, gateway_refund_id="re_2", amount_refunded=1000),
    event(K.REFUND_SUCCEEDED, 3, amount=250, amount_refunded=250),
    event(K.DISPUTE_OPENED, gateway_dispute_id="dp_1"),
    event(K.DISPUTE_WON, gateway_dispute_id="dp_1"),
    event(K.DISPUTE_LOST, gateway_dispute_id="dp_2"),
]


@settings(max_examples=400)
@given(
    st.lists(st.sampled_from(EVENTS), min_size=1, max_size=12).flatmap(
        lambda evs: st.tuples(st.just(evs), st.permutations(evs + evs[: len(evs) // 2]))
    )
)
def test_any_order_and_duplication_gives_the_same_final_state(
    case: tuple[list[GatewayEvent], list[GatewayEvent]],
) -> None:
    original, shuffled_with_duplicates = case
    first, _ = replay(original)
    second, _ = replay(list(shuffled_with_duplicates))
    assert first.status is second.status
    assert first.amount_refunded == second.amount_refunded


@given(st.lists(st.sampled_from(EVENTS), max_size=12))
def test_transitions_never_repeat_a_status_twice_in_a_row(events: list[GatewayEvent]) -> None:
    _, changes = replay(events)
    assert all(a is not b for a, b in itertools.pairwise(changes))


@given(st.lists(st.one_of(st.none(), st.integers(min_value=-5, max_value=1500)), max_size=10))
def test_refund_requests_never_exceed_what_was_captured(requests: list[int | None]) -> None:
    payment = new_payment()
    payment.apply(event(K.PAYMENT_SUCCEEDED))
    granted = 0
    for amount in requests:
        with contextlib.suppress(RefundRejected):
            granted += payment.request_refund(amount)
        assert granted <= AMOUNT
        assert payment.refundable == AMOUNT - granted
