"""Fixtures for the gateway client tests: fake gateway servers, accounts and a fast policy.

The policy's ``sleep`` records the waits instead of sleeping, so retries run at once and the
tests can assert on the waits themselves (``Retry-After`` honoured) without timing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from payrail.gateways.base import CreatePayment, CreateRefund, GatewayAccountConfig
from payrail.gateways.http import CallPolicy
from payrail.gateways.paypal.payments import PayPalApi
from tests.fakes.adyen_server import FakeAdyen
from tests.fakes.paypal_server import FakePayPal
from tests.fakes.razorpay_server import FakeRazorpay

REPO = Path(__file__).resolve().parents[3]


class Waits(list[float]):
    """The waits a policy asked for, in order."""

    async def sleep(self, seconds: float) -> None:
        self.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def waits() -> Waits:
    return Waits()


@pytest.fixture
def policy(waits: Waits) -> CallPolicy:
    """Four attempts, a 1 s deadline each, waits recorded instead of slept."""
    return CallPolicy(
        timeout=1.0,
        max_attempts=4,
        max_elapsed=60.0,
        backoff_initial=0.05,
        backoff_max=0.2,
        retry_after_max=5.0,
        sleep=waits.sleep,
    )


def payment(payment_id: str, amount: int = 1999, currency: str = "USD") -> CreatePayment:
    return CreatePayment(
        payment_id=payment_id,
        idempotency_key=f"payment:{payment_id}",
        amount=amount,
        currency=currency,
        description="Pro plan, monthly",
        user_id="u_1",
        sku="pro-monthly",
        return_url="https://shop.example/return",
    )


def refund_request(
    payment_id: str, gateway_payment_id: str, refund_id: str, amount: int, currency: str = "USD"
) -> CreateRefund:
    return CreateRefund(
        refund_id=refund_id,
        idempotency_key=f"refund:{refund_id}",
        payment_id=payment_id,
        gateway_payment_id=gateway_payment_id,
        amount=amount,
        currency=currency,
        reason="customer asked",
    )


@pytest.fixture
def paypal() -> Iterator[FakePayPal]:
    with FakePayPal() as fake:
        yield fake


@pytest.fixture
def razorpay() -> Iterator[FakeRazorpay]:
    with FakeRazorpay() as fake:
        yield fake


@pytest.fixture
def adyen() -> Iterator[FakeAdyen]:
    with FakeAdyen() as fake:
        yield fake


def paypal_account(fake: FakePayPal) -> GatewayAccountConfig:
    return GatewayAccountConfig(
        api_key=SecretStr(fake.client_id),
        api_secret=SecretStr(fake.client_secret),
        api_base=fake.url,
    )


def razorpay_account(fake: FakeRazorpay) -> GatewayAccountConfig:
    return GatewayAccountConfig(
        api_key=SecretStr(fake.key_id), api_secret=SecretStr(fake.key_secret), api_base=fake.url
    )


def adyen_account(fake: FakeAdyen) -> GatewayAccountConfig:
    return GatewayAccountConfig(
        api_key=SecretStr(fake.api_key), merchant_account=fake.merchant_account, api_base=fake.url
    )


@pytest.fixture
async def paypal_api(paypal: FakePayPal, policy: CallPolicy) -> AsyncIterator[PayPalApi]:
    api = PayPalApi(paypal_account(paypal), policy=policy)
    yield api
    await api.aclose()
