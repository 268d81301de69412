"""payrail.db's pool on real PostgreSQL: a connection idle past the threshold is pinged and
replaced when its backend is gone; one used moments ago is trusted, fails once, and the pool
recovers on the next use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from payrail.db import make_engine
from payrail.settings import ServiceSettings


def _engine(database_url: str, idle_seconds: float) -> AsyncEngine:
    settings = ServiceSettings(
        database_url=database_url,
        database_pool_size=1,
        database_max_overflow=0,
        database_ping_after_idle_seconds=idle_seconds,
    )
    return make_engine(settings)


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = _engine(database_url, 0)
    yield engine
    await engine.dispose()


async def _backend(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        pid: int = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        return pid


async def _terminate(admin: AsyncEngine, pid: int) -> None:
    """The database ends ``pid``'s session, as a restart or a failover would."""
    async with admin.connect() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # pg_terminate_backend only signals: wait until the backend is gone
        for _ in range(100):
            gone = await conn.execute(
                text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
            if gone.scalar_one():
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"backend {pid} still there")


async def test_a_connection_idle_past_the_threshold_is_pinged_and_replaced_before_use(
    database_url: str, admin: AsyncEngine
) -> None:
    engine = _engine(database_url, 0.2)
    try:
        first = await _backend(engine)
        await _terminate(admin, first)
        await asyncio.sleep(0.3)

        second = await _backend(engine)  # no error: the ping found the dead one

        assert second != first
    finally:
        await engine.dispose()


async def test_a_connection_used_moments_ago_is_not_pinged_fails_once_and_the_pool_recovers(
    database_url: str, admin: AsyncEngine
) -> None:
    engine = _engine(database_url, 60)
    try:
        first = await _backend(engine)
        await _terminate(admin, first)

        with pytest.raises(DBAPIError) as failed:  # trusted without a round trip
            await _backend(engine)
        assert failed.value.connection_invalidated

        second = await _backend(engine)
        assert second != first
    finally:
        await engine.dispose()
