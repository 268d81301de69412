"""Verifier per (gateway, account), built once from configuration through the gateway registry.

webhook-ingest never imports a concrete gateway: a gateway is known when it is installed (entry
point) *and* an account of it is configured in ``PAYRAIL_GATEWAYS``.
"""

from __future__ import annotations

from payrail.gateways import registry
from payrail.gateways.base import WebhookVerifier
from payrail.settings import ServiceSettings


class UnknownEndpoint(LookupError):
    """No such gateway installed, or no such account configured for it."""


class Verifiers:
    def __init__(self, settings: ServiceSettings) -> None:
        self._settings = settings
        self._cache: dict[tuple[str, str], WebhookVerifier] = {}

    def build_all(self) -> None:
        """Build every configured verifier now, so a misconfigured account (no secrets, a gateway
        that is not installed) stops the service at start instead of 500-ing a gateway later."""
        for gateway, accounts in self._settings.gateways.items():
            for account in accounts:
                self.get(gateway, account)

    def get(self, gateway: str, account: str) -> WebhookVerifier:
        key = (gateway, account)
        verifier = self._cache.get(key)
        if verifier is None:
            config = self._settings.gateway_account(gateway, account)
            if config is None:
                raise UnknownEndpoint(f"no account {account!r} configured for gateway {gateway!r}")
            try:
                family = registry.get(gateway)
            except registry.UnknownGateway:
                raise UnknownEndpoint(f"gateway {gateway!r} is not installed") from None
            verifier = family.webhook_verifier(config, account=account)
            self._cache[key] = verifier
        return verifier
