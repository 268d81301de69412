"""The janitor: asks the gateway about payments nobody told us about.

A webhook may never come (the customer's tab closed, the gateway's delivery gave up, a
misconfigured endpoint) and a create call may time out with its outcome unknown. Payments stuck
non-terminal (``initiated`` - including a create with an unknown outcome -, ``pending``,
``processing``, authorized-but-not-captured) are therefore synced with the gateway on a backoff
:class:`Schedule` (default 1 min, 5 min, 30 min, 2 h, 1 day: the first counted from creation, each
next from the previous sync).

One pass (:meth:`Janitor.run_once`), safe with any number of checkout instances:

1. *claim* - one short transaction takes up to ``batch`` due payments with
   ``FOR UPDATE SKIP LOCKED`` and moves each one's ``next_sync_at`` to its next step (and bumps
   ``sync_attempts``) before committing, so another instance neither blocks on it nor syncs it
   again for this step; a janitor that dies after the claim leaves the payment due at that
   next step;
2. *ask* - outside any transaction, :class:`~payrail.gateways.base.StatusSync` reports what the
   gateway holds. For an ``initiated`` payment whose create call's outcome is unknown, the create
   is made again with the same idempotency key (through the gateway-call executor's own path,
   :meth:`GatewayCalls.execute`, which records the answer; the executor's loop never retakes an
   ``unknown`` call, so exactly one of them makes it) - the gateway returns the intent it opened,
   or opens the one it never received;
3. *report* - one short transaction stages the sync's findings on ``payments.gateway-events``
   through checkout's outbox, exactly like a webhook (``ce_source`` :data:`SOURCE`, ``ce_id``
   deterministic for the gateway's state so repeated syncs dedupe, ``account`` set to the
   payment's), so checkout's own gateway-events consumer applies them and every other consumer
   of the topic sees them; the sync goes on the payment's timeline. After the schedule's last
   step a payment that would still not be final is flagged ``needs_attention`` with a reason and
   announced as ``payment.needs_attention`` - a human looks; it is never failed for silence.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select

from checkout.adapters.repository import GatewayCall, PaymentRecord, timeline_row
from checkout.domain.payment import PaymentStatus
from checkout.service_layer.calls import CallTiming, GatewayCalls
from checkout.service_layer.gateways import Gateways
from checkout.service_layer.lifecycle import lifecycle_event
from checkout.service_layer.unit_of_work import Store, UnitOfWork
from payrail.contracts import sources
from payrail.contracts.payments import LifecycleEventType
from payrail.contracts.registry import gateway_event_type
from payrail.contracts.topics import PAYMENTS_GATEWAY_EVENTS
from payrail.gateways.base import GatewayError
from payrail.gateways.events import GatewayEvent
from payrail.logging import get_logger
from payrail.messaging.envelope import Envelope

log = get_logger(__name__)

#: ``ce_source`` of the janitor's status-sync events, and the source of its timeline entries
SOURCE = sources.CHECKOUT_JANITOR

#: A create is retried with its key only this long after the payment was created: gateways forget
#: idempotency keys (Stripe after 24 hours), and a create retried with a forgotten key would open
#: a second intent. Past it, an unknown create is left to a human.
CREATE_RETRY_HORIZON = timedelta(hours=23)

SYNCS = Counter(
    "payrail_checkout_janitor_syncs_total",
    "Status syncs made by the janitor, by what the gateway said "
    "(found: it reported the payment; not_found: it has no record; error: it did not answer)",
    ["gateway", "outcome"],
)
CREATE_RETRIES = Counter(
    "payrail_checkout_janitor_create_retries_total",
    "Create calls with an unknown outcome made again by the janitor with the same idempotency key, "
    "by how the call ended (done, declined, unknown)",
    ["gateway", "outcome"],
)
FLAGGED = Counter(
    "payrail_checkout_janitor_flagged_total",
    "Payments the janitor flagged for a human after the last step of its schedule",
    ["gateway"],
)
NEEDING_ATTENTION = Gauge(
    "payrail_checkout_payments_needing_attention",
    "Payments flagged needs_attention (a count from the database: every instance reports the "
    "same figure, aggregate with max, not sum)",
)


class ScheduleError(ValueError):
    """A schedule that cannot be used (empty, not numbers, not positive)."""


@dataclass(frozen=True, slots=True)
class Step:
    """What one claim of a payment means: which sync it is and when the payment is due next."""

    #: 1 for the first sync
    attempt: int
    #: the schedule's last sync: afterwards a payment still not final needs a human
    last: bool
    #: when the payment is due again, counted from this claim
    next_after: timedelta


@dataclass(frozen=True, slots=True)
class Schedule:
    """The delays before each sync: ``steps[0]`` after creation, ``steps[k]`` after sync ``k``."""

    steps: tuple[timedelta, ...]
    #: how long the last step waits before it is retried, should the janitor that claimed it die
    #: before reporting (the last claim has no further step to fall back on)
    retry_last_after: timedelta = timedelta(minutes=5)

    @classmethod
    def parse(cls, text: str, *, retry_last_after: timedelta | None = None) -> Schedule:
        """``"60,300,1800,7200,86400"`` (seconds, comma-separated, each positive)."""
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise ScheduleError("the janitor schedule needs at least one step")
        try:
            seconds = [float(part) for part in parts]
        except ValueError:
            raise ScheduleError(f"janitor schedule {text!r} is not a list of seconds") from None
        if any(not s > 0 for s in seconds):  # also refuses NaN
            raise ScheduleError(f"janitor schedule {text!r} has a step that is not positive")
        steps = tuple(timedelta(seconds=s) for s in seconds)
        if retry_last_after is None:
            return cls(steps)
        return cls(steps, retry_last_after)

    @property
    def first(self) -> timedelta:
        """When a new payment is first synced, counted from its creation."""
        return self.steps[0]

    def step(self, syncs_made: int) -> Step:
        """The claim of a payment that was synced ``syncs_made`` times already.

        A payment claimed again after its last step (a janitor died before reporting it) is
        treated as that last step once more, so it is still flagged, never skipped.
        """
        attempt = min(syncs_made, len(self.steps) - 1) + 1
        last = attempt == len(self.steps)
        return Step(
            attempt=attempt,
            last=last,
            next_after=self.retry_last_after if last else self.steps[attempt],
        )

    def describe(self) -> str:
        return ", ".join(_human(step) for step in self.steps)


def _human(delay: timedelta) -> str:
    seconds = delay.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


class SyncOutcome(StrEnum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    ERROR = "error"


def sync_envelopes(
    record: PaymentRecord, events: Sequence[GatewayEvent]
) -> list[Envelope[GatewayEvent]]:
    """The sync's findings as ``payments.gateway-events`` envelopes.

    A status sync does not know which payrail account it asked for (it reports ``"default"``), so
    the payment's account is set here; ``ce_id`` stays the gateway's deterministic id for that
    state (``<gateway>:sync:<intent>:<status>``), so a sync that finds nothing new dedupes at
    every consumer.
    """
    payment = record.payment
    envelopes = []
    for event in events:
        event = event.model_copy(update={"account": payment.account, "payment_id": payment.id})
        envelopes.append(
            Envelope.create(
                gateway_event_type(event.kind),
                SOURCE,
                event,
                id=event.ce_id,
                subject=payment.id,
                time=event.occurred_at,
            )
        )
    return envelopes


def predicted_status(record: PaymentRecord, events: Sequence[GatewayEvent]) -> PaymentStatus:
    """The payment's status once ``events`` are applied (on a copy: the consumer applies them)."""
    payment = copy.deepcopy(record.payment)
    for event in events:
        payment.apply(event)
    return payment.status


