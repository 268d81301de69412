"""payrail entitlements: Grants what a user paid for exactly once, only on confirmed payments, and
serves access status to polling front ends."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from entitlements.settings import EntitlementsSettings
from payrail.web import components
from payrail.web.app import create_app as create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: EntitlementsSettings | None = None) -> FastAPI:
    settings = settings or EntitlementsSettings()
    return create_service_app(
        settings,
        title="payrail entitlements",
        description=__doc__ or "",
        components=[components.database(MIGRATIONS), components.kafka_probe],
        probes=components.standard_probes,
    )
