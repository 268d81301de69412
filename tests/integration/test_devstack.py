"""The local stack is real and behaves like one: Kafka delivers with acks=all and remembers
committed offsets; the launcher (`payrail dev run`) starts, stops without leaving a process
behind, keeps its data across restarts, and recovers from a launcher that was killed outright.
"""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from payrail.devstack.kafka import DESIGN_TOPICS, ensure_topics
from payrail.devstack.paths import free_port, port_in_use
from payrail.devstack.process import process_cmdline
from payrail.devstack.stack import INFRA

READY_LINE = "payrail dev stack is up"
#: generous bounds for a cold JVM on a busy 2-core machine (not assertions about speed)
START_TIMEOUT = 240.0
STOP_TIMEOUT = 120.0


async def _read_all(
    bootstrap: str, topic: str, expected: int, isolation_level: str = "read_uncommitted"
) -> list[bytes]:
    """Read a topic from the beginning, without a group, until ``expected`` records arrived."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(values) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                values.extend(r.value for records in batch.values() for r in records)
    finally:
        await consumer.stop()
    return values


async def _read_topics(bootstrap: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        topics: set[str] = await consumer.topics()
    finally:
        await consumer.stop()
    return topics


async def test_a_record_sent_with_acks_all_is_consumed_once_per_group(kafka_bootstrap: str) -> None:
    topic = f"devstack.roundtrip.{uuid.uuid4().hex[:8]}"
    group = f"devstack-test-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(ensure_topics, kafka_bootstrap, [topic], 1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b'{"amount": 1999}', key=b"pay_1")
    finally:
        await producer.stop()

    first = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await first.start()
    try:
        record = await asyncio.wait_for(first.getone(), 60)
        await first.commit()
    finally:
        await first.stop()
    assert (record.key, record.value) == (b"pay_1", b'{"amount": 1999}')
    assert (record.partition, record.offset) == (sent.partition, sent.offset)

    # a later member of the same group resumes after the committed offset: nothing is redelivered
    second = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await second.start()
    redelivered: list[object] = []
    try:
        async with asyncio.timeout(60):
            while not second.assignment():
                batch = await second.getmany(timeout_ms=500)
                redelivered.extend(r for records in batch.values() for r in records)
        batch = await second.getmany(timeout_ms=1000)
        redelivered.extend(r for records in batch.values() for r in records)
        tp = TopicPartition(topic, sent.partition)
        position = await second.position(tp)
    finally:
        await second.stop()
    assert redelivered == []
    assert position == sent.offset + 1


async def test_transactions_work_on_the_single_broker(kafka_bootstrap: str) -> None:
    """The transaction log fits on one broker: a committed record is seen by read_committed
    consumers, an aborted one never is."""
    topic = f"devstack.tx.{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(ensure_topics, kafka_bootstrap, [topic], 1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"devstack-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed")
    finally:
        await producer.stop()
    # records come in offset order: were the aborted one visible, it would come first
    seen = await _read_all(kafka_bootstrap, topic, 1, isolation_level="read_committed")
    assert seen == [b"committed"]


# -- the launcher, run exactly as `payrail dev run` runs it ------------------------------------


@dataclass
class Launcher:
    """A `payrail dev run` process whose output is collected line by line."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    output: list[str]

    def wait_for(self, text: str, timeout: float) -> None:
        try:
            while True:
                line = self.lines.get(timeout=timeout)
                if text in line:
                    return
        except queue.Empty:
            raise AssertionError(
                f"no {text!r} in launcher output:\n" + "".join(self.output)
            ) from None

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=STOP_TIMEOUT)


@dataclass(frozen=True)
class StackPorts:
    kafka: int
    postgres: int
    localstripe: int

    def env(self, state: Path) -> dict[str, str]:
        return {
            **os.environ,
            "PAYRAIL_STATE_DIR": str(state),
            "PAYRAIL_KAFKA_PORT": str(self.kafka),
            "PAYRAIL_POSTGRES_PORT": str(self.postgres),
            "PAYRAIL_LOCALSTRIPE_PORT": str(self.localstripe),
        }


