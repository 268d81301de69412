"""Settings every payrail service shares, read from ``PAYRAIL_*`` environment variables.

Each service subclasses :class:`ServiceSettings` to set its name, schema and default port
(DESIGN: checkout 8001, webhook-ingest 8002, entitlements 8003, reconciler 8004). Values that
carry credentials are ``SecretStr`` so that printing a settings object never leaks them.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from payrail.gateways.base import GatewayAccountConfig

DEFAULT_DATABASE_URL = "postgresql+psycopg://payrail:payrail@127.0.0.1:55432/payrail"


class ServiceSettings(BaseSettings):
    """Base settings; subclasses override the class-level service identity."""

    model_config = SettingsConfigDict(env_prefix="PAYRAIL_", extra="ignore", frozen=True)

    #: service name used in logs, metrics, ce_source and consumer group ids
    service_name: ClassVar[str] = "payrail"
    #: the PostgreSQL schema the service owns ("" for a service that owns none)
    db_schema: ClassVar[str] = ""

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    #: connections the service keeps open to PostgreSQL, and how many more it may open under a
    #: burst (those are closed again when returned): size it to the requests and consumers in
    #: flight, since a connection opened per request costs a PostgreSQL backend start each time
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    #: a pooled connection idle this long is pinged before use (0: before every use); one used
    #: more recently is trusted, sparing every transaction a round trip (payrail.db)
    database_ping_after_idle_seconds: float = Field(default=1.0, ge=0)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    log_level: str = "INFO"
    log_json: bool = True
    #: ``{gateway: {account: config}}``; JSON in ``PAYRAIL_GATEWAYS``
    gateways: dict[str, dict[str, GatewayAccountConfig]] = Field(default_factory=dict)
    #: seconds /readyz waits for the database or the broker before answering 503
    readiness_timeout_seconds: float = 2.0
    #: seconds a graceful shutdown may take before in-flight work is abandoned
    shutdown_timeout_seconds: float = 10.0

    def gateway_account(
        self, gateway: str, account: str = "default"
    ) -> GatewayAccountConfig | None:
        """Configuration of one gateway account, or None when it is not configured."""
        return self.gateways.get(gateway, {}).get(account)
