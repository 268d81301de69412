"""One object that wires a service's messaging: its outbox and relay, its inbox consumers on a
FastStream broker, the dead-letter producer and the inbox pruner.

A service builds it at start-up and enters it in its FastAPI lifespan (as a
``payrail.web.components`` component)::

    @asynccontextmanager
    async def messaging(app: FastAPI) -> AsyncIterator[None]:
        settings = app.state.settings
        service = ServiceMessaging(
            service=settings.service_name,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            engine=app.state.engine,
            schema=settings.db_schema,
        )
        service.consume(ConsumerSpec(
            name="checkout-gateway-events", group_id="checkout",
            topics=(PAYMENTS_GATEWAY_EVENTS,), payload=GatewayEvent, handler=apply_gateway_event,
        ))
        app.state.outbox = service.outbox  # handlers and routes stage events through it
        async with service:
            yield

Start order: topics, dead-letter producer, relay (so events staged by handlers flow), broker
(consumers), inbox pruner; stop is the reverse, so consumers stop before what they rely on.
Entering it does not wait for the broker: the start runs in the background and is retried while
the broker is unreachable, and :meth:`ServiceMessaging.probe` keeps ``/readyz`` at 503 until it
has succeeded (set ``app.state.messaging`` and the standard probes include it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Mapping
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from payrail.logging import get_logger
from payrail.messaging.admin import TopicSpec, ensure_topics, retention_config
from payrail.messaging.consumer import ConsumerSpec, DeadLetterProducer, InboxConsumer
from payrail.messaging.inbox import DEFAULT_INBOX_RETENTION, InboxPruner
from payrail.messaging.outbox import Outbox
from payrail.messaging.relay import OutboxRelay

M = TypeVar("M", bound=BaseModel)

#: backoff of the start-up while the broker is unreachable (doubling, capped)
START_RETRY_INITIAL_SECONDS = 0.5
START_RETRY_MAX_SECONDS = 10.0

log = get_logger(__name__)


class ServiceMessaging:
    """A service's messaging runtime (an async context manager)."""

    def __init__(
        self,
        *,
        service: str,
        bootstrap_servers: str,
        engine: AsyncEngine,
        schema: str,
        relay: bool = True,
        relay_options: Mapping[str, Any] | None = None,
        inbox_retention: timedelta = DEFAULT_INBOX_RETENTION,
        dead_letter_retention: timedelta = DEFAULT_INBOX_RETENTION,
        max_records: int | None = None,
        batch_timeout_ms: int = 50,
        concurrency: int = 8,
    ) -> None:
        self.service = service
        self.schema = schema
        self.outbox = Outbox(schema)
        self.broker = KafkaBroker(
            bootstrap_servers,
            client_id=service,
            acks="all",
            enable_idempotence=True,
            # FastStream's "Received"/"Processed" line per batch, at DEBUG: at a trickle that is
            # a log line per message (CPU the consumer needs); the inbox consumer logs what
            # matters itself (duplicates, retries, dead letters)
            log_level=logging.DEBUG,
            # the inbox consumers take their records as they are (InboxConsumer.subscribe)
            apply_types=False,
        )
        self.consumers: list[InboxConsumer[Any]] = []
        self._bootstrap_servers = bootstrap_servers
        self._engine = engine
        self._dead_letters = DeadLetterProducer(bootstrap_servers, client_id=service)
        self._relay = (
            OutboxRelay(
                engine,
                schema,
                bootstrap_servers=bootstrap_servers,
                client_id=f"{service}-relay",
                **(relay_options or {}),
            )
            if relay
            else None
        )
        self._inbox_retention = inbox_retention
        self._dead_letter_retention = dead_letter_retention
        self._max_records = max_records
        self._batch_timeout_ms = batch_timeout_ms
        self._concurrency = concurrency
        self._stack: AsyncExitStack | None = None
        self._starting: asyncio.Task[None] | None = None

    def consume(self, spec: ConsumerSpec[M]) -> InboxConsumer[M]:
        """Register an inbox consumer (before start)."""
        if self._stack is not None:
            raise RuntimeError("register consumers before starting the service's messaging")
        consumer = InboxConsumer(
            spec,
            engine=self._engine,
            schema=self.schema,
            dead_letters=self._dead_letters,
            concurrency=self._concurrency,
        )
        consumer.subscribe(
            self.broker, max_records=self._max_records, batch_timeout_ms=self._batch_timeout_ms
        )
        self.consumers.append(consumer)
        return consumer

    def topic_specs(self) -> list[TopicSpec]:
        """The topics the consumers need: sources, and each group's retry and dead-letter topics."""
        specs: list[TopicSpec] = []
        dead_letter_config = retention_config(self._dead_letter_retention)
        for consumer in self.consumers:
            spec = consumer.spec
            for source, retry, dead in zip(
                spec.topics, spec.retry_topics, spec.dead_letter_topics, strict=True
            ):
                specs += [
                    TopicSpec(source),
                    TopicSpec(retry, partitions_like=source),
                    TopicSpec(dead, partitions_like=source, config=dead_letter_config),
                ]
        return specs

    async def __aenter__(self) -> ServiceMessaging:
        self._starting = asyncio.create_task(
            self._start_when_the_broker_answers(), name=f"{self.service}-messaging-start"
        )
        return self

    @property
    def started(self) -> bool:
        return self._stack is not None

    async def probe(self) -> None:
        """Readiness: the consumers and the relay are running (a ``/readyz`` probe)."""
        if self._stack is None:
            raise ConnectionError("messaging has not started yet: waiting for the broker")

    async def _start_when_the_broker_answers(self) -> None:
        """Start, retrying with backoff while the broker cannot be reached.

        A service must come up during a broker outage: its API only writes the outbox, and
        ``/readyz`` answers 503 until the broker is back and this has started (crashing instead
        would turn a broker outage into a restart loop of every service).
        """
        for attempt in itertools.count():
            try:
                self._stack = await self._start()
                return
            except (KafkaError, OSError) as exc:
                delay = min(START_RETRY_MAX_SECONDS, START_RETRY_INITIAL_SECONDS * 2**attempt)
                log.warning(
                    "messaging cannot reach the broker; retrying",
                    error=type(exc).__name__,
                    retry_in_seconds=delay,
                )
                await asyncio.sleep(delay)

    async def _start(self) -> AsyncExitStack:
        async with AsyncExitStack() as stack:
            if self.consumers:
                admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap_servers)
                await admin.start()
                try:
                    await ensure_topics(admin, self.topic_specs())
                finally:
                    await admin.close()
                await self._dead_letters.start()
                stack.push_async_callback(self._dead_letters.stop)
            if self._relay is not None:
                await stack.enter_async_context(self._relay)
            if self.consumers:
                for consumer in self.consumers:  # after the broker stopped calling them
                    stack.push_async_callback(consumer.close)
                await self.broker.start()
                stack.push_async_callback(self.broker.stop)
                for consumer in self.consumers:  # before the broker stops
                    stack.push_async_callback(consumer.flush)
                await stack.enter_async_context(
                    InboxPruner(self._engine, self.schema, retention=self._inbox_retention)
                )
            return stack.pop_all()
        raise AssertionError("unreachable")  # pragma: no cover - the with block returns

    async def __aexit__(self, *_: object) -> None:
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
            self._starting = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
