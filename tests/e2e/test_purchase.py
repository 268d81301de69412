"""A purchase on the whole platform, as customers, gateways and SREs live it.

Real processes only: Kafka, PostgreSQL, localstripe (paid with the stripe SDK, webhooks signed by
localstripe itself), webhook-ingest, checkout (with its janitor), entitlements and the reconciler.
What is asserted is what a user would notice: the access a front end reads, the grants the
user owns, the events other services receive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from payrail.contracts.topics import ENTITLEMENTS_EVENTS, PAYMENTS_LIFECYCLE, dlt_topic
from tests.e2e.stack import Stack
from tests.support.kafka import TopicReader

PAYRAIL = Path(sys.executable).with_name("payrail")


def succeeded_event_of(payment: dict[str, Any]) -> Any:
    def match(event: dict[str, Any]) -> bool:
        intent = event["data"]["object"]
        return bool(
            event["type"] == "payment_intent.succeeded"
            and intent["id"] == payment["gateway_payment_id"]
        )

    return match


def grants(stack: Stack, payment_ids: list[str]) -> dict[str, int]:
    """Grant rows per payment, as entitlements stored them."""
    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT payment_id, count(*) FROM entitlements.grants"
                    " WHERE payment_id = ANY(:ids) GROUP BY payment_id"
                ),
                {"ids": payment_ids},
            )
            return {str(p): int(n) for p, n in rows.all()}
    finally:
        engine.dispose()


def granted_events(records: list[Any], payment_id: str) -> list[str]:
    return [
        r.headers["ce_id"]
        for r in records
        if r.headers["ce_type"] == "entitlement.granted"
        and json.loads(r.value)["payment_id"] == payment_id
    ]


def intent_event(payment: dict[str, Any], kind: str = "succeeded") -> dict[str, Any]:
    """A Stripe ``payment_intent.<kind>`` event about the payment's real PaymentIntent."""
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": f"payment_intent.{kind}",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": payment["gateway_payment_id"],
                "object": "payment_intent",
                "amount": payment["amount"],
                "amount_received": payment["amount"],
                "currency": payment["currency"].lower(),
                "status": kind,
                "metadata": {"payrail_payment_id": payment["id"]},
            }
        },
    }


def refund_event(payment: dict[str, Any]) -> dict[str, Any]:
    """Stripe's ``charge.refunded`` for the whole payment."""
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "charge.refunded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"ch_{uuid.uuid4().hex[:16]}",
                "object": "charge",
                "payment_intent": payment["gateway_payment_id"],
                "amount": payment["amount"],
                "amount_refunded": payment["amount"],
                "currency": payment["currency"].lower(),
                "metadata": {"payrail_payment_id": payment["id"]},
                "refunds": {
                    "data": [{"id": f"re_{uuid.uuid4().hex[:16]}", "amount": payment["amount"]}]
                },
            }
        },
    }


def timeline(stack: Stack, payment_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.url('checkout')}/v1/payments/{payment_id}/events", timeout=10)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def wait_for_status(stack: Stack, payment_id: str, status: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := stack.payment(payment_id)["status"]) != status:
        assert time.monotonic() < deadline, f"{payment_id} stayed {seen}, never {status}"
        time.sleep(0.2)


def test_a_paid_purchase_grants_access(stack: Stack) -> None:
    payment = stack.create_payment()
    assert stack.access(payment["id"]) == "pending"

    stack.pay(payment)
    webhook = stack.recorder.find(succeeded_event_of(payment))
    stack.access_becomes(payment["id"], "granted")
    print(f"\nwebhook accepted -> access granted: {time.monotonic() - webhook.received_at:.3f} s")

    owned = httpx.get(
        f"{stack.url('entitlements')}/v1/users/{payment['user_id']}/entitlements", timeout=10
    ).json()["entitlements"]
    assert [(e["sku"], e["payment_id"], e["status"]) for e in owned] == [
        ("pro-monthly", payment["id"], "granted")
    ]
    assert stack.payment(payment["id"])["status"] == "succeeded"


async def test_the_same_webhook_five_times_grants_once(stack: Stack) -> None:
    announced = TopicReader(stack.kafka_bootstrap, ENTITLEMENTS_EVENTS)
    await announced.mark()
    payment = stack.create_payment()
    stack.pay(payment)
    webhook = stack.recorder.find(succeeded_event_of(payment))  # localstripe's delivery: 1
    for _ in range(4):  # the gateway retries: 2..5
        assert stack.deliver(webhook).status_code == 200

    stack.access_becomes(payment["id"], "granted")
    records = await announced.read(expect=1, timeout=30, settle=3)
    assert len(granted_events(records, payment["id"])) == 1
    assert grants(stack, [payment["id"]]) == {payment["id"]: 1}


