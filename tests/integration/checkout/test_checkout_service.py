"""checkout as users see it: a real checkout process, webhook-ingest, Kafka, PostgreSQL and
localstripe paid with the real stripe SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from payrail.contracts.payments import PAYMENT_INTENT_REQUESTED, PaymentIntentRequested
from payrail.contracts.registry import gateway_event_type
from payrail.contracts.topics import PAYMENTS_GATEWAY_EVENTS, PAYMENTS_INTENTS, PAYMENTS_LIFECYCLE
from payrail.devstack.localstripe import register_webhook
from payrail.gateways.events import GatewayEvent
from payrail.messaging.envelope import Envelope, encode
from tests.support.kafka import Record, TopicReader
from tests.support.processes import ServiceProcess, service

API_KEY = "sk_test_payrail"
CARD: Any = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}


STANDARD_WEBHOOKS_SECRET = "whsec_" + base64.b64encode(b"payrail-test-standard-webhooks").decode()


@pytest.fixture(scope="module")
def checkout(
    kafka_bootstrap: str,
    database_url: str,
    localstripe_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    """checkout and webhook-ingest as processes; localstripe's webhooks go to the ingest."""
    secret = f"whsec_{uuid.uuid4().hex}"
    gateways = {
        "stripe": {
            "default": {
                "api_key": API_KEY,
                "api_base": localstripe_url,
                "webhook_secrets": [secret],
            }
        },
        # a webhook-only signing scheme: ingest verifies it, checkout can take no payment with it
        "standardwebhooks": {"default": {"webhook_secrets": [STANDARD_WEBHOOKS_SECRET]}},
    }
    env = {
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PAYRAIL_DATABASE_URL": database_url,
        "PAYRAIL_GATEWAYS": json.dumps(gateways),
    }
    logs = tmp_path_factory.mktemp("checkout")
    with service("webhook_ingest", env, logs) as ingest, service("checkout", env, logs) as svc:
        register_webhook(
            localstripe_url,
            f"checkout-test-{svc.port}",
            f"{ingest.url}/webhooks/stripe",
            SecretStr(secret),
        )
        yield svc


@pytest.fixture
def stripe_client(localstripe_url: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": localstripe_url})


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "amount": 1999,
        "currency": "USD",
        "user_id": f"u_{uuid.uuid4().hex[:10]}",
        "sku": "pro-monthly",
        "gateway": "stripe",
        **overrides,
    }


def post(
    svc: ServiceProcess, payload: Any, key: str | None = None, path: str = ""
) -> httpx.Response:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex} if key != "" else {}
    return httpx.post(f"{svc.url}/v1/payments{path}", json=payload, headers=headers, timeout=30)


