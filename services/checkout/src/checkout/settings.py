"""Settings of the checkout service (PAYRAIL_* environment variables)."""

from __future__ import annotations

from typing import ClassVar

from payrail.settings import ServiceSettings


class CheckoutSettings(ServiceSettings):
    service_name: ClassVar[str] = "checkout"
    db_schema: ClassVar[str] = "checkout"

    http_port: int = 8001
    #: seconds a concurrent request with a busy Idempotency-Key waits for the first one's answer
    #: before it gets ``409`` (retry later)
    idempotency_wait_seconds: float = 10.0
    #: seconds a claimed gateway call is left to its maker before another executor retakes it
    gateway_call_lease_seconds: float = 120.0
    #: seconds after creation when the janitor first syncs a payment nobody told us about
    first_sync_after_seconds: float = 300.0
    #: seconds after a gateway call with an unknown outcome when the janitor syncs the payment
    unknown_sync_after_seconds: float = 60.0
