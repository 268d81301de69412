"""PayPal Orders v2 client against the fake PayPal server."""

from __future__ import annotations

import pytest

from payrail.gateways.base import (
    GatewayDeclined,
    GatewayPaymentStatus,
)
from payrail.gateways.events import GatewayEventKind
from payrail.gateways.http import CallPolicy
from payrail.gateways.paypal.payments import (
    PayPalApi,
    PayPalPaymentsClient,
    PayPalRefundsClient,
    PayPalStatusSync,
)
from payrail.gateways.registry import get
from tests.fakes.paypal_server import FakePayPal
from tests.integration.gateways.conftest import payment, paypal_account, refund_request


async def test_order_is_created_approved_captured_refunded_and_synced(
    paypal: FakePayPal, paypal_api: PayPalApi
) -> None:
    payments = PayPalPaymentsClient(paypal_api)
    created = await payments.create(payment("pay_pp_1"))

    assert created.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert (created.amount, created.currency) == (1999, "USD")
    assert created.redirect_url == (
        f"https://www.sandbox.paypal.com/checkoutnow?token={created.gateway_payment_id}"
    )
    unit = paypal.orders[created.gateway_payment_id]["purchase_units"][0]
    assert unit["custom_id"] == unit["invoice_id"] == "pay_pp_1"
    assert unit["amount"] == {"currency_code": "USD", "value": "19.99"}

    sync = PayPalStatusSync(paypal_api)
    paypal.approve(created.gateway_payment_id)
    [approved] = await sync.sync(
        payment_id="pay_pp_1", gateway_payment_id=created.gateway_payment_id
    )
    assert approved.kind is GatewayEventKind.PAYMENT_AUTHORIZED

    captured = await payments.capture(created.gateway_payment_id, idempotency_key="capture:1")
    assert captured.status is GatewayPaymentStatus.SUCCEEDED

    refunds = PayPalRefundsClient(paypal_api)
    partial = await refunds.refund(
        refund_request("pay_pp_1", created.gateway_payment_id, "ref_1", 500)
    )
    rest = await refunds.refund(
        refund_request("pay_pp_1", created.gateway_payment_id, "ref_2", 1499)
    )
    assert (partial.status, partial.amount) == ("succeeded", 500)
    assert (rest.status, rest.amount) == ("succeeded", 1499)

    events = await sync.sync(payment_id="pay_pp_1", gateway_payment_id=created.gateway_payment_id)
    kinds = [e.kind for e in events]
    assert kinds == [
        GatewayEventKind.PAYMENT_SUCCEEDED,
        GatewayEventKind.REFUND_SUCCEEDED,
        GatewayEventKind.REFUND_SUCCEEDED,
    ]
    assert events[0].amount_refunded == 1999
    assert {e.gateway_refund_id for e in events[1:]} == {
        partial.gateway_refund_id,
        rest.gateway_refund_id,
    }
    assert all(e.source == "status-sync" and e.payment_id == "pay_pp_1" for e in events)
    again = await sync.sync(payment_id="pay_pp_1", gateway_payment_id=created.gateway_payment_id)
    assert [e.ce_id for e in again] == [e.ce_id for e in events]


async def test_return_url_asks_for_the_payer_action_link(
    paypal: FakePayPal, paypal_api: PayPalApi
) -> None:
    created = await PayPalPaymentsClient(paypal_api).create(payment("pay_pp_ret"))

    body = paypal.requests_to("POST", "/v2/checkout/orders")[0].json()
    assert body["payment_source"]["paypal"]["experience_context"]["return_url"] == (
        "https://shop.example/return"
    )
    assert created.redirect_url is not None
    assert created.redirect_url.endswith(created.gateway_payment_id)


async def test_capture_before_approval_is_declined(paypal_api: PayPalApi) -> None:
    payments = PayPalPaymentsClient(paypal_api)
    created = await payments.create(payment("pay_pp_2"))

    with pytest.raises(GatewayDeclined) as declined:
        await payments.capture(created.gateway_payment_id, idempotency_key="capture:2")
    assert declined.value.code == "ORDER_NOT_APPROVED"


async def test_a_second_capture_with_another_key_reports_the_captured_order(
    paypal: FakePayPal, paypal_api: PayPalApi
) -> None:
    payments = PayPalPaymentsClient(paypal_api)
    created = await payments.create(payment("pay_pp_3"))
    paypal.approve(created.gateway_payment_id)

    first = await payments.capture(created.gateway_payment_id, idempotency_key="capture:a")
    second = await payments.capture(created.gateway_payment_id, idempotency_key="capture:b")

    assert first.status is second.status is GatewayPaymentStatus.SUCCEEDED
    order = paypal.orders[created.gateway_payment_id]
    assert len(order["purchase_units"][0]["payments"]["captures"]) == 1


