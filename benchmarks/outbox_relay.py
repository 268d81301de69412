"""Outbox -> Kafka relay throughput, and end-to-end latency at fixed offered rates.

    make run                                    # or any broker + PostgreSQL
    uv run python benchmarks/outbox_relay.py    # --bootstrap / --database-url to point elsewhere

1. **Throughput**: a backlog of ``--events`` committed outbox rows (1 KB CloudEvents each) is
   drained by one relay, then by two relays sharing the table; events/s = rows / drain time.
2. **Latency** at each offered rate of ``--rates``: business transactions stage one event each
   (open loop: event n's transaction starts at t0 + n/rate whatever happened before), one relay
   publishes, an inbox consumer group applies each event in its own transaction. Latency = from
   the business transaction's commit to the consumer transaction's commit (the moment the effect
   is visible), per event; "publish" is the part up to the relay's send (the record's Kafka
   CreateTime). The load generator, the relay and ``--consumers`` consumer processes are separate
   processes, as in production; the first ``--warmup`` seconds of each run are not counted.

Exits non-zero when a target is missed: >= 5,000 events/s relayed, p99 < 200 ms at 1,000/s.
Defaults point at ``make run``'s broker and database (``PAYRAIL_KAFKA_BOOTSTRAP_SERVERS``,
``PAYRAIL_DATABASE_URL``). Every run uses a fresh schema and topics, and drops the schema after.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from typing import Any

import psycopg
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import event, insert, make_url, text
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from payrail.contracts import PAYMENT_INTENT_REQUESTED, PaymentIntentRequested
from payrail.messaging.admin import TopicSpec, ensure_topics
from payrail.messaging.consumer import ConsumerSpec, Handler
from payrail.messaging.envelope import Envelope, encode
from payrail.messaging.outbox import Outbox
from payrail.messaging.relay import OutboxRelay
from payrail.messaging.schema import messaging_tables
from payrail.messaging.service import ServiceMessaging
from payrail.settings import DEFAULT_DATABASE_URL

THROUGHPUT_TARGET = 5_000.0  # events/s
LATENCY_TARGET_RATE = 1_000.0  # events/s
P99_TARGET_MS = 200.0
EVENT_BYTES = 1024
PARTITIONS = 6
CONCURRENCY = 8  # transactions in flight per consumer process (ServiceMessaging's default)
LOAD_CONNECTIONS = 32


@dataclass(frozen=True)
class Setup:
    bootstrap: str
    database_url: str
    schema: str
    tag: str

    def topic(self, run: str) -> str:
        return f"bench.outbox.{self.tag}.{run}"


@dataclass(frozen=True)
class Latency:
    offered: float
    achieved: float
    events: int
    missing: int
    p50: float
    p95: float
    p99: float
    max: float
    publish_p50: float
    publish_p99: float
    consumer_cpu_ms: float  # CPU of the consumer processes per event


def event_of(n: int) -> tuple[str, Envelope[PaymentIntentRequested]]:
    """(key, envelope) of the n-th event; the JSON body is padded to 1 KB."""
    key = f"pay_{n % 5000}"
    data = PaymentIntentRequested(
        payment_id=f"{key}-{n}",
        amount=1999,
        currency="USD",
        user_id=f"u_{n % 997}",
        sku="pro-monthly",
        gateway="stripe",
        description="",
        metadata={"order": f"o-{n}"},
    )
    padding = "x" * max(0, EVENT_BYTES - len(data.model_dump_json()))
    padded = data.model_copy(update={"description": padding})
    return key, Envelope.create(PAYMENT_INTENT_REQUESTED, "/payrail/bench", padded, subject=key)


async def create_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await ensure_topics(admin, [TopicSpec(name, partitions=PARTITIONS) for name in names])
    finally:
        await admin.close()


async def create_schema(setup: Setup) -> None:
    engine = create_async_engine(setup.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{setup.schema}"'))
            await conn.run_sync(messaging_tables(setup.schema).metadata.create_all)
            await conn.execute(text(f'CREATE TABLE "{setup.schema}".effects (ce_id text)'))
    finally:
        await engine.dispose()


async def drop_schema(setup: Setup) -> None:
    engine = create_async_engine(setup.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{setup.schema}" CASCADE'))
    finally:
        await engine.dispose()


# --- 1. throughput ---------------------------------------------------------------------------


async def prefill(engine: AsyncEngine, setup: Setup, topic: str, count: int) -> None:
    """Commit ``count`` outbox rows (bulk insert: staging speed is not what is measured here)."""
    table = messaging_tables(setup.schema).outbox
    for start in range(0, count, 5000):
        rows = []
        for n in range(start, min(start + 5000, count)):
            key, envelope = event_of(n)
            record = encode(envelope, key)
            rows.append(
                {
                    "topic": topic,
                    "key": key,
                    "ce_id": envelope.id,
                    "ce_type": envelope.type,
                    "payload": record.value,
                    "headers": [[name, value.decode()] for name, value in record.headers],
                }
            )
        async with engine.begin() as conn:
            await conn.execute(insert(table), rows)


async def drain(engine: AsyncEngine, setup: Setup, relays: int, batch_size: int) -> float:
    """Seconds for ``relays`` relays, cycling back to back, to publish the whole backlog."""
    instances = [
        OutboxRelay(engine, setup.schema, bootstrap_servers=setup.bootstrap, batch_size=batch_size)
        for _ in range(relays)
    ]
    for relay in instances:
        await relay.connect()

    async def run(relay: OutboxRelay) -> None:
        while True:
            result = await relay.publish_batch()
            if result.claimed == 0:
                return
            if result.published == 0:
                await asyncio.sleep(0.005)  # everything left is held by the other relay

    try:
        started = time.perf_counter()
        await asyncio.gather(*(run(relay) for relay in instances))
        return time.perf_counter() - started
    finally:
        for relay in instances:
            await relay.stop()


async def throughput(setup: Setup, events: int, batch_size: int) -> list[tuple[int, int, float]]:
    engine = create_async_engine(setup.database_url, pool_size=4)
    results = []
    try:
        for relays in (1, 2):
            topic = setup.topic(f"drain{relays}")
            await create_topics(setup.bootstrap, topic)
            await prefill(engine, setup, topic, events)
            results.append((relays, events, await drain(engine, setup, relays, batch_size)))
    finally:
        await engine.dispose()
    return results


def on_commit(session: AsyncSession, ce_id: str, committed: Callable[[list[str]], None]) -> None:
    """Have ``committed`` called with the ce_ids handled in ``session`` once its transaction
    commits: one listener per session, not per event, so that the harness stays cheap."""
    handled: list[str] | None = session.info.get("bench-handled")
    if handled is None:
        handled = session.info["bench-handled"] = []

        def after_commit(_: Session) -> None:
            committed(handled)

        event.listen(session.sync_session, "after_commit", after_commit, once=True)
    handled.append(ce_id)


def bench_consumer(
    setup: Setup,
    engine: AsyncEngine,
    name: str,
    topic: str,
    handle: Handler[PaymentIntentRequested],
) -> ServiceMessaging:
    """A service's messaging (``ServiceMessaging`` defaults, no relay) with one inbox consumer
    ``name`` (also its group) of ``topic``."""
    messaging = ServiceMessaging(
        service="bench",
        bootstrap_servers=setup.bootstrap,
        engine=engine,
        schema=setup.schema,
        relay=False,
        concurrency=CONCURRENCY,
    )
    messaging.consume(ConsumerSpec(name, name, (topic,), PaymentIntentRequested, handle))
    return messaging


# --- 2. latency ------------------------------------------------------------------------------


def _process(target: Callable[..., Any], *args: Any) -> BaseProcess:
    process = mp.get_context("spawn").Process(target=target, args=args, daemon=True)
    process.start()
    return process


def relay_process(setup: Setup, stop: EventType) -> None:
    async def main() -> None:
        engine = create_async_engine(setup.database_url, pool_size=4)
        async with OutboxRelay(engine, setup.schema, bootstrap_servers=setup.bootstrap):
            await asyncio.to_thread(stop.wait)
        await engine.dispose()

    uvloop.run(main())


def consumer_process(
    setup: Setup, topic: str, ready: EventType, stop: EventType, results: Any
) -> None:
    """Apply every event; report (pid, {ce_id: wall time of the consumer transaction's commit},
    CPU seconds the process used since it was ready) every 0.5 s."""

    async def main() -> None:
        engine = create_async_engine(setup.database_url, pool_size=CONCURRENCY + 2)
        applied: dict[str, float] = {}
        insert_effect = text(f'INSERT INTO "{setup.schema}".effects VALUES (:id)')

        def committed(ce_ids: list[str]) -> None:
            now = time.time()
            for ce_id in ce_ids:
                applied[ce_id] = now

        async def handle(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
            await session.execute(insert_effect, {"id": envelope.id})
            on_commit(session, envelope.id, committed)

        async with bench_consumer(setup, engine, "bench", topic, handle):
            await asyncio.sleep(5)  # let the group form before the clock starts
            ready.set()
            cpu = time.process_time()
            while not stop.is_set():
                await asyncio.sleep(0.5)
                report, applied = applied, {}
                results.put((os.getpid(), report, time.process_time() - cpu))
        await engine.dispose()

    uvloop.run(main())


def load_process(setup: Setup, topic: str, rate: float, total: int, results: Any) -> None:
    """Open-loop load: event n's business transaction starts at t0 + n/rate, whatever came
    before. Each transaction is the outbox's own staging statement, run on a plain psycopg
    connection in autocommit mode (one statement, one transaction, one round trip): the load
    generator is the harness, not the system under test, and must not eat the CPU of the relay
    and the consumers it measures on a 2-core machine."""

    async def main() -> None:
        dsn = make_url(setup.database_url).set(drivername="postgresql")
        idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        for _ in range(LOAD_CONNECTIONS):
            idle.put_nowait(
                await psycopg.AsyncConnection.connect(
                    dsn.render_as_string(hide_password=False), autocommit=True
                )
            )
        outbox = Outbox(setup.schema)
        # Outbox.stage's statement, rendered for psycopg's placeholders
        statement = str(outbox.statement.compile(dialect=psycopg_dialect()))  # type: ignore[no-untyped-call]
        staged = [event_of(n) for n in range(total)]
        parameters = [outbox.parameters(topic, key, envelope) for key, envelope in staged]
        commits: dict[str, float] = {}
        start = time.monotonic() + 0.5

        async def business_transaction(n: int) -> None:
            conn = await idle.get()
            try:
                await conn.execute(statement, parameters[n])  # commits: autocommit
            finally:
                idle.put_nowait(conn)
            commits[staged[n][1].id] = time.time()

        # a 2 ms ticker starts every transaction that is due (latency is counted from commit)
        in_flight: set[asyncio.Task[None]] = set()
        n = 0
        while n < total:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            for _ in range(max(0, due - n)):
                task = asyncio.create_task(business_transaction(n))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                n += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*in_flight)
        while not idle.empty():
            await idle.get_nowait().close()
        results.put((commits, time.monotonic() - start))

    uvloop.run(main())


async def send_times(bootstrap: str, topic: str) -> dict[str, float]:
    """{ce_id: the record's CreateTime} for every record on ``topic`` (when the relay sent it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        times: dict[str, float] = {}
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    times[dict(record.headers)["ce_id"].decode()] = record.timestamp / 1000
        return times
    finally:
        await consumer.stop()


def latency(setup: Setup, rate: float, seconds: float, warmup: float, consumers: int) -> Latency:
    topic = setup.topic(f"latency{int(rate)}")
    asyncio.run(create_topics(setup.bootstrap, topic))
    total = int(rate * (seconds + warmup))
    context = mp.get_context("spawn")
    stop = context.Event()
    consumed, staged = context.Queue(), context.Queue()
    readiness = [context.Event() for _ in range(consumers)]
    processes = [
        _process(consumer_process, setup, topic, ready, stop, consumed) for ready in readiness
    ]
    processes.append(_process(relay_process, setup, stop))
    try:
        if not all(ready.wait(120) for ready in readiness):
            raise RuntimeError("the consumers did not start")
        processes.append(_process(load_process, setup, topic, rate, total, staged))
        commits, elapsed = staged.get(timeout=seconds + warmup + 300)
        applied: dict[str, float] = {}
        cpu: dict[int, float] = {}
        deadline = time.monotonic() + 300
        while len(applied) < len(commits) and time.monotonic() < deadline:
            pid, report, cpu[pid] = consumed.get(timeout=60)
            applied.update(report)
    finally:
        stop.set()
        for process in processes:
            process.join(30)
    sent = asyncio.run(send_times(setup.bootstrap, topic))
    first = min(commits.values()) + warmup
    counted = [ce_id for ce_id, at in commits.items() if at >= first]
    total_ms = [(applied[c] - commits[c]) * 1000 for c in counted if c in applied]
    publish_ms = sorted((sent[c] - commits[c]) * 1000 for c in counted if c in sent)
    cuts = statistics.quantiles(total_ms, n=100)
    publish_cuts = statistics.quantiles(publish_ms, n=100)
    return Latency(
        offered=rate,
        achieved=len(commits) / elapsed,
        events=len(total_ms),
        missing=len(set(commits) - set(applied)),
        p50=cuts[49],
        p95=cuts[94],
        p99=cuts[98],
        max=max(total_ms),
        publish_p50=publish_cuts[49],
        publish_p99=publish_cuts[98],
        consumer_cpu_ms=sum(cpu.values()) * 1000 / len(commits),
    )


# --- 3. consumer CPU per message -------------------------------------------------------------


async def produce_backlog(bootstrap: str, topic: str, count: int) -> None:
    """Put ``count`` encoded 1 KB events straight on ``topic`` (the consumer's backlog)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for n in range(count):
            key, envelope = event_of(n)
            record = encode(envelope, key)
            await producer.send(topic, record.value, key=record.key, headers=record.headers)
        await producer.flush()
    finally:
        await producer.stop()


def cpu_process(setup: Setup, topic: str, count: int, profile: str | None, results: Any) -> None:
    """Drain a backlog of ``count`` events with one consumer process (``ServiceMessaging``
    defaults) whose handler inserts one effect row; report the process's CPU seconds and wall
    seconds from the first handler call to the last commit."""

    async def main() -> None:
        engine = create_async_engine(setup.database_url, pool_size=CONCURRENCY + 2)
        insert_effect = text(f'INSERT INTO "{setup.schema}".effects VALUES (:id)')
        started: list[float] = []
        applied = 0
        drained = asyncio.Event()
        profiler = cProfile.Profile(time.process_time) if profile else None

        def committed(ce_ids: list[str]) -> None:
            nonlocal applied
            applied += len(ce_ids)
            if applied >= count:
                drained.set()

        async def handle(session: AsyncSession, envelope: Envelope[PaymentIntentRequested]) -> None:
            if not started:
                started.extend((time.process_time(), time.perf_counter()))
                if profiler:
                    profiler.enable()
            await session.execute(insert_effect, {"id": envelope.id})
            on_commit(session, envelope.id, committed)

        name = f"bench-cpu-{uuid.uuid4().hex[:6]}"
        async with bench_consumer(setup, engine, name, topic, handle):
            await drained.wait()
            cpu, wall = time.process_time() - started[0], time.perf_counter() - started[1]
            if profiler and profile:
                profiler.disable()
                profiler.dump_stats(profile)
        await engine.dispose()
        results.put((cpu, wall))

    uvloop.run(main())


def consumer_cpu(setup: Setup, count: int, profile: str | None) -> tuple[int, float, float]:
    """(events, CPU seconds, wall seconds) of one consumer process draining a backlog."""
    topic = setup.topic("cpu")
    asyncio.run(create_topics(setup.bootstrap, topic))
    asyncio.run(produce_backlog(setup.bootstrap, topic, count))
    results = mp.get_context("spawn").Queue()
    process = _process(cpu_process, setup, topic, count, profile, results)
    try:
        cpu, wall = results.get(timeout=600)
    finally:
        process.join(30)
    return count, cpu, wall


def report(
    drained: Sequence[tuple[int, int, float]],
    measured: Sequence[Latency],
    cpu: tuple[int, float, float] | None,
) -> list[str]:
    """Print the tables; return the targets missed."""
    if cpu:
        events, seconds, wall = cpu
        print(
            f"consumer: {events:,} events drained by one process in {wall:.2f} s "
            f"({events / wall:,.0f}/s), {seconds * 1000 / events:.3f} ms CPU per event"
        )
    print(f"outbox relay: {EVENT_BYTES} B events, {PARTITIONS} partitions, acks=all, idempotent")
    print(f"{'relays':>8} {'events':>9} {'seconds':>9} {'events/s':>10}")
    best = 0.0
    for relays, events, seconds in drained:
        best = max(best, events / seconds)
        print(f"{relays:>8} {events:>9,} {seconds:>9.2f} {events / seconds:>10,.0f}")
    print("end-to-end latency, business commit -> consumer commit (ms)")
    header = ("offered/s", "achieved/s", "events", "missing", "p50", "p95", "p99", "max")
    print(
        " ".join(f"{h:>10}" for h in header),
        f"{'publish p50':>12} {'publish p99':>12} {'consumer CPU/event':>18}",
    )
    for m in measured:
        print(
            f"{m.offered:>10,.0f} {m.achieved:>10,.0f} {m.events:>10,} {m.missing:>10} "
            f"{m.p50:>10.1f} {m.p95:>10.1f} {m.p99:>10.1f} {m.max:>10.1f} "
            f"{m.publish_p50:>12.1f} {m.publish_p99:>12.1f} {m.consumer_cpu_ms:>18.3f}"
        )
    misses = []
    if drained and best < THROUGHPUT_TARGET:
        misses.append(f"throughput {best:,.0f}/s < {THROUGHPUT_TARGET:,.0f}/s")
    for m in measured:
        if m.offered == LATENCY_TARGET_RATE and (m.p99 >= P99_TARGET_MS or m.missing):
            misses.append(f"p99 {m.p99:.1f} ms at {m.offered:,.0f}/s (target < {P99_TARGET_MS} ms)")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bootstrap", default=os.environ.get("PAYRAIL_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("PAYRAIL_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--parts", default="throughput,latency,cpu", help="what to measure")
    parser.add_argument("--events", type=int, default=50_000, help="backlog per throughput run")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rates", default="250,500,750,1000", help="offered events/s to measure")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per rate")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--consumers", type=int, default=2, help="consumer processes")
    parser.add_argument("--cpu-events", type=int, default=20_000, help="backlog of the CPU run")
    parser.add_argument("--profile", help="write the CPU run's cProfile stats to this file")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    tag = uuid.uuid4().hex[:8]
    setup = Setup(args.bootstrap, args.database_url, f"bench_{tag}", tag)
    asyncio.run(create_schema(setup))
    try:
        drained = (
            asyncio.run(throughput(setup, args.events, args.batch_size))
            if "throughput" in parts
            else []
        )
        measured = (
            [
                latency(setup, float(rate), args.seconds, args.warmup, args.consumers)
                for rate in args.rates.split(",")
            ]
            if "latency" in parts
            else []
        )
        cpu = consumer_cpu(setup, args.cpu_events, args.profile) if "cpu" in parts else None
    finally:
        asyncio.run(drop_schema(setup))
    misses = report(drained, measured, cpu)
    for miss in misses:
        print(f"TARGET MISSED: {miss}", file=sys.stderr)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
