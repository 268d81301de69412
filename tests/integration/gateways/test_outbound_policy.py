"""The outbound-call policy, seen through each fake gateway's create call.

Each gateway reaches HTTP differently (httpx for PayPal, the Razorpay SDK on ``requests``, the
Adyen library), so the same faults are injected into each: 5xx then success, a gateway that
acts but answers too late, a definite 4xx, 429 with ``Retry-After``, a gateway that stays down.
"""

from __future__ import annotations

import dataclasses
import email.utils
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from payrail.devstack.paths import free_port
from payrail.gateways.adyen.payments import AdyenApi, AdyenPaymentsClient
from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayDeclined,
    GatewayTimeout,
    GatewayUnavailable,
    PaymentsClient,
)
from payrail.gateways.http import CallPolicy
from payrail.gateways.paypal.payments import PayPalApi, PayPalPaymentsClient
from payrail.gateways.razorpay.payments import RazorpayApi, RazorpayPaymentsClient
from payrail.gateways.registry import get
from tests.fakes.adyen_server import FakeAdyen
from tests.fakes.http_fake import FakeGateway, Recorded
from tests.fakes.paypal_server import FakePayPal
from tests.fakes.razorpay_server import FakeRazorpay
from tests.integration.gateways.conftest import (
    Waits,
    adyen_account,
    payment,
    paypal_account,
    razorpay_account,
)


@dataclass(frozen=True)
class Gateway:
    """How one gateway's create call looks on the wire."""

    name: str
    fake: Callable[[], FakeGateway]
    account: Callable[[Any], GatewayAccountConfig]
    client: Callable[[GatewayAccountConfig, CallPolicy], PaymentsClient]
    create_path: str
    objects: Callable[[Any], int]
    #: what carries the idempotency key on the wire
    key_of: Callable[[Recorded], str | None]
    currency: str


GATEWAYS = [
    Gateway(
        "paypal",
        FakePayPal,
        paypal_account,
        lambda config, policy: PayPalPaymentsClient(PayPalApi(config, policy=policy)),
        "/v2/checkout/orders",
        lambda fake: len(fake.orders),
        lambda r: r.headers.get("paypal-request-id"),
        "USD",
    ),
    Gateway(
        "razorpay",
        FakeRazorpay,
        razorpay_account,
        lambda config, policy: RazorpayPaymentsClient(RazorpayApi(config, policy=policy)),
        "/v1/orders",
        lambda fake: len(fake.orders),
        # no idempotency key at Razorpay: the receipt (payrail's payment id) dedupes
        lambda r: r.json()["receipt"] if r.method == "POST" else r.query.get("receipt"),
        "INR",
    ),
    Gateway(
        "adyen",
        FakeAdyen,
        adyen_account,
        lambda config, policy: AdyenPaymentsClient(AdyenApi(config, policy=policy)),
        "/sessions",
        lambda fake: len(fake.sessions),
        lambda r: r.headers.get("idempotency-key"),
        "EUR",
    ),
]


@pytest.fixture(params=GATEWAYS, ids=[g.name for g in GATEWAYS])
def gateway(request: pytest.FixtureRequest) -> Gateway:
    chosen: Gateway = request.param
    return chosen


@pytest.fixture
async def fake(gateway: Gateway) -> AsyncIterator[Any]:
    with gateway.fake() as server:
        yield server


def creates(gateway: Gateway, fake: Any) -> list[Recorded]:
    return fake.requests_to("POST", gateway.create_path)  # type: ignore[no-any-return]


async def test_5xx_twice_then_success_creates_one_object_with_one_key(
    gateway: Gateway, fake: Any, policy: CallPolicy, waits: Waits
) -> None:
    fake.fail(503, times=2, method="POST", path_contains=gateway.create_path)
    client = gateway.client(gateway.account(fake), policy)

    created = await client.create(payment("pay_5xx", 10000, gateway.currency))

    attempts = creates(gateway, fake)
    assert len(attempts) == 3
    assert {gateway.key_of(r) for r in attempts} == {
        "pay_5xx" if gateway.name == "razorpay" else "payment:pay_5xx"
    }
    assert gateway.objects(fake) == 1
    assert created.gateway_payment_id
    assert len(waits) == 2


