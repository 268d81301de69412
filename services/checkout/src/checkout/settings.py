"""Settings of the checkout service (PAYRAIL_* environment variables)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from payrail.settings import ServiceSettings


class CheckoutSettings(ServiceSettings):
    service_name: ClassVar[str] = "checkout"
    db_schema: ClassVar[str] = "checkout"

    http_port: int = 8001
    #: every create and refund holds a connection twice (before and after the gateway call),
    #: besides the consumers, the relay, the gateway-call loop and the janitor: keep enough open
    #: that a burst does not open (and close) a connection per request
    database_pool_size: int = Field(default=20, ge=1)
    #: seconds a concurrent request with a busy Idempotency-Key waits for the first one's answer
    #: before it gets ``409`` (retry later)
    idempotency_wait_seconds: float = 10.0
    #: seconds a claimed gateway call is left to its maker before another executor retakes it
    gateway_call_lease_seconds: float = 120.0
    #: the janitor's status-sync schedule, seconds before each sync: the first counted from the
    #: payment's creation, each next from the previous sync; a payment still not final after the
    #: last step is flagged ``needs_attention`` for a human
    janitor_schedule: str = "60,300,1800,7200,86400"
    #: seconds the janitor waits between looks for due payments
    janitor_poll_interval_seconds: float = 5.0
    #: payments one janitor claims (and syncs concurrently) per look
    janitor_batch_size: int = Field(default=32, ge=1)
    #: run the janitor in this instance (instances share the work; off only to shed load)
    janitor_enabled: bool = True
    #: seconds after a gateway call with an unknown outcome when the janitor syncs the payment
    unknown_sync_after_seconds: float = 60.0

    @property
    def first_sync_after_seconds(self) -> float:
        """When the janitor first syncs a payment nobody told us about: its first step."""
        return float(self.janitor_schedule.split(",")[0])
