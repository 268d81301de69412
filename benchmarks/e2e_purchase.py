"""End to end: from a webhook accepted (ingest's 2xx) to the access granted, at a sustained rate.

    uv run python benchmarks/e2e_purchase.py                      # 200 payments/s for 60 s
    uv run python benchmarks/e2e_purchase.py --rate 200 --seconds 10   # a short run first

The whole platform runs on this machine exactly as ``make run`` starts it (the dev-stack launcher,
:class:`payrail.devstack.stack.DevStack`, on free ports and a temporary state folder): Kafka,
PostgreSQL, localstripe and the four services as their own processes.

Method:

1. **Payments** - ``rate * seconds`` payments are created through checkout's API beforehand
   (``POST /v1/payments`` with an ``Idempotency-Key``; checkout records each and opens its
   PaymentIntent at localstripe). Not measured.
2. **Webhooks** - then, open loop, payment n's ``payment_intent.succeeded`` webhook is due at
   ``t0 + n / rate`` whatever happened before (no coordinated omission). Each is the Stripe event
   for that payment's real PaymentIntent, signed at send time with the stack's webhook secret in
   Stripe's scheme (``Stripe-Signature: t=...,v1=HMAC-SHA256``) and POSTed to webhook-ingest,
   which verifies it and answers 2xx once Kafka has it. The webhooks are crafted rather than
   sent by localstripe so the gateway emulator (one Python process, a 1 s delay before each
   delivery) is not what is measured; ingest sees exactly what Stripe would send.
3. **Grants** - a group-less consumer reads ``entitlements.events`` (what a downstream service
   sees); a payment's latency is the time from its webhook's 2xx to its ``entitlement.granted``
   arriving there: ingest -> ``payments.gateway-events`` -> checkout (inbox, state machine,
   outbox) -> relay -> ``payments.lifecycle`` -> entitlements (inbox, grant, outbox) -> relay ->
   ``entitlements.events``.
4. **CPU** - each component's CPU (``/proc``: user + system of its process and descendants,
   PostgreSQL's backends included) from the first webhook sent to the last grant seen, per
   webhook: where a purchase's CPU goes, which bounds the rate the machine can sustain.
5. **Exactly once** - afterwards, every payment must have exactly one grant row in
   entitlements' table and exactly one announced grant (one ``ce_id``) on the topic.

The janitor's first status sync is moved past the run (``PAYRAIL_JANITOR_SCHEDULE``, unless set
already): the payments are all created before the first webhook, so with the default schedule
(first sync after 60 s) checkout would sync every still-pending payment with localstripe during
the measured minute - 200 extra syncs/s of a backlog that a steady stream of purchases, paid
within a minute of their creation, does not have. ``--janitor-default`` keeps the default.

Prints p50/p90/p99/max, the achieved rate and the machine's load; exits non-zero when p99 is
500 ms or more, or a grant is lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import stripe
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from payrail.contracts.topics import ENTITLEMENTS_EVENTS
from payrail.devstack.paths import free_port
from payrail.devstack.stack import SERVICES, DevStack, StackConfig, webhook_secret

P99_TARGET_MS = 500.0
PREPARE_CONCURRENCY = 32
#: the janitor schedule of the run: its first sync comes after the run has ended
JANITOR_AFTER_THE_RUN = "3600,7200,86400"


@dataclass
class Timings:
    accepted: dict[str, float] = field(default_factory=dict)  # payment id -> 2xx time
    granted: dict[str, float] = field(default_factory=dict)  # payment id -> first grant seen
    announced: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    refused: int = 0
    send_late_ms: list[float] = field(default_factory=list)
    #: set by the sender when done: how many grants to wait for; the watcher sets ``complete``
    expected: int | None = None
    complete: asyncio.Event = field(default_factory=asyncio.Event)


async def create_payments(checkout: str, count: int, run: str) -> list[dict[str, Any]]:
    """``count`` payments through checkout's API, ``PREPARE_CONCURRENCY`` at a time."""
    created: list[dict[str, Any]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            body = {
                "amount": 1999,
                "currency": "USD",
                "user_id": f"u_{run}_{n % 500}",
                "sku": "pro-monthly",
                "gateway": "stripe",
            }
            response = await http.post(
                "/v1/payments", json=body, headers={"Idempotency-Key": f"{run}-{n}"}
            )
            if response.status_code != 201:
                raise RuntimeError(f"create failed: {response.status_code} {response.text}")
            created.append(response.json())
            if len(created) % 1000 == 0:
                print(f"  {len(created)}/{count} payments created", flush=True)

    async with httpx.AsyncClient(base_url=checkout, timeout=60) as http:
        await asyncio.gather(*(worker(http) for _ in range(PREPARE_CONCURRENCY)))
    return created


def webhook(payment: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    """Stripe's ``payment_intent.succeeded`` for the payment, signed now."""
    event = {
        "id": f"evt_{payment['id']}",
        "object": "event",
        "api_version": "2024-06-20",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "livemode": False,
        "data": {
            "object": {
                "id": payment["gateway_payment_id"],
                "object": "payment_intent",
                "amount": payment["amount"],
                "amount_received": payment["amount"],
                "currency": payment["currency"].lower(),
                "status": "succeeded",
                "metadata": {"payrail_payment_id": payment["id"]},
            }
        },
    }
    body = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=int(time.time())
    )
    return body.encode(), {"Stripe-Signature": signature, "Content-Type": "application/json"}


async def send_webhooks(
    ingest: str, payments: list[dict[str, Any]], secret: str, rate: float, timings: Timings
) -> float:
    """Open loop: webhook n is sent at t0 + n/rate; returns the achieved sending rate.

    The webhooks are signed just before t0 (well inside Stripe's 5-minute tolerance) so the
    sender spends its time sending."""
    signed = [(payment["id"], *webhook(payment, secret)) for payment in payments]
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(ingest, connector=connector) as http:

        async def one(payment_id: str, body: bytes, headers: dict[str, str]) -> None:
            async with http.post("/webhooks/stripe", data=body, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    timings.accepted[payment_id] = time.monotonic()
                else:
                    timings.refused += 1

        tasks = []
        t0 = time.monotonic()
        for n, delivery in enumerate(signed):
            delay = t0 + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.01:
                timings.send_late_ms.append(-delay * 1000)
            tasks.append(asyncio.create_task(one(*delivery)))
        achieved = len(signed) / max(time.monotonic() - t0, 1e-9) if len(signed) > 1 else rate
        await asyncio.gather(*tasks)
        return achieved


async def watch_grants(
    bootstrap: str, marks: dict[TopicPartition, int], timings: Timings, stop: asyncio.Event
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        consumer.assign(list(marks))
        for tp, offset in marks.items():
            consumer.seek(tp, offset)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    headers = {k: v.decode() for k, v in record.headers}
                    if headers.get("ce_type") != "entitlement.granted" or record.value is None:
                        continue
                    payment_id = json.loads(record.value)["payment_id"]
                    timings.granted.setdefault(payment_id, now)
                    timings.announced[payment_id].add(headers["ce_id"])
            if timings.expected is not None and len(timings.granted) >= timings.expected:
                timings.complete.set()
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """Where ``topic``'s partitions end now: grants before the run are not counted."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def grant_rows(database_url: str, payment_ids: list[str]) -> dict[str, int]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT payment_id, count(*) FROM entitlements.grants"
                    " WHERE payment_id = ANY(:ids) GROUP BY payment_id"
                ),
                {"ids": payment_ids},
            )
            return {str(p): int(n) for p, n in rows.all()}
    finally:
        await engine.dispose()


def component_cpu() -> dict[str, float]:
    """CPU seconds (user + system) so far of each component this script started, by name.

    A component is a child process of this script and all its descendants (PostgreSQL's
    backends, for one), named by the child's command line; this script itself is the load
    generator.
    """
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            parent[int(proc.name)] = int(fields[1])
            # its own time and that of its children that ended (a closed PostgreSQL backend)
            cpu[int(proc.name)] = sum(int(f) for f in fields[11:15]) / tick
    children: defaultdict[int, list[int]] = defaultdict(list)
    for pid, ppid in parent.items():
        children[ppid].append(pid)
    totals: dict[str, float] = {"load generator": time.process_time()}
    for child in children[os.getpid()]:
        with contextlib.suppress(OSError):
            name = _component((Path("/proc") / str(child) / "cmdline").read_bytes().split(b"\0"))
            tree, used = [child], 0.0
            while tree:
                pid = tree.pop()
                used += cpu.get(pid, 0.0)
                tree += children[pid]
            totals[name] = totals.get(name, 0.0) + used
    return totals


def _component(argv: list[bytes]) -> str:
    words = [a.decode(errors="replace") for a in argv if a]
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1].rsplit(".", 1)[-1].replace("_", "-")
    if any("kafka" in w for w in words):
        return "kafka"
    if words and words[0].endswith("postgres"):
        return "postgresql"
    return Path(words[0]).name if words else "?"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def measure(stack: DevStack, args: argparse.Namespace) -> int:
    run = f"b{int(time.time())}"
    count = int(args.rate * args.seconds)
    print(f"creating {count} payments through checkout...", flush=True)
    started = time.monotonic()
    payments = await create_payments(stack.service_url("checkout"), count, run)
    print(f"  done in {time.monotonic() - started:.1f} s", flush=True)

    timings = Timings()
    stop = asyncio.Event()
    marks = await end_offsets(stack.kafka_bootstrap, ENTITLEMENTS_EVENTS)
    watcher = asyncio.create_task(watch_grants(stack.kafka_bootstrap, marks, timings, stop))
    secret = webhook_secret(stack.config.state_dir).get_secret_value()
    print(f"sending {count} webhooks at {args.rate:g}/s for {args.seconds:g} s...", flush=True)
    load_before = os.getloadavg()
    cpu_before = component_cpu()
    achieved = await send_webhooks(
        stack.service_url("webhook-ingest"), payments, secret, args.rate, timings
    )
    timings.expected = len(timings.accepted)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(timings.complete.wait(), args.drain)
    cpu = {name: used - cpu_before.get(name, 0.0) for name, used in component_cpu().items()}
    await asyncio.sleep(2)  # late duplicates, if any, are counted too
    stop.set()
    await watcher
    load_after = os.getloadavg()

    ids = [p["id"] for p in payments]
    rows = await grant_rows(stack.database_url, ids)
    latencies = [
        (timings.granted[p] - timings.accepted[p]) * 1000
        for p in ids
        if p in timings.granted and p in timings.accepted
    ]
    lost = [p for p in ids if rows.get(p, 0) == 0]
    duplicated = [p for p in ids if rows.get(p, 0) > 1 or len(timings.announced[p]) > 1]
    unannounced = [p for p in ids if p not in timings.granted]
    print()
    print(
        f"payments: {count}; webhooks accepted {len(timings.accepted)}, refused {timings.refused}"
    )
    print(f"achieved send rate: {achieved:.1f}/s (target {args.rate:g}/s)")
    if timings.send_late_ms:
        late = timings.send_late_ms
        print(f"sender behind schedule (>10 ms): {len(late)} sends, max {max(late):.0f} ms")
    if latencies:
        print(
            "webhook accepted -> entitlement.granted (ms): "
            f"p50 {percentile(latencies, 50):.0f}, p90 {percentile(latencies, 90):.0f}, "
            f"p99 {percentile(latencies, 99):.0f}, max {max(latencies):.0f}, "
            f"mean {statistics.fmean(latencies):.0f}"
        )
    print(f"grant rows: {sum(rows.values())}; lost {len(lost)}, duplicated {len(duplicated)}")
    print(f"announced on {ENTITLEMENTS_EVENTS}: {len(timings.granted)}; missing {len(unannounced)}")
    if timings.accepted:
        print("CPU per webhook, from the first send to the last grant (ms):")
        for name, used in sorted(cpu.items(), key=lambda item: -item[1]):
            print(f"  {name:16} {used / len(timings.accepted) * 1000:6.2f}")
        print(f"  {'total':16} {sum(cpu.values()) / len(timings.accepted) * 1000:6.2f}")
    before, after = (" ".join(f"{x:.2f}" for x in load) for load in (load_before, load_after))
    print(f"load average (1/5/15 min) before: {before}; after: {after}")
    ok = bool(latencies) and percentile(latencies, 99) < P99_TARGET_MS
    return 0 if ok and not lost and not duplicated and not unannounced else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=200.0, help="webhooks (payments) per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the rate is held")
    parser.add_argument(
        "--drain", type=float, default=120.0, help="seconds to wait for the last grants"
    )
    parser.add_argument(
        "--janitor-default",
        action="store_true",
        help="keep the janitor's default schedule (it then syncs the pre-created backlog)",
    )
    args = parser.parse_args()
    if not args.janitor_default:
        os.environ.setdefault("PAYRAIL_JANITOR_SCHEDULE", JANITOR_AFTER_THE_RUN)
    print(f"janitor schedule: {os.environ.get('PAYRAIL_JANITOR_SCHEDULE', 'default')}")

    with tempfile.TemporaryDirectory(prefix="payrail-e2e-bench-") as state:
        config = StackConfig(
            state_dir=Path(state),
            kafka_port=free_port(),
            postgres_port=free_port(),
            localstripe_port=free_port(),
            service_ports={s.name: free_port() for s in SERVICES},
        )
        stack = DevStack(config)
        print("starting the stack (Kafka, PostgreSQL, localstripe, four services)...", flush=True)
        try:
            stack.start()
            return asyncio.run(measure(stack, args))
        finally:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