def wait_for_status(svc: ServiceProcess, payment_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        payment: dict[str, Any] = httpx.get(f"{svc.url}/v1/payments/{payment_id}").json()
        if payment["status"] == status or time.monotonic() > deadline:
            assert payment["status"] == status, payment
            return payment
        time.sleep(0.2)


def pay(client: stripe.StripeClient, gateway_payment_id: str) -> None:
    method = client.v1.payment_methods.create(params={"type": "card", "card": CARD})
    # localstripe takes the method by update, then a confirm without parameters (as Stripe.js)
    client.v1.payment_intents.update(gateway_payment_id, params={"payment_method": method.id})
    intent = client.v1.payment_intents.confirm(gateway_payment_id)
    assert intent.status == "succeeded"


def of(records: list[Record], payment_id: str) -> list[str]:
    return [r.headers["ce_type"] for r in records if r.key == payment_id]


async def test_a_payment_paid_at_the_gateway_succeeds_once(
    checkout: ServiceProcess, kafka_bootstrap: str, stripe_client: stripe.StripeClient
) -> None:
    lifecycle = TopicReader(kafka_bootstrap, PAYMENTS_LIFECYCLE)
    await lifecycle.mark()
    response = post(checkout, body())
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "pending"
    assert created["gateway_payment_id"].startswith("pi_")
    assert created["client_secret"]

    pay(stripe_client, created["gateway_payment_id"])

    payment = wait_for_status(checkout, created["id"], "succeeded")
    assert (payment["amount"], payment["currency"]) == (1999, "USD")
    records = await lifecycle.read(expect=3, timeout=30, settle=2)
    assert of(records, created["id"]) == ["payment.created", "payment.pending", "payment.succeeded"]
    succeeded = next(r for r in records if r.headers["ce_type"] == "payment.succeeded")
    data = json.loads(succeeded.value)
    assert (data["user_id"], data["sku"], data["amount"]) == (
        created["user_id"],
        "pro-monthly",
        1999,
    )
    timeline = httpx.get(f"{checkout.url}/v1/payments/{created['id']}/events").json()["events"]
    assert "gateway.payment.succeeded" in [e["kind"] for e in timeline]


async def test_fifty_concurrent_requests_with_one_key_make_one_payment(
    checkout: ServiceProcess, stripe_client: stripe.StripeClient
) -> None:
    payload, key = body(), uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=checkout.url, timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post("/v1/payments", json=payload, headers={"Idempotency-Key": key})
                for _ in range(50)
            )
        )
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1  # the first response, byte for byte
    payment_id = responses[0].json()["id"]
    listed = httpx.get(f"{checkout.url}/v1/payments", params={"user_id": payload["user_id"]})
    assert [p["id"] for p in listed.json()["payments"]] == [payment_id]
    intents = stripe_client.v1.payment_intents.list(params={"limit": 100})
    ours = [i for i in intents.data if i.metadata.to_dict().get("payrail_payment_id") == payment_id]
    assert len(ours) == 1


def test_same_key_with_another_body_is_422_and_the_first_answer_stays(
    checkout: ServiceProcess,
) -> None:
    payload, key = body(), uuid.uuid4().hex
    first = post(checkout, payload, key)
    again = post(checkout, payload, key)
    other = post(checkout, {**payload, "amount": 2999}, key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    # the stored answer was made with the row's own update time, not an estimate of it
    stored = httpx.get(f"{checkout.url}/v1/payments/{first.json()['id']}").json()
    assert stored["updated_at"] == first.json()["updated_at"]
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("change", "key", "status", "problem"),
    [
        ({"amount": 19.99}, None, 422, "invalid-amount"),
        ({"amount": 1999.0}, None, 422, "invalid-amount"),
        ({"amount": 1500.5, "currency": "JPY"}, None, 422, "invalid-amount"),
        ({"amount": 0}, None, 422, "invalid-amount"),
        ({"amount": "1999"}, None, 422, "invalid-amount"),
        ({"currency": "XYZ"}, None, 422, "invalid-currency"),
        ({"gateway": "nosuchpay"}, None, 422, "unknown-gateway"),
        ({"gateway": "paypal"}, None, 422, "gateway-not-configured"),
        ({"gateway": "standardwebhooks"}, None, 422, "gateway-not-supported"),
        ({}, "", 400, "idempotency-key-required"),
    ],
)
async def test_bad_input_is_a_problem_and_changes_nothing(
    checkout: ServiceProcess,
    kafka_bootstrap: str,
    database_url: str,
    change: dict[str, Any],
    key: str | None,
    status: int,
    problem: str,
) -> None:
    payload = body(**change)
    response = post(checkout, payload, key)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith(f"/{problem}")
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*) FROM checkout.payments WHERE user_id = :u"),
            {"u": payload["user_id"]},
        ).scalar_one()
    engine.dispose()
    assert rows == 0


def test_refunds_problems(checkout: ServiceProcess) -> None:
    unknown = post(checkout, {"amount": 100}, path="/pay_nope/refunds")
    assert unknown.status_code == 404
    created = post(checkout, body()).json()
    not_paid = post(checkout, {"amount": 100}, path=f"/{created['id']}/refunds")
    assert not_paid.status_code == 409
    assert not_paid.json()["type"].endswith("/payment-not-refundable")


