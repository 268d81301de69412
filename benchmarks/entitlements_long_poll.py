"""Entitlements long polls: many front ends waiting with ``?wait=`` at once, then the grants land.

    make run                                            # or any entitlements + broker + database
    uv run python benchmarks/entitlements_long_poll.py  # --url / --bootstrap / --database-url

``--waiters`` concurrent ``GET /v1/payments/{id}/access?wait=30`` requests wait on ``--payments``
payments nobody has paid yet. While they wait, the script counts the service's PostgreSQL
sessions (``pg_stat_activity``, application ``entitlements``): a design that held a connection
per waiting request would need one session per waiter. Then ``payment.succeeded`` is published
for every payment (one burst, ``acks=all``), and each request's latency is measured from the
moment the burst was acknowledged to its answer. Every answer must be ``granted``.

Exits non-zero when an answer is not ``granted`` or the waiters held more sessions than the pool.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx
import psycopg
from aiokafka import AIOKafkaProducer

from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle
from payrail.contracts.topics import PAYMENTS_LIFECYCLE
from payrail.messaging.envelope import Envelope, encode
from payrail.settings import DEFAULT_DATABASE_URL

#: the engine's pool_size + max_overflow (payrail.db.make_engine)
POOL_LIMIT = 20


def succeeded(payment_id: str, run: str) -> Envelope[PaymentLifecycle]:
    return Envelope.create(
        LifecycleEventType.SUCCEEDED.value,
        "/payrail/benchmarks",
        PaymentLifecycle(
            payment_id=payment_id,
            status="succeeded",
            amount=1999,
            currency="USD",
            user_id=f"u_{run}",
            sku="pro-monthly",
            gateway="stripe",
            occurred_at=datetime.now(UTC),
        ),
    )


def summary(millis: list[float]) -> str:
    p99 = millis[max(0, int(len(millis) * 0.99) - 1)]
    return f"p50={statistics.median(millis):.0f} ms p99={p99:.0f} ms max={millis[-1]:.0f} ms"


async def sessions(database_url: str) -> int:
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'entitlements'"
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def main(args: argparse.Namespace) -> int:
    run = uuid.uuid4().hex[:8]
    payments = [f"bench_{run}_{n}" for n in range(args.payments)]
    limits = httpx.Limits(max_connections=args.waiters + 10)
    async with httpx.AsyncClient(base_url=args.url, timeout=60, limits=limits) as http:

        async def poll(payment_id: str) -> tuple[str, float, float]:
            response = await http.get(f"/v1/payments/{payment_id}/access", params={"wait": 30})
            body = response.json()
            granted_at = datetime.fromisoformat(body["granted_at"]) if body["granted_at"] else None
            lag = (datetime.now(UTC) - granted_at).total_seconds() if granted_at else float("nan")
            return body["state"], time.perf_counter(), lag

        polls = [
            asyncio.create_task(poll(payments[n % len(payments)])) for n in range(args.waiters)
        ]
        await asyncio.sleep(args.settle)
        held = await sessions(args.database_url)
        producer = AIOKafkaProducer(
            bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            sends = []
            for payment_id in payments:
                record = encode(succeeded(payment_id, run), payment_id)
                sends.append(
                    await producer.send(
                        PAYMENTS_LIFECYCLE, record.value, key=record.key, headers=record.headers
                    )
                )
            await asyncio.gather(*sends)
            acknowledged = time.perf_counter()
        finally:
            await producer.stop()
        answers = await asyncio.gather(*polls)
    latencies = sorted((at - acknowledged) * 1000 for _, at, _ in answers)
    lags = sorted(lag * 1000 for _, _, lag in answers)
    states = {state for state, _, _ in answers}
    print(f"waiters={args.waiters} payments={args.payments} load={os.getloadavg()[0]:.2f}")
    print(f"service PostgreSQL sessions while everyone waited: {held}")
    print(f"answer after the burst was acknowledged: {summary(latencies)}")
    print(f"answer after its grant committed:        {summary(lags)}")
    print(f"states: {sorted(states)}")
    ok = states == {"granted"} and held <= POOL_LIMIT
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8003")
    parser.add_argument(
        "--bootstrap", default=os.environ.get("PAYRAIL_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("PAYRAIL_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--waiters", type=int, default=500)
    parser.add_argument("--payments", type=int, default=100)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to let polls start")
    sys.exit(asyncio.run(main(parser.parse_args())))
