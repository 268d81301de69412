"""Stored ``Idempotency-Key`` requests and their first responses.

A request claims its key by inserting ``(scope, key)`` in the same transaction that creates the
resource. A concurrent request with the same key blocks on that insert until the first
transaction ends (PostgreSQL's unique index waits for it), then finds the row: a finished one is
replayed byte for byte, an ``in_flight`` one (the first request is still calling the gateway) is
polled for a bounded time by the API.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.adapters.tables import CheckoutTables


@dataclass(frozen=True, slots=True)
class StoredRequest:
    request_hash: str
    status: str  # in_flight | done
    resource_id: str | None
    response_status: int | None
    response_body: bytes | None

    @property
    def done(self) -> bool:
        return self.status == "done"


class IdempotencyKeys:
    def __init__(self, session: AsyncSession, tables: CheckoutTables) -> None:
        self.session = session
        self.t = tables.idempotency_keys

    async def claim(
        self, scope: str, key: str, *, request_hash: str, resource_id: str
    ) -> StoredRequest | None:
        """Claim ``key`` for a new request; None when claimed, else the earlier request."""
        inserted = await self.session.execute(
            insert(self.t)
            .values(
                scope=scope,
                key=key,
                request_hash=request_hash,
                status="in_flight",
                resource_id=resource_id,
            )
            .on_conflict_do_nothing()
            .returning(self.t.c.key)
        )
        if inserted.first() is not None:
            return None
        found = await self.get(scope, key)
        assert found is not None  # the conflicting row is committed: we waited for it
        return found

    async def get(self, scope: str, key: str) -> StoredRequest | None:
        t = self.t
        query = select(
            t.c.request_hash, t.c.status, t.c.resource_id, t.c.response_status, t.c.response_body
        ).where(t.c.scope == scope, t.c.key == key)
        row = (await self.session.execute(query)).first()
        return StoredRequest(*row) if row is not None else None

    async def complete(self, scope: str, resource_id: str, *, status: int, body: bytes) -> None:
        """Store the response of the in-flight request of ``scope`` that created
        ``resource_id`` (whoever finishes the work - the API or a gateway-call executor after
        the API process died - records the answer once)."""
        t = self.t
        await self.session.execute(
            update(t)
            .where(t.c.scope == scope, t.c.resource_id == resource_id, t.c.status == "in_flight")
            .values(
                status="done",
                response_status=status,
                response_body=body,
                completed_at=func.now(),
            )
        )
