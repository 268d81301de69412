"""Adyen client (official library) against the fake Adyen Checkout API."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from payrail.gateways.adyen.payments import AdyenApi, AdyenPaymentsClient, AdyenRefundsClient
from payrail.gateways.base import GatewayDeclined, GatewayPaymentStatus
from payrail.gateways.http import CallPolicy
from payrail.gateways.registry import get
from tests.fakes.adyen_server import FakeAdyen
from tests.integration.gateways.conftest import adyen_account, payment, refund_request


@pytest.fixture
def api(adyen: FakeAdyen, policy: CallPolicy) -> AdyenApi:
    return AdyenApi(adyen_account(adyen), policy=policy)


async def test_a_session_carries_the_payment_id_and_opens_a_hosted_page(
    adyen: FakeAdyen, api: AdyenApi
) -> None:
    created = await AdyenPaymentsClient(api).create(payment("pay_ad_1", 4500, "EUR"))

    session = adyen.sessions[created.gateway_payment_id]
    assert session["reference"] == "pay_ad_1"  # merchantReference of every webhook
    assert session["metadata"]["payrail_payment_id"] == "pay_ad_1"
    assert session["amount"] == {"value": 4500, "currency": "EUR"}
    assert created.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert created.redirect_url == session["url"]
    assert created.client_secret == session["sessionData"]
    [sent] = adyen.requests_to("POST", "/sessions")
    assert sent.headers["idempotency-key"] == "payment:pay_ad_1"


async def test_the_same_key_twice_opens_one_session(adyen: FakeAdyen, api: AdyenApi) -> None:
    payments = AdyenPaymentsClient(api)
    first = await payments.create(payment("pay_ad_2", 4500, "EUR"))
    second = await payments.create(payment("pay_ad_2", 4500, "EUR"))

    assert first.gateway_payment_id == second.gateway_payment_id
    assert len(adyen.sessions) == 1


async def test_a_captured_payment_is_refunded_by_its_psp_reference(
    adyen: FakeAdyen, api: AdyenApi
) -> None:
    created = await AdyenPaymentsClient(api).create(payment("pay_ad_3", 4500, "EUR"))
    psp = adyen.authorise(created.gateway_payment_id)

    refund = await AdyenRefundsClient(api).refund(
        refund_request("pay_ad_1", psp, "ref_ad_1", 1500, "EUR")
    )

    assert (refund.status, refund.amount, refund.currency) == ("pending", 1500, "EUR")
    assert adyen.refunds[refund.gateway_refund_id]["paymentPspReference"] == psp
    assert adyen.refunds[refund.gateway_refund_id]["reference"] == "ref_ad_1"


async def test_a_refund_by_session_id_is_declined_before_calling_adyen(
    adyen: FakeAdyen, api: AdyenApi
) -> None:
    created = await AdyenPaymentsClient(api).create(payment("pay_ad_4", 4500, "EUR"))

    with pytest.raises(GatewayDeclined) as declined:
        await AdyenRefundsClient(api).refund(
            refund_request("pay_ad_1", created.gateway_payment_id, "ref_ad_1", 1500, "EUR")
        )
    assert declined.value.code == "psp_reference_required"
    assert adyen.requests_to("POST", "/refunds") == []


async def test_an_unknown_psp_reference_is_declined(api: AdyenApi) -> None:
    with pytest.raises(GatewayDeclined) as declined:
        await AdyenRefundsClient(api).refund(
            refund_request("pay_ad_1", "ZZZZZZZZZZZZZZZZ", "ref_ad_1", 1500, "EUR")
        )
    assert declined.value.code == "167"


async def test_what_adyen_cannot_do_is_declined_and_sync_reports_nothing(
    adyen: FakeAdyen, api: AdyenApi
) -> None:
    payments = AdyenPaymentsClient(api)
    created = await payments.create(payment("pay_ad_5", 4500, "EUR"))

    for call in (payments.capture, payments.cancel):
        with pytest.raises(GatewayDeclined):
            await call(created.gateway_payment_id, idempotency_key="op:5")
    sync = get("adyen").status_sync(adyen_account(adyen))
    assert await sync.sync(payment_id="pay_ad_5", gateway_payment_id=None) == []


async def test_a_wrong_api_key_is_declined(adyen: FakeAdyen, policy: CallPolicy) -> None:
    config = adyen_account(adyen).model_copy(update={"api_key": SecretStr("not-the-key")})
    with pytest.raises(GatewayDeclined) as declined:
        await AdyenPaymentsClient(AdyenApi(config, policy=policy)).create(
            payment("pay_ad_6", 4500, "EUR")
        )
    assert "not-the-key" not in str(declined.value)
    assert adyen.sessions == {}