async def test_partial_then_full_refund(
    checkout: ServiceProcess, kafka_bootstrap: str, stripe_client: stripe.StripeClient
) -> None:
    created = post(checkout, body()).json()
    pay(stripe_client, created["gateway_payment_id"])
    wait_for_status(checkout, created["id"], "succeeded")
    lifecycle = TopicReader(kafka_bootstrap, PAYMENTS_LIFECYCLE)
    await lifecycle.mark()

    too_much = post(checkout, {"amount": 5000}, path=f"/{created['id']}/refunds")
    assert too_much.status_code == 422
    assert too_much.json()["type"].endswith("/refund-exceeds-refundable")
    partial = post(checkout, {"amount": 500}, path=f"/{created['id']}/refunds")
    assert partial.status_code == 201, partial.text
    wait_for_status(checkout, created["id"], "partially_refunded")
    rest = post(checkout, {}, path=f"/{created['id']}/refunds")
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 1499
    payment = wait_for_status(checkout, created["id"], "refunded")
    assert payment["amount_refunded"] == 1999
    records = await lifecycle.read(expect=2, timeout=30, settle=3)
    assert of(records, created["id"]) == ["payment.partially_refunded", "payment.refunded"]
    amounts = [json.loads(r.value)["refund_amount"] for r in records if r.key == created["id"]]
    assert amounts == [500, 1499]


async def _publish(bootstrap: str, topic: str, key: str, envelope: Envelope[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        record = encode(envelope, key)
        await producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()


async def test_a_duplicated_gateway_event_moves_the_payment_once(
    checkout: ServiceProcess, kafka_bootstrap: str
) -> None:
    created = post(checkout, body()).json()
    lifecycle = TopicReader(kafka_bootstrap, PAYMENTS_LIFECYCLE)
    await lifecycle.mark()
    event = GatewayEvent(
        gateway="stripe",
        gateway_event_id=f"evt_{uuid.uuid4().hex}",
        kind="payment.failed",
        payment_id=created["id"],
        gateway_payment_id=created["gateway_payment_id"],
        failure_code="card_declined",
        occurred_at="2026-11-25T10:00:00Z",
    )
    envelope = Envelope.create(
        gateway_event_type(event.kind), "/payrail/webhook-ingest/stripe", event, id=event.ce_id
    )
    for _ in range(2):
        await _publish(kafka_bootstrap, PAYMENTS_GATEWAY_EVENTS, created["id"], envelope)
    payment = wait_for_status(checkout, created["id"], "failed")
    assert payment["failure_code"] == "card_declined"
    records = await lifecycle.read(expect=1, timeout=30, settle=3)
    assert of(records, created["id"]) == ["payment.failed"]


async def test_an_intent_on_kafka_creates_the_payment(
    checkout: ServiceProcess, kafka_bootstrap: str
) -> None:
    payment_id = f"pay_intent_{uuid.uuid4().hex[:12]}"
    intent = PaymentIntentRequested(
        payment_id=payment_id,
        amount=4200,
        currency="EUR",
        user_id="u_k",
        sku="pro",
        gateway="stripe",
    )
    lifecycle = TopicReader(kafka_bootstrap, PAYMENTS_LIFECYCLE)
    await lifecycle.mark()
    envelope = Envelope.create(PAYMENT_INTENT_REQUESTED, "/payrail/tests", intent)
    for _ in range(2):  # asked twice: one payment
        await _publish(kafka_bootstrap, PAYMENTS_INTENTS, payment_id, envelope)
    records = await lifecycle.read(expect=2, timeout=30, settle=2)
    assert of(records, payment_id) == ["payment.created", "payment.pending"]
    payment = wait_for_status(checkout, payment_id, "pending")
    assert payment["gateway_payment_id"].startswith("pi_")
