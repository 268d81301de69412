"""The reconciler service end to end on real PostgreSQL and Kafka: the seed's month.

payrail's records arrive as ``payments.lifecycle`` events (the projection, through the inbox),
the gateway's settlement recon report and the bank statement are imported over HTTP, and a run
answers "97,950 in payrail, 98,120 in the bank: why?" - then announces its discrepancies on
``reconciliation.discrepancies`` through the outbox, once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle
from payrail.contracts.topics import PAYMENTS_LIFECYCLE, RECONCILIATION_DISCREPANCIES
from payrail.messaging.admin import TopicSpec, ensure_topics
from payrail.messaging.envelope import Envelope, encode
from reconciler.app import create_app
from reconciler.settings import ReconcilerSettings
from reconciler.tables import reconciler_tables
from tests.support.kafka import TopicReader

SUFFIX = uuid.uuid4().hex[:8]
RUN = {
    "period": "2025-01",
    "currency": "INR",
    "gateways": ["razorpay"],
    "as_of": "2025-02-10",
    "fee_schedules": {"razorpay": {"percent": "2.00"}},
}


class ScratchSettings(ReconcilerSettings):
    """The reconciler in a schema and consumer group of its own (other tests run the real one)."""

    service_name: ClassVar[str] = f"recon_it_{SUFFIX}"
    db_schema: ClassVar[str] = f"recon_it_{SUFFIX}"


def key() -> dict[str, str]:
    """A fresh Idempotency-Key header (every POST needs one)."""
    return {"Idempotency-Key": str(uuid.uuid4())}


def ist(day: int, month: int = 1, year: int = 2025) -> str:
    return f"{day:02d}/{month:02d}/{year} 12:00:00"


RECON_CSV = "\n".join(
    [
        "entity_id,type,debit,credit,amount,currency,fee,tax,created_at,settled_at,settlement_id,"
        "settlement_utr,payment_id,order_id,order_receipt,dispute_id",
        f"pay_DEC,payment,0,4200.00,4200.00,INR,0,0,"
        f"{ist(30, 12, 2024)},{ist(2)},setl_DEC,UTR0001,,order_DEC,,",
        f"pay_R1,payment,0,39056.00,40000.00,INR,944.00,144.00,"
        f"{ist(6)},{ist(8)},setl_A,UTR0002,pay_R1,order_1,p1,",
        f"pay_R2,payment,0,34174.00,35000.00,INR,826.00,126.00,"
        f"{ist(14)},{ist(16)},setl_B,UTR0003,pay_R2,order_2,p2,",
        f"rfnd_R1,refund,2050.00,0,2050.00,INR,0,0,"
        f"{ist(20)},{ist(29)},setl_C,UTR0004,pay_R2,order_2,p2,",
        f"pay_R3,payment,0,23189.50,23750.00,INR,560.50,85.50,"
        f"{ist(22)},{ist(29)},setl_C,UTR0004,pay_R3,order_3,p3,",
        f"rfnd_R2,refund,500.00,0,500.00,INR,0,0,"
        f"{ist(25)},{ist(29)},setl_C,UTR0004,pay_R1,order_1,p1,",
        f"adj_R1,adjustment,0,75.50,75.50,INR,0,0,{ist(28)},{ist(29)},setl_C,UTR0004,,,,",
        f"pay_R4,payment,0,1220.50,1250.00,INR,29.50,4.50,"
        f"{ist(31)},{ist(3, 2)},setl_D,UTR0005,pay_R4,order_4,p4,",
    ]
)
BANK_CSV = "\n".join(
    [
        "Date,Amount,Reference,Details,Code",
        "2025-01-02,4200.00,UTR0001,RAZORPAY SETTLEMENT,",
        "2025-01-08,39056.00,,NEFT RAZORPAY UTR0002,",
        "2025-01-17,34174.00,,RAZORPAY SOFTWARE PVT LTD,",
        "2025-01-29,20715.00,UTR0004,RAZORPAY SETTLEMENT,",
        "2025-01-31,-25.00,,SMS ALERT CHARGES,CHRG",
    ]
)
MAPPING = {
    "booking_date": "Date",
    "amount": "Amount",
    "default_currency": "INR",
    "references": ["Reference"],
    "description": "Details",
    "bank_code": "Code",
    "statement_id": f"HDFC-2025-01-{SUFFIX}",
    "account": "HDFC-000123",
}


def lifecycle(
    payment_id: str, kind: LifecycleEventType, status: str, amount: int, day: int, **extra: Any
) -> Envelope[PaymentLifecycle]:
    return Envelope.create(
        str(kind),
        "/payrail/tests",
        PaymentLifecycle(
            payment_id=payment_id,
            status=status,
            amount=amount,
            currency="INR",
            user_id="u1",
            sku="pro",
            gateway="razorpay",
            gateway_payment_id=f"order_{payment_id[1:]}",
            occurred_at=datetime(2025, 1, day, 6, tzinfo=UTC),
            **extra,
        ),
        id=f"{SUFFIX}:{payment_id}:{kind}:{day}",
    )


@pytest.fixture(scope="module")
async def service(database_url: str, kafka_bootstrap: str) -> AsyncIterator[FastAPI]:
    settings = ScratchSettings(database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{ScratchSettings.db_schema}" CASCADE'))
    await engine.dispose()


@pytest.fixture(scope="module")
async def client(service: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=service)
    async with httpx.AsyncClient(transport=transport, base_url="http://reconciler") as http:
        yield http


async def until(check: Any, what: str) -> None:
    """Wait for something that must happen (a bound, not a measurement)."""
    for _ in range(300):
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def publish_january(kafka_bootstrap: str) -> None:
    events = [
        lifecycle("p1", LifecycleEventType.SUCCEEDED, "succeeded", 4_000_000, 6),
        lifecycle("p2", LifecycleEventType.SUCCEEDED, "succeeded", 3_500_000, 14),
        lifecycle(
            "p2",
            LifecycleEventType.PARTIALLY_REFUNDED,
            "partially_refunded",
            3_500_000,
            20,
            amount_refunded=205_000,
            refund_id="r1",
            refund_amount=205_000,
        ),
        lifecycle("p3", LifecycleEventType.SUCCEEDED, "succeeded", 2_375_000, 22),
        lifecycle("p4", LifecycleEventType.SUCCEEDED, "succeeded", 125_000, 31),
    ]
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for envelope in events:
            record = encode(envelope, envelope.data.payment_id)
            await producer.send_and_wait(
                PAYMENTS_LIFECYCLE, record.value, key=record.key, headers=record.headers
            )
    finally:
        await producer.stop()


async def run_to_end(client: httpx.AsyncClient, key: str, body: dict[str, Any]) -> dict[str, Any]:
    started = await client.post("/v1/reconciliations", json=body, headers={"Idempotency-Key": key})
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    state: dict[str, Any] = {}

    async def finished() -> bool:
        state.update((await client.get(location)).json())
        return bool(state["status"] != "running")

    await until(finished, "the run to finish")
    assert state["status"] == "succeeded", state
    return state


async def test_the_seed_month_through_the_service(
    service: FastAPI, client: httpx.AsyncClient, kafka_bootstrap: str, database_url: str
) -> None:
    tables = reconciler_tables(ScratchSettings.db_schema)
    engine: AsyncEngine = service.state.engine
    await publish_january(kafka_bootstrap)

    async def projected() -> bool:
        # other tests publish their own payments on the same topic: count only January's
        ours = ("p1", "p2", "p3", "p4")
        async with engine.connect() as conn:
            payments = await conn.scalar(
                select(func.count())
                .select_from(tables.payments)
                .where(tables.payments.c.payment_id.in_(ours))
            )
            refunds = await conn.scalar(
                select(func.count())
                .select_from(tables.refunds)
                .where(tables.refunds.c.payment_id.in_(ours))
            )
        return payments == 4 and refunds == 1

    await until(projected, "the lifecycle projection")

    statement = await client.post(
        "/v1/statements",
        params={"filename": "hdfc-jan.csv", "mapping": json.dumps(MAPPING)},
        content=BANK_CSV,
        headers=key(),
    )
    assert statement.status_code == 201, statement.text
    assert statement.json()["statements"][0]["lines"] == 5
    again = await client.post(
        "/v1/statements",
        params={"filename": "copy.csv", "mapping": json.dumps(MAPPING)},
        content=BANK_CSV,
        headers=key(),
    )
    assert (again.status_code, again.json()["statements"][0]["status"]) == (200, "duplicate_file")
    bad = await client.post(
        "/v1/statements",
        params={"filename": "bad.csv", "mapping": json.dumps({**MAPPING, "statement_id": "other"})},
        content=BANK_CSV.replace("-25.00", "-25.0x"),
        headers=key(),
    )
    assert bad.status_code == 422
    assert bad.json()["where"] == "line 6"
    report = await client.post(
        "/v1/report-lines",
        params={"gateway": "razorpay", "filename": "recon-jan.csv"},
        content=RECON_CSV,
        headers=key(),
    )
    assert report.status_code == 201, report.text
    assert report.json()["by_type"] == {"adjustment": 1, "charge": 5, "payout": 5, "refund": 2}

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await ensure_topics(admin, [TopicSpec(RECONCILIATION_DISCREPANCIES)])
    finally:
        await admin.close()
    announced = TopicReader(kafka_bootstrap, RECONCILIATION_DISCREPANCIES)
    await announced.mark()

    run = await run_to_end(client, f"jan-{SUFFIX}", RUN)

    waterfall = run["waterfall"]
    assert (waterfall["start"], waterfall["end"], waterfall["difference"]) == (
        9_795_000,
        9_812_000,
        17_000,
    )
    assert {step["cause"]: step["amount"] for step in waterfall["steps"]} == {
        "MISSING_IN_LEDGER": 7_550,
        "REFUND_NOT_RECORDED": -50_000,
        "GATEWAY_FEES": -200_000,
        "FEE_TAX": -36_000,
        "PRIOR_PERIOD_SETTLED": 420_000,
        "TIMING_UNSETTLED": -122_050,
        "BANK_CHARGE": -2_500,
        "UNEXPLAINED": 0,
    }
    refs = {(item["cause"], item["ref"]) for item in run["discrepancies"]["items"]}
    assert refs == {
        ("MISSING_IN_LEDGER", "adj_R1"),
        ("REFUND_NOT_RECORDED", "rfnd_R2"),
        ("TIMING_UNSETTLED", "setl_D"),
        ("BANK_CHARGE", f"HDFC-2025-01-{SUFFIX}/6"),  # the statement's line 6
    }

    # announced once each, timing excepted: it settles by itself
    records = await announced.read(expect=3)
    mine = [
        json.loads(r.value)
        for r in records
        if r.headers.get("ce_type") == "reconciliation.discrepancy"
    ]
    mine = [event for event in mine if event["run_id"] == run["id"]]
    assert sorted(event["code"] for event in mine) == [
        "BANK_CHARGE",
        "MISSING_IN_LEDGER",
        "REFUND_NOT_RECORDED",
    ]

    csv_export = await client.get(f"/v1/reconciliations/{run['id']}", params={"format": "csv"})
    assert csv_export.headers["content-type"].startswith("text/csv")
    assert (
        "REFUND_NOT_RECORDED,discrepancy,ledger-gateway,-50000,-500.00,INR,rfnd_R2"
        in csv_export.text
    )
    page = await client.get(f"/v1/reconciliations/{run['id']}", params={"format": "html"})
    assert "<svg" in page.text
    assert "97,950.00 INR" in page.text
    assert "98,120.00 INR" in page.text

    # a second run of the unchanged month finds the same and announces nothing new
    await announced.mark()
    second = await run_to_end(client, f"jan-again-{SUFFIX}", RUN)
    assert second["waterfall"] == waterfall
    assert [
        r for r in await announced.read(expect=0, settle=3.0) if second["id"].encode() in r.value
    ] == []


async def test_a_dry_run_answers_at_once_and_stores_nothing(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/v1/reconciliations",
        json={**RUN, "dry_run": True},
        headers={"Idempotency-Key": f"dry-{SUFFIX}"},
    )
    assert answer.status_code == 200
    assert answer.json()["id"] is None
    assert "waterfall" in answer.json()


async def test_errors_are_problem_details(client: httpx.AsyncClient) -> None:
    unknown = await client.get(f"/v1/reconciliations/{uuid.uuid4()}")
    assert unknown.status_code == 404
    bad_period = await client.post(
        "/v1/reconciliations",
        json={**RUN, "period": "January"},
        headers={"Idempotency-Key": f"bad-{SUFFIX}"},
    )
    assert bad_period.status_code == 422


async def count(service: FastAPI, table: str) -> int:
    tables = reconciler_tables(ScratchSettings.db_schema)
    engine: AsyncEngine = service.state.engine
    async with engine.connect() as conn:
        found = await conn.scalar(select(func.count()).select_from(getattr(tables, table)))
    return int(found or 0)


def assert_problem(response: httpx.Response, status: int, title: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == title


async def test_a_repeated_run_request_replays_the_first_answer_and_starts_nothing(
    service: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": f"replay-{SUFFIX}"}
    body = {**RUN, "period": "2024-11"}
    first = await client.post("/v1/reconciliations", json=body, headers=headers)
    assert first.status_code == 202, first.text
    runs = await count(service, "runs")
    # the same request spelled differently (key order) is the same request
    spelled = json.dumps(dict(reversed(list(body.items()))))
    again = await client.post(
        "/v1/reconciliations",
        content=spelled,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert (again.status_code, again.content) == (202, first.content)
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert await count(service, "runs") == runs

    conflict = await client.post(
        "/v1/reconciliations", json={**body, "currency": "USD"}, headers=headers
    )
    assert_problem(conflict, 422, "Idempotency-Key reused")
    dry = await client.post("/v1/reconciliations", json={**body, "dry_run": True}, headers=headers)
    assert_problem(dry, 422, "Idempotency-Key reused")
    assert await count(service, "runs") == runs


async def test_a_repeated_import_replays_the_first_answer_and_imports_nothing(
    service: FastAPI, client: httpx.AsyncClient
) -> None:
    mapping = {**MAPPING, "statement_id": f"replay-{SUFFIX}", "account": f"replay-{SUFFIX}"}
    csv = "Date,Amount,Reference,Details,Code\n2024-11-04,100.00,UTR-R,REPLAY,\n"
    params = {"filename": "replay.csv", "mapping": json.dumps(mapping)}
    headers = {"Idempotency-Key": f"statement-{SUFFIX}"}
    first = await client.post("/v1/statements", params=params, content=csv, headers=headers)
    assert first.status_code == 201, first.text
    lines = await count(service, "bank_lines")
    again = await client.post("/v1/statements", params=params, content=csv, headers=headers)
    # the first answer ("imported"), not a second import's ("duplicate_file")
    assert (again.status_code, again.content) == (201, first.content)
    assert again.json()["statements"][0]["status"] == "imported"
    assert await count(service, "bank_lines") == lines
    other = await client.post(
        "/v1/statements", params=params, content=csv.replace("100.00", "200.00"), headers=headers
    )
    assert_problem(other, 422, "Idempotency-Key reused")
    renamed = await client.post(
        "/v1/statements", params={**params, "filename": "other.csv"}, content=csv, headers=headers
    )
    assert_problem(renamed, 422, "Idempotency-Key reused")
    assert await count(service, "bank_lines") == lines

    report = "\n".join(RECON_CSV.splitlines()[:2]).replace("pay_DEC", f"pay_replay_{SUFFIX}")
    report_params = {"gateway": "razorpay", "filename": "recon.csv"}
    report_headers = {"Idempotency-Key": f"report-{SUFFIX}"}
    imported = await client.post(
        "/v1/report-lines", params=report_params, content=report, headers=report_headers
    )
    assert imported.status_code == 201, imported.text
    report_lines = await count(service, "report_lines")
    replayed = await client.post(
        "/v1/report-lines", params=report_params, content=report, headers=report_headers
    )
    assert (replayed.status_code, replayed.content) == (201, imported.content)
    assert await count(service, "report_lines") == report_lines
    elsewhere = await client.post(
        "/v1/statements", params=params, content=report, headers=report_headers
    )
    assert_problem(elsewhere, 422, "Idempotency-Key reused")


async def test_a_refused_request_stores_no_answer_under_its_key(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": f"refused-{SUFFIX}"}
    params = {"gateway": "razorpay", "filename": "recon.csv"}
    refused = await client.post(
        "/v1/report-lines", params=params, content="not,a,report\n", headers=headers
    )
    assert_problem(refused, 422, "Report not imported")
    # nothing was done, so the key still serves the corrected request
    report = "\n".join(RECON_CSV.splitlines()[:2]).replace("pay_DEC", f"pay_fixed_{SUFFIX}")
    fixed = await client.post("/v1/report-lines", params=params, content=report, headers=headers)
    assert fixed.status_code == 201, fixed.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/reconciliations", {}),
        ("/v1/statements", {"filename": "x.mt940"}),
        ("/v1/report-lines", {"gateway": "razorpay", "filename": "x.csv"}),
    ],
)
async def test_every_post_needs_an_idempotency_key(
    service: FastAPI, client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    runs, statements = await count(service, "runs"), await count(service, "statements")
    if path == "/v1/reconciliations":
        response = await client.post(path, json=RUN)
    else:
        response = await client.post(path, params=params, content=b"data")
    assert_problem(response, 400, "Idempotency-Key required")
    assert (await count(service, "runs"), await count(service, "statements")) == (runs, statements)