def test_a_refund_revokes_access(stack: Stack) -> None:
    payment = stack.create_payment()
    stack.pay(payment)
    stack.access_becomes(payment["id"], "granted")

    refund = httpx.post(
        f"{stack.url('checkout')}/v1/payments/{payment['id']}/refunds",
        json={"reason": "requested_by_customer"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
        timeout=30,
    )
    assert refund.status_code == 201, refund.text

    stack.access_becomes(payment["id"], "revoked")
    owned = httpx.get(
        f"{stack.url('entitlements')}/v1/users/{payment['user_id']}/entitlements", timeout=10
    ).json()["entitlements"]
    assert [e["status"] for e in owned] == ["revoked"]


def test_a_refund_seen_before_the_success_never_grants(stack: Stack) -> None:
    payment = stack.create_payment()  # never paid at localstripe: only our events speak
    refunded = stack.signed(refund_event(payment))
    succeeded = stack.signed(intent_event(payment))
    assert stack.deliver(refunded).status_code == 200
    stack.access_becomes(payment["id"], "denied")
    assert stack.deliver(succeeded).status_code == 200

    # the success reached checkout (its timeline shows it) and still grants nothing
    def success_applied() -> bool:
        ids = {e["ce_id"] for e in timeline(stack, payment["id"])}
        return f"stripe:{succeeded.event['id']}" in ids

    deadline = time.monotonic() + 30
    while not success_applied():
        assert time.monotonic() < deadline, timeline(stack, payment["id"])
        time.sleep(0.2)
    assert stack.access(payment["id"], wait=2, since="denied") == "denied"
    assert grants(stack, [payment["id"]]) == {}


def test_a_lost_webhook_is_recovered_by_the_janitor(stack: Stack) -> None:
    payment = stack.create_payment()
    stack.point_webhook_at(stack.recorder.url)  # the gateway's delivery goes nowhere useful
    try:
        stack.pay(payment)
        stack.recorder.find(succeeded_event_of(payment))  # sent, and lost
    finally:
        stack.point_webhook_at(f"{stack.url('webhook-ingest')}/webhooks/stripe")

    stack.access_becomes(payment["id"], "granted", timeout=90)
    sources = {e["source"] for e in timeline(stack, payment["id"])}
    assert any("janitor" in source for source in sources), sources


async def test_entitlements_killed_during_a_burst_grants_every_payment_once(
    stack: Stack,
) -> None:
    payments = [stack.create_payment() for _ in range(40)]
    ids = [p["id"] for p in payments]
    announced = TopicReader(stack.kafka_bootstrap, ENTITLEMENTS_EVENTS)
    await announced.mark()
    webhooks = [stack.signed(intent_event(p)) for p in payments]

    for delivery in webhooks[:20]:
        assert stack.deliver(delivery).status_code == 200
    deadline = time.monotonic() + 60
    while not grants(stack, ids):
        assert time.monotonic() < deadline, "the burst is not being consumed"
        time.sleep(0.05)
    stack.services["entitlements"].stop(signal.SIGKILL)
    for delivery in webhooks[20:]:  # the gateway keeps sending while entitlements is down
        assert stack.deliver(delivery).status_code == 200
    stack.start("entitlements")

    for payment_id in ids:
        stack.access_becomes(payment_id, "granted")
    assert grants(stack, ids) == dict.fromkeys(ids, 1)
    records = await announced.read(expect=len(ids), timeout=60, settle=3)
    for payment_id in ids:  # a relay re-send after the kill repeats the same ce_id
        assert len(set(granted_events(records, payment_id))) == 1


async def test_a_dead_lettered_lifecycle_event_replayed_after_the_fix_grants_once(
    stack: Stack,
) -> None:
    """A lifecycle event entitlements cannot store (here: a constraint deployed by mistake
    refuses its sku) is dead-lettered; once the database is fixed, ``payrail dlq replay``
    brings it back to entitlements alone, and access is granted once."""
    sku = f"broken-{uuid.uuid4().hex[:8]}"
    constraint = f"e2e_refuse_{sku.replace('-', '_')}"
    engine = create_engine(stack.database_url)
    dlt = dlt_topic(PAYMENTS_LIFECYCLE, "entitlements")
    dead = TopicReader(stack.kafka_bootstrap, dlt)
    await dead.mark()
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"ALTER TABLE entitlements.payment_access ADD CONSTRAINT {constraint}"
                    f" CHECK (sku <> '{sku}') NOT VALID"
                )
            )
        payment = stack.create_payment(sku=sku)
        stack.pay(payment)
        letters = [
            r for r in await dead.read(expect=2, timeout=60, settle=2) if r.key == payment["id"]
        ]
        assert "payment.succeeded" in {r.headers["ce_type"] for r in letters}
        assert stack.access(payment["id"]) == "pending"
    finally:
        with engine.begin() as conn:  # the fix
            conn.execute(
                text(
                    "ALTER TABLE entitlements.payment_access"
                    f" DROP CONSTRAINT IF EXISTS {constraint}"
                )
            )
        engine.dispose()

    env = {"PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "USER": "e2e-sre"}
    for _ in range(2):  # a second replay (an SRE's double take) changes nothing
        replay = subprocess.run(
            [str(PAYRAIL), "dlq", "replay", dlt, "--key", payment["id"]],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replay.returncode == 0, replay.stderr
    stack.access_becomes(payment["id"], "granted")
    assert grants(stack, [payment["id"]]) == {payment["id"]: 1}


def test_payrail_payments_show_tells_the_payment_s_story(stack: Stack) -> None:
    payment = stack.create_payment()
    stack.pay(payment)
    stack.access_becomes(payment["id"], "granted")
    urls = [
        "--checkout-url",
        stack.url("checkout"),
        "--entitlements-url",
        stack.url("entitlements"),
    ]

    shown = subprocess.run(
        [str(PAYRAIL), "payments", "show", payment["id"], "--json", *urls],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    story = json.loads(shown.stdout)
    assert story["payment"]["status"] == "succeeded"
    assert story["access"]["state"] == "granted"
    steps = story["timeline"]
    assert [s["at"] for s in steps] == sorted(s["at"] for s in steps)
    assert steps[-1]["what"] == "access granted"
    assert any(s["ce_id"] and s["ce_id"].startswith("stripe:evt_") for s in steps)

    table = subprocess.run(
        [str(PAYRAIL), "payments", "show", payment["id"], *urls],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert table.returncode == 0, table.stderr
    assert "access granted" in table.stdout
    assert payment["id"] in table.stdout

    unknown = subprocess.run(
        [str(PAYRAIL), "payments", "show", "pay_does_not_exist", *urls],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 1
    assert "pay_does_not_exist" in unknown.stderr

    down = subprocess.run(
        [str(PAYRAIL), "payments", "show", payment["id"], "--checkout-url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 2
    assert "http://127.0.0.1:9" in down.stderr


@pytest.mark.parametrize(
    ("card", "challenge"), [("4242424242424242", False), ("4000002760003184", True)]
)
def test_the_storefront_in_a_browser_shows_access_once_entitlements_grants_it(
    stack: Stack, card: str, challenge: bool
) -> None:
    """A customer buys in headless Chromium; a 3-D Secure card passes localstripe's challenge."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page()
            page.goto(f"{stack.url('checkout')}/demo")
            expect(page.locator("#status")).to_have_text("Ready", timeout=30_000)
            user_id = page.locator("#user-id").input_value()
            page.fill("#card-element input[placeholder=number]", card)
            page.fill("#card-element input[placeholder=exp_month]", "12")
            page.fill("#card-element input[placeholder=exp_year]", "30")
            page.fill("#card-element input[placeholder=cvc]", "123")
            page.fill("#card-element input[placeholder=postal_code]", "75001")
            page.click("#pay")
            if challenge:
                page.get_by_role("button", name="Complete authentication").click(timeout=30_000)
            expect(page.locator("#status")).to_have_text(
                "Payment successful, verifying...", timeout=30_000
            )
            expect(page.locator("#status")).to_have_text("Access granted", timeout=60_000)
            payment_id = page.locator("#payment-id").inner_text()
        finally:
            browser.close()

    assert stack.access(payment_id) == "granted"
    assert grants(stack, [payment_id]) == {payment_id: 1}
    owned = httpx.get(
        f"{stack.url('entitlements')}/v1/users/{user_id}/entitlements", timeout=10
    ).json()["entitlements"]
    assert [(e["sku"], e["payment_id"]) for e in owned] == [("pro-monthly", payment_id)]
    assert stack.payment(payment_id)["status"] == "succeeded"
