"""A pooled database connection held from one transaction to the next while they come often.

The inbox consumers and the relay run a short transaction many times a second under load.
Checking a connection out of the service's pool for each one costs SQLAlchemy's checkout work
and the pool's pre-ping (a round trip), together about as much CPU as a statement. A
:class:`HeldConnection` keeps its connection between uses instead; once ``keep_for`` seconds
pass without a use it gives the connection back to the pool, so a quiet service holds nothing
and its next use gets a fresh, pre-pinged one (a database restarted meanwhile costs no failed
attempt). A connection that breaks while held is dropped by :meth:`HeldConnection.drop_if_broken`
and the next use takes a new one; the failed transaction is retried like any other failure.
"""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

#: how long an unused connection is held before it goes back to the pool
KEEP_FOR_SECONDS = 2.0


class HeldConnection:
    """One connection of ``engine``'s pool, checked out on first use and held while used."""

    def __init__(self, engine: AsyncEngine, *, keep_for: float = KEEP_FOR_SECONDS) -> None:
        self._engine = engine
        self._keep_for = keep_for
        self._connection: AsyncConnection | None = None
        self._used = 0.0

    async def connection(self) -> AsyncConnection:
        """The held connection (a new one when none is held or it rested too long)."""
        now = time.monotonic()
        if self._connection is not None and now - self._used > self._keep_for:
            await self.release()
        if self._connection is None:
            self._connection = await self._engine.connect()
        self._used = now
        return self._connection

    async def drop_if_broken(self) -> None:
        """Let go of the connection if a failure invalidated it."""
        if self._connection is not None and self._connection.invalidated:
            await self.release()

    async def release(self) -> None:
        """Give the connection back to the pool (if one is held)."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()
