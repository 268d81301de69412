"""Stripe report lines from a real localstripe through the official SDK.

localstripe keeps balance transactions for charges and refunds (fee 0) and manual payouts, but
accepts no list filters and links nothing to payouts: the fetcher must still return the period's
lines, say so in its logs, and leave ``payout_id`` empty rather than guess.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import stripe
from pydantic import SecretStr

from payrail.gateways.base import GatewayAccountConfig, ReportLineType
from payrail.gateways.registry import get
from payrail.gateways.stripe.payments import StripeApi, StripePaymentsClient, StripeRefundsClient
from tests.integration.gateways.conftest import payment, refund_request
from tests.integration.gateways.test_stripe import API_KEY, pay_with_test_card, unique


async def test_charges_refunds_and_payouts_come_back_as_report_lines(localstripe_url: str) -> None:
    config = GatewayAccountConfig(api_key=SecretStr(API_KEY), api_base=localstripe_url)
    api = StripeApi(config)
    payment_id = unique("pay_rep")
    started = datetime.now(UTC) - timedelta(seconds=5)
    intent = await StripePaymentsClient(api).create(
        payment(payment_id, amount=2500, currency="EUR")
    )
    await pay_with_test_card(localstripe_url, intent.gateway_payment_id)
    await StripeRefundsClient(api).refund(
        refund_request(payment_id, intent.gateway_payment_id, unique("re_rep"), 700, currency="EUR")
    )
    await api.aclose()
    sdk = stripe.StripeClient(
        API_KEY, base_addresses={"api": localstripe_url}, http_client=stripe.HTTPXClient()
    )
    paid_out = await sdk.v1.payouts.create_async({"amount": 1800, "currency": "eur"})

    fetcher = get("stripe").report_fetcher(config)
    lines = [
        line
        async for line in fetcher.lines(
            since=started, until=datetime.now(UTC) + timedelta(seconds=5)
        )
    ]

    mine = [line for line in lines if line.gateway_payment_id == intent.gateway_payment_id]
    charge = next(line for line in mine if line.type is ReportLineType.CHARGE)
    refund = next(line for line in mine if line.type is ReportLineType.REFUND)
    assert (charge.gross, charge.fee, charge.net, charge.currency) == (2500, 0, 2500, "EUR")
    assert charge.payment_id == payment_id  # from the PaymentIntent's metadata
    assert charge.line_id.startswith("txn_")
    assert (refund.gross, refund.net) == (-700, -700)
    assert str(refund.raw["source_id"]).startswith("re_")
    assert refund.payment_id == payment_id
    payout = next(line for line in lines if line.payout_id == paid_out.id)
    assert (payout.type, payout.gross, payout.net, payout.currency) == (
        ReportLineType.PAYOUT,
        -1800,
        -1800,
        "EUR",
    )
    assert payout.available_on is not None
    assert payout.available_on > payout.created_at  # localstripe's arrival: two days later
    # localstripe cannot say which payout paid a charge: no link rather than a guess
    assert charge.payout_id is None
    assert all(started <= line.created_at for line in lines)
