"""webhook-ingest: verified Stripe-signed webhooks/s from HTTP into Kafka, against a bare endpoint.

    uv run python benchmarks/webhook_ingest.py      # starts its own broker on free ports

Everything runs as in production, on this machine: a single-node Kafka started by the dev-stack
launcher (free ports, a temporary folder), webhook-ingest as its own process (``python -m
webhook_ingest``: uvicorn, JSON logs, one Stripe account in ``PAYRAIL_GATEWAYS``), and - with the
same uvicorn settings (:func:`payrail.web.server.serve`) - a bare FastAPI endpoint that answers
200 doing nothing, the baseline. The load generator is a separate process (uvloop + aiohttp).
Every webhook is a distinct ``payment_intent.succeeded`` event signed with the stripe SDK's
``Stripe-Signature`` helper, so each accepted one is verified, normalized and published with
``acks=all`` before its 2xx.

1. **Maximum throughput** of each server: ``--concurrency`` requests kept in flight (closed loop)
   for ``--warmup`` + ``--seconds``; only the responses after the warm-up count.
2. **Latency** of webhook-ingest at a steady ``--rate`` (open loop: request n is due at
   t0 + n/rate whatever happened before, and its latency is measured from that due time, so
   queueing in the server or the client is counted and not hidden by coordinated omission).
   The bare endpoint is measured the same way, as the floor the server and client add.
3. **Exactly once on the topic**: afterwards ``payments.gateway-events`` is read from the start and
   every webhook that got a 2xx must be there exactly as many times as it was accepted (by
   ``ce_id``); a webhook that was not accepted may still be there (a send that timed out).

CPU time of every process over each measured window is read from /proc, with the machine's load;
"server us" is the server process's CPU time per 2xx, which other tenants of the machine disturb
far less than they disturb throughput.
Exits non-zero when a target is missed (ingest >= 50 % of the bare endpoint's throughput; p99 <
50 ms at 1,000 webhooks/s) or a verified webhook is missing or duplicated on the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import stripe
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI, Response

from payrail.contracts import PAYMENTS_GATEWAY_EVENTS
from payrail.devstack.kafka import KafkaServer
from payrail.devstack.paths import free_port
from payrail.devstack.process import ManagedProcess, wait_until
from payrail.settings import ServiceSettings
from payrail.web.server import serve

THROUGHPUT_SHARE_TARGET = 0.5  # ingest / bare endpoint
LATENCY_RATE = 1_000.0  # webhooks/s
P99_TARGET_MS = 50.0
SECRET = "whsec_payrail_benchmark_0123456789abcdef"  # noqa: S105 - the benchmark's own account
CLK_TCK = os.sysconf("SC_CLK_TCK")
PARTITIONS = 3  # of payments.gateway-events on the benchmark's broker


# --- the webhooks ----------------------------------------------------------------------------


def stripe_webhook(tag: str, n: int) -> tuple[str, bytes, dict[str, str]]:
    """(ce_id, body, headers) of the n-th webhook: a Stripe ``payment_intent.succeeded`` event
    shaped like the real thing (about 1.5 KB), signed now with the SDK's signature helper."""
    payment_id = f"pay_{tag}_{n}"
    event_id = f"evt_{tag}_{n}"
    created = int(time.time())
    intent = {
        "id": f"pi_{tag}{n:010d}",
        "object": "payment_intent",
        "amount": 1999,
        "amount_capturable": 0,
        "amount_received": 1999,
        "capture_method": "automatic",
        "client_secret": f"pi_{tag}{n:010d}_secret_{uuid.uuid4().hex[:24]}",
        "confirmation_method": "automatic",
        "created": created - 3,
        "currency": "usd",
        "customer": None,
        "description": "pro-monthly",
        "latest_charge": f"ch_{tag}{n:010d}",
        "livemode": False,
        "metadata": {"payrail_payment_id": payment_id, "user_id": f"u_{n % 997}", "sku": "pro"},
        "payment_method": f"pm_{tag}{n:010d}",
        "payment_method_types": ["card"],
        "status": "succeeded",
    }
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": intent},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_{uuid.uuid4().hex[:14]}", "idempotency_key": payment_id},
        "type": "payment_intent.succeeded",
    }
    text = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(text, SECRET, timestamp=created)
    headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
    return f"stripe:{event_id}", text.encode(), headers


# --- the servers -----------------------------------------------------------------------------


