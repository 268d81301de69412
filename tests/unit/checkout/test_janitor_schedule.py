"""The janitor's schedule and its decisions, as pure logic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from checkout.adapters.repository import PaymentRecord
from checkout.domain.payment import Payment, PaymentStatus
from checkout.service_layer.janitor import (
    SOURCE,
    Schedule,
    ScheduleError,
    SyncOutcome,
    attention_reason,
    predicted_status,
    sync_envelopes,
)
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.money import Money

DEFAULT = "60,300,1800,7200,86400"


def record(*, account: str = "eu", outcome_unknown: bool = False) -> PaymentRecord:
    payment = Payment(
        id="pay_1",
        money=Money(1999, "USD"),
        user_id="u_1",
        sku="pro",
        gateway="stripe",
        account=account,
    )
    if outcome_unknown:
        payment.record_outcome_unknown()
    return PaymentRecord(payment=payment)


def event(kind: GatewayEventKind, state: str = "succeeded") -> GatewayEvent:
    return GatewayEvent(
        gateway="stripe",
        gateway_event_id=f"sync:pi_1:{state}",
        kind=kind,
        payment_id="pay_1",
        gateway_payment_id="pi_1",
        amount=1999,
        currency="USD",
        occurred_at=datetime(2026, 11, 25, tzinfo=UTC),
        source="status-sync",
    )


def test_the_default_schedule_walks_one_step_per_sync_and_ends_with_a_verdict() -> None:
    schedule = Schedule.parse(DEFAULT)
    assert schedule.first == timedelta(minutes=1)
    assert schedule.describe() == "1 min, 5 min, 30 min, 2 h, 1 d"
    steps = [schedule.step(made) for made in range(5)]
    assert [s.attempt for s in steps] == [1, 2, 3, 4, 5]
    assert [s.last for s in steps] == [False, False, False, False, True]
    assert [s.next_after for s in steps[:4]] == [
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(days=1),
    ]
    assert steps[4].next_after == schedule.retry_last_after


def test_a_payment_claimed_again_after_its_last_step_is_judged_again() -> None:
    schedule = Schedule.parse("1,2")
    again = schedule.step(2)
    assert (again.attempt, again.last) == (2, True)
    assert schedule.step(7) == again


def test_a_single_step_schedule_judges_at_the_first_sync() -> None:
    step = Schedule.parse(" 0.5 ").step(0)
    assert (step.attempt, step.last) == (1, True)


@pytest.mark.parametrize("text", ["", " , ", "60,abc", "60,0", "-1", "60,nan"])
def test_unusable_schedules_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.parse(text)


def test_sync_findings_carry_the_payments_account_and_the_janitors_source() -> None:
    [envelope] = sync_envelopes(record(account="eu"), [event(GatewayEventKind.PAYMENT_SUCCEEDED)])
    assert envelope.source == SOURCE == "/payrail/checkout/janitor"
    assert envelope.type == "gateway.payment.succeeded"
    assert envelope.data.account == "eu"
    assert envelope.id == "stripe:sync:pi_1:succeeded"  # the same gateway state, the same ce_id
    again = sync_envelopes(record(), [event(GatewayEventKind.PAYMENT_SUCCEEDED)])
    assert again[0].id == envelope.id


def test_the_prediction_does_not_touch_the_payment() -> None:
    current = record()
    found = [event(GatewayEventKind.PAYMENT_SUCCEEDED)]
    assert predicted_status(current, found) is PaymentStatus.SUCCEEDED
    assert current.payment.status is PaymentStatus.INITIATED
    assert predicted_status(current, []) is PaymentStatus.INITIATED


def test_reasons_say_what_a_human_must_look_at() -> None:
    unknown = record(outcome_unknown=True)
    assert attention_reason(unknown, PaymentStatus.INITIATED, SyncOutcome.NOT_FOUND, 5) == (
        "the gateway has no record of the payment after 5 status syncs"
        " and the create call's outcome is unknown"
    )
    assert (
        attention_reason(record(), PaymentStatus.PENDING, SyncOutcome.FOUND, 1)
        == "still pending at the gateway after 1 status sync"
    )
    assert attention_reason(record(), PaymentStatus.PROCESSING, SyncOutcome.ERROR, 3).startswith(
        "the gateway did not answer the last status sync"
    )
    assert attention_reason(
        record(), PaymentStatus.SUCCEEDED, SyncOutcome.FOUND, 5, unsettled_refunds=1
    ) == ("1 refund(s) with an unknown outcome after 5 status syncs")
