"""Fixtures of checkout's integration tests: a freshly migrated scratch schema per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from checkout.adapters.tables import checkout_tables
from checkout.app import MIGRATIONS
from checkout.service_layer.unit_of_work import Store
from payrail.db import migrate_async
from payrail.messaging.outbox import Outbox


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """checkout's tables in a scratch schema, dropped after the test."""
    schema = f"checkout_{uuid.uuid4().hex[:8]}"
    await migrate_async(database_url, schema, MIGRATIONS)
    engine = create_async_engine(database_url)
    yield Store(engine, checkout_tables(schema), Outbox(schema))
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()