@pytest.fixture
def state() -> Iterator[Path]:
    """A fresh state folder outside pytest's private (0700) tmp tree, which PostgreSQL,
    running as an unprivileged user under root, could not traverse."""
    path = Path(tempfile.mkdtemp(prefix="payrail-devstack-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def launched(state: Path, ports: StackPorts) -> Iterator[Launcher]:
    """Start the launcher with Kafka, PostgreSQL and localstripe; never leave it running."""
    only = [arg for name in INFRA for arg in ("--only", name)]
    process = subprocess.Popen(
        [sys.executable, "-c", "from payrail.cli.dev import app; app()", "run", *only],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=ports.env(state),
    )
    launcher = Launcher(process, queue.Queue(), [])

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            launcher.output.append(line)
            launcher.lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        launcher.wait_for(READY_LINE, START_TIMEOUT)
        yield launcher
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=STOP_TIMEOUT)


def child_pids(state: Path) -> dict[str, int]:
    """Pids of the stack's servers, from the pid files the launcher and PostgreSQL write."""
    pids = {path.stem: int(path.read_text()) for path in (state / "run").glob("*.pid")}
    postmaster = state / "postgres" / "postmaster.pid"
    pids["postgres"] = int(postmaster.read_text().splitlines()[0])
    return pids


def assert_all_gone(pids: dict[str, int], ports: StackPorts) -> None:
    survivors = {name: pid for name, pid in pids.items() if process_cmdline(pid) is not None}
    assert survivors == {}
    busy = [p for p in (ports.kafka, ports.postgres, ports.localstripe) if port_in_use(p)]
    assert busy == []


async def test_launcher_stops_cleanly_and_restarts_with_its_data(state: Path) -> None:
    ports = StackPorts(free_port(), free_port(), free_port())
    bootstrap = f"127.0.0.1:{ports.kafka}"
    dsn = f"postgresql://payrail:payrail@127.0.0.1:{ports.postgres}/payrail"
    topic = f"devstack.kept.{uuid.uuid4().hex[:8]}"

    with launched(state, ports) as launcher:
        pids = child_pids(state)
        assert set(pids) == set(INFRA)
        assert all(process_cmdline(pid) is not None for pid in pids.values())
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"kept across restarts")
        finally:
            await producer.stop()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('kept across restarts')")
        assert await asyncio.to_thread(launcher.stop, signal.SIGINT) == 0  # Ctrl-C
    assert "payrail dev stack stopped" in "".join(launcher.output)
    assert_all_gone(pids, ports)

    with launched(state, ports) as launcher:
        pids = child_pids(state)
        assert await _read_all(bootstrap, topic, 1) == [b"kept across restarts"]
        admin_topics = await _read_topics(bootstrap)
        assert set(DESIGN_TOPICS) | {topic} <= admin_topics
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT note FROM kept").fetchall() == [("kept across restarts",)]
        assert await asyncio.to_thread(launcher.stop, signal.SIGTERM) == 0
    assert_all_gone(pids, ports)


async def test_a_second_run_recovers_from_a_launcher_killed_outright(state: Path) -> None:
    ports = StackPorts(free_port(), free_port(), free_port())

    with launched(state, ports) as launcher:
        orphans = child_pids(state)
        launcher.process.kill()  # SIGKILL: the launcher cannot stop its children
        launcher.process.wait()
    assert all(process_cmdline(pid) is not None for pid in orphans.values())

    with launched(state, ports) as launcher:
        output = "".join(launcher.output)
        for component, name in (
            ("kafka", "Kafka"),
            ("postgres", "PostgreSQL"),
            ("localstripe", "localstripe"),
        ):
            assert f"stopping {name} (pid {orphans[component]}) left running" in output
        assert all(process_cmdline(pid) is None for pid in orphans.values())
        pids = child_pids(state)
        with psycopg.connect(
            f"postgresql://payrail:payrail@127.0.0.1:{ports.postgres}/payrail"
        ) as c:
            assert c.execute("SELECT current_database()").fetchone() == ("payrail",)
        assert await asyncio.to_thread(launcher.stop, signal.SIGTERM) == 0
    assert_all_gone(pids, ports)
