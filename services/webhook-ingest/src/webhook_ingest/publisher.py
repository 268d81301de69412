"""Hand verified gateway events to Kafka and say whether the broker really holds them.

webhook-ingest has no database: Kafka is its store. So "stored" means "acknowledged by the
broker with acks=all" (idempotent producer, so a retried send cannot duplicate within a
session), and only then may the gateway get its 2xx. Anything short of that - the broker is
down, slow past the deadline, or refuses - is :class:`BrokerUnavailable` and becomes a 503 that
makes the gateway retry. A send that timed out may still land later; the retry then carries the
same ``ce_id`` and consumers deduplicate it.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from payrail.contracts import PAYMENTS_GATEWAY_EVENTS, gateway_event_type
from payrail.contracts.sources import webhook_ingest
from payrail.gateways.events import GatewayEvent
from payrail.messaging.envelope import Envelope, encode

# aiokafka keeps one request in flight per broker, so while it waits for an ack the next batch of
# a partition fills up. At its default 16 KiB that is about eight envelopes: every further send
# then waits for the batch to drain, and a drain wakes every waiting sender at once to retry
# (about 19 wake-ups per webhook at 64 in flight, each resuming the whole ASGI call stack; a
# third of the request's CPU in cProfile). 512 KiB holds what hundreds of concurrent webhooks
# send; it stays below the broker's default 1 MiB message.max.bytes.
BATCH_BYTES = 512 * 1024
# At a steady rate the batches stay small: with 1 ms each webhook went out in its own produce
# request, and a request's CPU (here and in the broker) dwarfs a 1.5 KB envelope's. Waiting up
# to 5 ms gathers several per request; the 2xx waits for the ack anyway, so latency grows by at
# most that.
LINGER_MS = 5


class BrokerUnavailable(Exception):
    """The events were not durably handed over (the gateway must retry)."""


class GatewayEventPublisher:
    def __init__(self, bootstrap_servers: str, topic: str = PAYMENTS_GATEWAY_EVENTS) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        """Start the producer on first use (the broker may be down when the service starts)."""
        if self._producer is not None:  # the common case takes no lock
            return self._producer
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=LINGER_MS,
                    max_batch_size=BATCH_BYTES,
                    request_timeout_ms=10_000,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def publish(self, events: list[GatewayEvent], *, deadline: float) -> None:
        """Send every event (keyed by payment id); wait for all acks at most ``deadline`` s."""
        try:
            async with asyncio.timeout(deadline):
                producer = await self._ensure_producer()
                pending = []
                for event in events:
                    envelope = Envelope.create(
                        gateway_event_type(event.kind),
                        webhook_ingest(event.gateway),
                        event,
                        id=event.ce_id,
                        subject=event.payment_id,
                        time=event.occurred_at,
                    )
                    record = encode(envelope, event.partition_key)
                    pending.append(
                        await producer.send(
                            self._topic, record.value, key=record.key, headers=record.headers
                        )
                    )
                if len(pending) == 1:  # nearly every webhook: no gathering future to build
                    await pending[0]
                else:
                    await asyncio.gather(*pending)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise BrokerUnavailable(type(exc).__name__) from exc

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
