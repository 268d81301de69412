"""Applying what a gateway said happened to a payment.

One path for every source: webhooks (through webhook-ingest), the janitor's status syncs (both
arrive on ``payments.gateway-events``; ``ce_source`` tells them apart and is kept on the
timeline) and the answers of checkout's own gateway calls. The payment is locked, the event
merged into its facts (:meth:`Payment.apply`, monotonic and duplicate-proof), and when that
changed something the rest of payrail hears it on ``payments.lifecycle``.

An event for a payment checkout does not know is never dropped: it is kept in
``unmatched_gateway_events`` for a human, counted in
``payrail_checkout_unmatched_gateway_events_total`` and logged.
"""

from __future__ import annotations

from prometheus_client import Counter

from checkout.adapters.repository import Answering, CallFinished, PaymentRecord, timeline_row
from checkout.domain.payment import PaymentStatus
from checkout.service_layer.lifecycle import EVENT_FOR_STATUS, lifecycle_event
from checkout.service_layer.unit_of_work import UnitOfWork
from payrail.contracts.payments import LifecycleEventType
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.logging import get_logger
from payrail.messaging.envelope import Envelope
from payrail.web.idempotency import Answer

log = get_logger(__name__)

UNMATCHED = Counter(
    "payrail_checkout_unmatched_gateway_events_total",
    "Verified gateway events naming a payment checkout does not know (kept for a human)",
    ["gateway", "kind"],
)

_REFUNDS = {LifecycleEventType.REFUNDED, LifecycleEventType.PARTIALLY_REFUNDED}
_DISPUTES = {
    GatewayEventKind.DISPUTE_OPENED,
    GatewayEventKind.DISPUTE_WON,
    GatewayEventKind.DISPUTE_LOST,
}
_SETTLED_REFUND = {
    GatewayEventKind.REFUND_SUCCEEDED: "succeeded",
    GatewayEventKind.REFUND_FAILED: "failed",
}


def capture_key(payment_id: str) -> str:
    """The idempotency key of the capture of ``payment_id`` (one capture per payment)."""
    return f"{payment_id}:capture"


async def apply_event(
    uow: UnitOfWork,
    record: PaymentRecord,
    event: GatewayEvent,
    *,
    source: str,
    ce_id: str | None = None,
    prior: PaymentStatus | None = None,
    call_finished: CallFinished | None = None,
    answering: Answering | None = None,
) -> Answer | None:
    """Merge ``event`` into the (locked) payment, record it, stage what changed and save.

    ``prior`` is the status before a change the caller already made in this transaction (the
    create call's answer records the intent first); ``call_finished``: the gateway call whose
    answer ``event`` is, recorded as ended in the same statement, with the ``Idempotency-Key``
    answer of ``answering``. Returns that answer when the save stored it
    (:meth:`~checkout.adapters.repository.PaymentRepository.save`).
    """
    payment = record.payment
    before = prior if prior is not None else payment.status
    refunded_before = payment.amount_refunded
    payment.apply(event)
    changed = payment.status if payment.status is not before else None
    if event.failure_code and changed is PaymentStatus.FAILED:
        record.failure_code, record.failure_message = event.failure_code, event.failure_message
    noted = timeline_row(
        payment.id,
        f"gateway.{event.kind.value}",
        source=source,
        ce_id=ce_id,
        status_before=before,
        status_after=payment.status,
        detail=_detail(event),
    )
    refund_id = await _settle_refund(uow, record, event)
    if payment.status.is_terminal_for_sync:
        record.next_sync_at = None
    if (
        event.kind is GatewayEventKind.PAYMENT_AUTHORIZED
        and payment.gateway_payment_id
        and payment.status in {PaymentStatus.PROCESSING, PaymentStatus.PENDING}
    ):
        await uow.payments.add_call(payment.id, "capture", capture_key(payment.id))
    newly_refunded = payment.amount_refunded - refunded_before
    event_type = EVENT_FOR_STATUS.get(payment.status)
    announced = None
    if newly_refunded > 0 and event_type in _REFUNDS:
        assert event_type is not None
        announced = lifecycle_event(
            record,
            event_type,
            occurred_at=event.occurred_at,
            refund_id=refund_id or event.gateway_refund_id or event.gateway_event_id,
            gateway_refund_id=event.gateway_refund_id,
            refund_amount=newly_refunded,
        )
    elif changed is not None and event_type is not None:
        announced = lifecycle_event(
            record,
            event_type,
            occurred_at=event.occurred_at,
            dispute_id=event.gateway_dispute_id,
            dispute_amount=_dispute_amount(record, event),
            reason=event.failure_message,
        )
    # the change, its timeline entries and the announcement: one statement
    if announced is None:
        return await uow.payments.save(
            record, timeline=[noted], call_finished=call_finished, answering=answering
        )
    return await uow.payments.save(
        record,
        timeline=[noted, announced.noted],
        announce=announced.announcement,
        call_finished=call_finished,
        answering=answering,
    )


