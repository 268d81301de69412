"""webhook-ingest as a real process in front of the real broker.

Every webhook is signed by the gateway's own SDK (stripe's signature helper) or by localstripe
itself; what is asserted is what a gateway and an SRE would see: the response code and body,
and the records that did (or did not) land on ``payments.gateway-events``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from pydantic import SecretStr

from payrail.devstack.kafka import KafkaServer
from payrail.devstack.localstripe import register_webhook
from payrail.devstack.paths import free_port
from tests.support.kafka import TopicReader
from tests.support.processes import ServiceProcess, service

TOPIC = "payments.gateway-events"
SECRET_OLD = "whsec_old_0123456789abcdef"
SECRET_NEW = "whsec_new_fedcba9876543210"
SECRET_EU = "whsec_eu_55555555555555555"


def gateways_config(*, stripe_api: str = "http://127.0.0.1:9") -> str:
    account = {"api_key": "sk_test_payrail", "api_base": stripe_api}
    return json.dumps(
        {
            "stripe": {
                "default": {**account, "webhook_secrets": [SECRET_OLD, SECRET_NEW]},
                "eu": {**account, "webhook_secrets": [SECRET_EU]},
            }
        }
    )


def stripe_event(payment_id: str, *, event_id: str | None = None, kind: str = "succeeded") -> bytes:
    intent = {
        "id": f"pi_{payment_id}",
        "object": "payment_intent",
        "amount": 1999,
        "amount_received": 1999,
        "currency": "usd",
        "status": kind,
        "metadata": {"payrail_payment_id": payment_id},
    }
    event = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": f"payment_intent.{kind}",
        "created": int(time.time()),
        "data": {"object": intent},
    }
    return json.dumps(event).encode()


def signed(body: bytes, secret: str = SECRET_NEW, timestamp: int | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp or int(time.time())
    )
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def ingest(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = {
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PAYRAIL_GATEWAYS": gateways_config(),
        "PAYRAIL_REJECT_BUDGET_PER_SOURCE": "1000",
    }
    with service("webhook_ingest", env, tmp_path_factory.mktemp("ingest")) as svc:
        yield svc


@pytest.fixture
async def topic(kafka_bootstrap: str) -> TopicReader:
    reader = TopicReader(kafka_bootstrap, TOPIC)
    await reader.mark()
    return reader


async def test_verified_webhook_is_published_keyed_by_payment_id(
    ingest: ServiceProcess, topic: TopicReader
) -> None:
    body = stripe_event("pay_ok", event_id="evt_ok_1")
    response = httpx.post(f"{ingest.url}/webhooks/stripe", content=body, headers=signed(body))
    assert response.status_code == 200, response.text
    [record] = await topic.read(expect=1)
    assert record.key == "pay_ok"
    assert record.headers["ce_id"] == "stripe:evt_ok_1"
    assert record.headers["ce_type"] == "gateway.payment.succeeded"
    assert record.headers["ce_source"] == "/payrail/webhook-ingest/stripe"
    assert record.headers["ce_specversion"] == "1.0"
    assert "traceparent" in record.headers
    payload = json.loads(record.value)
    assert payload["payment_id"] == "pay_ok"
    assert payload["gateway_payment_id"] == "pi_pay_ok"
    assert (payload["amount"], payload["currency"]) == (1999, "USD")


async def test_a_resent_webhook_is_acknowledged_and_carries_the_same_ce_id(
    ingest: ServiceProcess, topic: TopicReader
) -> None:
    body = stripe_event("pay_dup", event_id="evt_dup_1")
    for _ in range(3):
        response = httpx.post(f"{ingest.url}/webhooks/stripe", content=body, headers=signed(body))
        assert response.status_code == 200
    records = await topic.read(expect=1)
    assert {r.headers["ce_id"] for r in records} == {"stripe:evt_dup_1"}
    metrics = httpx.get(f"{ingest.url}/metrics").text
    assert 'payrail_webhooks_total{gateway="stripe",outcome="duplicate"}' in metrics


@pytest.mark.parametrize("secret", [SECRET_OLD, SECRET_NEW])
async def test_rotation_both_secrets_verify(
    ingest: ServiceProcess, topic: TopicReader, secret: str
) -> None:
    body = stripe_event(f"pay_rot_{secret[6:9]}")
    response = httpx.post(
        f"{ingest.url}/webhooks/stripe", content=body, headers=signed(body, secret)
    )
    assert response.status_code == 200
    assert len(await topic.read(expect=1)) == 1


async def test_each_account_verifies_with_its_own_secrets(
    ingest: ServiceProcess, topic: TopicReader
) -> None:
    body = stripe_event("pay_eu")
    wrong = httpx.post(f"{ingest.url}/webhooks/stripe/eu", content=body, headers=signed(body))
    assert wrong.status_code == 400
    right = httpx.post(
        f"{ingest.url}/webhooks/stripe/eu", content=body, headers=signed(body, SECRET_EU)
    )
    assert right.status_code == 200
    [record] = await topic.read(expect=1)
    assert json.loads(record.value)["account"] == "eu"


def _tampered() -> tuple[bytes, dict[str, str]]:
    body = stripe_event("pay_bad")
    return body.replace(b"1999", b"9999"), signed(body)


def _wrong_secret() -> tuple[bytes, dict[str, str]]:
    body = stripe_event("pay_bad")
    return body, signed(body, "whsec_attacker_guess_000000")


def _stale() -> tuple[bytes, dict[str, str]]:
    body = stripe_event("pay_bad")
    return body, signed(body, timestamp=int(time.time()) - 3600)


def _missing() -> tuple[bytes, dict[str, str]]:
    return stripe_event("pay_bad"), {"Content-Type": "application/json"}


def _malformed_json() -> tuple[bytes, dict[str, str]]:
    body = b'{"id": "evt_x", "type": '
    return body, signed(body)


@pytest.mark.parametrize(
    ("make", "path", "status", "reason"),
    [
        (_tampered, "/webhooks/stripe", 400, "invalid_signature"),
        (_wrong_secret, "/webhooks/stripe", 400, "invalid_signature"),
        (_stale, "/webhooks/stripe", 400, "stale_timestamp"),
        (_missing, "/webhooks/stripe", 400, "missing_signature"),
        (_malformed_json, "/webhooks/stripe", 400, "malformed_payload"),
        (_missing, "/webhooks/nopay", 404, None),
        (_missing, "/webhooks/stripe/no-such-account", 404, None),
    ],
)
async def test_bad_input_is_refused_with_problem_json_and_nothing_is_published(
    ingest: ServiceProcess,
    topic: TopicReader,
    make: object,
    path: str,
    status: int,
    reason: str | None,
) -> None:
    assert callable(make)
    body, headers = make()
    response = httpx.post(f"{ingest.url}{path}", content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    if reason:
        assert problem["reason"] == reason
    for secret in (SECRET_OLD, SECRET_NEW, SECRET_EU):
        assert secret not in response.text
    assert await topic.read(expect=0, settle=1.0) == []


@pytest.mark.parametrize("path", ["/webhooks/stripe", "/webhooks/stripe/eu"])
def test_a_webhook_path_answers_other_methods_405_allowing_post(
    ingest: ServiceProcess, path: str
) -> None:
    response = httpx.get(f"{ingest.url}{path}")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["instance"] == path


async def test_oversized_body_is_413_without_being_read(
    ingest: ServiceProcess, topic: TopicReader
) -> None:
    body = b"{" + b" " * (600 * 1024) + b"}"
    declared = httpx.post(f"{ingest.url}/webhooks/stripe", content=body, headers=signed(body))
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for _ in range(100):
            yield b" " * 8192

    streamed = httpx.post(f"{ingest.url}/webhooks/stripe", content=chunks(), headers=signed(b"x"))
    assert streamed.status_code == 413
    assert await topic.read(expect=0) == []


async def test_unused_verified_event_types_are_200_and_not_published(
    ingest: ServiceProcess, topic: TopicReader
) -> None:
    event = {
        "id": "evt_cust",
        "object": "event",
        "type": "customer.created",
        "created": 1,
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }
    body = json.dumps(event).encode()
    response = httpx.post(f"{ingest.url}/webhooks/stripe", content=body, headers=signed(body))
    assert response.status_code == 200
    assert await topic.read(expect=0) == []
    assert 'outcome="ignored"' in httpx.get(f"{ingest.url}/metrics").text


def test_a_flood_of_unverifiable_requests_is_rate_limited(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PAYRAIL_GATEWAYS": gateways_config(),
        "PAYRAIL_REJECT_BUDGET_PER_SOURCE": "5",
    }
    with service("webhook_ingest", env, tmp_path) as svc:
        body, headers = _wrong_secret()
        codes = [
            httpx.post(f"{svc.url}/webhooks/stripe", content=body, headers=headers).status_code
            for _ in range(8)
        ]
        assert codes == [400] * 5 + [429] * 3
        limited = httpx.post(f"{svc.url}/webhooks/stripe", content=body, headers=headers)
        assert limited.headers["Retry-After"]
        # even a valid webhook from the flooding source waits until the window passes
        good = stripe_event("pay_after_flood")
        assert (
            httpx.post(f"{svc.url}/webhooks/stripe", content=good, headers=signed(good)).status_code
            == 429
        )


async def test_broker_stopped_mid_test_503_then_200_and_nothing_lost(tmp_path: Path) -> None:
    """The gateway only gets 2xx for what the broker holds; after the outage its retry lands."""
    broker = KafkaServer(tmp_path / "kafka", port=free_port(), partitions=1)
    broker.start()
    try:
        env = {
            "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "PAYRAIL_GATEWAYS": gateways_config(),
            "PAYRAIL_PUBLISH_TIMEOUT_SECONDS": "3",
        }
        with service("webhook_ingest", env, tmp_path) as svc:
            reader = TopicReader(broker.bootstrap_servers, TOPIC)
            await reader.mark()
            before = stripe_event("pay_before", event_id="evt_before")

            def post(body: bytes) -> httpx.Response:
                url = f"{svc.url}/webhooks/stripe"
                return httpx.post(url, content=body, headers=signed(body), timeout=30)

            assert post(before).status_code == 200

            broker.stop()
            during = stripe_event("pay_during", event_id="evt_during")
            refused = post(during)
            assert refused.status_code == 503
            assert refused.headers["Retry-After"]
            assert refused.headers["content-type"] == "application/problem+json"

            broker.start()
            assert post(during).status_code == 200  # the gateway's retry
            records = await reader.read(expect=2, timeout=60)
            assert {r.headers["ce_id"] for r in records} == {
                "stripe:evt_before",
                "stripe:evt_during",
            }
    finally:
        broker.stop()


async def test_localstripe_sends_real_signed_webhooks_that_reach_the_broker(
    kafka_bootstrap: str, localstripe_url: str, tmp_path: Path
) -> None:
    secret = f"whsec_{uuid.uuid4().hex}"
    gateways = {
        "stripe": {
            "default": {
                "api_key": "sk_test_payrail",
                "api_base": localstripe_url,
                "webhook_secrets": [secret],
            }
        }
    }
    env = {
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PAYRAIL_GATEWAYS": json.dumps(gateways),
    }
    with service("webhook_ingest", env, tmp_path) as svc:
        register_webhook(
            localstripe_url, f"ingest-{svc.port}", f"{svc.url}/webhooks/stripe", SecretStr(secret)
        )
        reader = TopicReader(kafka_bootstrap, TOPIC)
        await reader.mark()

        payment_id = f"pay_{uuid.uuid4().hex[:12]}"
        client = stripe.StripeClient("sk_test_payrail", base_addresses={"api": localstripe_url})
        card: Any = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
        method = client.v1.payment_methods.create(params={"type": "card", "card": card})
        intent = client.v1.payment_intents.create(
            params={
                "amount": 2500,
                "currency": "eur",
                "payment_method": method.id,
                "confirm": True,
                "metadata": {"payrail_payment_id": payment_id},
            }
        )
        assert intent.status == "succeeded"

        records = [r for r in await reader.read(expect=1, timeout=30) if r.key == payment_id]
        assert [r.headers["ce_type"] for r in records] == ["gateway.payment.succeeded"]
        payload = json.loads(records[0].value)
        assert payload["gateway_payment_id"] == intent.id
        assert (payload["amount"], payload["currency"]) == (2500, "EUR")
        assert records[0].headers["ce_id"].startswith("stripe:evt_")


def test_a_misconfigured_account_stops_the_service_at_start(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    gateways = {"stripe": {"default": {"api_key": "sk_test_payrail", "webhook_secrets": []}}}
    env = {
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PAYRAIL_GATEWAYS": json.dumps(gateways),
    }
    with service("webhook_ingest", env, tmp_path, ready=False) as svc:
        assert svc.process.wait(60) != 0
        assert "sk_test_payrail" not in svc.log()
