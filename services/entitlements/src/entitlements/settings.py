"""Settings of the entitlements service (PAYRAIL_* environment variables)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from payrail.settings import ServiceSettings

#: the storefront demo is served by checkout (port 8001) and polls this service from the browser
DEV_STOREFRONT_ORIGINS = ["http://127.0.0.1:8001", "http://localhost:8001"]


class EntitlementsSettings(ServiceSettings):
    service_name: ClassVar[str] = "entitlements"
    db_schema: ClassVar[str] = "entitlements"

    http_port: int = 8003
    #: ``PAYRAIL_REVOKE_ON_PARTIAL_REFUND``: a partial refund ends access like a full one
    revoke_on_partial_refund: bool = False
    #: ``PAYRAIL_ACCESS_WAIT_MAX_SECONDS``: the longest long poll ``?wait=`` may ask for
    access_wait_max_seconds: float = Field(default=30.0, gt=0, le=300)
    #: ``PAYRAIL_ACCESS_POLL_FALLBACK_SECONDS``: how often long polls re-read the database
    #: while the LISTEN connection that normally wakes them is down
    access_poll_fallback_seconds: float = Field(default=1.0, gt=0)
    #: ``PAYRAIL_CORS_ALLOW_ORIGINS`` (JSON list): browser origins allowed to read the API
    cors_allow_origins: list[str] = Field(default_factory=lambda: list(DEV_STOREFRONT_ORIGINS))