async def test_refund_above_the_captured_amount_is_declined(
    paypal: FakePayPal, paypal_api: PayPalApi
) -> None:
    payments = PayPalPaymentsClient(paypal_api)
    created = await payments.create(payment("pay_pp_4"))
    paypal.approve(created.gateway_payment_id)
    await payments.capture(created.gateway_payment_id, idempotency_key="capture:4")

    with pytest.raises(GatewayDeclined) as declined:
        await PayPalRefundsClient(paypal_api).refund(
            refund_request("pay_pp_1", created.gateway_payment_id, "ref_4", 2000)
        )
    assert declined.value.code == "REFUND_AMOUNT_EXCEEDED"


async def test_cancel_gives_up_an_uncaptured_order_but_not_a_captured_one(
    paypal: FakePayPal, paypal_api: PayPalApi
) -> None:
    payments = PayPalPaymentsClient(paypal_api)
    open_order = await payments.create(payment("pay_pp_5"))
    canceled = await payments.cancel(open_order.gateway_payment_id, idempotency_key="cancel:5")
    assert canceled.status is GatewayPaymentStatus.CANCELED

    paid = await payments.create(payment("pay_pp_6"))
    paypal.approve(paid.gateway_payment_id)
    await payments.capture(paid.gateway_payment_id, idempotency_key="capture:6")
    with pytest.raises(GatewayDeclined) as declined:
        await payments.cancel(paid.gateway_payment_id, idempotency_key="cancel:6")
    assert declined.value.code == "already_captured"


async def test_whole_unit_currencies_are_sent_without_decimals(
    paypal: FakePayPal, paypal_api: PayPalApi
) -> None:
    payments = PayPalPaymentsClient(paypal_api)
    created = await payments.create(payment("pay_pp_huf", amount=150000, currency="HUF"))
    assert paypal.orders[created.gateway_payment_id]["purchase_units"][0]["amount"] == {
        "currency_code": "HUF",
        "value": "1500",
    }
    with pytest.raises(GatewayDeclined) as declined:
        await payments.create(payment("pay_pp_huf2", amount=150050, currency="HUF"))
    assert declined.value.code == "currency_precision"


async def test_sync_of_an_unknown_or_missing_order_reports_nothing(paypal_api: PayPalApi) -> None:
    sync = PayPalStatusSync(paypal_api)
    assert await sync.sync(payment_id="pay_x", gateway_payment_id=None) == []
    assert await sync.sync(payment_id="pay_x", gateway_payment_id="0NONEXISTENT0000") == []


# ---------------------------------------------------------------------------- OAuth2 token


async def test_the_token_is_fetched_once_and_reused(
    paypal: FakePayPal, paypal_api: PayPalApi
) -> None:
    payments = PayPalPaymentsClient(paypal_api)
    await payments.create(payment("pay_tok_1"))
    await payments.create(payment("pay_tok_2"))

    assert len(paypal.requests_to("POST", "/v1/oauth2/token")) == 1
    tokens = {r.headers["authorization"] for r in paypal.requests_to("POST", "/v2/")}
    assert len(tokens) == 1


async def test_the_token_is_refreshed_before_it_expires(
    paypal: FakePayPal, policy: CallPolicy
) -> None:
    now = [1000.0]
    api = PayPalApi(paypal_account(paypal), policy=policy, clock=lambda: now[0])
    payments = PayPalPaymentsClient(api)
    try:
        await payments.create(payment("pay_ref_1"))
        now[0] += paypal.token_lifetime - 60  # inside the refresh margin, not yet expired
        await payments.create(payment("pay_ref_2"))
    finally:
        await api.aclose()

    assert len(paypal.requests_to("POST", "/v1/oauth2/token")) == 2
    first, second = (r.headers["authorization"] for r in paypal.requests_to("POST", "/v2/"))
    assert first != second
    assert len(paypal.requests_to("POST", "/v2/checkout/orders")) == 2


async def test_a_401_refreshes_the_token_once_and_repeats_the_call(
    paypal: FakePayPal, paypal_api: PayPalApi
) -> None:
    payments = PayPalPaymentsClient(paypal_api)
    await payments.create(payment("pay_401_1"))
    paypal.expire_tokens()  # PayPal stops accepting the cached token early

    created = await payments.create(payment("pay_401_2"))

    assert created.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert len(paypal.requests_to("POST", "/v1/oauth2/token")) == 2
    assert len(paypal.orders) == 2


async def test_a_second_401_after_the_refresh_is_declined_without_looping(
    paypal: FakePayPal, paypal_api: PayPalApi
) -> None:
    paypal.fail(401, times=5, method="POST", path_contains="/v2/checkout/orders")

    with pytest.raises(GatewayDeclined):
        await PayPalPaymentsClient(paypal_api).create(payment("pay_401_3"))

    assert len(paypal.requests_to("POST", "/v1/oauth2/token")) == 2
    assert len(paypal.requests_to("POST", "/v2/checkout/orders")) == 2
    assert paypal.orders == {}


async def test_the_clients_of_one_account_share_one_token(paypal: FakePayPal) -> None:
    family = get("paypal")
    config = paypal_account(paypal)

    created = await family.payments(config).create(payment("pay_fam_1"))
    await family.status_sync(config).sync(
        payment_id="pay_fam_1", gateway_payment_id=created.gateway_payment_id
    )

    assert len(paypal.requests_to("POST", "/v1/oauth2/token")) == 1
