"""The Standard Webhooks family as services see it: resolved by name through the entry points,
verifying what the `standardwebhooks` library signs, and refusing payment members clearly."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from payrail.gateways import registry
from payrail.gateways.base import GatewayAccountConfig, GatewayError, NotSupported
from payrail.gateways.events import GatewayEventKind
from payrail.gateways.standardwebhooks.family import StandardWebhooksFamily

SECRET = "whsec_" + base64.b64encode(b"family-key-0123456789abcdef01234").decode()
CONFIG = GatewayAccountConfig(
    api_key=SecretStr("sk_test_unused"), webhook_secrets=[SecretStr(SECRET)]
)


def signed(body: bytes, msg_id: str = "msg_family_1") -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id=msg_id, timestamp=now, data=body.decode()),
    }


def test_the_registry_resolves_it_through_the_entry_point() -> None:
    assert "standardwebhooks" in registry.available()
    assert isinstance(registry.get("standardwebhooks"), StandardWebhooksFamily)


async def test_its_verifier_accepts_what_the_library_signs() -> None:
    data = {"payment_id": "pay_7", "amount": 500, "currency": "eur"}
    body = json.dumps({"type": "payment.succeeded", "data": data}).encode()
    verifier = registry.get("standardwebhooks").webhook_verifier(CONFIG, account="internal")
    [event] = await verifier.verify(signed(body), body)
    assert event.ce_id == "standardwebhooks:msg_family_1"
    assert event.kind is GatewayEventKind.PAYMENT_SUCCEEDED
    assert (event.payment_id, event.amount, event.currency) == ("pay_7", 500, "EUR")
    assert event.account == "internal"


async def test_a_plugin_family_built_on_it_keeps_its_own_name() -> None:
    class AcmePayFamily(StandardWebhooksFamily):
        name = "acmepay"

    body = json.dumps({"type": "payment.failed", "data": {"payment_id": "pay_8"}}).encode()
    [event] = (
        await AcmePayFamily()
        .webhook_verifier(CONFIG, account="default")
        .verify(signed(body, "msg_acme"), body)
    )
    assert (event.gateway, event.ce_id) == ("acmepay", "acmepay:msg_acme")


@pytest.mark.parametrize(
    ("member", "what"),
    [
        (StandardWebhooksFamily.payments, "payments"),
        (StandardWebhooksFamily.refunds, "refunds"),
        (StandardWebhooksFamily.status_sync, "a payment status API"),
        (StandardWebhooksFamily.report_fetcher, "reports"),
    ],
)
def test_payment_members_are_refused_at_once_with_a_clear_error(
    member: Callable[[StandardWebhooksFamily, GatewayAccountConfig], object], what: str
) -> None:
    with pytest.raises(NotSupported) as info:
        member(StandardWebhooksFamily(), CONFIG)
    assert isinstance(info.value, GatewayError)
    assert str(info.value) == (
        f"gateway 'standardwebhooks' is a webhook signing scheme and does not offer {what}; "
        "it only receives webhooks (POST /webhooks/standardwebhooks)"
    )
    assert "sk_test_unused" not in str(info.value)
