"""The unit of work: one PostgreSQL transaction with the repositories and the outbox bound to it.

Use cases either open their own (``async with UnitOfWork.begin(store)``, committed when the block
ends without an exception) or, inside an inbox consumer that already owns the transaction, wrap
the consumer's session (:meth:`UnitOfWork.of`), so the inbox row, the effects and the staged
events commit together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from checkout.adapters.repository import PaymentRepository
from checkout.adapters.tables import CheckoutTables
from payrail.db import Executor, make_sessionmaker
from payrail.messaging.envelope import Envelope
from payrail.messaging.outbox import Outbox
from payrail.web.idempotency import IdempotencyRecords


@dataclass(frozen=True, slots=True)
class Store:
    """What a unit of work needs: the engine, the schema's tables and its outbox."""

    engine: AsyncEngine
    tables: CheckoutTables
    outbox: Outbox
    #: sessions on ``engine``, for the shared helpers that take them (Idempotency)
    sessions: async_sessionmaker[AsyncSession] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sessions", make_sessionmaker(self.engine))


class UnitOfWork:
    def __init__(self, session: Executor, store: Store) -> None:
        self.session = session
        self.payments = PaymentRepository(session, store.tables, store.outbox)
        self.idempotency = IdempotencyRecords(session, store.tables.idempotency_keys)
        self._outbox = store.outbox

    @classmethod
    @asynccontextmanager
    async def begin(cls, store: Store) -> AsyncIterator[UnitOfWork]:
        """A new transaction, committed at the end of the block (rolled back on error).

        On a Core connection rather than an ORM session: the repositories run Core statements
        only, and a session's bookkeeping cost about a tenth of a millisecond per transaction.
        """
        async with store.engine.begin() as connection:
            yield cls(connection, store)

    @classmethod
    def of(cls, session: AsyncSession, store: Store) -> UnitOfWork:
        """A unit of work inside a transaction someone else commits (an inbox consumer)."""
        return cls(session, store)

    async def stage(self, topic: str, key: str, envelope: Envelope[BaseModel]) -> None:
        """Stage an outgoing event in this transaction (published after the commit)."""
        await self._outbox.stage(self.session, topic, key, envelope)
