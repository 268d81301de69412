"""X-Razorpay-Signature verification and normalization, cross-checked with the razorpay SDK."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from pydantic import SecretStr
from razorpay.errors import SignatureVerificationError
from razorpay.utility.utility import Utility

from payrail.gateways.base import (
    GatewayAccountConfig,
    MalformedPayload,
    SignatureInvalid,
    SignatureMissing,
)
from payrail.gateways.events import GatewayEventKind
from payrail.gateways.razorpay.webhooks import RazorpayWebhookVerifier
from tests.unit.gateways.webhook_helpers import NOW, assert_rejected

SECRET = "rzp-webhook-secret-current"
OLD_SECRET = "rzp-webhook-secret-previous"
CREATED = int(NOW.timestamp())


def verifier(*secrets: str) -> RazorpayWebhookVerifier:
    config = GatewayAccountConfig(webhook_secrets=[SecretStr(s) for s in secrets or (SECRET,)])
    return RazorpayWebhookVerifier(config, account="in")


def payment(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "pay_FHf9a7AO0iXM9I",
        "entity": "payment",
        "amount": 50000,
        "currency": "INR",
        "status": "captured",
        "order_id": "order_FHf8XxU0nDhA5o",
        "notes": {"payrail_payment_id": "pay_abc"},
        "amount_refunded": 0,
        "error_code": None,
        "error_description": None,
        "created_at": CREATED - 30,
        **overrides,
    }


def event(name: str, **entities: dict[str, Any]) -> bytes:
    body = {
        "entity": "event",
        "account_id": "acc_BFQ7uQEaa7j2z7",
        "event": name,
        "contains": list(entities),
        "payload": {key: {"entity": value} for key, value in entities.items()},
        "created_at": CREATED,
    }
    return json.dumps(body).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # The SDK's own verification utility agrees with the signature we send.
    assert Utility().verify_webhook_signature(body.decode(), signature, secret)
    return signature


def signed(body: bytes, secret: str = SECRET, event_id: str = "Fq4wRW8Ri3zqZK") -> dict[str, str]:
    return {"X-Razorpay-Signature": sign(body, secret), "X-Razorpay-Event-Id": event_id}


async def test_signed_capture_verifies_and_normalizes() -> None:
    body = event("payment.captured", payment=payment())
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is GatewayEventKind.PAYMENT_SUCCEEDED
    assert ev.ce_id == "razorpay:Fq4wRW8Ri3zqZK"
    assert (ev.payment_id, ev.gateway_payment_id) == ("pay_abc", "order_FHf8XxU0nDhA5o")
    assert (ev.amount, ev.currency) == (50000, "INR")
    assert ev.occurred_at == NOW
    assert ev.account == "in"
    assert ev.raw["payload"]["payment"]["entity"]["id"] == "pay_FHf9a7AO0iXM9I"


async def test_lower_case_headers_as_asgi_delivers_them() -> None:
    body = event("payment.captured", payment=payment())
    headers = {k.lower(): v for k, v in signed(body).items()}
    assert len(await verifier().verify(headers, body)) == 1


async def test_tampered_body_is_rejected_and_the_sdk_agrees() -> None:
    body = event("payment.captured", payment=payment())
    headers = signed(body)
    tampered = body.replace(b"50000", b"5")
    with pytest.raises(SignatureVerificationError):
        Utility().verify_webhook_signature(
            tampered.decode(), headers["X-Razorpay-Signature"], SECRET
        )
    await assert_rejected(verifier(), headers, tampered, SignatureInvalid, SECRET)


async def test_wrong_secret_is_rejected_without_showing_the_expected_signature() -> None:
    body = event("payment.captured", payment=payment())
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    await assert_rejected(
        verifier(), signed(body, "guess"), body, SignatureInvalid, SECRET, expected
    )


@pytest.mark.parametrize("secret", [OLD_SECRET, SECRET])
async def test_rotation_accepts_old_and_new_secret(secret: str) -> None:
    body = event("payment.captured", payment=payment())
    assert len(await verifier(OLD_SECRET, SECRET).verify(signed(body, secret), body)) == 1


async def test_missing_signature_is_rejected() -> None:
    body = event("payment.captured", payment=payment())
    await assert_rejected(verifier(), {"X-Razorpay-Event-Id": "e1"}, body, SignatureMissing, SECRET)


async def test_missing_event_id_on_a_verified_body_is_malformed() -> None:
    body = event("payment.captured", payment=payment())
    headers = {"X-Razorpay-Signature": sign(body)}
    await assert_rejected(verifier(), headers, body, MalformedPayload, SECRET)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"event": "payment.captured"}',
        b'{"event": "payment.captured", "created_at": 1, "payload": {}}',
        b'{"event": "payment.captured", "created_at": 1, "payload": {"payment": []}}',
    ],
)
async def test_valid_signature_but_malformed_payload(body: bytes) -> None:
    await assert_rejected(verifier(), signed(body), body, MalformedPayload, SECRET)


@pytest.mark.parametrize(
    "name", ["payment.downtime.started", "subscription.charged", "order.notification.delivered"]
)
async def test_unused_event_types_verify_to_nothing(name: str) -> None:
    body = event(name, payment=payment())
    assert await verifier().verify(signed(body), body) == []


async def test_authorized_awaits_capture() -> None:
    body = event("payment.authorized", payment=payment(status="authorized"))
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is GatewayEventKind.PAYMENT_AUTHORIZED
    assert (ev.gateway_payment_id, ev.amount) == ("order_FHf8XxU0nDhA5o", 50000)


async def test_failed_carries_the_error() -> None:
    body = event(
        "payment.failed",
        payment=payment(
            status="failed", error_code="BAD_REQUEST_ERROR", error_description="Card declined"
        ),
    )
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is GatewayEventKind.PAYMENT_FAILED
    assert (ev.failure_code, ev.failure_message) == ("BAD_REQUEST_ERROR", "Card declined")


async def test_order_paid_takes_the_payment_id_from_the_order_notes() -> None:
    """Razorpay does not copy order notes onto the payment; order.paid carries both."""
    order = {
        "id": "order_FHf8XxU0nDhA5o",
        "entity": "order",
        "amount": 50000,
        "amount_paid": 50000,
        "currency": "INR",
        "status": "paid",
        "notes": {"payrail_payment_id": "pay_from_order"},
    }
    body = event("order.paid", payment=payment(notes=[]), order=order)
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is GatewayEventKind.PAYMENT_SUCCEEDED
    assert (ev.payment_id, ev.gateway_payment_id, ev.amount) == (
        "pay_from_order",
        "order_FHf8XxU0nDhA5o",
        50000,
    )


async def test_order_paid_without_a_payment_entity_uses_amount_paid() -> None:
    order = {"id": "order_X", "amount": 900, "amount_paid": 700, "currency": "INR", "notes": []}
    body = event("order.paid", order=order)
    [ev] = await verifier().verify(signed(body), body)
    assert (ev.payment_id, ev.gateway_payment_id, ev.amount) == (None, "order_X", 700)


async def test_payment_without_an_order_is_known_by_its_own_id() -> None:
    body = event("payment.captured", payment=payment(order_id=None, notes=[]))
    [ev] = await verifier().verify(signed(body), body)
    assert ev.gateway_payment_id == "pay_FHf9a7AO0iXM9I"
    assert ev.partition_key == "pay_FHf9a7AO0iXM9I"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("refund.processed", GatewayEventKind.REFUND_SUCCEEDED),
        ("refund.failed", GatewayEventKind.REFUND_FAILED),
    ],
)
async def test_refunds(name: str, kind: GatewayEventKind) -> None:
    refund = {
        "id": "rfnd_FP8QHiV938haTz",
        "entity": "refund",
        "amount": 20000,
        "currency": "INR",
        "payment_id": "pay_FHf9a7AO0iXM9I",
        "notes": [],
        "status": "processed",
    }
    body = event(name, refund=refund, payment=payment(amount_refunded=30000))
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is kind
    assert (ev.gateway_refund_id, ev.amount, ev.amount_refunded) == (
        "rfnd_FP8QHiV938haTz",
        20000,
        30000,
    )
    assert (ev.payment_id, ev.gateway_payment_id) == ("pay_abc", "order_FHf8XxU0nDhA5o")


async def test_refund_without_the_payment_entity_names_the_payment() -> None:
    refund = {
        "id": "rfnd_1",
        "amount": 100,
        "currency": "INR",
        "payment_id": "pay_Z",
        "notes": {"payrail_payment_id": "pay_abc"},
    }
    body = event("refund.processed", refund=refund)
    [ev] = await verifier().verify(signed(body), body)
    assert (ev.payment_id, ev.gateway_payment_id, ev.amount_refunded) == ("pay_abc", "pay_Z", None)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("payment.dispute.created", GatewayEventKind.DISPUTE_OPENED),
        ("payment.dispute.won", GatewayEventKind.DISPUTE_WON),
        ("payment.dispute.lost", GatewayEventKind.DISPUTE_LOST),
    ],
)
async def test_disputes(name: str, kind: GatewayEventKind) -> None:
    dispute = {
        "id": "disp_Esz7KAitoYM7PJ",
        "entity": "dispute",
        "payment_id": "pay_FHf9a7AO0iXM9I",
        "amount": 10000,
        "currency": "INR",
        "phase": "chargeback",
        "status": "open",
    }
    body = event(name, payment=payment(), dispute=dispute)
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is kind
    assert (ev.gateway_dispute_id, ev.amount, ev.payment_id) == (
        "disp_Esz7KAitoYM7PJ",
        10000,
        "pay_abc",
    )
