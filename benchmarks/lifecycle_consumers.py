"""CPU per ``payments.lifecycle`` event of its two consumers: entitlements (the grant) and the
reconciler (its ledger projection).

Setup: a real entitlements and a real reconciler process (``python -m ...``, logging as the dev
stack runs them: INFO, console lines) on a real Kafka and PostgreSQL (the dev-stack launcher on
free ports, or ``--kafka`` / ``--database-url``), a database of their own, dropped at the end.
First, unmeasured, one ``payment.created`` per payment (what checkout announces when a payment
is created, long before its webhook).

Measured: each process's idle CPU (``/proc``: user + system, descendants included; Kafka's and
PostgreSQL's too when this script started them) over ``--idle`` seconds; then one
``payment.succeeded`` per payment is published to ``payments.lifecycle`` open loop at ``--rate``
(keyed by payment id, in small bursts as checkout's relay publishes them), and each process's
CPU is read until every payment has its grant row and its projection row; the idle share over
that wall time is subtracted. What remains is each consumer's work per event: for
entitlements the inbox row, the access change, the grant, its ``entitlement.granted`` outbox row
and the relay publishing it; for the reconciler the inbox row and the projection upsert.

A steady rate rather than a burst on purpose: at 200/s the consumers see batches of a few
records, so what a batch costs (fetch, transaction, offset commit) is part of the figure, as it
is in ``benchmarks/e2e_purchase.py``.

    uv run python benchmarks/lifecycle_consumers.py [--payments 3000] [--rate 200]

``--pids FILE`` writes the two processes' ids there once they are ready (to attach a profiler,
e.g. ``uvx py-spy record -p PID --format raw``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from checkout_create import (  # type: ignore[import-not-found]  # the sibling script
    kafka_and_database,
    wait_ready,
)
from checkout_events import wait_for  # type: ignore[import-not-found]  # the sibling script
from e2e_purchase import component_cpu  # type: ignore[import-not-found]  # the sibling script

from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle
from payrail.contracts.sources import CHECKOUT
from payrail.contracts.topics import PAYMENTS_LIFECYCLE
from payrail.devstack.paths import free_port
from payrail.messaging.envelope import Envelope, encode

SERVICES = ("entitlements", "reconciler")
#: checkout's relay publishes what committed during its 20 ms linger in one cycle
BURST_SECONDS = 0.02


def start_service(
    module: str, kafka: str, database: str, cleanup: ExitStack
) -> subprocess.Popen[bytes]:
    """``python -m module`` on a free port, ready (its /readyz answers 200); stopped by cleanup."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="payrail-bench-log-")) / f"{module}.log"
    env = {
        **os.environ,
        "PAYRAIL_HTTP_PORT": str(port),
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "PAYRAIL_DATABASE_URL": database,
        "PAYRAIL_LOG_JSON": os.environ.get("PAYRAIL_LOG_JSON", "false"),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    cleanup.callback(proc.wait, 20)
    cleanup.callback(proc.terminate)
    wait_ready(f"http://127.0.0.1:{port}", proc, log, module)
    return proc


def lifecycle(payment_id: str, kind: LifecycleEventType, status: str) -> Envelope[PaymentLifecycle]:
    payment = PaymentLifecycle(
        payment_id=payment_id,
        status=status,
        amount=1999,
        currency="USD",
        user_id=f"u_{payment_id[-6:]}",
        sku="pro-monthly",
        gateway="stripe",
        gateway_payment_id=f"pi_{payment_id}",
        occurred_at=datetime.now(UTC),
    )
    return Envelope.create(kind.value, CHECKOUT, payment, subject=payment_id)


async def publish(
    bootstrap: str, payment_ids: list[str], kind: LifecycleEventType, status: str, rate: float
) -> None:
    """One ``kind`` event per payment, open loop at ``rate`` (0: as fast as possible)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    await producer.start()
    try:
        pending = []
        started = time.monotonic()
        per_burst = max(1, round(rate * BURST_SECONDS)) if rate else len(payment_ids)
        for first in range(0, len(payment_ids), per_burst):
            if rate:
                delay = started + first / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            for payment_id in payment_ids[first : first + per_burst]:
                record = encode(lifecycle(payment_id, kind, status), payment_id)
                pending.append(
                    await producer.send(
                        PAYMENTS_LIFECYCLE, record.value, key=record.key, headers=record.headers
                    )
                )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--payments", type=int, default=3000, help="payments (events measured)")
    parser.add_argument("--rate", type=float, default=200.0, help="succeeded events per second")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU baseline")
    parser.add_argument("--pids", type=Path, help="write the processes' ids here when ready")
    parser.add_argument("--kafka", default=os.environ.get("PAYRAIL_TEST_KAFKA_BOOTSTRAP"))
    parser.add_argument("--database-url", default=os.environ.get("PAYRAIL_TEST_DATABASE_URL"))
    args = parser.parse_args()
    count: int = args.payments
    run = uuid.uuid4().hex[:8]
    payment_ids = [f"pay_{run}{n:06d}" for n in range(count)]

    with ExitStack() as cleanup:
        kafka, database = kafka_and_database(args.kafka, args.database_url, cleanup)
        procs = {name: start_service(name, kafka, database, cleanup) for name in SERVICES}
        if args.pids:
            args.pids.write_text("".join(f"{n} {p.pid}\n" for n, p in procs.items()))

        asyncio.run(publish(kafka, payment_ids, LifecycleEventType.CREATED, "pending", 0))
        access = "SELECT count(*) FROM entitlements.payment_access"
        projected = "SELECT count(*) FROM reconciler.payments"
        for query in (access, projected):
            wait_for(database, query, count, 300)

        before = component_cpu()
        wall_before = time.monotonic()
        time.sleep(args.idle)
        idle_wall = time.monotonic() - wall_before
        idle = {n: (used - before.get(n, 0.0)) / idle_wall for n, used in component_cpu().items()}

        before = component_cpu()
        started = time.monotonic()
        asyncio.run(
            publish(kafka, payment_ids, LifecycleEventType.SUCCEEDED, "succeeded", args.rate)
        )
        granted = "SELECT count(*) FROM entitlements.grants"
        succeeded = "SELECT count(*) FROM reconciler.payments WHERE status = 'succeeded'"
        done = max(wait_for(database, query, count, 600) for query in (granted, succeeded))
        wall = time.monotonic() - started
        cpu = {
            n: used - before.get(n, 0.0) - idle.get(n, 0.0) * wall
            for n, used in component_cpu().items()
        }
        load = os.getloadavg()

    print(f"{count} payment.succeeded at {args.rate:g}/s, all applied in {done - started:.1f} s")
    for name, used in sorted(cpu.items(), key=lambda item: -item[1]):
        print(
            f"{name:15} {used / count * 1000:5.2f} ms CPU/event"
            f"  (idle {idle.get(name, 0.0) * 1000:.1f} ms/s subtracted)"
        )
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
