"""Standard Webhooks verification, with signatures made by the `standardwebhooks` library."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from payrail.gateways.base import (
    GatewayAccountConfig,
    MalformedPayload,
    SignatureInvalid,
    SignatureMissing,
    TimestampOutOfTolerance,
)
from payrail.gateways.events import GatewayEventKind
from payrail.gateways.standardwebhooks.webhooks import StandardWebhooksVerifier
from tests.unit.gateways.webhook_helpers import NOW, assert_rejected, fixed_clock

SECRET = "whsec_" + base64.b64encode(b"current-key-0123456789abcdef0123").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"previous-key-fedcba987654321098").decode()
KEY_TEXT = SECRET.removeprefix("whsec_")


def verifier(*secrets: str, gateway: str = "standardwebhooks") -> StandardWebhooksVerifier:
    config = GatewayAccountConfig(webhook_secrets=[SecretStr(s) for s in secrets or (SECRET,)])
    return StandardWebhooksVerifier(config, account="internal", gateway=gateway, clock=fixed_clock)


def payload(type_: str = "payment.succeeded", **data: Any) -> bytes:
    body: dict[str, Any] = {
        "type": type_,
        "data": {"payment_id": "pay_1", "amount": 1999, "currency": "usd", **data},
    }
    return json.dumps(body).encode()


def signed(
    body: bytes, secret: str = SECRET, at: datetime = NOW, msg_id: str = "msg_2xYz"
) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=at, data=body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


async def test_library_signed_message_verifies_and_normalizes() -> None:
    body = payload(gateway_payment_id="ext_9", amount_refunded=0)
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is GatewayEventKind.PAYMENT_SUCCEEDED
    assert ev.ce_id == "standardwebhooks:msg_2xYz"
    assert (ev.payment_id, ev.gateway_payment_id) == ("pay_1", "ext_9")
    assert (ev.amount, ev.currency, ev.amount_refunded) == (1999, "USD", 0)
    assert ev.occurred_at == NOW
    assert ev.account == "internal"
    assert ev.raw["type"] == "payment.succeeded"


async def test_the_library_and_payrail_agree_on_a_fresh_message() -> None:
    now = datetime.now(UTC)
    body = payload()
    headers = signed(body, at=now)
    assert Webhook(SECRET).verify(body, headers)["type"] == "payment.succeeded"
    config = GatewayAccountConfig(webhook_secrets=[SecretStr(SECRET)])
    events = await StandardWebhooksVerifier(config, account="a").verify(headers, body)
    assert [e.kind for e in events] == [GatewayEventKind.PAYMENT_SUCCEEDED]


async def test_a_plugin_gateway_keeps_its_own_name() -> None:
    body = payload()
    [ev] = await verifier(gateway="acmepay").verify(signed(body), body)
    assert ev.ce_id == "acmepay:msg_2xYz"


async def test_unprefixed_and_unpadded_secrets_are_accepted() -> None:
    body = payload()
    unpadded = KEY_TEXT.rstrip("=")
    assert unpadded != KEY_TEXT
    assert len(await verifier(unpadded).verify(signed(body), body)) == 1


async def test_header_names_are_case_insensitive() -> None:
    body = payload()
    headers = {k.upper(): v for k, v in signed(body).items()}
    assert len(await verifier().verify(headers, body)) == 1


async def test_tampered_body_is_rejected() -> None:
    body = payload()
    await assert_rejected(
        verifier(), signed(body), payload(amount=1), SignatureInvalid, SECRET, KEY_TEXT
    )


async def test_tampered_message_id_is_rejected() -> None:
    """The id is signed: replaying a body under a new id (to dodge dedup) fails."""
    body = payload()
    headers = signed(body) | {"webhook-id": "msg_other"}
    await assert_rejected(verifier(), headers, body, SignatureInvalid, SECRET)


async def test_wrong_secret_is_rejected_without_showing_the_expected_signature() -> None:
    body = payload()
    expected = signed(body)["webhook-signature"].split(",", 1)[1]
    await assert_rejected(
        verifier(),
        signed(body, secret=OLD_SECRET),
        body,
        SignatureInvalid,
        SECRET,
        KEY_TEXT,
        expected,
    )


@pytest.mark.parametrize("secret", [OLD_SECRET, SECRET])
async def test_rotation_accepts_old_and_new_secret(secret: str) -> None:
    body = payload()
    assert len(await verifier(OLD_SECRET, SECRET).verify(signed(body, secret), body)) == 1


async def test_any_v1_in_the_space_separated_list_may_match() -> None:
    body = payload()
    old = signed(body, OLD_SECRET)["webhook-signature"]
    new = signed(body)["webhook-signature"]
    headers = signed(body) | {"webhook-signature": f"v1a,ignoredAsymmetric== {old} {new}"}
    assert len(await verifier().verify(headers, body)) == 1


async def test_only_other_versions_do_not_verify() -> None:
    body = payload()
    sig = signed(body)["webhook-signature"].split(",", 1)[1]
    headers = signed(body) | {"webhook-signature": f"v2,{sig}"}
    await assert_rejected(verifier(), headers, body, SignatureInvalid, SECRET)


@pytest.mark.parametrize("skew", [timedelta(minutes=5, seconds=1), timedelta(minutes=-6)])
async def test_timestamp_outside_five_minutes_is_rejected(skew: timedelta) -> None:
    body = payload()
    await assert_rejected(
        verifier(), signed(body, at=NOW - skew), body, TimestampOutOfTolerance, SECRET
    )


async def test_timestamp_inside_the_window_verifies() -> None:
    body = payload()
    assert len(await verifier().verify(signed(body, at=NOW - timedelta(minutes=4)), body)) == 1


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_each_header_is_required(missing: str) -> None:
    body = payload()
    headers = {k: v for k, v in signed(body).items() if k != missing}
    await assert_rejected(verifier(), headers, body, SignatureMissing, SECRET)


async def test_malformed_timestamp_is_rejected() -> None:
    body = payload()
    headers = signed(body) | {"webhook-timestamp": "1e9"}
    await assert_rejected(verifier(), headers, body, SignatureInvalid, SECRET)


def failed(data: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"type": "payment.failed", "data": data, **top}).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"{oops",
        b'"just a string"',
        b'{"data": {}}',
        failed({"amount": 100, "currency": "USD"}),
        failed({"payment_id": "p", "amount": 100}),
        failed({"payment_id": "p", "amount": 1.5, "currency": "USD"}),
        failed({"payment_id": "p", "amount": -5, "currency": "USD"}),
        failed({"payment_id": "p", "amount": 5, "currency": "XXQ"}),
        failed({"payment_id": "p"}, timestamp="yesterday"),
        failed({"payment_id": "p"}, timestamp="2025-03-01T12:00:00"),
    ],
)
async def test_valid_signature_but_malformed_payload(body: bytes) -> None:
    await assert_rejected(verifier(), signed(body), body, MalformedPayload, SECRET)


async def test_unknown_types_verify_to_nothing() -> None:
    body = json.dumps({"type": "invoice.paid", "data": {"whatever": True}}).encode()
    assert await verifier().verify(signed(body), body) == []


async def test_every_event_kind_is_expressible_with_its_details() -> None:
    body = json.dumps(
        {
            "type": "refund.failed",
            "timestamp": "2025-02-28T23:30:00+01:00",
            "data": {
                "gateway_payment_id": "ext_9",
                "gateway_refund_id": "ref_3",
                "amount": 250,
                "currency": "KWD",
                "failure_code": "insufficient_balance",
                "failure_message": "merchant balance too low",
                "future_field": {"ignored": True},
            },
        }
    ).encode()
    [ev] = await verifier().verify(signed(body), body)
    assert ev.kind is GatewayEventKind.REFUND_FAILED
    assert (ev.payment_id, ev.gateway_refund_id) == (None, "ref_3")
    assert (ev.amount, ev.currency) == (250, "KWD")
    assert ev.failure_code == "insufficient_balance"
    assert ev.occurred_at == datetime(2025, 2, 28, 22, 30, tzinfo=UTC)
    assert ev.partition_key == "ext_9"


def test_a_malformed_secret_fails_at_construction_without_echoing_it() -> None:
    config = GatewayAccountConfig(webhook_secrets=[SecretStr("whsec_not base64!")])
    with pytest.raises(ValueError, match="#1 is malformed") as info:
        StandardWebhooksVerifier(config, account="a")
    assert "not base64" not in str(info.value)
