"""payrail.web.idempotency on real PostgreSQL: claim, replay, refusal, concurrency, waiting for
an in-flight answer, purge."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Column, MetaData, Table, Text, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from payrail.db import make_sessionmaker
from payrail.web.idempotency import Answer, Effect, Idempotency, idempotency_keys_columns
from payrail.web.problems import Problem

SCOPE = "POST /v1/things"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=25, max_overflow=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def things(engine: AsyncEngine) -> AsyncIterator[tuple[Table, Table]]:
    """A scratch schema with the keys table and a table of what the effects create."""
    schema = f"idem_{uuid.uuid4().hex[:8]}"
    metadata = MetaData(schema=schema)
    keys = Table("idempotency_keys", metadata, *idempotency_keys_columns())
    made = Table("things", metadata, Column("id", Text, primary_key=True))
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    yield keys, made
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def make_thing(made: Table, status: int = 201) -> tuple[list[str], Effect]:
    """An effect that inserts a thing and answers with its id (and the ids it made)."""
    ids: list[str] = []

    async def effect(session: AsyncSession) -> Response:
        thing = f"t_{uuid.uuid4().hex}"
        await session.execute(insert(made).values(id=thing))
        ids.append(thing)
        return JSONResponse({"id": thing}, status_code=status, headers={"Location": thing})

    return ids, effect


async def count(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def test_a_repeat_replays_the_first_answer_and_another_request_is_refused(
    engine: AsyncEngine, things: tuple[Table, Table]
) -> None:
    keys, made = things
    idempotency = Idempotency(keys, make_sessionmaker(engine))
    ids, effect = make_thing(made)
    first = await idempotency.once(SCOPE, "k", "hash-1", effect)
    again = await idempotency.once(SCOPE, "k", "hash-1", effect)
    with pytest.raises(Problem) as refused:
        await idempotency.once(SCOPE, "k", "hash-2", effect)
    elsewhere = await idempotency.once("POST /v1/other", "k", "hash-2", effect)

    assert (again.status_code, again.body) == (201, first.body)
    assert again.headers["location"] == ids[0]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert (refused.value.status, refused.value.type) == (422, "idempotency-key-reused")
    assert elsewhere.status_code == 201  # keys are unique per scope
    assert await count(engine, made) == 2


async def test_a_refused_or_failed_request_keeps_no_answer(
    engine: AsyncEngine, things: tuple[Table, Table]
) -> None:
    keys, made = things
    idempotency = Idempotency(keys, make_sessionmaker(engine))

    async def refuse(session: AsyncSession) -> Response:
        await session.execute(insert(made).values(id="never"))
        raise Problem(422, "Bad file")

    with pytest.raises(Problem):
        await idempotency.once(SCOPE, "k", "hash-1", refuse)
    _, accepted = make_thing(made, status=400)
    not_kept = await idempotency.once(SCOPE, "k", "hash-1", accepted)
    _, corrected = make_thing(made)
    fixed = await idempotency.once(SCOPE, "k", "hash-2", corrected)

    assert (not_kept.status_code, fixed.status_code) == (400, 201)
    async with engine.connect() as conn:
        assert await conn.scalar(select(keys.c.request_hash)) == "hash-2"
        assert await conn.scalar(select(func.count()).where(made.c.id == "never")) == 0


async def test_concurrent_requests_with_one_key_make_one_effect(
    engine: AsyncEngine, things: tuple[Table, Table]
) -> None:
    keys, made = things
    idempotency = Idempotency(keys, make_sessionmaker(engine))
    ids: list[str] = []

    async def slow(session: AsyncSession) -> Response:
        await asyncio.sleep(0.2)  # the others arrive while the first holds the key
        thing = f"t_{uuid.uuid4().hex}"
        await session.execute(insert(made).values(id=thing))
        ids.append(thing)
        return JSONResponse({"id": thing}, status_code=202)

    answers = await asyncio.gather(
        *(idempotency.once(SCOPE, "k", "hash-1", slow) for _ in range(20))
    )
    assert len(ids) == 1
    assert {(a.status_code, bytes(a.body)) for a in answers} == {(202, answers[0].body)}
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 19
    assert await count(engine, made) == 1


async def test_an_answer_made_in_another_transaction_is_waited_for(
    engine: AsyncEngine, things: tuple[Table, Table]
) -> None:
    keys, _ = things
    sessions = make_sessionmaker(engine)
    patient = Idempotency(keys, sessions, wait_seconds=60, poll_seconds=0.01)
    impatient = Idempotency(keys, sessions, wait_seconds=0)
    async with sessions.begin() as session:
        assert (
            await patient.records(session).claim(SCOPE, "k", request_hash="h", resource_id="r_1")
            is None
        )
    async with sessions.begin() as session:
        earlier = await patient.records(session).claim(SCOPE, "k", request_hash="h")
    assert earlier is not None
    assert earlier.in_flight

    with pytest.raises(Problem) as busy:
        await impatient.answer(SCOPE, "k", "h", earlier)
    with pytest.raises(Problem) as reused:
        await impatient.answer(SCOPE, "k", "other", earlier)
    waiting = asyncio.create_task(patient.answer(SCOPE, "k", "h", earlier))
    async with sessions.begin() as session:
        await patient.records(session).complete_resource(SCOPE, "r_1", Answer(201, b'{"a":1}'))
    replayed = await waiting
    own = await patient.answer(SCOPE, "k", "h", None)

    assert (busy.value.status, busy.value.headers) == (409, {"Retry-After": "1"})
    assert reused.value.status == 422
    assert (replayed.status_code, replayed.body) == (201, b'{"a":1}')
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.headers["content-type"] == "application/json"
    assert (own.body, own.headers.get("idempotent-replayed")) == (b'{"a":1}', None)


async def test_an_answer_is_completed_once(
    engine: AsyncEngine, things: tuple[Table, Table]
) -> None:
    keys, _ = things
    sessions = make_sessionmaker(engine)
    idempotency = Idempotency(keys, sessions)
    async with sessions.begin() as session:
        records = idempotency.records(session)
        await records.claim(SCOPE, "k", request_hash="h", resource_id="r_1")
        await records.complete_resource(SCOPE, "r_1", Answer(201, b"first"))
        await records.complete_resource(SCOPE, "r_1", Answer(202, b"second"))
    answer = await idempotency.answer(SCOPE, "k", "h", None)
    assert (answer.status_code, answer.body) == (201, b"first")


async def test_purge_forgets_keys_past_the_retention(
    engine: AsyncEngine, things: tuple[Table, Table]
) -> None:
    keys, made = things
    idempotency = Idempotency(keys, make_sessionmaker(engine))
    for key in ("old", "new"):
        _, effect = make_thing(made)
        await idempotency.once(SCOPE, key, "h", effect)
    async with engine.begin() as conn:
        await conn.execute(
            update(keys)
            .where(keys.c.key == "old")
            .values(created_at=func.now() - timedelta(days=31))
        )
    assert await idempotency.purge() == 1
    _, effect = make_thing(made)
    again = await idempotency.once(SCOPE, "old", "h", effect)
    assert "idempotent-replayed" not in again.headers  # forgotten: done anew
    async with engine.connect() as conn:
        assert set(await conn.scalars(select(keys.c.key))) == {"old", "new"}
