"""Readiness probes: /readyz answers 200 only when the service's real dependencies answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka.client import AIOKafkaClient
from sqlalchemy.ext.asyncio import AsyncEngine

from payrail.db import ping

Probe = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class KafkaProbe:
    """Keeps one metadata client open and asks the broker for cluster metadata on each probe."""

    bootstrap_servers: str
    _client: AIOKafkaClient | None = None

    async def start(self) -> None:
        self._client = AIOKafkaClient(
            bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000
        )
        try:
            await self._client.bootstrap()
        except Exception:  # the broker may come up later; /readyz reports it meanwhile
            await self._client.close()
            self._client = None

    async def __call__(self) -> None:
        if self._client is None:
            await self.start()
            if self._client is None:
                raise ConnectionError("Kafka broker unreachable")
        metadata = await self._client.fetch_all_metadata()
        if not metadata.brokers():
            raise ConnectionError("Kafka reports no live brokers")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def database_probe(engine: AsyncEngine) -> Probe:
    async def probe() -> None:
        await ping(engine)

    return probe


async def run_probes(probes: dict[str, Probe], deadline: float) -> dict[str, str]:
    """Run every probe concurrently; map name -> "ok" or the failure's class name."""

    async def one(probe: Probe) -> str:
        try:
            await asyncio.wait_for(probe(), deadline)
        except Exception as exc:  # reported, not raised: readiness is a status, not an error
            return f"unavailable ({type(exc).__name__})"
        return "ok"

    names = list(probes)
    results = await asyncio.gather(*(one(probes[n]) for n in names))
    return dict(zip(names, results, strict=True))
