"""Adyen notification HMAC verification and normalization, signed by the Adyen library's util."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from Adyen.util import generate_notification_sig, is_valid_hmac_notification
from pydantic import SecretStr

from payrail.gateways.adyen.webhooks import AdyenWebhookVerifier
from payrail.gateways.base import (
    GatewayAccountConfig,
    MalformedPayload,
    SignatureInvalid,
    SignatureMissing,
)
from payrail.gateways.events import GatewayEventKind
from tests.unit.gateways.webhook_helpers import assert_rejected

KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
OLD_KEY = "DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00"
KEYS_SHOWN = [KEY, KEY.lower(), OLD_KEY, OLD_KEY.lower()]


def verifier(*keys: str) -> AdyenWebhookVerifier:
    config = GatewayAccountConfig(webhook_secrets=[SecretStr(k) for k in keys or (KEY,)])
    return AdyenWebhookVerifier(config, account="merchant-eu")


def item(
    event_code: str = "AUTHORISATION", success: str = "true", **overrides: Any
) -> dict[str, Any]:
    return {
        "pspReference": "7914073381342284",
        "merchantAccountCode": "TestMerchant",
        "merchantReference": "pay_abc",
        "amount": {"value": 1130, "currency": "EUR"},
        "eventCode": event_code,
        "eventDate": "2025-03-01T13:00:00+01:00",
        "success": success,
        "paymentMethod": "visa",
        "reason": "",
        **overrides,
    }


def signed(raw: dict[str, Any], key: str = KEY) -> dict[str, Any]:
    """The item with ``additionalData.hmacSignature`` computed by Adyen's own library."""
    out = copy.deepcopy(raw)
    out.setdefault("additionalData", {})["hmacSignature"] = generate_notification_sig(
        raw, key
    ).decode()
    assert is_valid_hmac_notification(out, key)
    return out


def batch(*items: dict[str, Any]) -> bytes:
    wrapped = [{"NotificationRequestItem": i} for i in items]
    return json.dumps({"live": "false", "notificationItems": wrapped}).encode()


async def test_library_signed_authorisation_verifies_and_normalizes() -> None:
    body = batch(signed(item()))
    [ev] = await verifier().verify({}, body)
    assert ev.kind is GatewayEventKind.PAYMENT_SUCCEEDED
    assert ev.ce_id == "adyen:7914073381342284:AUTHORISATION:true"
    assert (ev.payment_id, ev.gateway_payment_id) == ("pay_abc", "7914073381342284")
    assert (ev.amount, ev.currency) == (1130, "EUR")
    assert ev.occurred_at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert ev.account == "merchant-eu"
    assert ev.raw["paymentMethod"] == "visa"


def test_acknowledgement_is_what_adyen_expects() -> None:
    assert verifier().acknowledgement([]) == ("[accepted]", "text/plain")


async def test_fields_with_colons_and_backslashes_verify_as_adyen_signs_them() -> None:
    """Adyen's libraries do not escape notification fields; neither may payrail."""
    raw = item(merchantReference="order:42\\b", merchantAccountCode="Acme:EU")
    [ev] = await verifier().verify({}, batch(signed(raw)))
    assert ev.payment_id == "order:42\\b"


async def test_tampered_amount_is_rejected() -> None:
    tampered = signed(item()) | {"amount": {"value": 1, "currency": "EUR"}}
    await assert_rejected(verifier(), {}, batch(tampered), SignatureInvalid, *KEYS_SHOWN)


async def test_tampered_unsigned_field_still_verifies_because_adyen_does_not_sign_it() -> None:
    """Documents the scheme's scope: only the eight fields are covered by the signature."""
    tampered = signed(item()) | {"paymentMethod": "mc"}
    [ev] = await verifier().verify({}, batch(tampered))
    assert ev.raw["paymentMethod"] == "mc"


async def test_wrong_key_is_rejected_without_showing_the_expected_signature() -> None:
    expected = generate_notification_sig(item(), KEY).decode()
    await assert_rejected(
        verifier(), {}, batch(signed(item(), OLD_KEY)), SignatureInvalid, *KEYS_SHOWN, expected
    )


@pytest.mark.parametrize("key", [OLD_KEY, KEY])
async def test_rotation_accepts_old_and_new_key(key: str) -> None:
    assert len(await verifier(OLD_KEY, KEY.lower()).verify({}, batch(signed(item(), key)))) == 1


async def test_one_bad_item_rejects_the_whole_batch() -> None:
    good = signed(item())
    forged = signed(item(pspReference="8815", merchantReference="pay_other"), OLD_KEY)
    await assert_rejected(verifier(), {}, batch(good, forged, good), SignatureInvalid, *KEYS_SHOWN)


