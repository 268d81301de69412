"""Recording a create call's answer when the payment changed while the gateway was answering.

The API records the gateway's answer on the payment as it committed it, without a locking read;
a webhook applied in between bumps the payment's version, so that save is refused and the
answer is recorded again on the payment read locked. Real PostgreSQL; the gateway is an
in-process stand-in answering at once (the race is in the database, not on the wire).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from checkout.service_layer.calls import CREATE_SCOPE, CallTiming, GatewayCalls
from checkout.service_layer.gateway_events import apply_event
from checkout.service_layer.gateways import Gateways
from checkout.service_layer.payments import CreatePayment, create_payment
from checkout.service_layer.unit_of_work import Store, UnitOfWork
from payrail.gateways.base import (
    CreatePayment as GatewayCreate,
)
from payrail.gateways.base import (
    GatewayPayment,
    GatewayPaymentStatus,
    PaymentsClient,
)
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.money import Money


class AnsweringClient(PaymentsClient):
    """A gateway that opens every payment at once, waiting for the customer."""

    async def create(self, request: GatewayCreate) -> GatewayPayment:
        return GatewayPayment(
            gateway_payment_id=f"pi_{request.payment_id}",
            status=GatewayPaymentStatus.REQUIRES_ACTION,
            amount=request.amount,
            currency=request.currency,
            client_secret=f"pi_{request.payment_id}_secret",
        )

    async def capture(self, gateway_payment_id: str, *, idempotency_key: str) -> GatewayPayment:
        raise NotImplementedError

    async def cancel(self, gateway_payment_id: str, *, idempotency_key: str) -> GatewayPayment:
        raise NotImplementedError


class AnsweringGateways(Gateways):
    def __init__(self) -> None:
        super().__init__({})

    def payments(self, gateway: str, account: str) -> PaymentsClient:
        return AnsweringClient()


async def test_an_answer_that_lost_the_race_to_a_webhook_is_recorded_on_the_locked_payment(
    store: Store,
) -> None:
    payment_id = f"pay_{uuid.uuid4().hex}"
    async with UnitOfWork.begin(store) as uow:
        assert (
            await uow.idempotency.claim(
                CREATE_SCOPE, "key-1", request_hash="h", resource_id=payment_id
            )
            is None
        )
        created = await create_payment(
            uow,
            CreatePayment(
                payment_id=payment_id,
                money=Money(1999, "USD"),
                user_id="u_1",
                sku="pro-monthly",
                gateway="stripe",
                account="default",
            ),
            source="/payrail/checkout/api",
            call_delay=timedelta(minutes=2),
            first_sync_after=timedelta(minutes=15),
        )
    assert created is not None
    as_committed, call = created
    # the customer paid and Stripe's webhook was applied before the create's answer came back
    async with UnitOfWork.begin(store) as uow:
        locked = await uow.payments.get(payment_id, lock=True)
        assert locked is not None
        succeeded = GatewayEvent(
            gateway="stripe",
            gateway_event_id="evt_1",
            kind=GatewayEventKind.PAYMENT_SUCCEEDED,
            payment_id=payment_id,
            gateway_payment_id=f"pi_{payment_id}",
            amount=1999,
            currency="USD",
            occurred_at=datetime.now(UTC),
        )
        await apply_event(uow, locked, succeeded, source="/payrail/webhook-ingest/stripe")

    calls = GatewayCalls(store, AnsweringGateways(), CallTiming())
    answer = await calls.execute(call, as_committed)  # the API's stale copy (version 1)

    assert answer is not None
    assert answer.status == 201
    async with UnitOfWork.begin(store) as uow:
        stored = await uow.payments.get(payment_id)
        owed = await uow.payments.calls_of(payment_id)
        outbox = store.outbox.tables.outbox
        announced = (
            await uow.session.execute(
                select(outbox.c.ce_type).where(outbox.c.key == payment_id).order_by(outbox.c.id)
            )
        ).scalars()
        staged = list(announced)
        replayed = await uow.idempotency.get(CREATE_SCOPE, "key-1")
    assert stored is not None
    assert stored.payment.status.value == "succeeded"  # the late answer did not move it back
    assert stored.client_secret == f"pi_{payment_id}_secret"
    assert stored.version == 3  # the webhook's save, then the answer's
    assert [(c.kind, c.status) for c in owed] == [("create", "done")]
    assert staged == ["payment.created", "payment.succeeded"]
    assert replayed is not None
    assert replayed.answer is not None
    assert b'"succeeded"' in replayed.answer.body
