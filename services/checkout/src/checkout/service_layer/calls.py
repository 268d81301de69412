"""Making the calls checkout owes gateways, outside any transaction, with stable keys.

A call (``gateway_calls`` row) is written in the business transaction; this module makes it
afterwards and records the answer in a new transaction:

* ``create`` - open the payment at the gateway (key ``<payment id>:create``). Accepted: the
  gateway's id and what the front end needs (client secret / redirect URL) are stored and the
  answer is applied like any gateway event. Declined: the payment ``failed``. Timeout or
  unavailable: the outcome is unknown - the payment stays ``initiated`` with
  ``outcome_unknown``, the call is ``unknown`` and the payment is due for the janitor's sync.
* ``capture`` - capture an authorized payment (key ``<payment id>:capture``).
* ``refund`` - refund (key ``<refund id>:refund``).

The API makes its call at once (and answers with the result); the loop of
:class:`GatewayCalls` makes every call that is due - those owed by the intents consumer and the
gateway-events consumer, and any whose maker died: a claimed call is leased, and an expired
lease makes it due again. Repeating a call is safe because the gateway sees the same
idempotency key. Whoever records the answer of a create or refund also stores the API response
of the ``Idempotency-Key`` that asked for it, so a client retrying after a crash gets it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from checkout.adapters.repository import (
    Answering,
    CallFinished,
    GatewayCall,
    PaymentRecord,
    StaleVersion,
    timeline_row,
)
from checkout.service_layer.gateway_events import apply_event
from checkout.service_layer.gateways import Gateways
from checkout.service_layer.unit_of_work import Store, UnitOfWork
from checkout.service_layer.views import create_status, payment_view, refund_view, to_bytes
from payrail.gateways.base import (
    SYNC_EVENT_KINDS,
    CreatePayment,
    CreateRefund,
    GatewayDeclined,
    GatewayError,
    GatewayPayment,
    GatewayRefund,
)
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.logging import get_logger
from payrail.web.idempotency import Answer

log = get_logger(__name__)

#: timeline source of what checkout's own gateway calls learned
SOURCE = "/payrail/checkout/gateway-calls"
CREATE_SCOPE = "POST /v1/payments"


def refund_scope(payment_id: str) -> str:
    return f"POST /v1/payments/{payment_id}/refunds"


@dataclass(frozen=True, slots=True)
class CallTiming:
    #: how long a claimed call is left to its maker before another executor retakes it
    lease: timedelta = timedelta(minutes=2)
    #: when the janitor first syncs a payment whose gateway call had an unknown outcome
    unknown_sync_after: timedelta = timedelta(minutes=1)
    #: how often the loop looks for due calls (it is also woken when calls are owed)
    poll_interval: float = 0.5
    batch: int = 16


def _create_answer(record: PaymentRecord) -> Answer:
    """What ``POST /v1/payments`` answers once the create call's answer is recorded."""
    return Answer(create_status(record), to_bytes(payment_view(record)))


def _payment_event(record: PaymentRecord, answer: GatewayPayment, origin: str) -> GatewayEvent:
    """The gateway's answer to a call, as a gateway event (deterministic id: re-recording the
    same answer changes nothing)."""
    payment = record.payment
    return GatewayEvent(
        gateway=payment.gateway,
        account=payment.account,
        gateway_event_id=f"{origin}:{answer.gateway_payment_id}:{answer.status.value}",
        kind=SYNC_EVENT_KINDS[answer.status],
        payment_id=payment.id,
        gateway_payment_id=answer.gateway_payment_id,
        amount=answer.amount,
        currency=answer.currency,
        occurred_at=datetime.now(UTC),
        source="gateway-call",
    )


