"""payrail reconciler: Three-way reconciliation of payrail's records, gateway reports and bank
statements, with every difference explained."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from payrail.contracts.payments import PaymentLifecycle
from payrail.contracts.topics import PAYMENTS_LIFECYCLE
from payrail.messaging.consumer import ConsumerSpec
from payrail.messaging.service import ServiceMessaging
from payrail.web import components
from payrail.web.app import create_app as create_service_app
from payrail.web.idempotency import Idempotency
from reconciler.api import router
from reconciler.projection import LifecycleProjection
from reconciler.runs import Runner
from reconciler.settings import ReconcilerSettings
from reconciler.store import Store

MIGRATIONS = Path(__file__).parent / "migrations"


@asynccontextmanager
async def reconciliation(app: FastAPI) -> AsyncIterator[None]:
    """The payment projection (inbox consumer of ``payments.lifecycle``), the outbox relay of
    discrepancy events, the runner that executes reconciliation runs, and the Idempotency-Keys
    of the POSTs (expired ones purged at start)."""
    settings: ReconcilerSettings = app.state.settings
    store = Store(settings.db_schema)
    messaging = ServiceMessaging(
        service=settings.service_name,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        engine=app.state.engine,
        schema=settings.db_schema,
    )
    app.state.messaging = messaging  # its readiness is part of /readyz
    messaging.consume(
        ConsumerSpec(
            name="reconciler-lifecycle",
            group_id=settings.service_name,
            topics=(PAYMENTS_LIFECYCLE,),
            payload=PaymentLifecycle,
            handler=LifecycleProjection(store.t),
        )
    )
    runner = Runner(
        store=store,
        engine=app.state.engine,
        outbox=messaging.outbox,
        gateway_accounts=settings.gateways,
    )
    idempotency = Idempotency(store.t.idempotency_keys, runner.sessions)
    app.state.store = store
    app.state.runner = runner
    app.state.idempotency = idempotency
    await runner.recover()
    await idempotency.purge()
    async with messaging:
        try:
            yield
        finally:
            await runner.close()


def create_app(settings: ReconcilerSettings | None = None) -> FastAPI:
    settings = settings or ReconcilerSettings()
    app = create_service_app(
        settings,
        title="payrail reconciler",
        description=__doc__ or "",
        components=[components.database(MIGRATIONS), components.kafka_probe, reconciliation],
        probes=components.standard_probes,
    )
    app.include_router(router)
    return app
