"""Settings of the checkout service (PAYRAIL_* environment variables)."""

from __future__ import annotations

from typing import ClassVar

from payrail.settings import ServiceSettings


class CheckoutSettings(ServiceSettings):
    service_name: ClassVar[str] = "checkout"
    db_schema: ClassVar[str] = "checkout"

    http_port: int = 8001
