"""The payment repository: rows round-trip to the domain, concurrent writers cannot lose
updates, and the janitor's and the gateway-call executor's claims skip what others hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from checkout.adapters.repository import GatewayCall, PaymentRecord, StaleVersion
from checkout.domain.payment import Payment, PaymentStatus
from checkout.service_layer.lifecycle import lifecycle_event
from checkout.service_layer.unit_of_work import Store, UnitOfWork
from payrail.contracts.payments import LifecycleEventType
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.money import Money


def new_payment(payment_id: str = "pay_1") -> PaymentRecord:
    return PaymentRecord(
        payment=Payment(
            id=payment_id,
            money=Money(1999, "USD"),
            user_id="u_1",
            sku="pro-monthly",
            gateway="stripe",
        ),
        description="Pro",
        metadata={"order": "o_1"},
    )


async def add(uow: UnitOfWork, record: PaymentRecord, create_key: str) -> GatewayCall | None:
    """Record ``record`` as checkout does: with its create call and ``payment.created``."""
    created = lifecycle_event(record, LifecycleEventType.CREATED)
    return await uow.payments.add(record, create_key=create_key, announce=created.announcement)


async def test_a_payment_round_trips_with_its_facts(store: Store) -> None:
    async with UnitOfWork.begin(store) as uow:
        assert await add(uow, new_payment(), "pay_1:create") is not None
        assert await add(uow, new_payment(), "pay_1:again") is None  # same id: nothing written
        outbox = store.outbox.tables.outbox
        staged = (await uow.session.execute(select(outbox.c.ce_type, outbox.c.key))).all()
    assert [tuple(row) for row in staged] == [("payment.created", "pay_1")]
    async with UnitOfWork.begin(store) as uow:
        record = await uow.payments.get("pay_1", lock=True)
        assert record is not None
        record.payment.record_intent("pi_1")
        record.client_secret = "pi_1_secret"
        await uow.payments.save(record)
    async with UnitOfWork.begin(store) as uow:
        loaded = await uow.payments.get("pay_1")
        by_gateway = await uow.payments.get_by_gateway_id("stripe", "pi_1")
        listed = await uow.payments.list_by_user("u_1")
    assert loaded is not None
    assert by_gateway is not None
    assert loaded.payment.status is PaymentStatus.PENDING
    assert loaded.payment.facts.intent_created
    assert (loaded.client_secret, loaded.metadata, loaded.version) == (
        "pi_1_secret",
        {"order": "o_1"},
        2,
    )
    assert by_gateway.id == "pay_1"
    assert [r.id for r in listed] == ["pay_1"]


async def test_a_stale_save_is_refused(store: Store) -> None:
    async with UnitOfWork.begin(store) as uow:
        await add(uow, new_payment(), "pay_1:create")
    async with UnitOfWork.begin(store) as uow:
        first = await uow.payments.get("pay_1")
    async with UnitOfWork.begin(store) as uow:
        second = await uow.payments.get("pay_1", lock=True)
        assert second is not None
        await uow.payments.save(second)
    assert first is not None
    event = GatewayEvent(
        gateway="stripe",
        gateway_event_id="evt_1",
        kind=GatewayEventKind.PAYMENT_SUCCEEDED,
        occurred_at=datetime.now(UTC),
    )
    first.payment.apply(event)
    with pytest.raises(StaleVersion):
        async with UnitOfWork.begin(store) as uow:
            await uow.payments.save(first)


async def test_due_syncs_are_claimed_once_across_concurrent_janitors(store: Store) -> None:
    async with UnitOfWork.begin(store) as uow:
        for n in range(3):
            await add(uow, new_payment(f"pay_{n}"), f"pay_{n}:create")
        await uow.payments.mark_due_for_sync("pay_0", after=timedelta(0))
        await uow.payments.mark_due_for_sync("pay_1", after=timedelta(0))
        await uow.payments.mark_due_for_sync("pay_2", after=timedelta(hours=1))
    async with UnitOfWork.begin(store) as one, UnitOfWork.begin(store) as other:
        first = await one.payments.claim_due_for_sync(limit=1)
        second = await other.payments.claim_due_for_sync(limit=10)
    assert len(first) == 1
    assert {r.id for r in first + second} == {"pay_0", "pay_1"}  # pay_2 is not due yet


async def test_a_claimed_gateway_call_is_leased_and_its_key_is_owed_once(store: Store) -> None:
    async with UnitOfWork.begin(store) as uow:
        owed = await add(uow, new_payment(), "pay_1:create")
        assert owed is not None
        assert (owed.kind, owed.idempotency_key, owed.status) == ("create", "pay_1:create", "due")
        assert await uow.payments.add_call("pay_1", "create", "pay_1:create") is None
    async with UnitOfWork.begin(store) as uow:
        claimed = await uow.payments.claim_due_calls(limit=5, lease=timedelta(minutes=1))
    async with UnitOfWork.begin(store) as uow:
        again = await uow.payments.claim_due_calls(limit=5, lease=timedelta(minutes=1))
    assert [(c.kind, c.idempotency_key, c.attempts) for c in claimed] == [
        ("create", "pay_1:create", 1)
    ]
    assert again == []  # leased: not retaken until the lease ends
