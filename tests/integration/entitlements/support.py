"""Helpers of the entitlements tests: checkout's lifecycle events, published the way checkout
publishes them (CloudEvents envelope, keyed by payment id, ``acks=all``), and the running
service's view of them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle
from payrail.contracts.topics import PAYMENTS_LIFECYCLE
from payrail.messaging.envelope import Envelope, encode
from tests.integration.messaging.support import caught_up, eventually, produce
from tests.support.kafka import Record
from tests.support.processes import ServiceProcess, service

GROUP = "entitlements"
AMOUNT = 1999

#: the status checkout's payment is in after each event (checkout owns this vocabulary)
STATUS = {
    LifecycleEventType.CREATED: "initiated",
    LifecycleEventType.SUCCEEDED: "succeeded",
    LifecycleEventType.FAILED: "failed",
    LifecycleEventType.CANCELED: "canceled",
    LifecycleEventType.REFUNDED: "refunded",
    LifecycleEventType.PARTIALLY_REFUNDED: "partially_refunded",
    LifecycleEventType.DISPUTE_OPENED: "disputed",
    LifecycleEventType.DISPUTE_LOST: "dispute_lost",
}
REFUNDED = {LifecycleEventType.REFUNDED: AMOUNT, LifecycleEventType.PARTIALLY_REFUNDED: 500}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def lifecycle(
    kind: LifecycleEventType,
    payment_id: str,
    user_id: str,
    *,
    sku: str = "pro-monthly",
    ce_id: str | None = None,
) -> Envelope[PaymentLifecycle]:
    """Checkout's event of ``kind`` for a payment; the same arguments give the same ``ce_id``
    (a redelivery) unless ``ce_id`` names another (a second report of the same fact)."""
    return Envelope.create(
        kind.value,
        "/payrail/checkout",
        PaymentLifecycle(
            payment_id=payment_id,
            status=STATUS[kind],
            amount=AMOUNT,
            currency="USD",
            amount_refunded=REFUNDED.get(kind, 0),
            user_id=user_id,
            sku=sku,
            gateway="stripe",
            gateway_payment_id=f"pi_{payment_id}",
            occurred_at=datetime.now(UTC),
        ),
        id=ce_id or f"checkout:{payment_id}:{kind.value}",
        subject=payment_id,
    )


async def publish(bootstrap: str, events: Iterable[Envelope[PaymentLifecycle]]) -> None:
    await produce(
        bootstrap,
        PAYMENTS_LIFECYCLE,
        [encode(event, event.data.payment_id) for event in events],
    )


async def consumed(bootstrap: str) -> None:
    """Wait until the entitlements group committed everything now on payments.lifecycle (its
    effects are committed in PostgreSQL before its offsets)."""
    await eventually(
        lambda: caught_up(bootstrap, GROUP, PAYMENTS_LIFECYCLE),
        what="entitlements consumed payments.lifecycle",
    )


async def access(svc: ServiceProcess, payment_id: str, **params: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=svc.url, timeout=40) as http:
        response = await http.get(f"/v1/payments/{payment_id}/access", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def entitlements_of(svc: ServiceProcess, user_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
        response = await http.get(f"/v1/users/{user_id}/entitlements")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == user_id
    items: list[dict[str, Any]] = body["entitlements"]
    return items


async def state_becomes(svc: ServiceProcess, payment_id: str, state: str) -> dict[str, Any]:
    """Wait for the payment's access to reach ``state``; its access answer."""
    found: dict[str, Any] = {}

    async def reached() -> bool:
        found.update(await access(svc, payment_id))
        return bool(found["state"] == state)

    await eventually(reached, what=f"{payment_id} {state}")
    return found


def payloads(records: Iterable[Record], payment_ids: set[str]) -> Iterator[tuple[Record, Any]]:
    """The records (and their JSON bodies) about ``payment_ids``."""
    for record in records:
        body = json.loads(record.value)
        if body.get("payment_id") in payment_ids:
            yield record, body


@contextmanager
def entitlements_service(
    kafka_bootstrap: str, database_url: str, tmp_path: Path, **env: str
) -> Iterator[ServiceProcess]:
    """The entitlements service as a real process on a free port."""
    variables = {
        "PAYRAIL_DATABASE_URL": database_url,
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        **env,
    }
    with service("entitlements", variables, tmp_path) as svc:
        yield svc