def attention_reason(
    record: PaymentRecord,
    status: PaymentStatus,
    outcome: SyncOutcome,
    syncs: int,
    *,
    unsettled_refunds: int = 0,
) -> str:
    """Why a payment that is still not final after the schedule needs a human, in words."""
    after = f"after {syncs} status sync{'s' if syncs != 1 else ''}"
    if status.is_terminal_for_sync and unsettled_refunds:
        return f"{unsettled_refunds} refund(s) with an unknown outcome {after}"
    if outcome is SyncOutcome.ERROR:
        return f"the gateway did not answer the last status sync; still {status.value} {after}"
    if status is PaymentStatus.INITIATED:
        unknown = " and the create call's outcome is unknown" if _create_unknown(record) else ""
        return f"the gateway has no record of the payment {after}{unknown}"
    return f"still {status.value} at the gateway {after}"


def _create_unknown(record: PaymentRecord) -> bool:
    payment = record.payment
    return payment.status is PaymentStatus.INITIATED and payment.facts.outcome_unknown


@dataclass(frozen=True, slots=True)
class JanitorTiming:
    schedule: Schedule
    #: how long the janitor waits between looks when nothing (more) is due
    poll_interval: float = 5.0
    #: payments claimed (and synced concurrently) per look
    batch: int = 32
    #: the needs-attention gauge is recounted at most this often (and after each flag)
    gauge_interval: float = 30.0


@dataclass(slots=True)
class _Claimed:
    record: PaymentRecord
    step: Step
    #: the create call to make again (initiated, outcome unknown, within the key's horizon)
    create: GatewayCall | None