async def test_one_unsigned_item_rejects_the_whole_batch() -> None:
    await assert_rejected(
        verifier(),
        {},
        batch(signed(item()), item(pspReference="8815")),
        SignatureMissing,
        *KEYS_SHOWN,
    )


async def test_a_good_batch_yields_one_event_per_used_item() -> None:
    body = batch(
        signed(item()),
        signed(item("REPORT_AVAILABLE", pspReference="r1")),
        signed(item("REFUND", pspReference="8815", originalReference="7914073381342284")),
    )
    events = await verifier().verify({}, body)
    assert [e.kind for e in events] == [
        GatewayEventKind.PAYMENT_SUCCEEDED,
        GatewayEventKind.REFUND_SUCCEEDED,
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"live": "false"}',
        b'{"live": "false", "notificationItems": []}',
        b'{"live": "false", "notificationItems": [{"Other": {}}]}',
        b'{"live": "false", "notificationItems": ["x"]}',
    ],
)
async def test_bodies_that_are_not_notifications_are_malformed(body: bytes) -> None:
    await assert_rejected(verifier(), {}, body, MalformedPayload, *KEYS_SHOWN)


@pytest.mark.parametrize(
    "overrides",
    [
        {"eventDate": "not a date"},
        {"amount": {"value": "1130", "currency": "EUR"}},
        {"amount": {"value": 1130, "currency": "EURO"}},
        {"success": "maybe"},
    ],
)
async def test_verified_items_of_unexpected_shape_are_malformed(overrides: dict[str, Any]) -> None:
    await assert_rejected(
        verifier(), {}, batch(signed(item(**overrides))), MalformedPayload, *KEYS_SHOWN
    )


async def test_unused_event_codes_verify_to_nothing() -> None:
    body = batch(signed(item("REPORT_AVAILABLE")), signed(item("CANCELLATION", "false")))
    assert await verifier().verify({}, body) == []


async def test_failed_authorisation_carries_the_reason() -> None:
    [ev] = await verifier().verify({}, batch(signed(item(success="false", reason="Refused"))))
    assert ev.kind is GatewayEventKind.PAYMENT_FAILED
    assert ev.failure_message == "Refused"
    assert ev.ce_id == "adyen:7914073381342284:AUTHORISATION:false"


MODIFICATIONS = [
    ("CANCELLATION", "true", GatewayEventKind.PAYMENT_CANCELED),
    ("REFUND", "true", GatewayEventKind.REFUND_SUCCEEDED),
    ("REFUND", "false", GatewayEventKind.REFUND_FAILED),
    ("REFUND_FAILED", "true", GatewayEventKind.REFUND_FAILED),
    ("NOTIFICATION_OF_CHARGEBACK", "true", GatewayEventKind.DISPUTE_OPENED),
    ("CHARGEBACK", "true", GatewayEventKind.DISPUTE_LOST),
    ("CHARGEBACK_REVERSED", "true", GatewayEventKind.DISPUTE_WON),
]


@pytest.mark.parametrize(("code", "success", "kind"), MODIFICATIONS)
async def test_modifications_point_at_the_original_payment(
    code: str, success: str, kind: GatewayEventKind
) -> None:
    raw = item(
        code,
        success,
        pspReference="8815",
        originalReference="7914073381342284",
        amount={"value": 500, "currency": "jpy"},
        reason="Insufficient balance",
    )
    [ev] = await verifier().verify({}, batch(signed(raw)))
    assert ev.kind is kind
    assert ev.gateway_event_id == f"8815:{code}:{success}"
    assert (ev.payment_id, ev.gateway_payment_id) == ("pay_abc", "7914073381342284")
    assert (ev.amount, ev.currency) == (500, "JPY")
    refund = kind in (GatewayEventKind.REFUND_SUCCEEDED, GatewayEventKind.REFUND_FAILED)
    dispute = kind.value.startswith("dispute.")
    assert ev.gateway_refund_id == ("8815" if refund else None)
    assert ev.gateway_dispute_id == ("8815" if dispute else None)
    assert ev.failure_message == ("Insufficient balance" if kind.value.endswith("failed") else None)


def test_a_key_that_is_not_hex_fails_at_construction_without_echoing_it() -> None:
    config = GatewayAccountConfig(webhook_secrets=[SecretStr(KEY), SecretStr("zz" + KEY)])
    with pytest.raises(ValueError, match="#2 is malformed") as info:
        AdyenWebhookVerifier(config, account="a")
    assert KEY not in str(info.value)
