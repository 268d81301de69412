"""payrail checkout: Records every payment before calling a gateway, calls gateways with
idempotency keys, applies verified gateway events to the payment state machine and serves payment
status."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from checkout.adapters.tables import checkout_tables
from checkout.entrypoints.api import router
from checkout.entrypoints.consumers import GatewayEventsHandler, IntentsHandler
from checkout.entrypoints.janitor import janitor
from checkout.entrypoints.storefront import router as storefront
from checkout.service_layer.calls import CallTiming, GatewayCalls
from checkout.service_layer.gateways import Gateways
from checkout.service_layer.unit_of_work import Store
from checkout.settings import CheckoutSettings
from payrail.contracts.payments import PaymentIntentRequested
from payrail.contracts.topics import PAYMENTS_GATEWAY_EVENTS, PAYMENTS_INTENTS
from payrail.gateways.events import GatewayEvent
from payrail.messaging.consumer import ConsumerSpec
from payrail.messaging.service import ServiceMessaging
from payrail.web import components
from payrail.web.app import create_app as create_service_app
from payrail.web.idempotency import Idempotency

MIGRATIONS = Path(__file__).parent / "migrations"


@asynccontextmanager
async def checkout(app: FastAPI) -> AsyncIterator[None]:
    """The gateway-call executor, the consumers of intents and gateway events, and the relay
    of ``payments.lifecycle`` events."""
    settings: CheckoutSettings = app.state.settings
    messaging = ServiceMessaging(
        service=settings.service_name,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        engine=app.state.engine,
        schema=settings.db_schema,
    )
    app.state.messaging = messaging  # its readiness is part of /readyz
    store = Store(app.state.engine, checkout_tables(settings.db_schema), messaging.outbox)
    gateways = Gateways(settings.gateways)
    calls = GatewayCalls(
        store,
        gateways,
        CallTiming(
            lease=timedelta(seconds=settings.gateway_call_lease_seconds),
            unknown_sync_after=timedelta(seconds=settings.unknown_sync_after_seconds),
        ),
    )
    messaging.consume(
        ConsumerSpec(
            name="checkout-intents",
            group_id=settings.service_name,
            topics=(PAYMENTS_INTENTS,),
            payload=PaymentIntentRequested,
            handler=IntentsHandler(
                store, gateways, calls, timedelta(seconds=settings.first_sync_after_seconds)
            ),
        )
    )
    messaging.consume(
        ConsumerSpec(
            name="checkout-gateway-events",
            group_id=settings.service_name,
            topics=(PAYMENTS_GATEWAY_EVENTS,),
            payload=GatewayEvent,
            handler=GatewayEventsHandler(store),
        )
    )
    app.state.checkout_store = store
    app.state.gateways = gateways
    app.state.gateway_calls = calls
    # Idempotency-Keys are kept for the platform's replay horizon, then forgotten
    await Idempotency(store.tables.idempotency_keys, store.sessions).purge()
    try:
        async with messaging, calls:
            yield
    finally:
        await gateways.aclose()


def create_app(settings: CheckoutSettings | None = None) -> FastAPI:
    settings = settings or CheckoutSettings()
    app = create_service_app(
        settings,
        title="payrail checkout",
        description=__doc__ or "",
        components=[components.database(MIGRATIONS), components.kafka_probe, checkout, janitor],
        probes=components.standard_probes,
    )
    app.include_router(router)
    app.include_router(storefront)
    return app
