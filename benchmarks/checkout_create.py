"""payrail's own overhead on ``POST /v1/payments``: the time a create takes outside the gateway.

Setup: a real checkout process (``python -m checkout``) on a real Kafka and PostgreSQL, its
Stripe account's ``api_base`` pointed at a fake Stripe (an aiohttp server in its own process)
that answers ``POST /v1/payment_intents`` at once with a PaymentIntent shaped like Stripe's
(``id``, ``object``, ``amount``, ``currency``, ``status: requires_payment_method``,
``client_secret``, ``metadata``...) and ``GET /v1/payment_intents/{id}`` for the janitor.

Load: open loop at a steady ``--rate`` (default 200/s) for ``--seconds`` (default 45) after a
``--warmup``: request ``i`` is due at ``t0 + i / rate`` and sent then whether or not earlier ones
returned, and its latency is measured from that *scheduled* time, so a stall counts against every
request queued behind it (no coordinated omission).

Overhead per request = latency from the scheduled send - the time the gateway spent on that
request's create. The fake measures the latter itself (from reading the request to handing over
the answer, ``time.monotonic`` - one clock for every process on the host) and keys it by the
``payrail_payment_id`` checkout put in the metadata; the benchmark fetches those at the end and
matches them to each response's ``id``. Everything else - FastAPI, the Idempotency-Key claim,
the two transactions, the outbox row, the stripe SDK and its loopback HTTP round trip - is
payrail's. Target: p99 overhead < 25 ms.

CPU per request (robust to a loaded machine, unlike latency): before the rated runs, checkout's
user + system CPU (``/proc/<pid>/stat``, the whole process: API, relay, consumers, janitor) is
read around ``--cpu-requests`` requests sent one after another and again around as many with
``--concurrency`` in flight; the process's idle CPU over the same wall time (measured first, with
no requests) is subtracted, so what remains is what the requests cost, including the relay's
publishing of the outbox rows they staged.

Kafka and PostgreSQL: ``--kafka`` / ``--database-url`` (or ``PAYRAIL_TEST_KAFKA_BOOTSTRAP`` /
``PAYRAIL_TEST_DATABASE_URL``), else the dev-stack launcher starts both on free ports; the run
gets a database of its own on that server, dropped at the end.

    uv run python benchmarks/checkout_create.py [--rate 200 [--rate 50 ...]] [--seconds 45]
        [--cpu-requests 500] [--concurrency 20] [--profile FILE]

``--profile`` runs checkout under cProfile with a CPU clock (``time.process_time``: time spent
waiting for a core on a busy host does not count). Exits 1 when the target is missed at any rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp import web
from sqlalchemy import create_engine, make_url, text

from payrail.devstack.paths import free_port
from payrail.devstack.stack import DevStack, StackConfig

P99_TARGET_MS = 25.0
API_KEY = "sk_test_payrail_benchmark"

#: checkout under cProfile, stats written when it stops (``python -m cProfile`` writes nothing:
#: uvicorn re-raises the SIGTERM it handled, which would end the process before the dump)
PROFILED = """
import cProfile, runpy, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
profile = cProfile.Profile(time.process_time)
profile.enable()
try:
    runpy.run_module("checkout", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profile.disable()
    profile.dump_stats(sys.argv[1])
"""

# --- the fake gateway ------------------------------------------------------------------------


def _intent(form: dict[str, str]) -> dict[str, Any]:
    """A PaymentIntent as Stripe returns it from create (the fields the SDK and payrail read)."""
    intent_id = f"pi_{uuid.uuid4().hex[:24]}"
    metadata = {
        key[len("metadata[") : -1]: value
        for key, value in form.items()
        if key.startswith("metadata[")
    }
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": int(form["amount"]),
        "amount_capturable": 0,
        "amount_received": 0,
        "capture_method": "automatic",
        "client_secret": f"{intent_id}_secret_{uuid.uuid4().hex[:24]}",
        "confirmation_method": "automatic",
        "created": int(time.time()),
        "currency": form["currency"],
        "latest_charge": None,
        "last_payment_error": None,
        "livemode": False,
        "metadata": metadata,
        "payment_method": None,
        "payment_method_types": ["card"],
        "status": "requires_payment_method",
    }


def run_fake_gateway(port: int, ready: EventType) -> None:
    """The fake Stripe: create and retrieve PaymentIntents; ``GET /__timings`` reports, per
    payrail payment id, the seconds it spent on that create."""
    intents: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}

    async def create(request: web.Request) -> web.Response:
        started = time.monotonic()
        form = await request.post()
        intent = _intent({key: str(value) for key, value in form.items()})
        intents[intent["id"]] = intent
        body = json.dumps(intent).encode()
        timings[intent["metadata"].get("payrail_payment_id", intent["id"])] = (
            time.monotonic() - started
        )
        return web.Response(body=body, content_type="application/json")

    async def retrieve(request: web.Request) -> web.Response:
        intent = intents.get(request.match_info["intent"])
        if intent is None:
            error = {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
            return web.json_response(error, status=404)
        return web.json_response(intent)

    async def report(_: web.Request) -> web.Response:
        return web.json_response(timings)

    app = web.Application()
    app.add_routes(
        [
            web.post("/v1/payment_intents", create),
            web.get("/v1/payment_intents/{intent}", retrieve),
            web.get("/__timings", report),
        ]
    )

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(serve())


# --- the load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    latency: float  # seconds from the scheduled send to the full answer
    status: int
    payment_id: str | None


def _payload(n: int) -> dict[str, Any]:
    return {
        "amount": 1999,
        "currency": "USD",
        "user_id": f"u_{n % 997}",
        "sku": "pro-monthly",
        "gateway": "stripe",
    }


async def send(session: aiohttp.ClientSession, url: str, due: float, n: int, tag: str) -> Sample:
    delay = due - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    headers = {"Idempotency-Key": f"bench-{tag}-{n}"}
    try:
        async with session.post(
            f"{url}/v1/payments", json=_payload(n), headers=headers
        ) as response:
            body = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        return Sample(time.monotonic() - due, 0, None)
    latency = time.monotonic() - due
    payment_id = json.loads(body).get("id") if status in (201, 202) else None
    return Sample(latency, status, payment_id)


async def load(urls: list[str], rate: float, seconds: float, tag: str) -> list[Sample]:
    """Open loop at ``rate``; request n goes to ``urls[n % len(urls)]`` (round robin, as a load
    balancer in front of several checkout instances would)."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic() + 0.2
        count = int(rate * seconds)
        tasks = [
            asyncio.create_task(send(session, urls[n % len(urls)], start + n / rate, n, tag))
            for n in range(count)
        ]
        return list(await asyncio.gather(*tasks))


async def closed_loop(url: str, requests: int, concurrency: int, tag: str) -> list[Sample]:
    """``requests`` creates, ``concurrency`` at a time (each worker sends its next on an answer)."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    numbers = iter(range(requests))
    samples: list[Sample] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        for n in numbers:
            samples.append(await send(session, url, time.monotonic(), n, tag))

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return samples


@dataclass(frozen=True)
class CpuFigure:
    label: str
    requests: int
    answered: int
    wall: float  # seconds
    cpu: float  # seconds of checkout's CPU, idle share subtracted

    def line(self) -> str:
        return (
            f"{self.label:22} {self.cpu / self.requests * 1000:6.2f} ms CPU/request"
            f"  ({self.answered}/{self.requests} answered in {self.wall:.1f} s,"
            f" {self.requests / self.wall:.0f} req/s)"
        )


def measure_cpu(
    url: str, pid: int, requests: int, concurrency: int, idle_per_second: float, tag: str
) -> CpuFigure:
    """Checkout's CPU for ``requests`` creates, ``concurrency`` in flight, idle share removed."""
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    samples = asyncio.run(closed_loop(url, requests, concurrency, tag))
    wall = time.monotonic() - wall_before
    cpu = cpu_seconds(pid) - cpu_before - idle_per_second * wall
    answered = sum(1 for s in samples if s.status in (201, 202))
    label = "sequential" if concurrency == 1 else f"{concurrency} concurrent"
    return CpuFigure(label, requests, answered, wall, cpu)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the run ---------------------------------------------------------------------------------


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, name: str = "checkout") -> None:
    """Until the service ``proc`` at ``url`` answers ``/readyz`` (its log's tail if it dies)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{name} not ready:\n{log.read_text()[-3000:]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fresh_database(url: str, cleanup: ExitStack) -> str:
    """A new database on ``url``'s server (checkout migrates it at start), dropped afterwards."""
    name = f"bench_checkout_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    cleanup.callback(drop)
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def kafka_and_database(
    kafka: str | None, database: str | None, cleanup: ExitStack
) -> tuple[str, str]:
    """The given Kafka and PostgreSQL, else a private pair from the launcher; and a fresh
    database in it (stopped and removed by ``cleanup``)."""
    if not kafka or not database:
        state = Path(tempfile.mkdtemp(prefix="payrail-bench-"))
        cleanup.callback(shutil.rmtree, state, ignore_errors=True)
        stack = DevStack(
            StackConfig(
                state_dir=state,
                kafka_port=free_port(),
                postgres_port=free_port(),
                components=frozenset({"kafka", "postgres"}),
            )
        )
        cleanup.callback(stack.stop)
        stack.start()
        kafka, database = stack.kafka_bootstrap, stack.database_url
    return kafka, fresh_database(database, cleanup)


