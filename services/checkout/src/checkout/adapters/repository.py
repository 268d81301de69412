"""The payment repository: rows of checkout's schema <-> the domain :class:`Payment`.

Locking. Writers of one payment - an API refund, a gateway event, a gateway-call result, a
janitor sync - are serialized, so the outbox sees their events in order: most first load it with
``get(..., lock=True)`` (``SELECT ... FOR UPDATE``). ``save`` also checks ``version``: an update
of a row that was not loaded locked and changed meanwhile raises :class:`StaleVersion` instead of
overwriting it (the update itself takes the row lock, and its event is staged in the same
statement, so a save that succeeds is ordered like a locked one). The create call's answer uses
this optimistically - it is recorded on the payment as the API committed it, and again on the
locked row when that raises.

One statement per change. A payment's insert or save carries the change's timeline entries, the
outbox row of the lifecycle event it announces and, for a gateway call's answer, how the call
ended and the ``Idempotency-Key`` answer it settles; an API create's insert carries the claim of
its key (CTEs of the one statement): each statement through SQLAlchemy's asyncio layer costs
about as much CPU as the work it does. So that the answer stored with a save is the one sent, a
save's ``updated_at`` is stamped here (checkout's clock) rather than by the database.

Janitor seam. A payment is due for a status sync when ``next_sync_at <= now()``; services mark it
with :meth:`PaymentRepository.mark_due_for_sync` (a gateway call with an unknown outcome does).
The janitor claims due payments without blocking other instances or the API::

    SELECT id FROM checkout.payments
     WHERE next_sync_at <= now()
     ORDER BY next_sync_at
     LIMIT :n
     FOR UPDATE SKIP LOCKED

(:meth:`PaymentRepository.claim_due_for_sync`), moves ``next_sync_at`` to the next step of its
schedule and bumps ``sync_attempts`` in the same short transaction, commits, and only then asks
the gateway (never inside a transaction). The sync's findings go to ``payments.gateway-events``
with the janitor's ``ce_source`` and come back through the same consumer as webhooks. A payment
whose status became final for syncing gets ``next_sync_at = NULL`` from that consumer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Insert,
    Interval,
    RowMapping,
    Select,
    Text,
    Update,
    bindparam,
    column,
    exists,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.types import TypeEngine

from checkout.adapters.tables import CheckoutTables
from checkout.domain.payment import Facts, Payment, PaymentStatus
from payrail.db import Executor
from payrail.messaging.envelope import Envelope
from payrail.messaging.outbox import Outbox
from payrail.money import Money
from payrail.web.idempotency import Answer, Claim, answer_cte, answer_parameters, claim_cte


@dataclass(frozen=True, slots=True)
class Announcement:
    """An event to stage in the outbox with the change that causes it."""

    topic: str
    key: str
    envelope: Envelope[Any]


@dataclass(frozen=True, slots=True)
class CallFinished:
    """How a gateway call ended (see :meth:`PaymentRepository.finish_call`)."""

    call_id: int
    status: str
    error: str | None = None

    def parameters(self) -> dict[str, Any]:
        """The bind parameters of the call's update (alone, or riding on a payment's save)."""
        return {"w_call_id": self.call_id, "w_call_status": self.status, "w_call_error": self.error}


@dataclass(frozen=True, slots=True)
class Answering:
    """The ``Idempotency-Key`` answer a save settles: that of the in-flight request of
    ``scope`` that created ``resource_id``, made by ``respond`` from the payment as saved."""

    scope: str
    resource_id: str
    respond: Callable[[PaymentRecord], Answer]


class StaleVersion(RuntimeError):
    """The payment changed since it was loaded (it was not loaded with ``lock=True``)."""


@dataclass(slots=True)
class PaymentRecord:
    """A payment as stored: the domain aggregate plus what the API and the janitor keep."""

    payment: Payment
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    client_secret: str | None = None
    redirect_url: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    needs_attention: bool = False
    attention_reason: str | None = None
    sync_attempts: int = 0
    next_sync_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1

    @property
    def id(self) -> str:
        return self.payment.id


@dataclass(frozen=True, slots=True)
class RefundRecord:
    id: str
    payment_id: str
    amount: int
    currency: str
    status: str  # requested | pending | succeeded | failed | unknown
    reason: str | None = None
    gateway_refund_id: str | None = None
    failure_message: str | None = None
    created_at: datetime | None = None

    @property
    def settled(self) -> bool:
        """Its amount is no longer reserved on the payment (confirmed or failed)."""
        return self.status in {"succeeded", "failed"}


@dataclass(frozen=True, slots=True)
class GatewayCall:
    """A call checkout owes a gateway (see :mod:`checkout.adapters.tables`)."""

    id: int
    payment_id: str
    kind: str  # create | capture | refund
    idempotency_key: str
    status: str  # due | done | declined | unknown
    attempts: int
    refund_id: str | None = None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    id: int
    at: datetime
    kind: str
    source: str
    ce_id: str | None
    status_before: str | None
    status_after: str | None
    detail: Mapping[str, Any]


def _record(row: RowMapping) -> PaymentRecord:
    payment = Payment(
        id=row["id"],
        money=Money(int(row["amount"]), row["currency"]),
        user_id=row["user_id"],
        sku=row["sku"],
        gateway=row["gateway"],
        account=row["account"],
        gateway_payment_id=row["gateway_payment_id"],
        facts=Facts.from_json(row["facts"]),
        status=PaymentStatus(row["status"]),
        pending_refunds=int(row["pending_refunds"]),
    )
    return PaymentRecord(
        payment=payment,
        description=row["description"],
        metadata=dict(row["metadata"] or {}),
        client_secret=row["client_secret"],
        redirect_url=row["redirect_url"],
        failure_code=row["failure_code"],
        failure_message=row["failure_message"],
        needs_attention=row["needs_attention"],
        attention_reason=row["attention_reason"],
        sync_attempts=row["sync_attempts"],
        next_sync_at=row["next_sync_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


def _mutable(record: PaymentRecord) -> dict[str, Any]:
    """The columns a save writes (identity, money and ownership never change)."""
    payment = record.payment
    return {
        "gateway_payment_id": payment.gateway_payment_id,
        "status": payment.status.value,
        "facts": payment.facts.to_json(),
        "pending_refunds": payment.pending_refunds,
        "client_secret": record.client_secret,
        "redirect_url": record.redirect_url,
        "failure_code": record.failure_code,
        "failure_message": record.failure_message,
        "needs_attention": record.needs_attention,
        "attention_reason": record.attention_reason,
        "sync_attempts": record.sync_attempts,
        "next_sync_at": record.next_sync_at,
    }


#: the payments columns :meth:`PaymentRepository.add` leaves to the database
_SERVER_SET = frozenset({"created_at", "updated_at", "version"})


#: the payments columns :func:`_mutable` writes (its keys, so the two cannot drift apart)
_MUTABLE = frozenset(_mutable(PaymentRecord(Payment("", Money(0, "USD"), "", "", ""))))


def _refund(row: RowMapping) -> RefundRecord:
    return RefundRecord(
        id=row["id"],
        payment_id=row["payment_id"],
        amount=int(row["amount"]),
        currency=row["currency"],
        status=row["status"],
        reason=row["reason"],
        gateway_refund_id=row["gateway_refund_id"],
        failure_message=row["failure_message"],
        created_at=row["created_at"],
    )


def _call(row: RowMapping) -> GatewayCall:
    return GatewayCall(
        id=row["id"],
        payment_id=row["payment_id"],
        kind=row["kind"],
        idempotency_key=row["idempotency_key"],
        status=row["status"],
        attempts=row["attempts"],
        refund_id=row["refund_id"],
    )


@dataclass(frozen=True, slots=True)
class _Statements:
    """The statements every create and every gateway event runs, built once per schema with
    bind parameters (``w_*`` in WHERE clauses; column values come as execution parameters).

    A statement built per call (``insert(t).values(**row)``) makes SQLAlchemy coerce every value
    into a new bind parameter and walk the new statement for its cache key each time - most of
    checkout's CPU per create. A prebuilt statement memoizes its cache key, so each execution
    only looks up the compiled SQL.
    """

    #: by whether it claims an Idempotency-Key (the API's create does, an intent does not)
    add_payment: Mapping[bool, Select[Any]]
    get_payment: Select[Any]
    lock_payment: Select[Any]
    #: by (announcing an event, finishing a call, answering a key): the payment's save and what
    #: rides on it
    save_payment: Mapping[tuple[bool, bool, bool], Select[Any]]
    record_event: Insert
    add_call: Insert
    finish_call: Update


#: the columns of a timeline entry (:func:`timeline_row`) and their SQL types
_TIMELINE_COLUMNS: dict[str, TypeEngine[Any]] = {
    "payment_id": Text(),
    "kind": Text(),
    "source": Text(),
    "ce_id": Text(),
    "status_before": Text(),
    "status_after": Text(),
    "detail": JSONB(),
}


def _timeline_cte(tables: CheckoutTables, *, only_if: ColumnElement[bool] | None = None) -> CTE:
    """Insert the timeline entries passed as one JSON array (``w_timeline``), as a CTE.

    A change and the entries that describe it go in one statement - one round trip and one
    compiled statement whatever the number of entries (a multi-row ``VALUES`` would be
    compiled again for each count).
    """
    entries = (
        func.jsonb_to_recordset(bindparam("w_timeline", type_=JSONB()))
        .table_valued(*(column(name, type_) for name, type_ in _TIMELINE_COLUMNS.items()))
        .render_derived(name="entry", with_types=True)
    )
    rows = select(*(entries.c[name] for name in _TIMELINE_COLUMNS))
    if only_if is not None:
        rows = rows.where(only_if)
    return insert(tables.payment_events).from_select(list(_TIMELINE_COLUMNS), rows).cte("noted")


def _staged_cte(outbox: Outbox, rows: CTE) -> CTE:
    """Stage one outbox event (:meth:`Outbox.parameters`) per row of ``rows``, as a CTE."""
    return text(outbox.staging_from(rows.name)).columns().cte("staged")


@functools.cache
def _statements(tables: CheckoutTables, outbox: Outbox) -> _Statements:
    p, calls = tables.payments, tables.gateway_calls
    get = select(p).where(p.c.id == bindparam("w_id"))
    saved = (
        update(p)
        .where(p.c.id == bindparam("w_id"), p.c.version == bindparam("w_version"))
        .values(
            {
                **{c: bindparam(c.name) for c in p.c if c.name in _MUTABLE},
                p.c.version: p.c.version + 1,
                p.c.updated_at: bindparam("w_updated_at", type_=p.c.updated_at.type),
            }
        )
        .returning(p.c.version)
        .cte("saved")
    )
    answered = answer_cte(tables.idempotency_keys, rows=saved.name)
    finish_call = (
        update(calls)
        .where(calls.c.id == bindparam("w_call_id"))
        .values(
            status=bindparam("w_call_status", type_=Text()),
            last_error=bindparam("w_call_error", type_=Text()),
            updated_at=func.now(),
        )
    )

    def save(announce: bool, finish: bool, answer: bool) -> Select[Any]:
        # saved first: the staging text names it, and a CTE may only name those before it
        ctes: list[CTE] = [saved, _timeline_cte(tables)]
        if announce:
            ctes.append(_staged_cte(outbox, saved))
        if finish:
            ctes.append(finish_call.cte("finished"))
        columns: list[ColumnElement[Any]] = [saved.c.version]
        if answer:
            ctes.append(answered)
            columns.append(exists(select(answered.c.key)).label("answered"))
        return select(*columns).add_cte(*ctes)

    claimed = claim_cte(tables.idempotency_keys)

    def add(claiming: bool) -> Select[Any]:
        inserted = [c for c in p.c if c.name not in _SERVER_SET]
        if claiming:  # the payment only with the key: none when a request holds it
            values = select(*(bindparam(c.name, type_=c.type) for c in inserted)).where(
                exists(select(claimed.c.key))
            )
            payment = insert(p).from_select(inserted, values)
        else:
            payment = insert(p).values({c: bindparam(c.name) for c in inserted})
        added = (
            payment.on_conflict_do_nothing(index_elements=[p.c.id])
            .returning(p.c.id, p.c.created_at, p.c.updated_at)
            .cte("added")
        )
        owed = (
            insert(calls)
            .from_select(
                ["payment_id", "kind", "idempotency_key", "status", "due_at"],
                select(
                    added.c.id,
                    literal("create"),
                    bindparam("w_call_key", type_=Text()),
                    literal("due"),
                    func.now() + bindparam("w_delay", type_=Interval()),
                ),
            )
            .returning(calls)
            .cte("owed")
        )
        # the claim first: the payment's CTE names it
        ctes = [claimed] if claiming else []
        ctes += [
            added,
            owed,
            _timeline_cte(tables, only_if=exists(select(added.c.id))),
            _staged_cte(outbox, added),
        ]
        return (
            select(
                added.c.created_at.label("payment_created_at"),
                added.c.updated_at.label("payment_updated_at"),
                owed,
            )
            .select_from(added.join(owed, owed.c.payment_id == added.c.id))
            .add_cte(*ctes)
        )

    flags = (False, True)
    return _Statements(
        add_payment={claiming: add(claiming) for claiming in flags},
        get_payment=get,
        lock_payment=get.with_for_update(),
        save_payment={(a, f, k): save(a, f, k) for a in flags for f in flags for k in flags},
        record_event=insert(tables.payment_events),
        add_call=insert(calls)
        .values(due_at=func.now() + bindparam("w_delay", type_=Interval()))
        .on_conflict_do_nothing(index_elements=[calls.c.idempotency_key])
        .returning(calls),
        finish_call=finish_call,
    )


def timeline_row(
    payment_id: str,
    kind: str,
    *,
    source: str,
    ce_id: str | None = None,
    status_before: PaymentStatus | None = None,
    status_after: PaymentStatus | None = None,
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A timeline entry for :meth:`PaymentRepository.record_events`."""
    return {
        "payment_id": payment_id,
        "kind": kind,
        "source": source,
        "ce_id": ce_id,
        "status_before": status_before.value if status_before else None,
        "status_after": status_after.value if status_after else None,
        "detail": dict(detail or {}),
    }


