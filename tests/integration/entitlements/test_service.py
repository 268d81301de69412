"""The entitlements service as a real process on real Kafka and PostgreSQL.

The tests publish checkout's ``payments.lifecycle`` events themselves (envelope, keyed by payment
id, ``acks=all``) and look at what a user or a front end would: the two APIs, and what lands on
``entitlements.events`` and the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from payrail.contracts.payments import LifecycleEventType as T
from payrail.contracts.topics import ENTITLEMENTS_EVENTS, PAYMENTS_LIFECYCLE, dlt_topic
from payrail.messaging.envelope import encode
from tests.integration.entitlements.support import (
    GROUP,
    access,
    consumed,
    entitlements_of,
    entitlements_service,
    lifecycle,
    payloads,
    publish,
    state_becomes,
    unique,
)
from tests.integration.messaging.support import produce
from tests.support.kafka import TopicReader
from tests.support.processes import ServiceProcess


@pytest.fixture(scope="module")
def svc(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    path: Path = tmp_path_factory.mktemp("entitlements")
    with entitlements_service(kafka_bootstrap, database_url, path) as process:
        yield process


@pytest.fixture
async def announced(kafka_bootstrap: str) -> TopicReader:
    """What entitlements publishes from now on."""
    reader = TopicReader(kafka_bootstrap, ENTITLEMENTS_EVENTS)
    await reader.mark()
    return reader


async def test_a_confirmed_payment_grants_the_sku_and_announces_it_keyed_by_user(
    svc: ServiceProcess, kafka_bootstrap: str, announced: TopicReader
) -> None:
    pay, user = unique("pay_"), unique("u_")
    await publish(
        kafka_bootstrap, [lifecycle(T.CREATED, pay, user), lifecycle(T.SUCCEEDED, pay, user)]
    )

    body = await state_becomes(svc, pay, "granted")
    assert body["user_id"] == user
    assert body["sku"] == "pro-monthly"
    assert body["granted_at"] is not None
    assert body["revoked_at"] is None

    [owned] = await entitlements_of(svc, user)
    assert owned == {
        "sku": "pro-monthly",
        "payment_id": pay,
        "status": "granted",
        "granted_at": body["granted_at"],
        "revoked_at": None,
    }

    [(record, event)] = payloads(await announced.read(expect=1), {pay})
    assert record.key == user
    assert record.headers["ce_type"] == "entitlement.granted"
    assert record.headers["ce_id"] == f"entitlement.granted:{pay}"
    assert record.headers["ce_source"] == "/payrail/entitlements"
    assert event["user_id"] == user
    assert event["sku"] == "pro-monthly"
    assert event["reason"] == "payment.succeeded"


async def test_the_same_success_delivered_five_times_grants_once_and_announces_once(
    svc: ServiceProcess, kafka_bootstrap: str, announced: TopicReader
) -> None:
    pay, user = unique("pay_"), unique("u_")
    success = lifecycle(T.SUCCEEDED, pay, user)
    # five redeliveries of one event, and one more report of the same fact under another ce_id
    # (a status sync racing the webhook): the inbox absorbs the first, the access state the other
    again = lifecycle(T.SUCCEEDED, pay, user, ce_id=f"janitor:{pay}")
    await publish(kafka_bootstrap, [success] * 5 + [again])
    await consumed(kafka_bootstrap)

    assert [e["payment_id"] for e in await entitlements_of(svc, user)] == [pay]
    assert (await access(svc, pay))["state"] == "granted"
    events = list(payloads(await announced.read(expect=1), {pay}))
    assert [record.headers["ce_type"] for record, _ in events] == ["entitlement.granted"]


async def test_a_full_refund_revokes_access_and_announces_it(
    svc: ServiceProcess, kafka_bootstrap: str, announced: TopicReader
) -> None:
    pay, user = unique("pay_"), unique("u_")
    await publish(kafka_bootstrap, [lifecycle(T.SUCCEEDED, pay, user)])
    granted = await state_becomes(svc, pay, "granted")
    await publish(kafka_bootstrap, [lifecycle(T.REFUNDED, pay, user)])

    revoked = await state_becomes(svc, pay, "revoked")
    assert revoked["granted_at"] == granted["granted_at"]
    assert revoked["revoked_at"] is not None
    assert revoked["reason"] == "payment.refunded"
    [owned] = await entitlements_of(svc, user)
    assert owned["status"] == "revoked"
    assert owned["revoked_at"] == revoked["revoked_at"]

    events = list(payloads(await announced.read(expect=2), {pay}))
    assert [(r.key, r.headers["ce_type"]) for r, _ in events] == [
        (user, "entitlement.granted"),
        (user, "entitlement.revoked"),
    ]


@pytest.mark.parametrize("first", [T.REFUNDED, T.FAILED, T.CANCELED, T.DISPUTE_LOST])
async def test_a_refund_or_failure_seen_before_the_success_means_never_granted(
    first: T, svc: ServiceProcess, kafka_bootstrap: str, announced: TopicReader
) -> None:
    pay, user = unique("pay_"), unique("u_")
    # e.g. replayed from a dead-letter topic after the success was: the success comes last
    await publish(kafka_bootstrap, [lifecycle(first, pay, user), lifecycle(T.SUCCEEDED, pay, user)])
    await consumed(kafka_bootstrap)

    body = await access(svc, pay)
    assert body["state"] == "denied"
    assert body["granted_at"] is None
    assert await entitlements_of(svc, user) == []
    assert list(payloads(await announced.read(expect=0), {pay})) == []


async def test_a_partial_refund_keeps_access(
    svc: ServiceProcess, kafka_bootstrap: str, announced: TopicReader
) -> None:
    pay, user = unique("pay_"), unique("u_")
    await publish(
        kafka_bootstrap,
        [lifecycle(T.SUCCEEDED, pay, user), lifecycle(T.PARTIALLY_REFUNDED, pay, user)],
    )
    await consumed(kafka_bootstrap)

    assert (await access(svc, pay))["state"] == "granted"
    assert [e["status"] for e in await entitlements_of(svc, user)] == ["granted"]
    events = list(payloads(await announced.read(expect=1), {pay}))
    assert [r.headers["ce_type"] for r, _ in events] == ["entitlement.granted"]


async def test_a_lost_dispute_revokes_access(
    svc: ServiceProcess, kafka_bootstrap: str, announced: TopicReader
) -> None:
    pay, user = unique("pay_"), unique("u_")
    await publish(
        kafka_bootstrap,
        [
            lifecycle(T.SUCCEEDED, pay, user),
            lifecycle(T.DISPUTE_OPENED, pay, user),
            lifecycle(T.DISPUTE_LOST, pay, user),
        ],
    )

    body = await state_becomes(svc, pay, "revoked")
    assert body["reason"] == "payment.dispute_lost"
    events = list(payloads(await announced.read(expect=2), {pay}))
    assert [r.headers["ce_type"] for r, _ in events] == [
        "entitlement.granted",
        "entitlement.revoked",
    ]


async def test_a_long_poll_answers_as_soon_as_the_grant_lands(
    svc: ServiceProcess, kafka_bootstrap: str
) -> None:
    pay, user = unique("pay_"), unique("u_")
    await publish(kafka_bootstrap, [lifecycle(T.CREATED, pay, user)])
    await consumed(kafka_bootstrap)
    assert (await access(svc, pay))["state"] == "pending"

    poll = asyncio.create_task(access(svc, pay, wait=30))
    await asyncio.sleep(0.5)  # let the poll start waiting (it answers correctly either way)
    await publish(kafka_bootstrap, [lifecycle(T.SUCCEEDED, pay, user)])
    # well inside the 30 s the poll may wait: the grant's NOTIFY answered it, not its bound
    body = await asyncio.wait_for(poll, timeout=20)
    assert body["state"] == "granted"

    # a front end that knows "granted" may wait for the next change
    poll = asyncio.create_task(access(svc, pay, wait=30, since="granted"))
    await asyncio.sleep(0.5)
    await publish(kafka_bootstrap, [lifecycle(T.REFUNDED, pay, user)])
    assert (await asyncio.wait_for(poll, timeout=20))["state"] == "revoked"


async def test_a_long_poll_on_a_payment_nobody_heard_of_ends_pending_at_its_bound(
    svc: ServiceProcess,
) -> None:
    body = await access(svc, unique("pay_"), wait=1)
    assert body["state"] == "pending"
    assert body["user_id"] is None


@pytest.mark.parametrize(
    "query",
    [{"wait": "-1"}, {"wait": "soon"}, {"since": "unlocked"}],
)
async def test_invalid_access_queries_are_problem_json(
    query: dict[str, str], svc: ServiceProcess
) -> None:
    async with httpx.AsyncClient(base_url=svc.url) as http:
        response = await http.get("/v1/payments/pay_1/access", params=query)
        too_long = await http.get(f"/v1/users/{'u' * 256}/entitlements")
    for answer in (response, too_long):
        assert answer.status_code == 422
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"].endswith("/invalid-request")


async def test_the_storefront_origin_may_read_access_from_a_browser(svc: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=svc.url) as http:
        allowed = await http.get(
            "/v1/payments/pay_1/access", headers={"Origin": "http://127.0.0.1:8001"}
        )
        other = await http.get(
            "/v1/payments/pay_1/access", headers={"Origin": "https://evil.example"}
        )
    assert allowed.headers["access-control-allow-origin"] == "http://127.0.0.1:8001"
    assert "access-control-allow-origin" not in other.headers


async def test_a_malformed_lifecycle_event_goes_to_the_dead_letter_topic(
    svc: ServiceProcess, kafka_bootstrap: str
) -> None:
    dead = TopicReader(kafka_bootstrap, dlt_topic(PAYMENTS_LIFECYCLE, GROUP))
    await dead.mark()
    pay, user = unique("pay_"), unique("u_")
    record = encode(lifecycle(T.SUCCEEDED, pay, user), pay)
    body = json.loads(record.value)
    body["amount"] = 19.99  # money as a float: schema-invalid, never coerced
    await produce(
        kafka_bootstrap, PAYMENTS_LIFECYCLE, [record._replace(value=json.dumps(body).encode())]
    )

    [letter] = [r for r in await dead.read(expect=1, timeout=60) if r.key == pay]
    assert letter.headers["kafka_dlt-original-topic"] == PAYMENTS_LIFECYCLE
    assert letter.headers["kafka_dlt-original-consumer-group"] == GROUP
    assert letter.headers["kafka_dlt-exception-fqcn"].endswith("PoisonMessage")
    assert "amount" in letter.headers["kafka_dlt-exception-message"]
    assert (await access(svc, pay))["state"] == "pending"


async def test_an_event_naming_another_user_than_the_payments_goes_to_the_dead_letter_topic(
    svc: ServiceProcess, kafka_bootstrap: str
) -> None:
    dead = TopicReader(kafka_bootstrap, dlt_topic(PAYMENTS_LIFECYCLE, GROUP))
    await dead.mark()
    pay, user, intruder = unique("pay_"), unique("u_"), unique("u_")
    await publish(kafka_bootstrap, [lifecycle(T.CREATED, pay, user)])
    await consumed(kafka_bootstrap)  # the payment is known: its user is the first event's
    await publish(kafka_bootstrap, [lifecycle(T.SUCCEEDED, pay, intruder)])

    [letter] = [r for r in await dead.read(expect=1, timeout=60) if r.key == pay]
    assert letter.headers["kafka_dlt-exception-fqcn"].endswith("AccessConflict")
    assert letter.headers["ce_type"] == "payment.succeeded"
    body = await access(svc, pay)
    assert (body["state"], body["user_id"]) == ("pending", user)  # nobody was granted
    assert await entitlements_of(svc, intruder) == []
