"""``Idempotency-Key`` on every POST (DESIGN, "HTTP idempotency"), once for every service.

A client that lost an answer (timeout, dropped connection) sends the same request again with the
same key and must not pay, refund, start a run or import twice; it gets the first answer back:

* the key is required: a POST without one is refused with ``400`` (problem+json) before anything
  happens - ``400`` rather than ``428`` because the request itself is incomplete, not a
  precondition on the resource's state (:data:`IdempotencyKey`, a FastAPI dependency);
* same key, same request (see :func:`fingerprint`): the first response is replayed byte for
  byte - status, body, stored headers such as ``Location`` - with ``Idempotent-Replayed: true``,
  and nothing is done again;
* same key, another request: ``422`` (problem+json), nothing is done.

How a request holds its key: :meth:`IdempotencyRecords.claim` inserts ``(scope, key)`` in the
transaction that makes the request's effect. A concurrent request with the same key blocks on
that insert (PostgreSQL's primary key waits for the first transaction), then finds the row -
or, if the first transaction rolled back (a refused request), claims the key itself. So a
refused request stores nothing and can be corrected and sent again under the same key.

Two shapes of effect use it:

* one transaction (:meth:`Idempotency.once`): the effect, the claim and the answer commit
  together, so a committed key always has its answer; only a ``2xx`` answer is kept;
* an effect spanning transactions (checkout: the payment is committed before the gateway is
  called, the answer recorded afterwards): the claim commits *in flight* with the resource it
  created, whoever finishes the work completes it (:meth:`IdempotencyRecords.complete_resource`
  - also a background executor after the API process died), and :meth:`Idempotency.answer`
  waits a bounded time for an in-flight answer before ``409`` with ``Retry-After``.

A service that makes its effect with one statement folds the claim and the answer into it
(:func:`claim_cte`, :func:`answer_cte`): the key rides on the change instead of costing a round
trip of its own.

Keys live in one ``idempotency_keys`` table per service schema
(:func:`idempotency_keys_columns`) and are kept :data:`RETENTION` (30 days, the platform's
replay horizon); :meth:`Idempotency.purge` forgets older ones.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import (
    CTE,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Select,
    Table,
    Text,
    TextClause,
    bindparam,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payrail.db import Executor
from payrail.web.problems import Problem

T = TypeVar("T")

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
RETENTION = timedelta(days=30)
#: the longest key accepted (a UUID is 36 characters; room for a client's own scheme)
MAX_KEY_LENGTH = 255
#: response headers a replay rebuilds itself (content-type travels as ``media_type``)
_OWN_HEADERS = frozenset({"content-length", "content-type"})


def idempotency_keys_columns(table: str = "idempotency_keys") -> list[Any]:
    """The columns, key and indexes of a service's ``idempotency_keys`` table (named ``table``),
    fresh objects each call - for ``Table(table, metadata, *columns)`` or a migration's
    ``op.create_table(table, *columns, schema=...)``.

    ``scope`` is what a key is unique within (an endpoint, or the whole service when the
    fingerprint names the route). A row with ``completed_at`` NULL is in flight; ``resource_id``
    names what the request created, so whoever finishes the work can complete it.
    """
    ts = DateTime(timezone=True)
    return [
        Column("scope", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("request_hash", Text, nullable=False),
        Column("resource_id", Text),
        Column("response_status", Integer),
        Column("response_media_type", Text),
        Column("response_headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("response_body", LargeBinary),
        Column("created_at", ts, nullable=False, server_default=func.now()),
        Column("completed_at", ts),
        PrimaryKeyConstraint("scope", "key"),
        # the purge of keys past the retention
        Index(f"ix_{table}_created_at", "created_at"),
        # completing an in-flight request by what it created
        Index(
            f"ix_{table}_resource",
            "scope",
            "resource_id",
            postgresql_where=text("resource_id IS NOT NULL"),
        ),
    ]


def fingerprint(
    method: str, path: str, query: Iterable[tuple[str, str]], body: bytes | BaseModel
) -> str:
    """What makes two requests "the same": method, path, query parameters (in any order) and
    the body - the exact bytes, or a validated model serialized canonically (sorted keys, no
    spacing), so the same request spelled another way is the same request."""
    if isinstance(body, BaseModel):
        content = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        body = content.encode()
    digest = hashlib.sha256(f"{method} {path}".encode())
    for name, value in sorted(query):
        digest.update(f"\n{name}={value}".encode())
    digest.update(b"\n\n")
    digest.update(body)
    return digest.hexdigest()


async def require_idempotency_key(  # async: FastAPI runs a sync dependency on a worker thread
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            max_length=MAX_KEY_LENGTH,
            description="required: a repeat of the request with this key replays the first "
            "answer (a new unique value per operation)",
        ),
    ] = None,
) -> str:
    """The request's ``Idempotency-Key``; ``400`` when there is none. Optional in the header's
    declaration so a missing key is this problem, not a generic validation error."""
    if not key:
        raise Problem(
            400,
            "Idempotency-Key required",
            "every POST carries an Idempotency-Key header (a new unique value per operation)",
            type_="idempotency-key-required",
        )
    return key


#: a POST route's parameter: ``key: IdempotencyKey``
IdempotencyKey = Annotated[str, Depends(require_idempotency_key)]


@dataclass(frozen=True, slots=True)
class Answer:
    """A response as stored under a key: enough to send it again byte for byte."""

    status: int
    body: bytes
    media_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, response: Response) -> Answer:
        """What ``response`` (a complete, non-streaming one) sends."""
        return cls(
            status=response.status_code,
            body=bytes(response.body),
            media_type=response.headers.get("content-type", "application/json"),
            headers={k: v for k, v in response.headers.items() if k not in _OWN_HEADERS},
        )

    def response(self, *, replayed: bool) -> Response:
        """The answer sent again; ``replayed`` to another request than the one that made it."""
        headers = {**self.headers, REPLAYED: "true"} if replayed else dict(self.headers)
        return Response(
            self.body, status_code=self.status, media_type=self.media_type, headers=headers
        )


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """The request that holds a key: its fingerprint, and its answer once it has one."""

    request_hash: str
    answer: Answer | None

    @property
    def in_flight(self) -> bool:
        return self.answer is None


@dataclass(frozen=True, slots=True)
class Claim:
    """A request claiming its key: ``resource_id`` names what it creates (see
    :meth:`IdempotencyRecords.claim`)."""

    scope: str
    key: str
    request_hash: str
    resource_id: str | None = None

    def parameters(self) -> dict[str, Any]:
        """The bind parameters of :func:`claim_cte`."""
        return {
            "k_scope": self.scope,
            "k_key": self.key,
            "k_request_hash": self.request_hash,
            "k_resource": self.resource_id,
        }


def claim_cte(table: Table) -> CTE:
    """Claim a key (:meth:`Claim.parameters`) as a CTE named ``claimed``: one row when this
    statement claimed it, none when a request holds it - the rest of the statement makes its
    effect only ``WHERE EXISTS (SELECT FROM claimed)``. Like :meth:`IdempotencyRecords.claim`,
    it waits for a holder still in flight; read the holder afterwards with
    :meth:`IdempotencyRecords.get` (a new statement sees its commit)."""
    t = table
    return (
        insert(t)
        .values(
            scope=bindparam("k_scope", type_=Text()),
            key=bindparam("k_key", type_=Text()),
            request_hash=bindparam("k_request_hash", type_=Text()),
            resource_id=bindparam("k_resource", type_=Text()),
        )
        .on_conflict_do_nothing()
        .returning(t.c.key)
        .cte("claimed")
    )


def _qualified(table: Table) -> str:
    name = f'"{table.name}"'
    return f'"{table.schema}".{name}' if table.schema else name


#: which in-flight request an answer is for: the one holding a key, or the one that created a
#: resource (whoever finishes the work - the API, or an executor after the API died)
_BY_KEY = "key = :w_key"
_BY_RESOURCE = "resource_id = :w_resource"


def _answering(table: Table, match: str, *, only_with: str | None = None) -> TextClause:
    """Store the answer (:func:`_response` parameters) of the in-flight request of ``w_scope``
    that ``match`` names, only when ``only_with`` (a relation of an enclosing statement) has a
    row; returns its key when it stored it.

    SQL text, like :meth:`payrail.messaging.outbox.Outbox.staging_from`: as a CTE of a larger
    statement, SQLAlchemy would turn that statement's parameters named like a column of the
    keys table (an outbox row's ``key``) into SET clauses of an ``update()``.
    """
    sql = (
        f"UPDATE {_qualified(table)} SET completed_at = now(), "
        "response_status = :response_status, response_body = :response_body, "
        "response_media_type = :response_media_type, "
        "response_headers = CAST(:response_headers AS jsonb) "
        f"WHERE scope = :w_scope AND {match} AND completed_at IS NULL"
    )
    if only_with is not None:
        sql += f" AND EXISTS (SELECT FROM {only_with})"
    return text(sql + " RETURNING key")


def answer_cte(table: Table, *, rows: str) -> CTE:
    """:meth:`IdempotencyRecords.complete_resource` as a CTE named ``answered`` (parameters:
    :func:`answer_parameters`) of a statement making the change the answer describes: stored
    only when ``rows``, a relation of that statement (the change's CTE), has a row; one row
    when it stored it."""
    return _answering(table, _BY_RESOURCE, only_with=rows).columns(table.c.key).cte("answered")


def _response(answer: Answer) -> dict[str, Any]:
    return {
        "response_status": answer.status,
        "response_body": answer.body,
        "response_media_type": answer.media_type,
        "response_headers": json.dumps(dict(answer.headers)),
    }


def answer_parameters(scope: str, resource_id: str, answer: Answer) -> dict[str, Any]:
    """The bind parameters of :func:`answer_cte` (and of
    :meth:`IdempotencyRecords.complete_resource`)."""
    return {"w_scope": scope, "w_resource": resource_id, **_response(answer)}


@dataclass(frozen=True, slots=True)
class _Statements:
    """The statements every request with a key runs, built once per table with bind parameters
    (``w_*`` in WHERE clauses, column values as execution parameters): SQLAlchemy memoizes a
    prebuilt statement's cache key, where one built per call costs a walk of the new statement
    and a coercion of every value each time."""

    claim: Select[Any]
    get: Select[Any]
    complete_key: TextClause
    complete_resource: TextClause


@functools.cache
def _statements(t: Table) -> _Statements:
    claimed = claim_cte(t)
    return _Statements(
        claim=select(claimed.c.key).add_cte(claimed),
        get=select(
            t.c.request_hash,
            t.c.completed_at,
            t.c.response_status,
            t.c.response_body,
            t.c.response_media_type,
            t.c.response_headers,
        ).where(t.c.scope == bindparam("w_scope"), t.c.key == bindparam("w_key")),
        complete_key=_answering(t, _BY_KEY),
        complete_resource=_answering(t, _BY_RESOURCE),
    )


class IdempotencyRecords:
    """The keys of one table, inside one transaction (``session``)."""

    def __init__(self, session: Executor, table: Table) -> None:
        self.session = session
        self.table = table
        self._sql = _statements(table)

    async def claim(
        self, scope: str, key: str, *, request_hash: str, resource_id: str | None = None
    ) -> StoredRequest | None:
        """Claim ``key`` for this request (None), or the request that holds it.

        Blocks while another open transaction holds the key, until it commits (its request is
        returned) or rolls back (the key is claimed).
        """
        claim = Claim(scope, key, request_hash, resource_id)

        async def insert_key() -> bool | None:
            inserted = await self.session.execute(self._sql.claim, claim.parameters())
            return True if inserted.first() is not None else None

        _, holder = await self.claim_with(claim, insert_key)
        return holder

    async def claim_with(
        self, claim: Claim, effect: Callable[[], Awaitable[T | None]]
    ) -> tuple[T | None, StoredRequest | None]:
        """``effect``'s result, or the request holding the key.

        ``effect`` runs a statement that claims ``claim`` (:func:`claim_cte`) and makes its
        effect only with the key, returning None when a request holds it; then that request is
        read (a new statement sees its commit). Either way, blocks while the holder is in an
        open transaction, like :meth:`claim`.
        """
        while True:
            made = await effect()
            if made is not None:
                return made, None
            holder = await self.get(claim.scope, claim.key)
            if holder is not None:
                return None, holder
            # the holder's row was purged between the two statements: claim again

    async def get(self, scope: str, key: str) -> StoredRequest | None:
        query, where = self._sql.get, {"w_scope": scope, "w_key": key}
        row = (await self.session.execute(query, where)).first()
        if row is None:
            return None
        request_hash, completed_at, status, body, media_type, headers = row
        if completed_at is None:
            return StoredRequest(request_hash, None)
        return StoredRequest(request_hash, Answer(status, body, media_type, headers))

    async def complete(self, scope: str, key: str, answer: Answer) -> bool:
        """Store the answer of the in-flight request holding ``key``; False when it had one."""
        values = {"w_scope": scope, "w_key": key, **_response(answer)}
        return (await self.session.execute(self._sql.complete_key, values)).first() is not None

    async def complete_resource(self, scope: str, resource_id: str, answer: Answer) -> bool:
        """Store the answer of the in-flight request of ``scope`` that created ``resource_id``:
        whoever finishes the work - the API, or an executor after the API process died -
        records it once. True when this stored it (so it is the key's answer, and the caller
        may send it without reading it back); False when an answer was stored already."""
        values = answer_parameters(scope, resource_id, answer)
        return (await self.session.execute(self._sql.complete_resource, values)).first() is not None

    async def release(self, scope: str, key: str) -> None:
        """Give up this transaction's claim of ``key``: its request keeps no answer."""
        t = self.table
        await self.session.execute(delete(t).where(t.c.scope == scope, t.c.key == key))


Effect = Callable[[AsyncSession], Awaitable[Response]]


class Idempotency:
    """A service's ``Idempotency-Key`` handling (one per service instance).

    ``wait_seconds`` bounds how long a request whose key is in flight waits for the first
    request's answer before ``409``; ``poll_seconds`` is how often it looks.
    """

    def __init__(
        self,
        table: Table,
        sessions: async_sessionmaker[AsyncSession],
        *,
        wait_seconds: float = 10.0,
        poll_seconds: float = 0.05,
    ) -> None:
        self.table = table
        self.sessions = sessions
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds

    def records(self, session: AsyncSession) -> IdempotencyRecords:
        return IdempotencyRecords(session, self.table)

    async def once(self, scope: str, key: str, request_hash: str, effect: Effect) -> Response:
        """The answer to ``key``: the stored one, or ``effect``'s, made and stored in one
        transaction (a non-``2xx`` answer is sent but not stored; an exception stores
        nothing)."""
        async with self.sessions.begin() as session:
            records = self.records(session)
            earlier = await records.claim(scope, key, request_hash=request_hash)
            if earlier is None:
                response = await effect(session)
                if 200 <= response.status_code < 300:
                    await records.complete(scope, key, Answer.of(response))
                else:
                    await records.release(scope, key)
                return response
        return await self.answer(scope, key, request_hash, earlier)

    async def answer(
        self, scope: str, key: str, request_hash: str, earlier: StoredRequest | None
    ) -> Response:
        """The answer to a request under ``key`` once its effect is made.

        ``earlier`` is what :meth:`IdempotencyRecords.claim` returned: None when this request
        claimed the key (its own stored answer is sent), else the request holding the key -
        another fingerprint is ``422``; its answer is replayed, waited for while in flight up to
        ``wait_seconds``, after which ``409`` tells the client to retry.
        """
        current = earlier if earlier is not None else await self._get(scope, key)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if current is not None:
                if current.request_hash != request_hash:
                    raise Problem(
                        422,
                        "Idempotency-Key reused",
                        "this Idempotency-Key was used with a different request",
                        type_="idempotency-key-reused",
                    )
                if current.answer is not None:
                    return current.answer.response(replayed=earlier is not None)
            if time.monotonic() >= deadline:
                raise Problem(
                    409,
                    "Request in progress",
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                    type_="idempotency-key-in-progress",
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(self.poll_seconds)
            current = await self._get(scope, key)

    async def _get(self, scope: str, key: str) -> StoredRequest | None:
        async with self.sessions.begin() as session:
            return await self.records(session).get(scope, key)

    async def purge(self, retention: timedelta = RETENTION) -> int:
        """Forget keys older than ``retention``; how many."""
        t = self.table
        async with self.sessions.begin() as session:
            purged = await session.execute(
                delete(t).where(t.c.created_at < func.now() - retention).returning(t.c.key)
            )
            return len(purged.all())
