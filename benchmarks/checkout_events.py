"""checkout's CPU per applied gateway event (the ``payments.gateway-events`` inbox consumer).

Setup: as ``benchmarks/checkout_create.py`` (whose fake Stripe and helpers this reuses): a real
checkout process on a real Kafka and PostgreSQL (the dev-stack launcher on free ports, or
``--kafka`` / ``--database-url``), a database of its own, dropped at the end. ``--payments``
payments are created through ``POST /v1/payments`` and left until the gateway-call executor has
made each one's create call (every payment has its ``gateway_payment_id``).

Measured: checkout's idle CPU (``/proc/<pid>/stat`` user + system) over ``--idle`` seconds, then
one ``gateway.payment.succeeded`` envelope per payment is published to
``payments.gateway-events`` (keyed by payment id, as webhook-ingest does) and checkout's CPU is
read until every payment is ``succeeded``; the idle share over that wall time is subtracted.
What remains is the consumer's work per event: inbox row, lock, merge, timeline, save and the
``payments.lifecycle`` outbox row, plus the relay publishing it.

    uv run python benchmarks/checkout_events.py [--payments 2000] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from checkout_create import (  # type: ignore[import-not-found]  # the sibling script
    closed_loop,
    cpu_seconds,
    kafka_and_database,
    start_checkout,
    start_fake_gateway,
)
from sqlalchemy import create_engine, text

from payrail.contracts.topics import PAYMENTS_GATEWAY_EVENTS
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.messaging.envelope import Envelope, encode


def wait_for(database: str, query: str, want: int, timeout: float) -> float:
    """Poll ``query`` (a count) until it reaches ``want``; the monotonic time it did."""
    engine = create_engine(database)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(text(query)).scalar_one() >= want:
                    return time.monotonic()
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise SystemExit(f"timed out waiting for {query!r} to reach {want}")


def created(database: str) -> list[tuple[str, str, int]]:
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, gateway_payment_id, amount FROM checkout.payments")
            ).all()
    finally:
        engine.dispose()
    return [(row[0], row[1], int(row[2])) for row in rows]


async def publish(bootstrap: str, payments: list[tuple[str, str, int]]) -> None:
    """One ``gateway.payment.succeeded`` per payment, shaped as webhook-ingest publishes it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        pending = []
        for payment_id, gateway_payment_id, amount in payments:
            event = GatewayEvent(
                gateway="stripe",
                gateway_event_id=f"evt_{uuid.uuid4().hex[:24]}",
                kind=GatewayEventKind.PAYMENT_SUCCEEDED,
                payment_id=payment_id,
                gateway_payment_id=gateway_payment_id,
                amount=amount,
                currency="USD",
                occurred_at=datetime.now(UTC),
            )
            envelope = Envelope.create(
                "gateway.payment.succeeded",
                "/payrail/webhook-ingest/stripe",
                event,
                id=event.ce_id,
                subject=payment_id,
                time=event.occurred_at,
            )
            record = encode(envelope, event.partition_key)
            pending.append(
                await producer.send(
                    PAYMENTS_GATEWAY_EVENTS, record.value, key=record.key, headers=record.headers
                )
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--payments", type=int, default=2000, help="payments (and events)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU baseline")
    parser.add_argument(
        "--profile", type=Path, help="run checkout under cProfile (CPU clock), write stats here"
    )
    parser.add_argument("--kafka", default=os.environ.get("PAYRAIL_TEST_KAFKA_BOOTSTRAP"))
    parser.add_argument("--database-url", default=os.environ.get("PAYRAIL_TEST_DATABASE_URL"))
    args = parser.parse_args()
    count: int = args.payments

    with ExitStack() as cleanup:
        kafka, database = kafka_and_database(args.kafka, args.database_url, cleanup)
        gateway = start_fake_gateway(cleanup)

        url, proc = start_checkout(kafka, database, gateway, args.profile, cleanup)

        asyncio.run(closed_loop(url, count, 20, uuid.uuid4().hex[:8]))
        wait_for(
            database,
            "SELECT count(*) FROM checkout.payments WHERE gateway_payment_id IS NOT NULL",
            count,
            300,
        )
        payments = created(database)

        cpu_before, wall_before = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.idle)
        idle_per_second = (cpu_seconds(proc.pid) - cpu_before) / (time.monotonic() - wall_before)

        cpu_before, started = cpu_seconds(proc.pid), time.monotonic()
        asyncio.run(publish(kafka, payments))
        succeeded = "SELECT count(*) FROM checkout.payments WHERE status = 'succeeded'"
        done = wait_for(database, succeeded, count, 600)
        wall = done - started
        cpu = cpu_seconds(proc.pid) - cpu_before - idle_per_second * (time.monotonic() - started)
        load = os.getloadavg()

    print("checkout payments.gateway-events consumer")
    print(f"checkout idle CPU: {idle_per_second * 1000:.1f} ms/s (subtracted)")
    print(
        f"{len(payments)} gateway.payment.succeeded applied in {wall:.1f} s"
        f" ({len(payments) / wall:.0f}/s): {cpu / len(payments) * 1000:.2f} ms CPU/event"
    )
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