class PaymentRepository:
    """Payments and what hangs off them (refunds, gateway calls, timeline), in the caller's
    transaction (``session``: a Core connection or an ORM session)."""

    def __init__(self, session: Executor, tables: CheckoutTables, outbox: Outbox) -> None:
        self.session = session
        self.t = tables
        self._outbox = outbox
        self._sql = _statements(tables, outbox)

    def _announcing(self, announce: Announcement) -> dict[str, Any]:
        return self._outbox.parameters(announce.topic, announce.key, announce.envelope)

    # ------------------------------------------------------------------------- payments

    async def add(
        self,
        record: PaymentRecord,
        *,
        create_key: str,
        announce: Announcement,
        call_delay: timedelta = timedelta(0),
        timeline: Sequence[Mapping[str, Any]] = (),
        claim: Claim | None = None,
    ) -> GatewayCall | None:
        """Insert a new payment, the ``create`` call it owes its gateway (idempotency key
        ``create_key``, due ``call_delay`` from now), its first :func:`timeline_row` entries
        and the outbox row of ``announce``, in one statement; returns the call. None, and
        nothing written, when a payment with its id already exists - or, with ``claim`` (the
        ``Idempotency-Key`` of the request creating it, claimed in the same statement), when
        a request holds that key."""
        payment = record.payment
        row_values = {
            "id": payment.id,
            "user_id": payment.user_id,
            "sku": payment.sku,
            "amount": payment.money.amount,
            "currency": payment.money.currency,
            "gateway": payment.gateway,
            "account": payment.account,
            "description": record.description,
            "metadata": record.metadata,
            **_mutable(record),
            "w_call_key": create_key,
            "w_delay": call_delay,
            "w_timeline": list(timeline),
            **self._announcing(announce),
        }
        if claim is not None:
            row_values.update(claim.parameters())
        statement = self._sql.add_payment[claim is not None]
        row = (await self.session.execute(statement, row_values)).mappings().first()
        if row is None:
            return None
        record.created_at = row["payment_created_at"]
        record.updated_at = row["payment_updated_at"]
        return _call(row)

    async def get(self, payment_id: str, *, lock: bool = False) -> PaymentRecord | None:
        query = self._sql.lock_payment if lock else self._sql.get_payment
        row = (await self.session.execute(query, {"w_id": payment_id})).mappings().first()
        return _record(row) if row is not None else None

    async def get_by_gateway_id(
        self, gateway: str, gateway_payment_id: str, *, lock: bool = False
    ) -> PaymentRecord | None:
        t = self.t.payments
        query = (
            select(t)
            .where(t.c.gateway == gateway, t.c.gateway_payment_id == gateway_payment_id)
            .order_by(t.c.created_at)
            .limit(1)
        )
        if lock:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        return _record(row) if row is not None else None

    async def list_by_user(
        self, user_id: str, *, limit: int = 100, before: datetime | None = None
    ) -> list[PaymentRecord]:
        """The user's payments, newest first (``before`` pages by ``created_at``)."""
        t = self.t.payments
        query = select(t).where(t.c.user_id == user_id)
        if before is not None:
            query = query.where(t.c.created_at < before)
        query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit)
        rows = (await self.session.execute(query)).mappings().all()
        return [_record(row) for row in rows]

    async def list_needing_attention(self, *, limit: int = 100) -> list[PaymentRecord]:
        """Payments flagged for a human, oldest first (the longest waiting on top)."""
        t = self.t.payments
        query = select(t).where(t.c.needs_attention).order_by(t.c.created_at, t.c.id).limit(limit)
        rows = (await self.session.execute(query)).mappings().all()
        return [_record(row) for row in rows]

    async def save(
        self,
        record: PaymentRecord,
        *,
        timeline: Sequence[Mapping[str, Any]] = (),
        announce: Announcement | None = None,
        call_finished: CallFinished | None = None,
        answering: Answering | None = None,
    ) -> Answer | None:
        """Write ``record``'s mutable state, the :func:`timeline_row` entries of the change, the
        outbox row of ``announce``, how the gateway call whose answer this is ended and the
        ``Idempotency-Key`` answer of ``answering`` (made from ``record`` as saved), in one
        statement; raises :class:`StaleVersion` on a lost update (the caller rolls back).

        Returns that answer when this save stored it - the key's answer, which the caller may
        send - and None when there was none to store or the key had its answer already."""
        updated_at = datetime.now(UTC)
        values = {
            "w_id": record.id,
            "w_version": record.version,
            "w_updated_at": updated_at,
            "w_timeline": list(timeline),
            **_mutable(record),
        }
        if announce is not None:
            values.update(self._announcing(announce))
        if call_finished is not None:
            values.update(call_finished.parameters())
        record.updated_at = updated_at  # (a stale record is read again, so this may go first)
        answer = None
        if answering is not None:
            answer = answering.respond(record)
            values.update(answer_parameters(answering.scope, answering.resource_id, answer))
        variant = (announce is not None, call_finished is not None, answering is not None)
        row = (await self.session.execute(self._sql.save_payment[variant], values)).first()
        if row is None:
            raise StaleVersion(f"payment {record.id} changed since version {record.version}")
        record.version = row[0]
        return answer if answer is not None and row[1] else None

    # ------------------------------------------------------------------------- janitor seam

    async def mark_due_for_sync(self, payment_id: str, *, after: timedelta) -> None:
        """Ask the janitor to sync the payment with its gateway ``after`` from now (an earlier
        due time already set is kept)."""
        t = self.t.payments
        due = func.now() + after
        await self.session.execute(
            update(t)
            .where(t.c.id == payment_id)
            .values(
                next_sync_at=func.least(func.coalesce(t.c.next_sync_at, due), due),
                version=t.c.version + 1,
                updated_at=func.now(),
            )
        )

    async def claim_due_for_sync(self, *, limit: int) -> list[PaymentRecord]:
        """Lock up to ``limit`` payments whose sync is due, skipping rows others hold."""
        t = self.t.payments
        query = (
            select(t)
            .where(t.c.next_sync_at <= func.now())
            .order_by(t.c.next_sync_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = (await self.session.execute(query)).mappings().all()
        return [_record(row) for row in rows]

    # ------------------------------------------------------------------------- timeline

    async def record_event(
        self,
        payment_id: str,
        kind: str,
        *,
        source: str,
        ce_id: str | None = None,
        status_before: PaymentStatus | None = None,
        status_after: PaymentStatus | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an entry to the payment's timeline."""
        await self.record_events(
            [
                timeline_row(
                    payment_id,
                    kind,
                    source=source,
                    ce_id=ce_id,
                    status_before=status_before,
                    status_after=status_after,
                    detail=detail,
                )
            ]
        )

    async def record_events(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append :func:`timeline_row` entries in their order, in one round trip (psycopg sends
        the rows of an executemany as one pipeline; the prebuilt statement is compiled once - a
        multi-row ``VALUES`` statement would be compiled again on every call)."""
        await self.session.execute(self._sql.record_event, list(rows))

    async def timeline(self, payment_id: str) -> list[TimelineEntry]:
        t = self.t.payment_events
        query = select(t).where(t.c.payment_id == payment_id).order_by(t.c.id)
        return [
            TimelineEntry(
                id=row["id"],
                at=row["at"],
                kind=row["kind"],
                source=row["source"],
                ce_id=row["ce_id"],
                status_before=row["status_before"],
                status_after=row["status_after"],
                detail=row["detail"],
            )
            for row in (await self.session.execute(query)).mappings()
        ]

    # ------------------------------------------------------------------------- refunds

    async def add_refund(self, refund: RefundRecord) -> None:
        await self.session.execute(
            insert(self.t.refunds).values(
                id=refund.id,
                payment_id=refund.payment_id,
                amount=refund.amount,
                currency=refund.currency,
                reason=refund.reason,
                status=refund.status,
            )
        )

    async def get_refund(self, refund_id: str) -> RefundRecord | None:
        query = select(self.t.refunds).where(self.t.refunds.c.id == refund_id)
        row = (await self.session.execute(query)).mappings().first()
        return _refund(row) if row is not None else None

    async def refund_by_gateway_id(
        self, payment_id: str, gateway_refund_id: str
    ) -> RefundRecord | None:
        t = self.t.refunds
        query = select(t).where(
            t.c.payment_id == payment_id, t.c.gateway_refund_id == gateway_refund_id
        )
        row = (await self.session.execute(query)).mappings().first()
        return _refund(row) if row is not None else None

    async def refunds_of(self, payment_id: str) -> list[RefundRecord]:
        t = self.t.refunds
        query = select(t).where(t.c.payment_id == payment_id).order_by(t.c.created_at, t.c.id)
        return [_refund(row) for row in (await self.session.execute(query)).mappings()]

    async def update_refund(
        self,
        refund_id: str,
        *,
        status: str,
        gateway_refund_id: str | None = None,
        failure_message: str | None = None,
    ) -> None:
        t = self.t.refunds
        values: dict[str, Any] = {"status": status, "updated_at": func.now()}
        if gateway_refund_id is not None:
            values["gateway_refund_id"] = gateway_refund_id
        if failure_message is not None:
            values["failure_message"] = failure_message
        await self.session.execute(update(t).where(t.c.id == refund_id).values(**values))

    # ------------------------------------------------------------------------- gateway calls

    async def add_call(
        self,
        payment_id: str,
        kind: str,
        idempotency_key: str,
        *,
        refund_id: str | None = None,
        delay: timedelta = timedelta(0),
    ) -> GatewayCall | None:
        """Owe the gateway a call, due ``delay`` from now; None when that call (its idempotency
        key) is already owed or made."""
        values = {
            "payment_id": payment_id,
            "refund_id": refund_id,
            "kind": kind,
            "idempotency_key": idempotency_key,
            "status": "due",
            "w_delay": delay,
        }
        row = (await self.session.execute(self._sql.add_call, values)).mappings().first()
        return _call(row) if row is not None else None

    async def claim_due_calls(self, *, limit: int, lease: timedelta) -> list[GatewayCall]:
        """Take up to ``limit`` due calls: each becomes due again only after ``lease`` (so a
        crashed executor's call is retried, with the same idempotency key)."""
        t = self.t.gateway_calls
        due = (
            select(t.c.id)
            .where(t.c.status == "due", t.c.due_at <= func.now())
            .order_by(t.c.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = (
            update(t)
            .where(t.c.id.in_(due))
            .values(due_at=func.now() + lease, attempts=t.c.attempts + 1, updated_at=func.now())
            .returning(t)
        )
        return [_call(row) for row in (await self.session.execute(statement)).mappings()]

    async def finish_call(self, call_id: int, *, status: str, error: str | None = None) -> None:
        """Record how a call ended: ``done``, ``declined``, ``unknown`` (for the janitor), or
        ``due`` again (a retryable failure; it is retaken when its lease ends)."""
        ended = CallFinished(call_id, status, error)
        await self.session.execute(self._sql.finish_call, ended.parameters())

    async def calls_of(self, payment_id: str) -> Sequence[GatewayCall]:
        t = self.t.gateway_calls
        query = select(t).where(t.c.payment_id == payment_id).order_by(t.c.id)
        return [_call(row) for row in (await self.session.execute(query)).mappings()]

    # ------------------------------------------------------------------------- unmatched

    async def record_unmatched(
        self,
        *,
        ce_id: str,
        gateway: str,
        kind: str,
        payment_id: str | None,
        gateway_payment_id: str | None,
        source: str,
        event: Mapping[str, Any],
    ) -> None:
        """Keep a verified gateway event whose payment checkout does not know, for a human."""
        await self.session.execute(
            insert(self.t.unmatched_gateway_events)
            .values(
                ce_id=ce_id,
                gateway=gateway,
                kind=kind,
                payment_id=payment_id,
                gateway_payment_id=gateway_payment_id,
                source=source,
                event=dict(event),
            )
            .on_conflict_do_nothing()
        )
