"""Stripe-Signature verification and normalization, with headers made by the stripe SDK itself."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
import stripe
from pydantic import SecretStr

from payrail.gateways.base import (
    GatewayAccountConfig,
    MalformedPayload,
    SignatureInvalid,
    SignatureMissing,
    TimestampOutOfTolerance,
)
from payrail.gateways.events import GatewayEventKind
from payrail.gateways.stripe.webhooks import StripeWebhookVerifier
from tests.unit.gateways.webhook_helpers import NOW, assert_rejected, fixed_clock

SECRET = "whsec_current_0123456789abcdef"
OLD_SECRET = "whsec_previous_fedcba9876543210"
T = int(NOW.timestamp())


def verifier(*secrets: str, tolerance: timedelta = timedelta(seconds=300)) -> StripeWebhookVerifier:
    config = GatewayAccountConfig(webhook_secrets=[SecretStr(s) for s in secrets or (SECRET,)])
    return StripeWebhookVerifier(config, account="eu", tolerance=tolerance, clock=fixed_clock)


def event(type_: str, obj: dict[str, Any], event_id: str = "evt_1") -> bytes:
    payload = {
        "id": event_id,
        "object": "event",
        "type": type_,
        "created": T - 2,
        "livemode": False,
        "data": {"object": obj},
    }
    return json.dumps(payload, indent=2).encode()


def intent(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "pi_123",
        "object": "payment_intent",
        "amount": 1999,
        "amount_received": 1999,
        "currency": "usd",
        "status": "succeeded",
        "metadata": {"payrail_payment_id": "pay_abc"},
        **overrides,
    }


def signed(body: bytes, secret: str = SECRET, timestamp: int = T) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp
    )
    return {"stripe-signature": header}


async def test_sdk_signed_event_verifies_and_normalizes() -> None:
    body = event("payment_intent.succeeded", intent())
    headers = signed(body)
    # The SDK's own verifier agrees this is a valid webhook.
    stripe.Webhook.construct_event(body, headers["stripe-signature"], SECRET, tolerance=0)

    [ev] = await verifier().verify(headers, body)

    assert ev.kind is GatewayEventKind.PAYMENT_SUCCEEDED
    assert ev.ce_id == "stripe:evt_1"
    assert ev.account == "eu"
    assert ev.payment_id == "pay_abc"
    assert ev.gateway_payment_id == "pi_123"
    assert (ev.amount, ev.currency) == (1999, "USD")
    assert ev.occurred_at == NOW - timedelta(seconds=2)
    assert ev.raw["data"]["object"]["id"] == "pi_123"
    assert ev.partition_key == "pay_abc"


@pytest.mark.parametrize("name", ["Stripe-Signature", "STRIPE-SIGNATURE", "stripe-signature"])
async def test_header_name_is_case_insensitive(name: str) -> None:
    body = event("payment_intent.succeeded", intent())
    headers = {name: signed(body)["stripe-signature"]}
    assert len(await verifier().verify(headers, body)) == 1


async def test_tampered_body_is_rejected() -> None:
    body = event("payment_intent.succeeded", intent())
    headers = signed(body)
    tampered = body.replace(b"1999", b"1")
    await assert_rejected(verifier(), headers, tampered, SignatureInvalid, SECRET)


async def test_wrong_secret_is_rejected_without_revealing_secrets_or_signatures() -> None:
    body = event("payment_intent.succeeded", intent())
    headers = signed(body, secret="whsec_attacker_guess")
    expected_sig = signed(body)["stripe-signature"].split("v1=")[1]
    await assert_rejected(verifier(), headers, body, SignatureInvalid, SECRET, expected_sig)


@pytest.mark.parametrize("secret", [OLD_SECRET, SECRET])
async def test_rotation_accepts_old_and_new_secret(secret: str) -> None:
    body = event("payment_intent.succeeded", intent())
    events = await verifier(OLD_SECRET, SECRET).verify(signed(body, secret), body)
    assert [e.gateway_event_id for e in events] == ["evt_1"]


async def test_any_v1_in_the_header_may_match() -> None:
    """While Stripe rolls an endpoint secret it sends one v1 per secret."""
    body = event("payment_intent.succeeded", intent())
    other = signed(body, OLD_SECRET)["stripe-signature"].split("v1=")[1]
    header = signed(body)["stripe-signature"].replace("v1=", f"v1={other},v1=")
    assert header.count("v1=") == 2
    assert len(await verifier().verify({"Stripe-Signature": header}, body)) == 1


@pytest.mark.parametrize("age", [301, -301, 3600])
async def test_timestamp_outside_tolerance_is_rejected(age: int) -> None:
    body = event("payment_intent.succeeded", intent())
    await assert_rejected(
        verifier(), signed(body, timestamp=T - age), body, TimestampOutOfTolerance, SECRET
    )


@pytest.mark.parametrize("age", [299, -299])
async def test_timestamp_inside_tolerance_verifies(age: int) -> None:
    body = event("payment_intent.succeeded", intent())
    assert len(await verifier().verify(signed(body, timestamp=T - age), body)) == 1


async def test_tolerance_is_configurable() -> None:
    body = event("payment_intent.succeeded", intent())
    strict = verifier(tolerance=timedelta(seconds=10))
    await assert_rejected(
        strict, signed(body, timestamp=T - 60), body, TimestampOutOfTolerance, SECRET
    )


async def test_missing_header_is_rejected() -> None:
    body = event("payment_intent.succeeded", intent())
    await assert_rejected(
        verifier(), {"content-type": "application/json"}, body, SignatureMissing, SECRET
    )


@pytest.mark.parametrize(
    "header",
    [f"v1={'0' * 64}", f"t={T}", f"t=abc,v1={'0' * 64}", f"t={T},v0={'0' * 64}", "garbage"],
)
async def test_malformed_header_is_rejected(header: str) -> None:
    body = event("payment_intent.succeeded", intent())
    await assert_rejected(verifier(), {"Stripe-Signature": header}, body, SignatureInvalid, SECRET)


async def test_non_ascii_signature_is_rejected_not_crashing() -> None:
    body = event("payment_intent.succeeded", intent())
    await assert_rejected(
        verifier(), {"Stripe-Signature": f"t={T},v1=é{'0' * 63}"}, body, SignatureInvalid, SECRET
    )


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"id": "evt_1", "type": "payment_intent.succeeded"}'],
)
async def test_valid_signature_but_malformed_payload(body: bytes) -> None:
    await assert_rejected(verifier(), signed(body), body, MalformedPayload, SECRET)


async def test_valid_signature_over_non_utf8_bytes_is_malformed_payload() -> None:
    body = b"\xff\xfe"  # the SDK signs str, so sign these bytes by hand
    sig = hmac.new(SECRET.encode(), b"%d." % T + body, hashlib.sha256).hexdigest()
    await assert_rejected(
        verifier(), {"Stripe-Signature": f"t={T},v1={sig}"}, body, MalformedPayload, SECRET, sig
    )


async def test_payload_of_unexpected_shape_is_malformed() -> None:
    body = event("payment_intent.succeeded", intent(amount="19.99", amount_received=None))
    await assert_rejected(verifier(), signed(body), body, MalformedPayload, SECRET)


@pytest.mark.parametrize("type_", ["customer.created", "payment_intent.created", "payout.paid"])
async def test_unused_event_types_verify_to_nothing(type_: str) -> None:
    body = event(type_, {"id": "cus_1", "object": "customer"})
    assert await verifier().verify(signed(body), body) == []


async def test_event_types_are_still_verified_before_being_ignored() -> None:
    body = event("customer.created", {"id": "cus_1"})
    await assert_rejected(verifier(), signed(body, "whsec_wrong"), body, SignatureInvalid, SECRET)


async def test_payment_failed_carries_the_decline() -> None:
    error = {"code": "card_declined", "decline_code": "insufficient_funds", "message": "No money."}
    body = event(
        "payment_intent.payment_failed",
        intent(status="requires_payment_method", amount_received=0, last_payment_error=error),
    )
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is GatewayEventKind.PAYMENT_FAILED
    assert (ev.failure_code, ev.failure_message) == ("insufficient_funds", "No money.")
    assert (ev.amount, ev.payment_id) == (1999, "pay_abc")


async def test_canceled_carries_the_reason() -> None:
    body = event(
        "payment_intent.canceled",
        intent(status="canceled", amount_received=0, cancellation_reason="abandoned"),
    )
    [ev] = await verifier().verify(signed(body), body)
    assert (ev.kind, ev.failure_code) == (GatewayEventKind.PAYMENT_CANCELED, "abandoned")


@pytest.mark.parametrize(
    ("type_", "kind"),
    [
        ("payment_intent.processing", GatewayEventKind.PAYMENT_PROCESSING),
        ("payment_intent.requires_action", GatewayEventKind.PAYMENT_REQUIRES_ACTION),
    ],
)
async def test_intermediate_states(type_: str, kind: GatewayEventKind) -> None:
    body = event(type_, intent(amount_received=0, currency="jpy", amount=500))
    [ev] = await verifier().verify(signed(body), body)
    assert (ev.kind, ev.amount, ev.currency) == (kind, 500, "JPY")


async def test_manual_capture_authorization_awaits_capture() -> None:
    body = event(
        "payment_intent.amount_capturable_updated",
        intent(status="requires_capture", amount=2000, amount_received=0, amount_capturable=1500),
    )
    [ev] = await verifier().verify(signed(body), body)
    assert (ev.kind, ev.amount, ev.gateway_payment_id) == (
        GatewayEventKind.PAYMENT_AUTHORIZED,
        1500,
        "pi_123",
    )


async def test_intent_without_payrail_metadata_falls_back_to_the_intent_id() -> None:
    body = event("payment_intent.succeeded", intent(metadata={}))
    [ev] = await verifier().verify(signed(body), body)
    assert ev.payment_id is None
    assert ev.partition_key == "pi_123"


async def test_succeeded_amount_is_what_was_received() -> None:
    body = event("payment_intent.succeeded", intent(amount=2000, amount_received=1500))
    [ev] = await verifier().verify(signed(body), body)
    assert ev.amount == 1500


def charge(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "ch_1",
        "object": "charge",
        "amount": 5000,
        "amount_refunded": 3000,
        "currency": "eur",
        "payment_intent": "pi_123",
        "metadata": {"payrail_payment_id": "pay_abc"},
        **overrides,
    }


async def test_charge_refunded_carries_the_cumulative_amount() -> None:
    body = event("charge.refunded", charge(), event_id="evt_refund")
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is GatewayEventKind.REFUND_SUCCEEDED
    assert (ev.amount_refunded, ev.currency) == (3000, "EUR")
    assert (ev.amount, ev.gateway_refund_id) == (None, None)
    assert (ev.payment_id, ev.gateway_payment_id) == ("pay_abc", "pi_123")


async def test_charge_refunded_with_embedded_refunds_names_the_newest() -> None:
    refunds = {
        "object": "list",
        "data": [{"id": "re_2", "amount": 1000}, {"id": "re_1", "amount": 2000}],
    }
    body = event("charge.refunded", charge(refunds=refunds, metadata={}))
    [ev] = await verifier().verify(signed(body), body)
    assert (ev.gateway_refund_id, ev.amount, ev.amount_refunded) == ("re_2", 1000, 3000)
    assert ev.payment_id is None


async def test_refund_failed() -> None:
    refund = {
        "id": "re_9",
        "object": "refund",
        "amount": 700,
        "currency": "gbp",
        "charge": "ch_1",
        "payment_intent": "pi_123",
        "status": "failed",
        "failure_reason": "expired_or_canceled_card",
        "metadata": {"payrail_payment_id": "pay_abc"},
    }
    body = event("refund.failed", refund)
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is GatewayEventKind.REFUND_FAILED
    assert (ev.gateway_refund_id, ev.amount, ev.currency) == ("re_9", 700, "GBP")
    assert (ev.failure_code, ev.gateway_payment_id) == ("expired_or_canceled_card", "pi_123")


def dispute(status: str) -> dict[str, Any]:
    return {
        "id": "dp_1",
        "object": "dispute",
        "amount": 5000,
        "currency": "usd",
        "charge": "ch_1",
        "payment_intent": "pi_123",
        "status": status,
        "reason": "fraudulent",
        "metadata": {},
    }


@pytest.mark.parametrize(
    ("type_", "status", "kind"),
    [
        ("charge.dispute.created", "needs_response", GatewayEventKind.DISPUTE_OPENED),
        ("charge.dispute.closed", "won", GatewayEventKind.DISPUTE_WON),
        ("charge.dispute.closed", "warning_closed", GatewayEventKind.DISPUTE_WON),
        ("charge.dispute.closed", "lost", GatewayEventKind.DISPUTE_LOST),
    ],
)
async def test_disputes(type_: str, status: str, kind: GatewayEventKind) -> None:
    body = event(type_, dispute(status))
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is kind
    assert (ev.gateway_dispute_id, ev.gateway_payment_id, ev.amount) == ("dp_1", "pi_123", 5000)


async def test_dispute_closed_with_an_open_status_is_not_used() -> None:
    body = event("charge.dispute.closed", dispute("under_review"))
    assert await verifier().verify(signed(body), body) == []


def test_an_account_without_secrets_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="no webhook secret"):
        StripeWebhookVerifier(GatewayAccountConfig(), account="default")


def test_a_blank_secret_is_a_configuration_error_that_does_not_echo_it() -> None:
    config = GatewayAccountConfig(webhook_secrets=[SecretStr(SECRET), SecretStr("  ")])
    with pytest.raises(ValueError, match="#2 is empty") as info:
        StripeWebhookVerifier(config, account="default")
    assert SECRET not in str(info.value)