def _dispute_amount(record: PaymentRecord, event: GatewayEvent) -> int | None:
    """What a dispute event disputes, when the gateway said so in the payment's currency.

    A partial chargeback disputes less than the payment; without this the reconciler would
    book the whole payment as disputed. An amount in another currency (a chargeback in the
    card's currency) is not comparable with the payment, so it is left out and consumers fall
    back to the payment's amount.
    """
    if event.kind not in _DISPUTES or event.amount is None or event.amount < 0:
        return None
    if event.currency is not None and event.currency != record.payment.money.currency:
        return None
    return event.amount


async def _settle_refund(uow: UnitOfWork, record: PaymentRecord, event: GatewayEvent) -> str | None:
    """A refund payrail requested was confirmed or failed: release its reservation once.

    Returns payrail's refund id when the event is about one.
    """
    status = _SETTLED_REFUND.get(event.kind)
    if status is None or not event.gateway_refund_id:
        return None
    refund = await uow.payments.refund_by_gateway_id(record.id, event.gateway_refund_id)
    if refund is None:
        return None  # a refund made at the gateway's dashboard: the facts still count it
    if not refund.settled:
        record.payment.settle_refund_request(refund.amount)
        await uow.payments.update_refund(
            refund.id, status=status, failure_message=event.failure_message
        )
    return refund.id


#: what of a gateway event its timeline entry keeps (not ``raw``: the gateway's whole payload)
_DETAIL: set[str] = {
    "gateway_event_id",
    "gateway_payment_id",
    "gateway_refund_id",
    "gateway_dispute_id",
    "amount",
    "currency",
    "amount_refunded",
    "failure_code",
    "failure_message",
    "occurred_at",
    "source",
}


def _detail(event: GatewayEvent) -> dict[str, object]:
    return dict(event.model_dump(mode="json", include=_DETAIL, exclude_none=True))


async def handle_gateway_event(uow: UnitOfWork, envelope: Envelope[GatewayEvent]) -> None:
    """The ``payments.gateway-events`` consumer's use case (webhooks and status syncs alike)."""
    event = envelope.data
    record = None
    if event.payment_id:
        record = await uow.payments.get(event.payment_id, lock=True)
    if record is None and event.gateway_payment_id:
        record = await uow.payments.get_by_gateway_id(
            event.gateway, event.gateway_payment_id, lock=True
        )
    if record is None:
        await uow.payments.record_unmatched(
            ce_id=envelope.id,
            gateway=event.gateway,
            kind=event.kind.value,
            payment_id=event.payment_id,
            gateway_payment_id=event.gateway_payment_id,
            source=envelope.source,
            event=event.model_dump(mode="json"),
        )
        UNMATCHED.labels(event.gateway, event.kind.value).inc()
        log.warning(
            "gateway event for an unknown payment kept for review",
            ce_id=envelope.id,
            gateway=event.gateway,
            kind=event.kind.value,
        )
        return
    await apply_event(uow, record, event, source=envelope.source, ce_id=envelope.id)
