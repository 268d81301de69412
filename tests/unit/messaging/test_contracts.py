"""Event contracts: money stays integral, currencies are real, every event type is registered."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from payrail.contracts import (
    CONTRACTS,
    GatewayEvent,
    GatewayEventKind,
    LifecycleEventType,
    PaymentIntentRequested,
    PaymentLifecycle,
    UnknownEventType,
    contract_for,
    dlt_topic,
    retry_topic,
    split_group_topic,
)

INTENT = {
    "payment_id": "pay_1",
    "amount": 1999,
    "currency": "jpy",
    "user_id": "u_1",
    "sku": "pro",
    "gateway": "stripe",
}


def test_amounts_must_be_integers_of_minor_units() -> None:
    for amount in (19.99, 1999.0, "1999", True):
        with pytest.raises(ValidationError):
            PaymentIntentRequested.model_validate({**INTENT, "amount": amount})
    with pytest.raises(ValidationError):
        PaymentIntentRequested.model_validate_json('{"payment_id": "p", "amount": 1999.0}')


def test_currencies_are_validated_and_upper_cased() -> None:
    assert PaymentIntentRequested.model_validate(INTENT).currency == "JPY"
    with pytest.raises(ValidationError):
        PaymentIntentRequested.model_validate({**INTENT, "currency": "XYZ"})


def test_fields_added_by_a_newer_producer_are_ignored() -> None:
    newer = PaymentIntentRequested.model_validate({**INTENT, "loyalty_points": 10})
    assert "loyalty_points" not in newer.model_dump()


def test_every_event_type_has_a_contract() -> None:
    for kind in GatewayEventKind:
        assert contract_for(f"gateway.{kind.value}") is GatewayEvent
    for event in LifecycleEventType:
        assert contract_for(event.value) is PaymentLifecycle
    assert {"entitlement.granted", "entitlement.revoked", "reconciliation.discrepancy"} <= set(
        CONTRACTS
    )
    with pytest.raises(UnknownEventType):
        contract_for("payment.teleported")


def test_retry_and_dead_letter_topics_are_per_group_and_split_back() -> None:
    assert dlt_topic("payments.lifecycle", "entitlements") == "payments.lifecycle.entitlements.dlt"
    assert retry_topic("payments.lifecycle", "entitlements") == (
        "payments.lifecycle.entitlements.retry"
    )
    assert split_group_topic("payments.gateway-events.checkout.dlt") == (
        "payments.gateway-events",
        "checkout",
        "dlt",
    )
    for not_ours in ("payments.lifecycle", "a.b.c.dlq", ".g.dlt"):
        with pytest.raises(ValueError, match="is not a"):
            split_group_topic(not_ours)
    with pytest.raises(ValueError, match="no dots"):
        dlt_topic("payments.lifecycle", "entitle.ments")
