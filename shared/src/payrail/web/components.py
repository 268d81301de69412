"""Start-up components shared by the services (used as ``create_app(components=...)``).

Each is a factory ``(app) -> async context manager`` that puts what it opened on ``app.state``
and closes it at shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from payrail.db import make_engine, make_sessionmaker, migrate_async
from payrail.settings import ServiceSettings
from payrail.web.health import KafkaProbe, Probe, database_probe

Component = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def database(migrations: Path | None) -> Component:
    """Open the engine; first bring the service's schema up to date when it has migrations."""

    @asynccontextmanager
    async def component(app: FastAPI) -> AsyncIterator[None]:
        settings: ServiceSettings = app.state.settings
        if migrations is not None:
            await migrate_async(
                settings.database_url.get_secret_value(), settings.db_schema, migrations
            )
        engine = make_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        try:
            yield
        finally:
            await engine.dispose()

    return component


@asynccontextmanager
async def kafka_probe(app: FastAPI) -> AsyncIterator[None]:
    """A long-lived metadata client used by /readyz to ask the broker whether it is there."""
    settings: ServiceSettings = app.state.settings
    probe = KafkaProbe(settings.kafka_bootstrap_servers)
    await probe.start()
    app.state.kafka_probe = probe
    try:
        yield
    finally:
        await probe.close()


def standard_probes(app: FastAPI) -> dict[str, Probe]:
    """Readiness = the database (when the service has one) and the broker answer, and the
    service's messaging (``app.state.messaging``, when it has consumers or a relay) started."""
    probes: dict[str, Probe] = {"kafka": app.state.kafka_probe}
    if hasattr(app.state, "engine"):
        probes["database"] = database_probe(app.state.engine)
    if hasattr(app.state, "messaging"):
        probes["messaging"] = app.state.messaging.probe
    return probes
