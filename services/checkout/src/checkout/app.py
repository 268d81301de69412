"""payrail checkout: Records every payment before calling a gateway, calls gateways with
idempotency keys, applies verified gateway events to the payment state machine and serves payment
status."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from checkout.settings import CheckoutSettings
from payrail.web import components
from payrail.web.app import create_app as create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: CheckoutSettings | None = None) -> FastAPI:
    settings = settings or CheckoutSettings()
    return create_service_app(
        settings,
        title="payrail checkout",
        description=__doc__ or "",
        components=[components.database(MIGRATIONS), components.kafka_probe],
        probes=components.standard_probes,
    )
