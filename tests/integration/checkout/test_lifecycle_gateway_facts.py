"""The gateway facts checkout puts on ``payments.lifecycle`` for reconciliation: the gateway's
refund id of every refund (asked for through payrail or made in the gateway's dashboard) and the
disputed amount of a dispute. A real checkout process with webhook-ingest, Kafka, PostgreSQL
and localstripe, as in test_checkout_service."""

from __future__ import annotations

import json
import uuid
from typing import Any

import stripe

from payrail.contracts.registry import gateway_event_type
from payrail.contracts.topics import PAYMENTS_GATEWAY_EVENTS, PAYMENTS_LIFECYCLE
from payrail.gateways.events import GatewayEvent
from payrail.messaging.envelope import Envelope
from tests.integration.checkout.test_checkout_service import (
    _publish,
    body,
    checkout,
    pay,
    post,
    stripe_client,
    wait_for_status,
)
from tests.support.kafka import TopicReader
from tests.support.processes import ServiceProcess

__all__ = ["checkout", "stripe_client"]  # the module's fixtures, shared with the service tests


def payloads(records: list[Any], payment_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(r.headers["ce_type"], json.loads(r.value)) for r in records if r.key == payment_id]


def paid(svc: ServiceProcess, client: stripe.StripeClient) -> dict[str, Any]:
    created: dict[str, Any] = post(svc, body()).json()
    pay(client, created["gateway_payment_id"])
    wait_for_status(svc, created["id"], "succeeded")
    return created


async def gateway_event(bootstrap: str, **fields: Any) -> None:
    """Hand checkout a verified gateway event, as webhook-ingest does after normalizing one."""
    event = GatewayEvent(
        gateway="stripe",
        gateway_event_id=f"evt_{uuid.uuid4().hex}",
        occurred_at="2026-11-25T10:00:00Z",
        **fields,
    )
    envelope = Envelope.create(
        gateway_event_type(event.kind), "/payrail/webhook-ingest/stripe", event, id=event.ce_id
    )
    await _publish(bootstrap, PAYMENTS_GATEWAY_EVENTS, event.partition_key, envelope)


async def test_a_refund_through_payrail_names_the_gateways_refund(
    checkout: ServiceProcess, kafka_bootstrap: str, stripe_client: stripe.StripeClient
) -> None:
    created = paid(checkout, stripe_client)
    lifecycle = TopicReader(kafka_bootstrap, PAYMENTS_LIFECYCLE)
    await lifecycle.mark()

    refund = post(checkout, {"amount": 700}, path=f"/{created['id']}/refunds")
    assert refund.status_code == 201, refund.text
    wait_for_status(checkout, created["id"], "partially_refunded")

    at_gateway = stripe_client.v1.refunds.list(
        params={"payment_intent": created["gateway_payment_id"]}
    )
    [(kind, data)] = payloads(await lifecycle.read(expect=1, timeout=30, settle=3), created["id"])
    assert kind == "payment.partially_refunded"
    assert data["refund_id"] == refund.json()["id"]
    assert data["gateway_refund_id"] == refund.json()["gateway_refund_id"]
    assert [r.id for r in at_gateway.data] == [data["gateway_refund_id"]]
    assert data["refund_amount"] == 700


async def test_a_refund_made_in_the_gateways_dashboard_is_announced_with_its_gateway_id(
    checkout: ServiceProcess, kafka_bootstrap: str, stripe_client: stripe.StripeClient
) -> None:
    created = paid(checkout, stripe_client)
    lifecycle = TopicReader(kafka_bootstrap, PAYMENTS_LIFECYCLE)
    await lifecycle.mark()

    await gateway_event(
        kafka_bootstrap,
        kind="refund.succeeded",
        payment_id=created["id"],
        gateway_payment_id=created["gateway_payment_id"],
        gateway_refund_id="re_dashboard_1",
        amount=400,
        currency="USD",
    )
    payment = wait_for_status(checkout, created["id"], "partially_refunded")
    assert payment["amount_refunded"] == 400
    [(kind, data)] = payloads(await lifecycle.read(expect=1, timeout=30, settle=3), created["id"])
    assert kind == "payment.partially_refunded"
    assert (data["gateway_refund_id"], data["refund_amount"]) == ("re_dashboard_1", 400)


async def test_a_partial_chargeback_announces_the_disputed_amount(
    checkout: ServiceProcess, kafka_bootstrap: str, stripe_client: stripe.StripeClient
) -> None:
    created = paid(checkout, stripe_client)
    lifecycle = TopicReader(kafka_bootstrap, PAYMENTS_LIFECYCLE)
    await lifecycle.mark()

    await gateway_event(
        kafka_bootstrap,
        kind="dispute.opened",
        payment_id=created["id"],
        gateway_payment_id=created["gateway_payment_id"],
        gateway_dispute_id="dp_partial_1",
        amount=900,
        currency="USD",
    )
    wait_for_status(checkout, created["id"], "disputed")
    [(kind, data)] = payloads(await lifecycle.read(expect=1, timeout=30, settle=3), created["id"])
    assert kind == "payment.dispute_opened"
    assert (data["dispute_id"], data["dispute_amount"], data["amount"]) == (
        "dp_partial_1",
        900,
        1999,
    )