def start_fake_gateway(cleanup: ExitStack) -> str:
    """The fake Stripe in its own process; its base URL."""
    port = free_port()
    ready = mp.get_context("spawn").Event()
    fake = mp.get_context("spawn").Process(target=run_fake_gateway, args=(port, ready), daemon=True)
    fake.start()
    cleanup.callback(fake.terminate)
    if not ready.wait(30):
        raise SystemExit("the fake gateway did not start")
    return f"http://127.0.0.1:{port}"


def start_checkout(
    kafka: str, database: str, gateway: str, profile: Path | None, cleanup: ExitStack
) -> tuple[str, subprocess.Popen[bytes]]:
    """checkout as its own process against the fake Stripe (under cProfile with ``profile``),
    ready; its URL and process (stopped by ``cleanup``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="payrail-bench-log-")) / "checkout.log"
    accounts = {"stripe": {"default": {"api_key": API_KEY, "api_base": gateway}}}
    env = {
        **os.environ,
        "PAYRAIL_HTTP_PORT": str(port),
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "PAYRAIL_DATABASE_URL": database,
        "PAYRAIL_GATEWAYS": json.dumps(accounts),
        "PAYRAIL_LOG_LEVEL": "WARNING",
        # the fake sends no webhooks, so every payment would stay pending and be synced by
        # the janitor a minute later - work a real payment (final by then) does not cause
        "PAYRAIL_JANITOR_SCHEDULE": "86400",
    }
    with log.open("wb") as out:
        command = ["-c", PROFILED, str(profile)] if profile else ["-m", "checkout"]
        proc = subprocess.Popen(
            [sys.executable, *command], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    cleanup.callback(proc.wait, 15)
    cleanup.callback(proc.terminate)
    wait_ready(url, proc, log)
    return url, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        help="requests per second (repeatable: one run per rate; default 200)",
    )
    parser.add_argument("--seconds", type=float, default=45.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument(
        "--cpu-requests", type=int, default=500, help="creates per CPU measurement (0: skip)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=20, help="requests in flight in the concurrent one"
    )
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU baseline")
    parser.add_argument(
        "--profile", type=Path, help="run checkout under cProfile (CPU clock), write stats here"
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="checkout processes sharing the database, requests spread round robin (the rated"
        " runs; the CPU measurement uses the first)",
    )
    parser.add_argument("--kafka", default=os.environ.get("PAYRAIL_TEST_KAFKA_BOOTSTRAP"))
    parser.add_argument("--database-url", default=os.environ.get("PAYRAIL_TEST_DATABASE_URL"))
    args = parser.parse_args()
    rates: list[float] = args.rate or [200.0]

    with ExitStack() as cleanup:
        kafka, database = kafka_and_database(args.kafka, args.database_url, cleanup)
        gateway = start_fake_gateway(cleanup)

        started = [
            start_checkout(kafka, database, gateway, args.profile, cleanup)
            for _ in range(args.instances)
        ]
        url, proc = started[0]
        urls = [u for u, _ in started]
        pids = [p.pid for _, p in started]

        tag = uuid.uuid4().hex[:8]
        asyncio.run(load(urls, 20, args.warmup, f"{tag}w"))
        figures: list[CpuFigure] = []
        idle_per_second = 0.0
        if args.cpu_requests > 0:
            cpu_before, wall_before = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.idle)
            idle_per_second = (cpu_seconds(proc.pid) - cpu_before) / (
                time.monotonic() - wall_before
            )
            for concurrency in (1, args.concurrency):
                figures.append(
                    measure_cpu(
                        url,
                        proc.pid,
                        args.cpu_requests,
                        concurrency,
                        idle_per_second,
                        f"{tag}c{concurrency}",
                    )
                )
        runs: list[tuple[float, list[Sample], float, tuple[float, float, float]]] = []
        for run, rate in enumerate(rates):  # keys unique per run: a repeated rate is not a replay
            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            samples = asyncio.run(load(urls, rate, args.seconds, f"{tag}r{run}-{rate:g}"))
            cpu_per_request = (sum(cpu_seconds(pid) for pid in pids) - cpu_before) / len(samples)
            runs.append((rate, samples, cpu_per_request, os.getloadavg()))
        gateway_time: dict[str, float] = httpx.get(f"{gateway}/__timings", timeout=30).json()

    print(f"checkout POST /v1/payments ({args.instances} instance(s) in the rated runs)")
    if figures:
        print(f"checkout idle CPU: {idle_per_second * 1000:.1f} ms/s (subtracted below)")
        for figure in figures:
            print(figure.line())
    met = True
    for rate, samples, cpu_per_request, load_avg in runs:
        met = report(rate, args.seconds, samples, cpu_per_request, load_avg, gateway_time) and met
    return 0 if met else 1


def report(
    rate: float,
    seconds: float,
    samples: list[Sample],
    cpu_per_request: float,
    load_avg: tuple[float, float, float],
    gateway_time: dict[str, float],
) -> bool:
    """Print one rate's figures; whether the target was met."""
    ok = [s for s in samples if s.status in (201, 202) and s.payment_id in gateway_time]
    failed = len(samples) - len(ok)
    latency = [s.latency * 1000 for s in ok]
    inside = [gateway_time[s.payment_id] * 1000 for s in ok if s.payment_id is not None]
    overhead = [total - spent for total, spent in zip(latency, inside, strict=True)]
    print(f"\nopen loop {rate:g}/s for {seconds:g} s")
    statuses = Counter(s.status for s in samples)
    print(f"requests: {len(samples)}, answered 201/202: {len(ok)}, other/failed: {failed}")
    print("statuses (0: no answer):", dict(sorted(statuses.items())))
    if not ok:
        return False
    for name, values in (("latency", latency), ("gateway", inside), ("overhead", overhead)):
        print(
            f"{name:9} p50 {percentile(values, 0.5):7.2f} ms  p90 {percentile(values, 0.9):7.2f} ms"
            f"  p99 {percentile(values, 0.99):7.2f} ms  max {max(values):7.2f} ms"
            f"  mean {statistics.fmean(values):7.2f} ms"
        )
    print(f"checkout CPU per request: {cpu_per_request * 1000:.2f} ms (user + system, idle incl.)")
    print(f"load average: {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}")
    p99 = percentile(overhead, 0.99)
    met = p99 < P99_TARGET_MS and failed == 0
    print(f"target p99 overhead < {P99_TARGET_MS:g} ms: {'met' if met else 'MISSED'}")
    return met


if __name__ == "__main__":
    sys.exit(main())
