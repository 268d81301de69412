"""Long polling without a database connection per waiting request.

One ``LISTEN`` connection per process receives the access channel's notifications (every access
change sends ``NOTIFY`` with the payment's new access as JSON, delivered at commit, in commit
order) and hands them to the requests waiting on that payment. A waiting request holds only a
:class:`Waiter` (an :class:`asyncio.Event` and the latest news); it borrows a pooled connection
for the one read it makes when it starts, and answers from the notification when woken. Hundreds
of front ends polling with ``?wait=`` cost hundreds of small objects in memory, not hundreds of
PostgreSQL backends nor a burst of reads when their grants land.

While the listener is down (database restart, network) no notification can arrive, so every
waiter is woken without news when the connection is lost and again when it is back (it then
reads the database), and in between waits at most ``fallback`` seconds before reading again: a
lost listener costs latency, never a missed grant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from payrail.logging import get_logger

log = get_logger(__name__)

_RECONNECT_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)


class Waiter:
    """One waiting request: set when its payment's access may have changed."""

    __slots__ = ("changed", "news")

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        #: the newest access JSON notified since the last wait (None: read the database)
        self.news: str | None = None


class AccessWatch:
    """Wakes the requests waiting on payments (an async context manager running the listener)."""

    def __init__(self, engine: AsyncEngine, channel: str, *, fallback: float) -> None:
        self._url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channel = channel
        self._fallback = fallback
        self._waiters: defaultdict[str, set[Waiter]] = defaultdict(set)
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AccessWatch:
        self._task = asyncio.create_task(self._listen(), name="access-listener")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._wake_all()

    @contextlib.contextmanager
    def watching(self, payment_id: str) -> Iterator[Waiter]:
        """A waiter woken whenever ``payment_id``'s access may have changed.

        Enter it *before* reading the state, so a change committed between the read and the
        wait still wakes the request.
        """
        waiter = Waiter()
        self._waiters[payment_id].add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters[payment_id]
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[payment_id]

    async def wait(self, waiter: Waiter, seconds: float) -> str | None:
        """Wait until ``waiter`` is woken or ``seconds`` passed (less while the listener is
        down); the access JSON it was woken with, or None when the database must be read."""
        bound = seconds if self._listening else min(seconds, self._fallback)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.changed.wait(), bound)
        news, waiter.news = waiter.news, None
        waiter.changed.clear()
        return news

    def _wake(self, payment_id: str, news: str) -> None:
        for waiter in self._waiters.get(payment_id, ()):
            waiter.news = news
            waiter.changed.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.news = None
                waiter.changed.set()

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    await conn.execute(f'LISTEN "{self._channel}"')
                    self._listening = True
                    failures = 0
                    # changes committed while nobody listened are only visible by reading
                    self._wake_all()
                    await self._dispatch(conn)
            except psycopg.Error as exc:
                if self._listening:
                    log.warning("access listener lost; long polls re-read until it is back")
                else:
                    log.warning("access listener unavailable", error=type(exc).__name__)
            self._listening = False
            self._wake_all()
            await asyncio.sleep(_RECONNECT_BACKOFF[min(failures, len(_RECONNECT_BACKOFF) - 1)])
            failures += 1

    async def _dispatch(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for notification in conn.notifies():
            if not self._waiters:  # the usual case under load: no request is waiting
                continue
            try:
                payment_id = json.loads(notification.payload)["payment_id"]
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable access notification ignored")
                continue
            self._wake(payment_id, notification.payload)