class GatewayCalls:
    def __init__(self, store: Store, gateways: Gateways, timing: CallTiming) -> None:
        self.store = store
        self.gateways = gateways
        self.timing = timing
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------ the loop

    def wake(self) -> None:
        """Calls were owed: look now rather than at the next poll."""
        self._wake.set()

    async def run_due(self) -> int:
        """Claim the due calls, make them concurrently; returns how many were made."""
        async with UnitOfWork.begin(self.store) as uow:
            calls = await uow.payments.claim_due_calls(
                limit=self.timing.batch, lease=self.timing.lease
            )
        await asyncio.gather(*(self._execute_logged(call) for call in calls))
        return len(calls)

    async def _execute_logged(self, call: GatewayCall) -> None:
        try:
            await self.execute(call)
        except Exception as exc:  # the lease makes it due again; the next loop retries it
            log.warning(
                "gateway call not recorded", call=call.id, kind=call.kind, error=type(exc).__name__
            )

    async def _loop(self) -> None:
        while True:
            try:
                made = await self.run_due()
            except Exception as exc:  # the database may be away: try again after the poll
                log.warning("gateway-call loop failed", error=type(exc).__name__)
                made = 0
            if made < self.timing.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.timing.poll_interval)
                self._wake.clear()

    async def __aenter__(self) -> GatewayCalls:
        self._task = asyncio.create_task(self._loop(), name="checkout-gateway-calls")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ------------------------------------------------------------------------ one call

    async def execute(
        self, call: GatewayCall, record: PaymentRecord | None = None
    ) -> Answer | None:
        """Make ``call`` and record its answer. ``record`` is the payment as its maker just
        committed it (the API), saving a read. A create's answer is recorded on it as read
        (its save checks the version); a capture's or refund's on the payment read locked.

        Returns the ``Idempotency-Key`` answer this stored for the create or refund (what the
        API sends), None when there is none or another maker stored the key's answer first.
        """
        if record is None:
            async with UnitOfWork.begin(self.store) as uow:
                record = await uow.payments.get(call.payment_id)
        if record is None:
            raise LookupError(f"gateway call {call.id} names unknown payment {call.payment_id}")
        match call.kind:
            case "create":
                return await self._create(call, record)
            case "capture":
                await self._capture(call, record)
                return None
            case "refund":
                return await self._refund(call)
            case _:
                raise ValueError(f"unknown gateway call kind {call.kind!r}")

    async def _create(self, call: GatewayCall, record: PaymentRecord) -> Answer | None:
        """Open the payment at its gateway, then record the answer - first on ``record`` as
        its maker read it (no locking read: the save's version check catches a change made
        meanwhile, and that rare case is recorded again on the payment read locked)."""
        payment = record.payment
        request = CreatePayment(
            payment_id=payment.id,
            idempotency_key=call.idempotency_key,
            amount=payment.money.amount,
            currency=payment.money.currency,
            description=record.description,
            user_id=payment.user_id,
            sku=payment.sku,
            metadata=record.metadata,
        )
        answer: GatewayPayment | None = None
        declined: GatewayDeclined | None = None
        try:
            client = self.gateways.payments(payment.gateway, payment.account)
            answer = await client.create(request)
        except GatewayDeclined as exc:
            declined = exc
        except GatewayError as exc:  # unavailable, timed out: nobody knows what happened
            log.warning("gateway create outcome unknown", payment=payment.id, error=str(exc))
        try:
            return await self._record_create(call, record, answer, declined, optimistic=True)
        except StaleVersion:  # a webhook or a sync was faster
            return await self._record_create(call, record, answer, declined, optimistic=False)

    async def _record_create(
        self,
        call: GatewayCall,
        record: PaymentRecord,
        answer: GatewayPayment | None,
        declined: GatewayDeclined | None,
        *,
        optimistic: bool,
    ) -> Answer | None:
        payment = record.payment
        # the API's answer rides on the payment's save (one statement)
        answering = Answering(CREATE_SCOPE, payment.id, _create_answer)
        async with UnitOfWork.begin(self.store) as uow:
            # (the optimistic attempt changes ``record``; a retry starts from the stored row)
            current = record if optimistic else await uow.payments.get(payment.id, lock=True)
            assert current is not None
            if answer is not None:
                prior = current.payment.status
                current.payment.record_intent(answer.gateway_payment_id)
                current.client_secret = answer.client_secret or current.client_secret
                current.redirect_url = answer.redirect_url or current.redirect_url
                return await apply_event(
                    uow,
                    current,
                    _payment_event(current, answer, "create"),
                    source=SOURCE,
                    prior=prior,
                    call_finished=CallFinished(call.id, "done"),
                    answering=answering,
                )
            if declined is not None:
                failed = GatewayEvent(
                    gateway=payment.gateway,
                    account=payment.account,
                    gateway_event_id=f"create-declined:{payment.id}",
                    kind=GatewayEventKind.PAYMENT_FAILED,
                    payment_id=payment.id,
                    failure_code=declined.code or "declined",
                    failure_message=str(declined),
                    occurred_at=datetime.now(UTC),
                    source="gateway-call",
                )
                return await apply_event(
                    uow,
                    current,
                    failed,
                    source=SOURCE,
                    call_finished=CallFinished(call.id, "declined", str(declined)),
                    answering=answering,
                )
            return await self._unknown(uow, current, call, "create", answering)

    async def _unknown(
        self,
        uow: UnitOfWork,
        record: PaymentRecord,
        call: GatewayCall,
        what: str,
        answering: Answering | None = None,
    ) -> Answer | None:
        """The call's outcome is unknown: leave it to the janitor's status sync."""
        if what == "create":
            record.payment.record_outcome_unknown()
        record.next_sync_at = datetime.now(UTC) + self.timing.unknown_sync_after
        noted = timeline_row(record.id, f"gateway.{what}.outcome_unknown", source=SOURCE)
        unknown = CallFinished(call.id, "unknown", "outcome unknown")
        return await uow.payments.save(
            record, timeline=[noted], call_finished=unknown, answering=answering
        )

    async def _capture(self, call: GatewayCall, record: PaymentRecord) -> None:
        payment = record.payment
        assert payment.gateway_payment_id is not None  # owed only once the gateway id is known
        answer: GatewayPayment | None = None
        declined: GatewayDeclined | None = None
        try:
            client = self.gateways.payments(payment.gateway, payment.account)
            answer = await client.capture(
                payment.gateway_payment_id, idempotency_key=call.idempotency_key
            )
        except GatewayDeclined as exc:
            declined = exc
        except GatewayError as exc:
            log.warning("gateway capture outcome unknown", payment=payment.id, error=str(exc))
        async with UnitOfWork.begin(self.store) as uow:
            current = await uow.payments.get(payment.id, lock=True)
            assert current is not None
            if answer is not None:
                await apply_event(
                    uow, current, _payment_event(current, answer, "capture"), source=SOURCE
                )
                await uow.payments.finish_call(call.id, status="done")
            elif declined is not None:
                current.needs_attention = True
                current.attention_reason = f"capture declined: {declined}"
                await uow.payments.record_event(
                    current.id,
                    "gateway.capture.declined",
                    source=SOURCE,
                    detail={"code": declined.code, "message": str(declined)},
                )
                await uow.payments.save(current)
                await uow.payments.finish_call(call.id, status="declined", error=str(declined))
            else:
                await self._unknown(uow, current, call, "capture")

    async def _refund(self, call: GatewayCall) -> Answer | None:
        assert call.refund_id is not None
        async with UnitOfWork.begin(self.store) as uow:
            record = await uow.payments.get(call.payment_id)
            refund = await uow.payments.get_refund(call.refund_id)
        assert record is not None
        assert refund is not None
        payment = record.payment
        assert payment.gateway_payment_id is not None  # only succeeded payments are refunded
        answer: GatewayRefund | None = None
        declined: GatewayDeclined | None = None
        try:
            client = self.gateways.refunds(payment.gateway, payment.account)
            answer = await client.refund(
                CreateRefund(
                    refund_id=refund.id,
                    idempotency_key=call.idempotency_key,
                    payment_id=payment.id,
                    gateway_payment_id=payment.gateway_payment_id,
                    amount=refund.amount,
                    currency=refund.currency,
                    reason=refund.reason,
                )
            )
        except GatewayDeclined as exc:
            declined = exc
        except GatewayError as exc:
            log.warning("gateway refund outcome unknown", refund=refund.id, error=str(exc))
        async with UnitOfWork.begin(self.store) as uow:
            current = await uow.payments.get(payment.id, lock=True)
            assert current is not None
            if answer is not None:
                await self._refund_answer(uow, current, refund.id, answer)
                await uow.payments.finish_call(call.id, status="done")
            elif declined is not None:
                current.payment.settle_refund_request(refund.amount)
                await uow.payments.update_refund(
                    refund.id, status="failed", failure_message=str(declined)
                )
                await uow.payments.record_event(
                    current.id,
                    "gateway.refund.declined",
                    source=SOURCE,
                    detail={"refund_id": refund.id, "message": str(declined)},
                )
                await uow.payments.save(current)
                await uow.payments.finish_call(call.id, status="declined", error=str(declined))
            else:
                await uow.payments.update_refund(refund.id, status="unknown")
                await self._unknown(uow, current, call, "refund")
            after = await uow.payments.get_refund(refund.id)
            assert after is not None
            response = Answer(
                202 if after.status == "unknown" else 201, to_bytes(refund_view(after))
            )
            stored = await uow.idempotency.complete_resource(
                refund_scope(payment.id), refund.id, response
            )
        return response if stored else None

    async def _refund_answer(
        self, uow: UnitOfWork, record: PaymentRecord, refund_id: str, answer: GatewayRefund
    ) -> None:
        pending = "pending" if answer.status == "pending" else "requested"
        await uow.payments.update_refund(
            refund_id, status=pending, gateway_refund_id=answer.gateway_refund_id
        )
        if answer.status == "pending":
            await uow.payments.record_event(
                record.id,
                "gateway.refund.pending",
                source=SOURCE,
                detail={"refund_id": refund_id, "gateway_refund_id": answer.gateway_refund_id},
            )
            await uow.payments.save(record)
            return
        kind = (
            GatewayEventKind.REFUND_SUCCEEDED
            if answer.status == "succeeded"
            else GatewayEventKind.REFUND_FAILED
        )
        payment = record.payment
        event = GatewayEvent(
            gateway=payment.gateway,
            account=payment.account,
            gateway_event_id=f"refund:{answer.gateway_refund_id}:{answer.status}",
            kind=kind,
            payment_id=payment.id,
            gateway_payment_id=payment.gateway_payment_id,
            gateway_refund_id=answer.gateway_refund_id,
            amount=answer.amount,
            currency=answer.currency,
            occurred_at=datetime.now(UTC),
            source="gateway-call",
        )
        await apply_event(uow, record, event, source=SOURCE)
