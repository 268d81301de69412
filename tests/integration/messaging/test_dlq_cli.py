"""``payrail dlq`` as an SRE runs it: the real executable against the real broker, with dead
letters put there by a real inbox consumer."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from payrail.contracts import PaymentIntentRequested, dlt_topic, retry_topic
from payrail.devstack.paths import free_port
from payrail.messaging.consumer import ConsumerSpec, RetryPolicy
from payrail.messaging.envelope import EncodedRecord, Envelope
from tests.integration.messaging.support import (
    apply_effect,
    caught_up,
    create_topics,
    encoded,
    end_offsets,
    eventually,
    produce,
    read_topic,
    rows,
    service_messaging,
    unique,
)

PAYRAIL = Path(sys.executable).with_name("payrail")


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def payrail_dlq(bootstrap: str, *args: str, answer: str = "") -> Run:
    """Run ``payrail dlq ARGS`` as a child process (the event loop keeps serving the consumers
    meanwhile); ``answer`` is typed at its prompt."""
    env = os.environ | {
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "USER": "sre-on-call",
        "COLUMNS": "300",  # rich folds long topic names in narrower tables
    }
    process = await asyncio.create_subprocess_exec(
        str(PAYRAIL),
        "dlq",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await process.communicate(answer.encode())
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def poison(payment_id: str) -> EncodedRecord:
    """A record with valid CloudEvents headers and a body that is not JSON."""
    record = encoded(payment_id)
    return EncodedRecord(record.key, b'{"payment_id": ', record.headers)


async def test_an_sre_lists_shows_replays_and_purges_what_a_consumer_dead_lettered(
    kafka_bootstrap: str, engine: AsyncEngine, schema: str, topic: str
) -> None:
    failing, healthy = unique("ga"), unique("gb")
    name_a, name_b = unique("a-"), unique("b-")
    await create_topics(kafka_bootstrap, topic)
    await produce(
        kafka_bootstrap,
        topic,
        [encoded("pay_1"), encoded("pay_bug"), poison("pay_poison"), encoded("pay_2")],
    )
    bug_fixed = False
    seen_by_b: list[str] = []

    async def handle_a(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        if envelope.data.payment_id == "pay_bug" and not bug_fixed:
            raise KeyError("sku 'pro-monthly' has no price in EUR")
        await apply_effect(session, schema, name_a, envelope)

    async def handle_b(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
        seen_by_b.append(envelope.data.payment_id)
        await apply_effect(session, schema, name_b, envelope)

    retry = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)
    messaging = service_messaging(
        kafka_bootstrap,
        engine,
        schema,
        ConsumerSpec(name_a, failing, (topic,), PaymentIntentRequested, handle_a, retry),
        ConsumerSpec(name_b, healthy, (topic,), PaymentIntentRequested, handle_b),
    )
    dead_a, dead_b = dlt_topic(topic, failing), dlt_topic(topic, healthy)
    source_end = await end_offsets(kafka_bootstrap, topic)

    async def applied(consumer: str) -> list[str]:
        sql = f'SELECT payment_id FROM "{schema}".effects WHERE consumer = :c ORDER BY payment_id'
        return [str(row[0]) for row in await rows(engine, sql, c=consumer)]

    async with messaging:
        await eventually(lambda: caught_up(kafka_bootstrap, failing, topic), what="group A")
        await eventually(lambda: caught_up(kafka_bootstrap, healthy, topic), what="group B")
        assert await applied(name_a) == ["pay_1", "pay_2"]

        # list: A holds the bug and the poison, B only the poison
        listed = await payrail_dlq(kafka_bootstrap, "list", "--json")
        assert listed.code == 0, listed.err
        summaries = {summary["topic"]: summary for summary in listed.json()}
        assert summaries[dead_a]["group"] == failing
        assert summaries[dead_a]["source_topic"] == topic
        assert summaries[dead_a]["count"] == 2
        assert sorted(e["exception"] for e in summaries[dead_a]["top_exceptions"]) == [
            "builtins.KeyError",
            "payrail.messaging.envelope.PoisonMessage",
        ]
        assert summaries[dead_b]["count"] == 1
        table = await payrail_dlq(kafka_bootstrap, "list")
        assert dead_a in table.out
        assert "KeyError x1" in table.out

        # show: the failure headers and the pretty payload
        shown = await payrail_dlq(kafka_bootstrap, "show", dead_a, "--key", "pay_bug")
        assert shown.code == 0, shown.err
        assert "kafka_dlt-exception-fqcn" in shown.out
        assert "builtins.KeyError" in shown.out
        assert "has no price in EUR" in shown.out
        assert f"kafka_dlt-original-consumer-group  {failing}" in shown.out
        assert '"payment_id": "pay_bug"' in shown.out
        [poisoned] = (
            await payrail_dlq(
                kafka_bootstrap, "show", dead_a, "--exception", "PoisonMessage", "--json"
            )
        ).json()
        assert poisoned["key"] == "pay_poison"
        assert poisoned["payload"] == '{"payment_id": '
        assert poisoned["headers"]["payrail_dlt-attempts"] == "1"  # poison: no retries

        # a dry run names what it would replay and changes nothing
        dry = await payrail_dlq(
            kafka_bootstrap, "replay", dead_a, "--exception", "KeyError", "--dry-run"
        )
        assert dry.code == 0, dry.err
        assert "would replay 1 dead letter " in dry.out
        assert "pay_bug" in dry.out
        assert await read_topic(kafka_bootstrap, retry_topic(topic, failing)) == []
        assert "no replays recorded" in (await payrail_dlq(kafka_bootstrap, "replays", dead_a)).out

        # the fix ships; the replay reaches the failed group only, and is applied once
        bug_fixed = True
        replayed = await payrail_dlq(
            kafka_bootstrap,
            "replay",
            dead_a,
            "--exception",
            "KeyError",
            "--by",
            "sre-alice",
            "--rate",
            "20",
        )
        assert replayed.code == 0, replayed.err
        assert f"replayed 1 dead letter to {retry_topic(topic, failing)}" in replayed.out

        async def fixed() -> bool:
            return await applied(name_a) == ["pay_1", "pay_2", "pay_bug"] and await caught_up(
                kafka_bootstrap, failing, retry_topic(topic, failing)
            )

        await eventually(fixed, what="the failed group applies the replay")
        await eventually(
            lambda: caught_up(kafka_bootstrap, healthy, topic), what="group B stays caught up"
        )
        assert sorted(seen_by_b) == ["pay_1", "pay_2", "pay_bug"]
        assert await end_offsets(kafka_bootstrap, topic) == source_end
        assert await read_topic(kafka_bootstrap, retry_topic(topic, healthy)) == []

        [audit] = (await payrail_dlq(kafka_bootstrap, "replays", dead_a, "--json")).json()
        assert (audit["replayed_by"], audit["key"]) == ("sre-alice", "pay_bug")
        assert audit["filter"] == {"exception_classes": ["KeyError"]}

        # purge asks first; "no" keeps everything, "yes" deletes
        declined = await payrail_dlq(kafka_bootstrap, "purge", dead_a, answer="n\n")
        assert declined.code == 1
        assert "Delete 2 dead letters from" in declined.out
        counts = {
            s["topic"]: s["count"]
            for s in (await payrail_dlq(kafka_bootstrap, "list", "--json")).json()
        }
        assert counts[dead_a] == 2
        purged = await payrail_dlq(kafka_bootstrap, "purge", dead_a, answer="y\n")
        assert purged.code == 0, purged.err
        assert f"purged 2 dead letters from {dead_a}" in purged.out
        unattended = await payrail_dlq(kafka_bootstrap, "purge", dead_b, "--yes")
        assert f"purged 1 dead letter from {dead_b}" in unattended.out
        counts = {
            s["topic"]: s["count"]
            for s in (await payrail_dlq(kafka_bootstrap, "list", "--json")).json()
        }
        assert (counts[dead_a], counts[dead_b]) == (0, 0)

    assert await applied(name_a) == ["pay_1", "pay_2", "pay_bug"]
    assert await applied(name_b) == ["pay_1", "pay_2", "pay_bug"]


async def test_failures_are_one_clear_line_and_an_exit_code(
    kafka_bootstrap: str, topic: str
) -> None:
    empty = dlt_topic(topic, unique("g"))
    await create_topics(kafka_bootstrap, empty, partitions=1)

    unknown = await payrail_dlq(kafka_bootstrap, "show", dlt_topic(topic, unique("nobody")))
    assert unknown.code == 4
    assert "does not exist" in unknown.err
    not_dead_letters = await payrail_dlq(kafka_bootstrap, "replay", topic)
    assert not_dead_letters.code == 4
    assert "is not a dead-letter topic" in not_dead_letters.err

    nothing = await payrail_dlq(kafka_bootstrap, "replay", empty, "--key", "pay_404")
    assert nothing.code == 5
    assert f"no dead letter in {empty} matches (keys=['pay_404'])" in nothing.err
    assert (await payrail_dlq(kafka_bootstrap, "show", empty)).code == 5

    unreachable = f"127.0.0.1:{free_port()}"
    no_broker = await payrail_dlq(kafka_bootstrap, "list", "--bootstrap", unreachable)
    assert no_broker.code == 3
    assert f"no Kafka broker answers at {unreachable}" in no_broker.err

    # a host that accepts connections and never answers Kafka: bounded by --timeout
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    async with silent:
        mute = f"127.0.0.1:{silent.sockets[0].getsockname()[1]}"
        hung = await payrail_dlq(kafka_bootstrap, "list", "--bootstrap", mute, "--timeout", "1")
    assert hung.code == 3
    assert f"no Kafka broker answers at {mute}" in hung.err

    invalid = await payrail_dlq(kafka_bootstrap, "show", empty, "--since", "last tuesday")
    assert invalid.code == 2
    assert "neither an ISO 8601 time nor a duration" in invalid.err
    backwards = await payrail_dlq(
        kafka_bootstrap, "replay", empty, "--from-offset", "9", "--to-offset", "3"
    )
    assert backwards.code == 2

    for run in (unknown, not_dead_letters, nothing, no_broker, hung, invalid, backwards):
        assert "Traceback" not in run.err + run.out