async def test_a_timeout_is_an_unknown_outcome_and_the_retry_stays_single(
    gateway: Gateway, fake: Any, policy: CallPolicy
) -> None:
    fast = dataclasses.replace(policy, timeout=0.3, max_attempts=2)
    fake.delay(1.5, times=2, path_contains=gateway.create_path)  # acts, answers too late
    client = gateway.client(gateway.account(fake), fast)

    with pytest.raises(GatewayTimeout):
        await client.create(payment("pay_slow", 10000, gateway.currency))

    # later (the janitor): the same payment again, same key -> still one object at the gateway
    await client.create(payment("pay_slow", 10000, gateway.currency))
    assert gateway.objects(fake) == 1


async def test_a_4xx_is_declined_at_once(
    gateway: Gateway, fake: Any, policy: CallPolicy, waits: Waits
) -> None:
    fake.fail(400, method="POST", path_contains=gateway.create_path)
    client = gateway.client(gateway.account(fake), policy)

    with pytest.raises(GatewayDeclined):
        await client.create(payment("pay_400", 10000, gateway.currency))

    assert len(creates(gateway, fake)) == 1
    assert waits == []
    assert gateway.objects(fake) == 0


def _in_four_seconds() -> str:
    return email.utils.formatdate(time.time() + 4, usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [(lambda: "3", 3.0, 3.0), (_in_four_seconds, 2.0, 4.0)],
    ids=["seconds", "http-date"],
)
async def test_429_waits_as_long_as_retry_after_says(
    gateway: Gateway,
    fake: Any,
    policy: CallPolicy,
    waits: Waits,
    retry_after: Callable[[], str],
    low: float,
    high: float,
) -> None:
    fake.fail(429, method="POST", path_contains=gateway.create_path, retry_after=retry_after())
    client = gateway.client(gateway.account(fake), policy)

    await client.create(payment("pay_429", 10000, gateway.currency))

    assert len(waits) == 1
    assert low <= waits[0] <= high  # never sooner than asked
    assert gateway.objects(fake) == 1


async def test_a_retry_after_beyond_the_cap_ends_the_call_instead_of_retrying_early(
    gateway: Gateway, fake: Any, policy: CallPolicy, waits: Waits
) -> None:
    fake.fail(429, method="POST", path_contains=gateway.create_path, retry_after="120")
    client = gateway.client(gateway.account(fake), policy)

    with pytest.raises(GatewayUnavailable):
        await client.create(payment("pay_429_cap", 10000, gateway.currency))

    assert waits == []
    assert len(creates(gateway, fake)) == 1


async def test_a_gateway_that_stays_down_is_unavailable_after_the_last_attempt(
    gateway: Gateway, fake: Any, policy: CallPolicy
) -> None:
    fake.fail(502, times=10, method="POST", path_contains=gateway.create_path)
    client = gateway.client(gateway.account(fake), policy)

    with pytest.raises(GatewayUnavailable) as unavailable:
        await client.create(payment("pay_down", 10000, gateway.currency))

    assert not isinstance(unavailable.value, GatewayTimeout)
    assert len(creates(gateway, fake)) == policy.max_attempts


async def test_an_unreachable_gateway_is_unavailable(
    gateway: Gateway, fake: Any, policy: CallPolicy, waits: Waits
) -> None:
    closed = gateway.account(fake).model_copy(
        update={"api_base": f"http://127.0.0.1:{free_port()}"}
    )
    client = gateway.client(closed, policy)

    with pytest.raises(GatewayUnavailable):
        await client.create(payment("pay_gone", 10000, gateway.currency))
    assert len(waits) == policy.max_attempts - 1


async def test_the_registry_builds_working_clients_from_entry_points(
    gateway: Gateway, fake: Any
) -> None:
    family = get(gateway.name)
    config = gateway.account(fake)

    created = await family.payments(config).create(payment("pay_reg", 10000, gateway.currency))
    await family.aclose()  # the connections it kept for this event loop

    assert family.name == gateway.name
    assert gateway.objects(fake) == 1
    assert created.gateway_payment_id
