"""Creating a payment: the row first, the gateway afterwards.

:func:`create_payment` runs in the caller's transaction (the API's, or the intents consumer's):
it inserts the payment ``initiated``, owes the gateway a ``create`` call whose idempotency key is
derived from the payment id, notes the request on the timeline and stages ``payment.created``.
The call itself is made after the commit by :class:`~checkout.service_layer.calls.GatewayCalls`
- at once by the API, or by the executor's loop - never inside a transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from checkout.adapters.repository import GatewayCall, PaymentRecord, timeline_row
from checkout.domain.payment import Payment
from checkout.service_layer.lifecycle import lifecycle_event
from checkout.service_layer.unit_of_work import UnitOfWork
from payrail.contracts.payments import LifecycleEventType
from payrail.money import Money
from payrail.web.idempotency import Claim


@dataclass(frozen=True, slots=True)
class CreatePayment:
    """The command: take ``money`` from ``user_id`` for ``sku`` through ``gateway``."""

    payment_id: str
    money: Money
    user_id: str
    sku: str
    gateway: str
    account: str
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def create_key(payment_id: str) -> str:
    """The gateway idempotency key of the create call of ``payment_id``."""
    return f"{payment_id}:create"


async def create_payment(
    uow: UnitOfWork,
    command: CreatePayment,
    *,
    source: str,
    call_delay: timedelta,
    first_sync_after: timedelta,
    claim: Claim | None = None,
) -> tuple[PaymentRecord, GatewayCall] | None:
    """Record the payment and owe its create call (due after ``call_delay``: the API makes the
    call itself and leaves the executor a lease before it steps in). None when a payment with
    this id exists already (a repeated intent) or, with ``claim`` (the API request's
    ``Idempotency-Key``, claimed with the payment), when a request holds the key."""
    record = PaymentRecord(
        payment=Payment(
            id=command.payment_id,
            money=command.money,
            user_id=command.user_id,
            sku=command.sku,
            gateway=command.gateway,
            account=command.account,
        ),
        description=command.description,
        metadata=dict(command.metadata),
        # the janitor's first look, should neither the gateway's answer nor a webhook come
        next_sync_at=datetime.now(UTC) + first_sync_after,
    )
    created = lifecycle_event(record, LifecycleEventType.CREATED)
    noted = timeline_row(
        record.id,
        "payment.created",
        source=source,
        status_after=record.payment.status,
        detail={"amount": command.money.amount, "currency": command.money.currency},
    )
    call = await uow.payments.add(
        record,
        create_key=create_key(record.id),
        announce=created.announcement,
        call_delay=call_delay,
        timeline=[noted, created.noted],
        claim=claim,
    )
    if call is None:
        return None
    return record, call
