"""The gateways checkout may call: families from the registry, accounts from settings.

Checkout never imports a concrete gateway: a payment names a gateway (``"stripe"``) and an
account (``"default"``); the family is resolved by name through the ``payrail.gateways``
entry points and the account's credentials come from ``PAYRAIL_GATEWAYS``.
"""

from __future__ import annotations

from collections.abc import Mapping

from payrail.gateways.base import (
    GatewayAccountConfig,
    NotSupported,
    PaymentsClient,
    RefundsClient,
    StatusSync,
)
from payrail.gateways.registry import UnknownGateway
from payrail.gateways.registry import get as gateway_family

DEFAULT_ACCOUNT = "default"


class GatewayNotConfigured(LookupError):
    """The gateway is installed but no account of it is configured for checkout."""


class GatewayTakesNoPayments(LookupError):
    """The gateway is a webhook-only scheme (e.g. Standard Webhooks): it has no payments API."""


class Gateways:
    def __init__(self, accounts: Mapping[str, Mapping[str, GatewayAccountConfig]]) -> None:
        self._accounts = accounts
        #: (gateway, account) pairs that passed :meth:`check` (the registry and the accounts
        #: do not change while the process runs; checking builds a client, every create checks)
        self._usable: set[tuple[str, str]] = set()

    def check(self, gateway: str, account: str = DEFAULT_ACCOUNT) -> None:
        """Raise :class:`UnknownGateway`, :class:`GatewayNotConfigured` or
        :class:`GatewayTakesNoPayments` unless payments can be taken through ``gateway``'s
        ``account`` - a definite refusal up front, never a call whose outcome is "unknown"."""
        if (gateway, account) in self._usable:
            return
        family = gateway_family(gateway)
        config = self._accounts.get(gateway, {}).get(account)
        if config is None:
            configured = ", ".join(sorted(self._accounts)) or "none"
            raise GatewayNotConfigured(
                f"gateway {gateway!r} has no account {account!r} configured"
                f" (configured gateways: {configured})"
            )
        try:
            family.payments(config)
        except NotSupported as exc:
            raise GatewayTakesNoPayments(str(exc)) from None
        self._usable.add((gateway, account))

    def _config(self, gateway: str, account: str) -> GatewayAccountConfig:
        self.check(gateway, account)
        return self._accounts[gateway][account]

    def payments(self, gateway: str, account: str) -> PaymentsClient:
        return gateway_family(gateway).payments(self._config(gateway, account))

    def refunds(self, gateway: str, account: str) -> RefundsClient:
        return gateway_family(gateway).refunds(self._config(gateway, account))

    def status_sync(self, gateway: str, account: str) -> StatusSync:
        return gateway_family(gateway).status_sync(self._config(gateway, account))

    async def aclose(self) -> None:
        """Close the gateways' connection pools (at shutdown, on the loop that used them)."""
        for gateway in self._accounts:
            try:
                family = gateway_family(gateway)
            except UnknownGateway:  # configured but not installed: nothing was opened
                continue
            await family.aclose()


__all__ = [
    "DEFAULT_ACCOUNT",
    "GatewayNotConfigured",
    "GatewayTakesNoPayments",
    "Gateways",
    "UnknownGateway",
]
