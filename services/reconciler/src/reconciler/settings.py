"""Settings of the reconciler service (PAYRAIL_* environment variables)."""

from __future__ import annotations

from typing import ClassVar

from payrail.settings import ServiceSettings


class ReconcilerSettings(ServiceSettings):
    service_name: ClassVar[str] = "reconciler"
    db_schema: ClassVar[str] = "reconciler"

    http_port: int = 8004
