"""payrail entitlements: Grants what a user paid for exactly once, only on confirmed payments, and
serves access status to polling front ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from entitlements.api import router
from entitlements.domain import Policy
from entitlements.lifecycle import LifecycleHandler
from entitlements.settings import EntitlementsSettings
from entitlements.store import AccessStore
from entitlements.waiting import AccessWatch
from payrail.contracts.payments import PaymentLifecycle
from payrail.contracts.topics import PAYMENTS_LIFECYCLE
from payrail.messaging.consumer import ConsumerSpec
from payrail.messaging.service import ServiceMessaging
from payrail.web import components
from payrail.web.app import create_app as create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


@asynccontextmanager
async def entitlements(app: FastAPI) -> AsyncIterator[None]:
    """The lifecycle consumer (through the inbox), the outbox relay of entitlement events, and
    the listener that wakes long-polling access requests."""
    settings: EntitlementsSettings = app.state.settings
    store = AccessStore(settings.db_schema)
    messaging = ServiceMessaging(
        service=settings.service_name,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        engine=app.state.engine,
        schema=settings.db_schema,
    )
    app.state.messaging = messaging  # its readiness is part of /readyz
    messaging.consume(
        ConsumerSpec(
            name="entitlements-lifecycle",
            group_id=settings.service_name,
            topics=(PAYMENTS_LIFECYCLE,),
            payload=PaymentLifecycle,
            handler=LifecycleHandler(
                store,
                messaging.outbox,
                Policy(revoke_on_partial_refund=settings.revoke_on_partial_refund),
            ),
        )
    )
    app.state.access_store = store
    watch = AccessWatch(
        app.state.engine,
        store.t.access_channel,
        fallback=settings.access_poll_fallback_seconds,
    )
    async with watch, messaging:
        app.state.access_watch = watch
        yield


def create_app(settings: EntitlementsSettings | None = None) -> FastAPI:
    settings = settings or EntitlementsSettings()
    app = create_service_app(
        settings,
        title="payrail entitlements",
        description=__doc__ or "",
        components=[components.database(MIGRATIONS), components.kafka_probe, entitlements],
        probes=components.standard_probes,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_allow_origins,
        allow_methods=["GET"],
        max_age=600,
    )
    app.include_router(router)
    return app
