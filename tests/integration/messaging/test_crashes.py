"""Processes killed with SIGKILL at the worst moments lose nothing and apply nothing twice.

The consumer and the relay run as real child processes (scripts/); the fault is injected by the
script (a session hook, an engine hook), never by the library.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from payrail.contracts import PaymentIntentRequested
from payrail.messaging.consumer import ConsumerSpec
from payrail.messaging.outbox import Outbox
from payrail.messaging.relay import OutboxRelay
from tests.integration.messaging.support import (
    PYTHON,
    REPO,
    applied_counts,
    caught_up,
    consume_all,
    create_topics,
    encoded,
    end_offsets,
    eventually,
    intent,
    produce,
    read_topic,
    recorder,
    rows,
    scalar,
    unique,
)

SCRIPTS = "tests.integration.messaging.scripts"


@contextmanager
def child(module: str, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PYTHON, "-m", f"{SCRIPTS}.{module}", *args], cwd=REPO, stdout=out, stderr=out
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def exit_code(process: subprocess.Popen[bytes], log: Path) -> int:
    try:
        return await asyncio.to_thread(process.wait, 90)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"child did not exit:\n{log.read_text()}") from None


async def test_consumer_killed_after_its_db_commit_applies_the_effect_once_after_restart(
    kafka_bootstrap: str,
    database_url: str,
    engine: AsyncEngine,
    schema: str,
    topic: str,
    tmp_path: Path,
) -> None:
    group, name = unique("g"), unique("c-")
    await create_topics(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, [encoded("pay_crash")])
    args = [
        *("--bootstrap", kafka_bootstrap, "--database-url", database_url),
        *("--schema", schema, "--topic", topic, "--group", group, "--name", name),
    ]

    first_log = tmp_path / "first.log"
    with child("consumer_process", first_log, *args, "--kill-after-commit") as first:
        assert await exit_code(first, first_log) == -signal.SIGKILL, first_log.read_text()
    assert "handled pay_crash" in first_log.read_text()
    # the effect is committed, the offset is not
    assert await rows(engine, f'SELECT payment_id FROM "{schema}".effects') == [("pay_crash",)]
    assert not await caught_up(kafka_bootstrap, group, topic)

    second_log = tmp_path / "second.log"
    with child("consumer_process", second_log, *args):
        await eventually(
            lambda: caught_up(kafka_bootstrap, group, topic), what="restarted group commits"
        )
    assert "handled" not in second_log.read_text()  # redelivered, recognised, skipped
    assert await rows(engine, f'SELECT payment_id FROM "{schema}".effects') == [("pay_crash",)]
    assert await scalar(engine, f'SELECT count(*) FROM "{schema}".inbox') == 1
    assert sum((await end_offsets(kafka_bootstrap, topic)).values()) == 1


async def test_relay_killed_between_publishing_and_marking_republishes_and_nothing_is_lost(
    kafka_bootstrap: str,
    database_url: str,
    engine: AsyncEngine,
    schema: str,
    topic: str,
    tmp_path: Path,
) -> None:
    await create_topics(kafka_bootstrap, topic)
    outbox = Outbox(schema)
    sessions = async_sessionmaker(engine)
    staged = [intent(f"pay_{n}") for n in range(5)]
    async with sessions() as session, session.begin():
        for envelope in staged:
            await outbox.stage(session, topic, envelope.data.payment_id, envelope)

    log = tmp_path / "relay.log"
    args = ["--bootstrap", kafka_bootstrap, "--database-url", database_url, "--schema", schema]
    with child("relay_process", log, *args, "--kill-before-mark") as relay:
        assert await exit_code(relay, log) == -signal.SIGKILL, log.read_text()
    published = Counter(
        dict(r.headers)["ce_id"].decode() for r in await read_topic(kafka_bootstrap, topic)
    )
    assert published == Counter(e.id for e in staged)  # on Kafka, acknowledged...
    unmarked = f'SELECT count(*) FROM "{schema}".outbox WHERE published_at IS NULL'
    assert await scalar(engine, unmarked) == 5  # ...but not marked

    async with OutboxRelay(engine, schema, bootstrap_servers=kafka_bootstrap, poll_interval=0.1):

        async def all_marked() -> bool:
            return await scalar(engine, unmarked) == 0

        await eventually(all_marked, what="restarted relay marks the rows")
    published = Counter(
        dict(r.headers)["ce_id"].decode() for r in await read_topic(kafka_bootstrap, topic)
    )
    assert published == Counter({e.id: 2 for e in staged})  # published again, none lost

    group, name = unique("g"), unique("c-")
    spec = ConsumerSpec(name, group, (topic,), PaymentIntentRequested, recorder(schema, name))
    await consume_all(kafka_bootstrap, engine, schema, spec)
    assert await applied_counts(engine, schema) == {e.id: 1 for e in staged}
    assert REGISTRY.get_sample_value("payrail_consumer_duplicates_total", {"consumer": name}) == 5