def bare_app() -> FastAPI:
    """The baseline: FastAPI routing a POST to a handler that does nothing."""
    app = FastAPI()

    @app.post("/webhooks/{gateway}")
    async def receive(gateway: str) -> Response:
        return Response('{"received": true}', media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response("ok")

    return app


def serve_bare() -> None:
    """Serve :func:`bare_app` exactly as services are served (port from PAYRAIL_HTTP_PORT)."""
    serve(bare_app(), ServiceSettings())


def serve_ingest_profiled(out: str) -> None:
    """Serve webhook-ingest under cProfile timed by process CPU time (waiting is not cost), and
    write the stats to ``out`` when it stops (``python -m pstats out`` to read them)."""
    import cProfile
    import importlib

    # this script's own folder comes first on sys.path and its name would shadow the service
    sys.path.remove(str(Path(__file__).resolve().parent))
    serve_ingest = importlib.import_module("webhook_ingest.__main__").main

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    # uvicorn re-raises the SIGTERM it shut down on; exit normally on it so the stats get written
    signal.signal(signal.SIGTERM, stop)
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        serve_ingest()
    finally:
        profiler.disable()
        profiler.dump_stats(out)


@dataclass
class Server:
    name: str
    url: str
    pid: int


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def server(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Iterator[Server]:
    """Run ``argv`` as the launcher runs services, on a free port, until it answers /readyz."""
    port = free_port()
    process = ManagedProcess(
        name,
        argv,
        log_path=logs / f"{name}.log",
        env={**os.environ, **env, "PAYRAIL_HTTP_PORT": str(port)},
        pid_file=logs / f"{name}.pid",
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url), what=name, timeout=60, processes=[process])
        yield Server(name, url, int((logs / f"{name}.pid").read_text()))
    finally:
        process.stop()


# --- CPU accounting --------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


@dataclass
class CpuWindow:
    """CPU used per named process and by the whole machine over one measured window."""

    seconds: float
    cores: dict[str, float]
    machine_busy: float  # fraction of all cores
    load: tuple[float, float, float]

    def describe(self) -> str:
        ours = sum(self.cores.values())
        cores = os.cpu_count() or 1
        others = max(0.0, self.machine_busy * cores - ours)
        parts = ", ".join(f"{name} {used:.2f}" for name, used in self.cores.items())
        return (
            f"CPU cores used: {parts}, other tenants {others:.2f}; machine "
            f"{self.machine_busy:.0%} busy; load {self.load[0]:.2f} {self.load[1]:.2f} "
            f"{self.load[2]:.2f}"
        )


def measure_cpu(pids: dict[str, int], start: float, end: float) -> CpuWindow:
    """Sample CPU at wall time ``start`` and ``end`` (``time.time()``), sleeping in between."""
    time.sleep(max(0.0, start - time.time()))
    before = {name: process_cpu(pid) for name, pid in pids.items()}
    busy0, total0 = machine_cpu()
    t0 = time.monotonic()
    time.sleep(max(0.0, end - time.time()))
    elapsed = time.monotonic() - t0
    busy1, total1 = machine_cpu()
    cores = {name: (process_cpu(pid) - before[name]) / elapsed for name, pid in pids.items()}
    return CpuWindow(elapsed, cores, (busy1 - busy0) / (total1 - total0), os.getloadavg())


# --- the load generator (its own process) ----------------------------------------------------


@dataclass
class Load:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    counted: int = 0
    window: float = 0.0


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> int | str:
    """The status code, or the name of the error when there was no response."""
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__


def _record(load: Load, ce_id: str, outcome: int | str, latency: float, counted: bool) -> None:
    """Every accepted ce_id is kept (the topic check needs all); statistics only when counted."""
    if isinstance(outcome, int) and 200 <= outcome < 300:
        load.accepted.append(ce_id)
    if not counted:
        return
    load.counted += 1
    load.latencies_ms.append(latency * 1000)
    if isinstance(outcome, int):
        load.statuses[outcome] += 1
    else:
        load.errors[outcome] += 1


async def closed_loop(
    url: str, tag: str, concurrency: int, warmup: float, seconds: float, started: Any
) -> Load:
    """``concurrency`` workers, each sending the next webhook as soon as its last one returned."""
    load = Load(window=seconds)
    counter = iter(range(10**9))
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.monotonic()
        started.put(time.time())
        count_from, end = t0 + warmup, t0 + warmup + seconds

        async def worker() -> None:
            while (now := time.monotonic()) < end:
                ce_id, body, headers = stripe_webhook(tag, next(counter))
                outcome = await _post(session, url, body, headers)
                done = time.monotonic()
                _record(load, ce_id, outcome, done - now, count_from <= done < end)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return load


async def open_loop(
    url: str, tag: str, rate: float, warmup: float, seconds: float, started: Any
) -> Load:
    """Request n is due at t0 + n/rate; its latency runs from that due time to the response."""
    total = int(rate * (warmup + seconds))
    webhooks = [stripe_webhook(tag, n) for n in range(total)]  # signed before the clock starts
    load = Load(window=seconds)
    connector = aiohttp.TCPConnector(limit=1024)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.monotonic() + 0.2
        started.put(time.time() + 0.2)

        async def send(n: int) -> None:
            due = t0 + n / rate
            ce_id, body, headers = webhooks[n]
            outcome = await _post(session, url, body, headers)
            _record(load, ce_id, outcome, time.monotonic() - due, n >= rate * warmup)

        in_flight: set[asyncio.Task[None]] = set()
        n = 0
        while n < total:
            due_now = min(total, int((time.monotonic() - t0) * rate) + 1)
            while n < due_now:
                task = asyncio.create_task(send(n))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                n += 1
            await asyncio.sleep(0.001)
        await asyncio.gather(*in_flight)
    return load


def load_process(kind: str, url: str, tag: str, arg: float, timing: Any, results: Any) -> None:
    warmup, seconds, started = timing
    if kind == "closed":
        coroutine = closed_loop(url, tag, int(arg), warmup, seconds, started)
    else:
        coroutine = open_loop(url, tag, arg, warmup, seconds, started)
    results.put(uvloop.run(coroutine))


@dataclass
class Run:
    target: str
    mode: str  # "closed" (maximum throughput) or "open" (steady rate)
    label: str
    load: Load
    cpu: CpuWindow

    @property
    def throughput(self) -> float:
        return sum(c for s, c in self.load.statuses.items() if 200 <= s < 300) / self.load.window

    def quantile(self, q: int) -> float:
        return statistics.quantiles(self.load.latencies_ms, n=100)[q - 1]


def run_load(
    target: Server, mode: str, arg: float, warmup: float, seconds: float, pids: dict[str, int]
) -> Run:
    """One load run against ``target``: ``closed`` with ``arg`` in flight, or ``open`` at
    ``arg`` requests/s; CPU of ``pids`` and the load generator is read over the counted part."""
    context = mp.get_context("spawn")
    started, results = context.Queue(), context.Queue()
    tag = uuid.uuid4().hex[:8]
    url = f"{target.url}/webhooks/stripe"
    process = context.Process(
        target=load_process,
        args=(mode, url, tag, arg, (warmup, seconds, started), results),
        daemon=True,
    )
    process.start()
    try:
        assert process.pid is not None
        t0 = started.get(timeout=300)
        cpu = measure_cpu(
            {**pids, "load generator": process.pid}, t0 + warmup, t0 + warmup + seconds
        )
        load: Load = results.get(timeout=300)
    finally:
        process.join(60)
    label = f"max c={arg:.0f}" if mode == "closed" else f"@{arg:,.0f}/s"
    return Run(target.name, mode, label, load, cpu)


# --- the topic check -------------------------------------------------------------------------


async def topic_counts(bootstrap: str, topic: str) -> Counter[str]:
    """How many times each ce_id is on ``topic`` (read from the start to the current end)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        counts: Counter[str] = Counter()
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    counts[dict(record.headers)["ce_id"].decode()] += 1
        return counts
    finally:
        await consumer.stop()


@dataclass
class TopicCheck:
    accepted: int
    missing: int
    duplicated: int
    unacknowledged_on_topic: int


def check_topic(bootstrap: str, runs: list[Run]) -> TopicCheck:
    accepted: Counter[str] = Counter()
    for run in runs:
        if run.target == "webhook-ingest":
            accepted.update(run.load.accepted)
    prefixes = {ce_id.rsplit("_", 1)[0] for ce_id in accepted}
    on_topic = asyncio.run(topic_counts(bootstrap, PAYMENTS_GATEWAY_EVENTS))
    ours = {c: n for c, n in on_topic.items() if c.rsplit("_", 1)[0] in prefixes}
    return TopicCheck(
        accepted=sum(accepted.values()),
        missing=sum(1 for c in accepted if ours.get(c, 0) < accepted[c]),
        duplicated=sum(1 for c in accepted if ours.get(c, 0) > accepted[c]),
        unacknowledged_on_topic=sum(1 for c in ours if c not in accepted),
    )


# --- report ----------------------------------------------------------------------------------


def describe(run: Run) -> list[str]:
    load = run.load
    errors = {**{str(s): c for s, c in load.statuses.items() if s >= 300}, **load.errors}
    server_us = run.cpu.cores[run.target] / max(run.throughput, 1.0) * 1e6
    return [
        f"{run.target:>15} {run.label:>12} {load.counted:>8,} {run.throughput:>10,.0f} "
        f"{run.quantile(50):>8.1f} {run.quantile(99):>8.1f} {max(load.latencies_ms):>9.1f} "
        f"{server_us:>10.0f} {sum(errors.values()):>7}" + (f"  {errors}" if errors else ""),
        f"{'':>15} {run.cpu.describe()}",
    ]


def report(runs: list[Run], check: TopicCheck) -> list[str]:
    print(
        f"{'server':>15} {'load':>12} {'counted':>8} {'2xx/s':>10} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>9} {'server us':>10} {'errors':>7}"
    )
    for run in runs:
        print("\n".join(describe(run)))
    bare = next(r for r in runs if r.target == "bare" and r.mode == "closed")
    ingest = next(r for r in runs if r.target == "webhook-ingest" and r.mode == "closed")
    steady = next(r for r in runs if r.target == "webhook-ingest" and r.mode == "open")
    share = ingest.throughput / bare.throughput
    print(
        f"webhook-ingest / bare throughput: {share:.0%} (target >= {THROUGHPUT_SHARE_TARGET:.0%})"
    )
    print(
        f"p99 at {LATENCY_RATE:,.0f}/s: {steady.quantile(99):.1f} ms (target < {P99_TARGET_MS} ms)"
    )
    print(
        f"topic check: {check.accepted:,} accepted, {check.missing} missing, "
        f"{check.duplicated} duplicated, {check.unacknowledged_on_topic} on the topic without a 2xx"
    )
    misses = []
    if share < THROUGHPUT_SHARE_TARGET:
        misses.append(f"throughput {share:.0%} of the bare endpoint")
    if steady.quantile(99) >= P99_TARGET_MS:
        misses.append(f"p99 {steady.quantile(99):.1f} ms at {LATENCY_RATE:,.0f}/s")
    if steady.load.errors or any(s >= 300 for s in steady.load.statuses):
        misses.append(f"errors at {LATENCY_RATE:,.0f}/s")
    if check.missing or check.duplicated:
        misses.append("accepted webhooks missing or duplicated on the topic")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64, help="in flight, max throughput")
    parser.add_argument("--rate", type=float, default=LATENCY_RATE, help="open-loop webhooks/s")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="run webhook-ingest under cProfile on a CPU clock and write its stats to FILE",
    )
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-ingest-profiled", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare()
        return 0
    if args.serve_ingest_profiled:
        serve_ingest_profiled(args.serve_ingest_profiled)
        return 0

    gateways = {"stripe": {"default": {"api_key": "sk_test_bench", "webhook_secrets": [SECRET]}}}
    with tempfile.TemporaryDirectory(prefix="payrail-bench-ingest-") as state:
        logs = Path(state)
        broker = KafkaServer(logs, port=free_port(), partitions=PARTITIONS)
        broker.start()
        try:
            kafka_pid = int(broker.pid_file.read_text())
            env = {
                "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "PAYRAIL_GATEWAYS": json.dumps(gateways),
            }
            ingest_argv = [sys.executable, "-m", "webhook_ingest"]
            if args.profile:
                profile = str(Path(args.profile).resolve())
                ingest_argv = [sys.executable, __file__, "--serve-ingest-profiled", profile]
            bare_argv = [sys.executable, __file__, "--serve-bare"]
            with (
                server("webhook-ingest", ingest_argv, env, logs) as ingest,
                server("bare", bare_argv, {}, logs) as bare,
            ):
                pids = {"webhook-ingest": ingest.pid, "kafka": kafka_pid}
                bare_pids = {"bare": bare.pid, "kafka": kafka_pid}
                saturate = ("closed", float(args.concurrency), args.warmup, args.seconds)
                steady = ("open", args.rate, args.warmup, args.seconds)
                runs = [
                    run_load(bare, *saturate, bare_pids),
                    run_load(ingest, *saturate, pids),
                    run_load(bare, *steady, bare_pids),
                    run_load(ingest, *steady, pids),
                ]
            check = check_topic(broker.bootstrap_servers, runs)
        finally:
            broker.stop()
    misses = report(runs, check)
    for miss in misses:
        print(f"TARGET MISSED: {miss}", file=sys.stderr)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
