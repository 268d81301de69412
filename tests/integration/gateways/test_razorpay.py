"""Razorpay client (official SDK) against the fake Razorpay server."""

from __future__ import annotations

import pytest

from payrail.gateways.base import (
    GatewayDeclined,
    GatewayPaymentStatus,
)
from payrail.gateways.events import GatewayEventKind
from payrail.gateways.http import CallPolicy
from payrail.gateways.razorpay.payments import (
    RazorpayApi,
    RazorpayPaymentsClient,
    RazorpayRefundsClient,
    RazorpayStatusSync,
)
from tests.fakes.razorpay_server import FakeRazorpay
from tests.integration.gateways.conftest import payment, razorpay_account, refund_request


@pytest.fixture
def api(razorpay: FakeRazorpay, policy: CallPolicy) -> RazorpayApi:
    return RazorpayApi(razorpay_account(razorpay), policy=policy)


async def test_order_is_created_paid_refunded_and_synced(
    razorpay: FakeRazorpay, api: RazorpayApi
) -> None:
    created = await RazorpayPaymentsClient(api).create(payment("pay_rz_1", 49900, "INR"))

    order = razorpay.orders[created.gateway_payment_id]
    assert (order["amount"], order["currency"], order["receipt"]) == (49900, "INR", "pay_rz_1")
    assert order["notes"]["payrail_payment_id"] == "pay_rz_1"
    assert order["payment_capture"] == 1
    assert created.status is GatewayPaymentStatus.REQUIRES_ACTION

    razorpay.pay(created.gateway_payment_id)
    sync = RazorpayStatusSync(api)
    [paid] = await sync.sync(payment_id="pay_rz_1", gateway_payment_id=created.gateway_payment_id)
    assert (paid.kind, paid.amount, paid.currency) == (
        GatewayEventKind.PAYMENT_SUCCEEDED,
        49900,
        "INR",
    )

    refunds = RazorpayRefundsClient(api)
    partial = await refunds.refund(
        refund_request("pay_rz_1", created.gateway_payment_id, "ref_rz_1", 10000, "INR")
    )
    rest = await refunds.refund(
        refund_request("pay_rz_1", created.gateway_payment_id, "ref_rz_2", 39900, "INR")
    )
    assert (partial.status, rest.status) == ("succeeded", "succeeded")

    events = await sync.sync(payment_id="pay_rz_1", gateway_payment_id=created.gateway_payment_id)
    assert [e.kind for e in events] == [
        GatewayEventKind.PAYMENT_SUCCEEDED,
        GatewayEventKind.REFUND_SUCCEEDED,
        GatewayEventKind.REFUND_SUCCEEDED,
    ]
    assert events[0].amount_refunded == 49900
    assert sorted(e.amount or 0 for e in events[1:]) == [10000, 39900]


async def test_a_failed_attempt_syncs_as_failed(razorpay: FakeRazorpay, api: RazorpayApi) -> None:
    created = await RazorpayPaymentsClient(api).create(payment("pay_rz_f", 10000, "INR"))
    razorpay.pay(created.gateway_payment_id, succeed=False)

    [event] = await RazorpayStatusSync(api).sync(
        payment_id="pay_rz_f", gateway_payment_id=created.gateway_payment_id
    )
    assert event.kind is GatewayEventKind.PAYMENT_FAILED
    assert event.failure_code == "BAD_REQUEST_ERROR"


async def test_an_authorized_payment_is_captured_on_request(
    razorpay: FakeRazorpay, api: RazorpayApi
) -> None:
    payments = RazorpayPaymentsClient(api)
    created = await payments.create(payment("pay_rz_m", 25000, "INR"))
    payment_id = razorpay.pay(created.gateway_payment_id, capture=False)

    [authorized] = await RazorpayStatusSync(api).sync(
        payment_id="pay_rz_m", gateway_payment_id=created.gateway_payment_id
    )
    assert authorized.kind is GatewayEventKind.PAYMENT_AUTHORIZED

    captured = await payments.capture(created.gateway_payment_id, idempotency_key="capture:m")
    assert captured.status is GatewayPaymentStatus.SUCCEEDED
    assert razorpay.payments[payment_id]["status"] == "captured"
    again = await payments.capture(payment_id, idempotency_key="capture:m")
    assert again.status is GatewayPaymentStatus.SUCCEEDED
    assert len(razorpay.requests_to("POST", "/capture")) == 1


