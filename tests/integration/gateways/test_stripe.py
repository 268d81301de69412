"""Stripe client (official SDK) against a real localstripe process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import stripe
from pydantic import SecretStr

from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayDeclined,
    GatewayPaymentStatus,
)
from payrail.gateways.events import GatewayEventKind
from payrail.gateways.http import CallPolicy
from payrail.gateways.registry import get
from payrail.gateways.stripe.payments import (
    StripeApi,
    StripePaymentsClient,
    StripeRefundsClient,
    StripeStatusSync,
)
from tests.integration.gateways.conftest import payment, refund_request

API_KEY = "sk_test_payrail"


def account(url: str) -> GatewayAccountConfig:
    return GatewayAccountConfig(api_key=SecretStr(API_KEY), api_base=url)


@pytest.fixture
async def api(localstripe_url: str, policy: CallPolicy) -> AsyncIterator[StripeApi]:
    opened = StripeApi(account(localstripe_url), policy=policy)
    yield opened
    await opened.aclose()


def unique(prefix: str) -> str:
    """A payment id no other test (or earlier run against a shared localstripe) used."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def pay_with_test_card(url: str, intent_id: str) -> None:
    """What Stripe.js does in the customer's browser: attach a card and confirm."""
    browser = stripe.StripeClient(
        API_KEY, base_addresses={"api": url}, http_client=stripe.HTTPXClient()
    )
    card = await browser.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    await browser.v1.payment_intents.update_async(intent_id, {"payment_method": card.id})
    await browser.v1.payment_intents.confirm_async(intent_id)


async def test_create_pay_sync_and_refund_partially_then_fully(
    localstripe_url: str, api: StripeApi
) -> None:
    payment_id = unique("pay_st")
    created = await StripePaymentsClient(api).create(payment(payment_id))

    assert created.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert created.client_secret
    assert (created.amount, created.currency) == (1999, "USD")
    assert created.raw["metadata"] == {
        "payrail_payment_id": payment_id,
        "user_id": "u_1",
        "sku": "pro-monthly",
    }

    sync = StripeStatusSync(api)
    [waiting] = await sync.sync(
        payment_id=payment_id, gateway_payment_id=created.gateway_payment_id
    )
    assert waiting.kind is GatewayEventKind.PAYMENT_REQUIRES_ACTION

    await pay_with_test_card(localstripe_url, created.gateway_payment_id)
    [paid] = await sync.sync(payment_id=payment_id, gateway_payment_id=created.gateway_payment_id)
    assert (paid.kind, paid.amount, paid.currency, paid.source) == (
        GatewayEventKind.PAYMENT_SUCCEEDED,
        1999,
        "USD",
        "status-sync",
    )
    assert paid.ce_id == f"stripe:sync:{created.gateway_payment_id}:succeeded"

    refunds = StripeRefundsClient(api)
    # refund ids are unique like payrail's: one localstripe serves the session, and Stripe
    # (like localstripe here) refuses an idempotency key reused with other parameters
    first_refund, second_refund = unique("re_st"), unique("re_st")
    partial = await refunds.refund(
        refund_request(payment_id, created.gateway_payment_id, first_refund, 999)
    )
    rest = await refunds.refund(
        refund_request(payment_id, created.gateway_payment_id, second_refund, 1000)
    )
    assert (partial.status, partial.amount, rest.status, rest.amount) == (
        "succeeded",
        999,
        "succeeded",
        1000,
    )
    assert partial.raw["metadata"] == {
        "payrail_payment_id": payment_id,
        "payrail_refund_id": first_refund,
        "reason": "customer asked",
    }

    events = await sync.sync(payment_id=payment_id, gateway_payment_id=created.gateway_payment_id)
    assert events[0].kind is GatewayEventKind.PAYMENT_SUCCEEDED
    assert events[0].amount_refunded == 1999
    assert sorted((e.kind, e.amount) for e in events[1:]) == [
        (GatewayEventKind.REFUND_SUCCEEDED, 999),
        (GatewayEventKind.REFUND_SUCCEEDED, 1000),
    ]


async def test_the_same_idempotency_key_twice_opens_one_payment_intent(
    localstripe_url: str, api: StripeApi
) -> None:
    payments = StripePaymentsClient(api)
    payment_id = unique("pay_idem")

    first = await payments.create(payment(payment_id))
    second = await payments.create(payment(payment_id))
    other = await payments.create(payment(unique("pay_other")))

    assert first.gateway_payment_id == second.gateway_payment_id
    assert other.gateway_payment_id != first.gateway_payment_id
    browser = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": localstripe_url},
        http_client=stripe.HTTPXClient(),
    )
    intents = await browser.v1.payment_intents.list_async({"limit": 100})
    mine = [i for i in intents.data if i.metadata.to_dict().get("payrail_payment_id") == payment_id]
    assert len(mine) == 1


async def test_capture_confirms_an_intent_that_has_a_card_but_no_confirmation(
    localstripe_url: str, api: StripeApi
) -> None:
    payments = StripePaymentsClient(api)
    created = await payments.create(payment(unique("pay_conf")))
    browser = stripe.StripeClient(
        API_KEY, base_addresses={"api": localstripe_url}, http_client=stripe.HTTPXClient()
    )
    card = await browser.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    await browser.v1.payment_intents.update_async(
        created.gateway_payment_id, {"payment_method": card.id}
    )

    confirmed = await payments.capture(created.gateway_payment_id, idempotency_key="capture:c")

    assert confirmed.status is GatewayPaymentStatus.SUCCEEDED


async def test_cancel_an_open_intent_but_not_a_paid_one(
    localstripe_url: str, api: StripeApi
) -> None:
    payments = StripePaymentsClient(api)
    open_intent = await payments.create(payment(unique("pay_cx")))
    canceled = await payments.cancel(open_intent.gateway_payment_id, idempotency_key="cancel:a")
    assert canceled.status is GatewayPaymentStatus.CANCELED

    paid = await payments.create(payment(unique("pay_cx")))
    await pay_with_test_card(localstripe_url, paid.gateway_payment_id)
    with pytest.raises(GatewayDeclined):
        await payments.cancel(paid.gateway_payment_id, idempotency_key="cancel:b")


async def test_an_invalid_request_is_declined(api: StripeApi) -> None:
    with pytest.raises(GatewayDeclined) as declined:
        await StripePaymentsClient(api).create(payment(unique("pay_zero"), amount=0))
    assert "sk_test" not in str(declined.value)


async def test_sync_of_an_unknown_intent_without_search_reports_nothing(api: StripeApi) -> None:
    sync = StripeStatusSync(api)
    assert await sync.sync(payment_id="pay_lost", gateway_payment_id="pi_doesnotexist") == []
    assert await sync.sync(payment_id="pay_lost", gateway_payment_id=None) == []


async def test_the_registry_resolves_stripe(localstripe_url: str) -> None:
    family = get("stripe")
    created = await family.payments(account(localstripe_url)).create(payment(unique("pay_reg")))
    await family.aclose()  # the connections it kept for this event loop
    assert created.gateway_payment_id.startswith("pi_")