class Janitor:
    """Syncs due payments with their gateways (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        gateways: Gateways,
        timing: JanitorTiming,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.gateways = gateways
        self.timing = timing
        self.clock = clock
        self._gauge_due = 0.0

    # ------------------------------------------------------------------------ the loop

    async def run_once(self) -> int:
        """Claim the due payments, sync them concurrently; returns how many were claimed."""
        claimed = await self._claim()
        flagged = await asyncio.gather(*(self._sync_logged(c) for c in claimed))
        if any(flagged) or time.monotonic() >= self._gauge_due:
            await self.count_needing_attention()
        return len(claimed)

    async def count_needing_attention(self) -> int:
        """Recount the payments flagged for a human into the gauge."""
        t = self.store.tables.payments
        async with UnitOfWork.begin(self.store) as uow:
            query = select(func.count()).select_from(t).where(t.c.needs_attention)
            count = int((await uow.session.execute(query)).scalar_one())
        NEEDING_ATTENTION.set(count)
        self._gauge_due = time.monotonic() + self.timing.gauge_interval
        return count

    async def run_forever(self) -> None:
        """Pass after pass; a pass that fails (the database is away) is retried after the poll."""
        while True:
            try:
                claimed = await self.run_once()
            except Exception as exc:
                log.warning("janitor pass failed", error=type(exc).__name__, detail=str(exc))
                claimed = 0
            if claimed < self.timing.batch:
                await asyncio.sleep(self.timing.poll_interval)

    # ------------------------------------------------------------------------ one pass

    async def _claim(self) -> list[_Claimed]:
        now = self.clock()
        claimed = []
        async with UnitOfWork.begin(self.store) as uow:
            for record in await uow.payments.claim_due_for_sync(limit=self.timing.batch):
                step = self.timing.schedule.step(record.sync_attempts)
                record.sync_attempts = step.attempt
                record.next_sync_at = now + step.next_after
                await uow.payments.save(record)
                create = None
                young = record.created_at is not None and (
                    now - record.created_at < CREATE_RETRY_HORIZON
                )
                if _create_unknown(record) and young:
                    calls = await uow.payments.calls_of(record.id)
                    create = next(
                        (c for c in calls if c.kind == "create" and c.status == "unknown"), None
                    )
                claimed.append(_Claimed(record, step, create))
        return claimed

    async def _sync_logged(self, claimed: _Claimed) -> bool:
        try:
            return await self.sync(claimed)
        except Exception as exc:  # the claim left it due at its next step: retried then
            log.warning(
                "janitor sync not recorded",
                payment=claimed.record.id,
                error=type(exc).__name__,
                detail=str(exc),
            )
            return False

    async def sync(self, claimed: _Claimed) -> bool:
        """Ask the gateway about one claimed payment and report it; True when it was flagged."""
        record, step = claimed.record, claimed.step
        payment = record.payment
        events: list[GatewayEvent] = []
        try:
            status_sync = self.gateways.status_sync(payment.gateway, payment.account)
            events = await status_sync.sync(
                payment_id=payment.id, gateway_payment_id=payment.gateway_payment_id
            )
            outcome = SyncOutcome.FOUND if events else SyncOutcome.NOT_FOUND
        except GatewayError as exc:
            outcome = SyncOutcome.ERROR
            log.warning("janitor status sync failed", payment=payment.id, error=str(exc))
        SYNCS.labels(payment.gateway, outcome.value).inc()
        create_outcome = None
        if claimed.create is not None and outcome is not SyncOutcome.ERROR:
            create_outcome = await self._retry_create(claimed.create, payment.gateway, step)
        async with UnitOfWork.begin(self.store) as uow:
            current = await uow.payments.get(payment.id, lock=True)
            assert current is not None  # payments are never deleted
            for envelope in sync_envelopes(current, events):
                await uow.stage(PAYMENTS_GATEWAY_EVENTS, current.id, envelope)
            detail: dict[str, object] = {
                "attempt": step.attempt,
                "outcome": outcome.value,
                "found": [f"{e.kind.value}" for e in events],
            }
            if create_outcome is not None:
                detail["create_retry"] = create_outcome
            await uow.payments.record_event(
                current.id, "janitor.sync", source=SOURCE, detail=detail
            )
            if not step.last:
                return False
            # the schedule is over: nothing is due any more, whatever happens next
            current.next_sync_at = None
            status = predicted_status(current, events)
            refunds = await uow.payments.refunds_of(current.id)
            unsettled = sum(1 for r in refunds if r.status == "unknown")
            if current.needs_attention or (status.is_terminal_for_sync and not unsettled):
                # final, or flagged already (a declined capture): its reason stays
                await uow.payments.save(current)
                return False
            current.needs_attention = True
            current.attention_reason = attention_reason(
                current, status, outcome, step.attempt, unsettled_refunds=unsettled
            )
            flagged = lifecycle_event(
                current, LifecycleEventType.NEEDS_ATTENTION, reason=current.attention_reason
            )
            noted = timeline_row(
                current.id,
                "janitor.needs_attention",
                source=SOURCE,
                status_before=current.payment.status,
                status_after=current.payment.status,
                detail={"reason": current.attention_reason},
            )
            await uow.payments.save(
                current, timeline=[noted, flagged.noted], announce=flagged.announcement
            )
        FLAGGED.labels(payment.gateway).inc()
        log.warning("payment needs attention", payment=payment.id, reason=current.attention_reason)
        return True

    async def _retry_create(self, call: GatewayCall, gateway: str, step: Step) -> str:
        """Make the create again with its key, through the executor's path; its outcome."""
        # should it be unknown again, the executor marks the payment due at our next step
        executor = GatewayCalls(
            self.store, self.gateways, CallTiming(unknown_sync_after=step.next_after)
        )
        await executor.execute(call)
        async with UnitOfWork.begin(self.store) as uow:
            calls = await uow.payments.calls_of(call.payment_id)
        ended = next((c.status for c in calls if c.id == call.id), "unknown")
        CREATE_RETRIES.labels(gateway, ended).inc()
        return ended
