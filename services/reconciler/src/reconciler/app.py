"""payrail reconciler: Three-way reconciliation of payrail's records, gateway reports and bank
statements, with every difference explained."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from payrail.web import components
from payrail.web.app import create_app as create_service_app
from reconciler.settings import ReconcilerSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ReconcilerSettings | None = None) -> FastAPI:
    settings = settings or ReconcilerSettings()
    return create_service_app(
        settings,
        title="payrail reconciler",
        description=__doc__ or "",
        components=[components.database(MIGRATIONS), components.kafka_probe],
        probes=components.standard_probes,
    )
