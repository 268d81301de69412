"""The janitor as users see it: checkout as real processes on Kafka and PostgreSQL, localstripe
(behind a proxy that can make the network slow or lose requests) paid with the stripe SDK, and
no webhook ever delivered - whatever checkout learns, it learns from its status syncs."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import create_engine, make_url, text

from payrail.contracts.topics import PAYMENTS_GATEWAY_EVENTS, PAYMENTS_LIFECYCLE
from tests.fakes.gateway_proxy import GatewayProxy
from tests.integration.checkout.test_checkout_service import API_KEY, body, of, pay, post
from tests.support.kafka import TopicReader
from tests.support.processes import ServiceProcess, service

JANITOR_SOURCE = "/payrail/checkout/janitor"
CREATE_PATH = "/v1/payment_intents"


@pytest.fixture(scope="module")
def proxy(localstripe_url: str) -> Iterator[GatewayProxy]:
    with GatewayProxy(localstripe_url) as running:
        yield running


@pytest.fixture(scope="module")
def new_database(database_url: str) -> Iterator[Callable[[], str]]:
    """Fresh databases (checkout's schema is fixed, so a test's janitors get a database of their
    own, where no other test's payments are due), dropped at the end."""
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make() -> str:
        name = f"janitor_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return make_url(database_url).set(database=name).render_as_string(hide_password=False)

    yield make
    with admin.connect() as conn:
        for name in made:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def checkout_env(
    kafka: str, database: str, gateway: str, schedule: str, batch: int
) -> dict[str, str]:
    """A checkout whose Stripe calls go through the proxy and time out after one second."""
    gateways = {
        "stripe": {
            "default": {
                "api_key": API_KEY,
                "api_base": gateway,
                "timeout_seconds": 1.0,
                "options": {
                    "retry_max_attempts": "2",
                    "retry_backoff_initial": "0.05",
                    "retry_backoff_max": "0.1",
                },
            }
        }
    }
    return {
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "PAYRAIL_DATABASE_URL": database,
        "PAYRAIL_GATEWAYS": json.dumps(gateways),
        "PAYRAIL_JANITOR_SCHEDULE": schedule,
        "PAYRAIL_JANITOR_POLL_INTERVAL_SECONDS": "0.2",
        "PAYRAIL_JANITOR_BATCH_SIZE": str(batch),
        "PAYRAIL_UNKNOWN_SYNC_AFTER_SECONDS": "1",
    }


@pytest.fixture(scope="module")
def checkout(
    kafka_bootstrap: str,
    new_database: Callable[[], str],
    proxy: GatewayProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    """One checkout; its janitor syncs 1, 2, 3, 4, 6 s after creation (12 s in all)."""
    env = checkout_env(kafka_bootstrap, new_database(), proxy.url, "1,1,1,1,2", batch=8)
    with service("checkout", env, tmp_path_factory.mktemp("janitor")) as svc:
        yield svc


@pytest.fixture
def stripe_client(localstripe_url: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": localstripe_url})


def payment(svc: ServiceProcess, payment_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{svc.url}/v1/payments/{payment_id}").json()
    return answer


def wait_until(
    svc: ServiceProcess, payment_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        current = payment(svc, payment_id)
        if done(current) or time.monotonic() > deadline:
            assert done(current), current
            return current
        time.sleep(0.2)


def timeline(svc: ServiceProcess, payment_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = httpx.get(f"{svc.url}/v1/payments/{payment_id}/events").json()[
        "events"
    ]
    return events


def intents_of(client: stripe.StripeClient, payment_id: str) -> list[str]:
    """Every PaymentIntent at the gateway carrying ``payment_id`` in its metadata."""
    listed = client.v1.payment_intents.list(params={"limit": 100})
    return [
        intent.id
        for intent in listed.auto_paging_iter()
        if intent.metadata.to_dict().get("payrail_payment_id") == payment_id
    ]


async def test_a_payment_whose_webhook_never_came_succeeds_through_the_janitor(
    checkout: ServiceProcess, kafka_bootstrap: str, stripe_client: stripe.StripeClient
) -> None:
    lifecycle = TopicReader(kafka_bootstrap, PAYMENTS_LIFECYCLE)
    gateway_events = TopicReader(kafka_bootstrap, PAYMENTS_GATEWAY_EVENTS)
    await lifecycle.mark()
    await gateway_events.mark()
    created = post(checkout, body()).json()
    assert created["status"] == "pending"

    pay(stripe_client, created["gateway_payment_id"])  # the tab closes: no webhook, no redirect

    done = wait_until(checkout, created["id"], lambda p: p["status"] == "succeeded")
    assert done["needs_attention"] is False
    records = await lifecycle.read(expect=3, timeout=30, settle=3)
    assert of(records, created["id"]).count("payment.succeeded") == 1
    # the sync's finding travelled the webhook path: on the topic, from the janitor's status sync
    synced = [r for r in await gateway_events.read(expect=1, settle=1) if r.key == created["id"]]
    succeeded = [r for r in synced if r.headers["ce_type"] == "gateway.payment.succeeded"]
    assert {r.headers["ce_source"] for r in synced} == {JANITOR_SOURCE}
    assert {r.headers["ce_id"] for r in succeeded} == {
        f"stripe:sync:{created['gateway_payment_id']}:succeeded"
    }
    assert json.loads(succeeded[0].value)["account"] == "default"
    applied = [
        e for e in timeline(checkout, created["id"]) if e["kind"] == "gateway.payment.succeeded"
    ]
    assert [(e["source"], e["status_after"]) for e in applied] == [(JANITOR_SOURCE, "succeeded")]


async def test_a_create_that_timed_out_is_resolved_with_the_same_key_and_one_intent(
    checkout: ServiceProcess, proxy: GatewayProxy, stripe_client: stripe.StripeClient
) -> None:
    # the gateway opens the intent, but its answer arrives after checkout gave up
    proxy.delay(4.0, times=100, method="POST", path_contains=CREATE_PATH)
    try:
        response = post(checkout, body())
    finally:
        proxy.heal()
    assert response.status_code == 202, response.text
    created = response.json()
    assert (created["status"], created["outcome_unknown"]) == ("initiated", True)
    assert created["gateway_payment_id"] is None

    resolved = wait_until(checkout, created["id"], lambda p: p["status"] == "pending")

    assert intents_of(stripe_client, created["id"]) == [resolved["gateway_payment_id"]]
    assert resolved["outcome_unknown"] is False
    keys = {
        r.headers["idempotency-key"]
        for r in proxy.requests_to("POST", CREATE_PATH)
        if r.path == CREATE_PATH and created["id"].encode() in r.body
    }
    assert keys == {f"{created['id']}:create"}
    retries = [
        (e["source"], e["detail"]["create_retry"])
        for e in timeline(checkout, created["id"])
        if e["kind"] == "janitor.sync" and "create_retry" in e["detail"]
    ]
    assert retries == [(JANITOR_SOURCE, "done")]  # made once, by the janitor


async def test_a_payment_the_gateway_never_heard_of_is_flagged_for_a_human_not_failed(
    checkout: ServiceProcess,
    kafka_bootstrap: str,
    proxy: GatewayProxy,
    stripe_client: stripe.StripeClient,
) -> None:
    lifecycle = TopicReader(kafka_bootstrap, PAYMENTS_LIFECYCLE)
    await lifecycle.mark()
    proxy.black_hole(method="POST", path=CREATE_PATH)  # every create is lost on the way
    try:
        response = post(checkout, body())
        assert response.status_code == 202, response.text
        payment_id = response.json()["id"]
        flagged = wait_until(checkout, payment_id, lambda p: p["needs_attention"])
    finally:
        proxy.heal()

    assert (flagged["status"], flagged["outcome_unknown"]) == ("initiated", True)
    assert flagged["attention_reason"] == (
        "the gateway has no record of the payment after 5 status syncs"
        " and the create call's outcome is unknown"
    )
    listed = httpx.get(f"{checkout.url}/v1/payments", params={"needs_attention": "true"}).json()
    assert payment_id in [p["id"] for p in listed["payments"]]
    records = await lifecycle.read(expect=2, timeout=30, settle=3)
    assert of(records, payment_id) == ["payment.created", "payment.needs_attention"]
    announced = json.loads(
        next(
            r.value
            for r in records
            if r.key == payment_id and r.headers["ce_type"] == "payment.needs_attention"
        )
    )
    assert (announced["status"], announced["reason"]) == ("initiated", flagged["attention_reason"])
    assert intents_of(stripe_client, payment_id) == []
    syncs = [e["detail"] for e in timeline(checkout, payment_id) if e["kind"] == "janitor.sync"]
    assert [s["attempt"] for s in syncs] == [1, 2, 3, 4, 5]  # and no more: the schedule is over
    assert {s["outcome"] for s in syncs} == {"not_found"}
    metrics = httpx.get(f"{checkout.url}/metrics").text
    gauge = re.search(r"^payrail_checkout_payments_needing_attention (\S+)$", metrics, re.M)
    assert gauge is not None
    assert float(gauge.group(1)) >= 1
    assert 'payrail_checkout_janitor_syncs_total{gateway="stripe",outcome="not_found"}' in metrics


async def test_two_checkouts_sync_each_due_payment_once_per_step(
    kafka_bootstrap: str,
    new_database: Callable[[], str],
    proxy: GatewayProxy,
    tmp_path: Path,
) -> None:
    env = checkout_env(kafka_bootstrap, new_database(), proxy.url, "1,1,1", batch=2)
    with ExitStack() as processes:
        first = processes.enter_context(service("checkout", env, tmp_path))
        second = processes.enter_context(service("checkout", env, tmp_path))
        created = [post(svc, body()).json() for svc in (first, second) for _ in range(6)]
        flagged = [wait_until(first, p["id"], lambda p: p["needs_attention"]) for p in created]
        time.sleep(2)  # any extra sync would come within the next poll or two
        for p in created:
            syncs = [
                e["detail"]["attempt"]
                for e in timeline(first, p["id"])
                if e["kind"] == "janitor.sync"
            ]
            # each step once (a slow sync may report after the next step's, hence sorted)
            assert sorted(syncs) == [1, 2, 3], p["id"]
            retrieves = proxy.requests_to("GET", f"/v1/payment_intents/{p['gateway_payment_id']}")
            assert len(retrieves) == 3, p["id"]
        assert {p["attention_reason"] for p in flagged} == {
            "still pending at the gateway after 3 status syncs"
        }
        logs = first.log() + second.log()
    assert "janitor sync not recorded" not in logs
