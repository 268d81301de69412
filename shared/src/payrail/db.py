"""PostgreSQL plumbing shared by the services: async engine, sessions, alembic migrations.

Each service owns one schema and its own alembic history (``<service>/migrations``) whose
version table lives in that schema, so services migrate independently and never share SQL.
Migrations run at service start under a PostgreSQL advisory lock, so several instances starting
together apply them once.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from payrail.messaging.schema import validate_schema
from payrail.settings import ServiceSettings

#: what a repository runs its statements on, inside the caller's transaction: an ORM session
#: (the inbox consumers') or a Core connection, which skips the session's bookkeeping per
#: statement (repositories here use Core statements only)
Executor = AsyncSession | AsyncConnection


def make_engine(settings: ServiceSettings, *, pool_size: int | None = None) -> AsyncEngine:
    """An async engine for the service's database (psycopg 3).

    The pool is ``PAYRAIL_DATABASE_POOL_SIZE`` + ``PAYRAIL_DATABASE_MAX_OVERFLOW`` connections;
    ``pool_size`` overrides both (as many overflow as kept). A pooled connection is pinged
    before use only after ``PAYRAIL_DATABASE_PING_AFTER_IDLE_SECONDS`` idle
    (:func:`ping_after_idle`).
    """
    engine = create_async_engine(
        settings.database_url.get_secret_value(),
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=pool_size if pool_size is not None else settings.database_max_overflow,
        pool_recycle=1800,
        connect_args={"application_name": settings.service_name, "connect_timeout": 5},
    )
    ping_after_idle(engine, settings.database_ping_after_idle_seconds)
    return engine


#: where a pooled connection's last return to the pool is kept (its record's ``info``)
_RETURNED_AT = "payrail_returned_at"


def ping_after_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection before handing it out when it sat idle ``idle_seconds`` or more.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip per transaction (about
    a tenth of checkout's CPU per payment created, measured). A connection used moments ago
    is almost certainly alive; the ones that die unseen are those left idle through a database
    restart or a dropped network path. A connection that fails between two uses close together
    fails that one transaction (a ``503`` with ``Retry-After``, or a consumer's retry), and the
    disconnect makes SQLAlchemy replace every older pooled connection. A failed ping does the
    same before anything is sent: the pool is invalidated and a new connection is opened.
    """
    pool, dialect = engine.sync_engine.pool, engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def _note_return(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT)  # None: opened for this checkout
        if returned is None or time.monotonic() - returned < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # dead or unusable: the pool reconnects
            raise InvalidatePoolError("pooled connection failed its ping") from exc


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Round-trip to the database (readiness)."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def _lock_id(schema: str) -> int:
    return zlib.crc32(f"payrail-migrate:{schema}".encode())


def migrate(database_url: str, schema: str, script_location: Path) -> None:
    """Bring ``schema`` to the latest revision of the alembic history at ``script_location``.

    Synchronous (alembic is); call it through :func:`migrate_async` from async code.
    """
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _lock_id(schema)})
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            _upgrade(conn, schema, script_location)
    finally:
        engine.dispose()


def _upgrade(conn: Connection, schema: str, script_location: Path) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = conn
    cfg.attributes["schema"] = schema
    command.upgrade(cfg, "head")


def migrating_schema() -> str:
    """The schema the running migration works on, for a revision's ``upgrade``/``downgrade``.

    :func:`migrate` passes it to alembic (the same history migrates a service's schema, or a
    test's scratch one), so revisions never name a schema themselves.
    """
    from alembic import context

    schema: str = context.config.attributes["schema"]
    return validate_schema(schema)


async def migrate_async(database_url: str, schema: str, script_location: Path) -> None:
    await asyncio.to_thread(migrate, database_url, schema, script_location)


def run_migrations_online() -> None:
    """The body of every service's alembic ``env.py``.

    It runs inside the connection :func:`migrate` opened (so the advisory lock and the schema
    creation share its transaction) and keeps the version table in the service's schema.
    """
    from alembic import context

    config = context.config
    conn: Connection = config.attributes["connection"]
    schema: str = config.attributes["schema"]
    context.configure(
        connection=conn,
        version_table_schema=schema,
        include_schemas=False,
        transaction_per_migration=False,
    )
    conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
    with context.begin_transaction():
        context.run_migrations()
