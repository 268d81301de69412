"""Settings of the entitlements service (PAYRAIL_* environment variables)."""

from __future__ import annotations

from typing import ClassVar

from payrail.settings import ServiceSettings


class EntitlementsSettings(ServiceSettings):
    service_name: ClassVar[str] = "entitlements"
    db_schema: ClassVar[str] = "entitlements"

    http_port: int = 8003