async def test_creating_the_same_payment_again_returns_the_first_order(
    razorpay: FakeRazorpay, api: RazorpayApi
) -> None:
    payments = RazorpayPaymentsClient(api)
    first = await payments.create(payment("pay_rz_2", 10000, "INR"))
    second = await payments.create(payment("pay_rz_2", 10000, "INR"))

    assert first.gateway_payment_id == second.gateway_payment_id
    assert len(razorpay.orders) == 1


async def test_a_create_whose_answer_timed_out_is_found_by_receipt(
    razorpay: FakeRazorpay, api: RazorpayApi
) -> None:
    razorpay.delay(3.0, method="POST", path_contains="/v1/orders")  # created, answer too late

    created = await RazorpayPaymentsClient(api).create(payment("pay_rz_3", 10000, "INR"))

    assert list(razorpay.orders) == [created.gateway_payment_id]
    assert len(razorpay.requests_to("POST", "/v1/orders")) == 1


async def test_a_refund_whose_answer_timed_out_is_not_made_twice(
    razorpay: FakeRazorpay, api: RazorpayApi
) -> None:
    created = await RazorpayPaymentsClient(api).create(payment("pay_rz_4", 10000, "INR"))
    razorpay.pay(created.gateway_payment_id)
    razorpay.delay(3.0, method="POST", path_contains="/refund")

    refund = await RazorpayRefundsClient(api).refund(
        refund_request("pay_rz_1", created.gateway_payment_id, "ref_rz_4", 4000, "INR")
    )

    assert list(razorpay.refunds) == [refund.gateway_refund_id]
    assert razorpay.refunds[refund.gateway_refund_id]["receipt"] == "ref_rz_4"


async def test_sync_without_the_order_id_finds_it_by_receipt(
    razorpay: FakeRazorpay, api: RazorpayApi
) -> None:
    created = await RazorpayPaymentsClient(api).create(payment("pay_rz_5", 10000, "INR"))
    sync = RazorpayStatusSync(api)

    [pending] = await sync.sync(payment_id="pay_rz_5", gateway_payment_id=None)
    assert pending.kind is GatewayEventKind.PAYMENT_REQUIRES_ACTION
    assert pending.gateway_payment_id == created.gateway_payment_id
    assert await sync.sync(payment_id="pay_rz_none", gateway_payment_id=None) == []
    assert await sync.sync(payment_id="pay_rz_5", gateway_payment_id="order_missing00") == []


async def test_refunding_more_than_was_captured_is_declined(
    razorpay: FakeRazorpay, api: RazorpayApi
) -> None:
    created = await RazorpayPaymentsClient(api).create(payment("pay_rz_6", 10000, "INR"))
    razorpay.pay(created.gateway_payment_id)

    with pytest.raises(GatewayDeclined):
        await RazorpayRefundsClient(api).refund(
            refund_request("pay_rz_1", created.gateway_payment_id, "ref_rz_6", 10001, "INR")
        )
    assert razorpay.refunds == {}


async def test_cancel_is_declined(api: RazorpayApi) -> None:
    created = await RazorpayPaymentsClient(api).create(payment("pay_rz_7", 10000, "INR"))
    with pytest.raises(GatewayDeclined) as declined:
        await RazorpayPaymentsClient(api).cancel(
            created.gateway_payment_id, idempotency_key="cancel:7"
        )
    assert declined.value.code == "cancel_not_supported"
