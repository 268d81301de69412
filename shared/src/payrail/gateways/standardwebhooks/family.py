"""The Standard Webhooks family (``standardwebhooks`` in the ``payrail.gateways`` entry points).

Standard Webhooks is a signing scheme, not a payment gateway: any source that signs with it
(an internal service, a gateway without a payrail package, a PSP's relay) posts payrail's
generic payload to ``POST /webhooks/standardwebhooks[/{account}]`` and webhook-ingest verifies
it (:mod:`.webhooks`). There is nothing to create, refund, ask about or report on, so those
members raise :class:`~payrail.gateways.base.NotSupported` as soon as they are asked for: a
payment or a reconciliation naming this gateway fails at once with a clear message instead of
calling out and leaving an unknown outcome behind.

A plugin gateway that only speaks this scheme subclasses the family with its own ``name``; its
events then carry that name in ``ce_id`` and ``ce_source``.
"""

from __future__ import annotations

from typing import NoReturn

from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayFamily,
    NotSupported,
    PaymentsClient,
    RefundsClient,
    ReportFetcher,
    StatusSync,
    WebhookVerifier,
)
from payrail.gateways.standardwebhooks.webhooks import GATEWAY, StandardWebhooksVerifier


class StandardWebhooksFamily(GatewayFamily):
    name = GATEWAY

    def _not_offered(self, what: str) -> NoReturn:
        raise NotSupported(
            f"gateway {self.name!r} is a webhook signing scheme and does not offer {what}; "
            f"it only receives webhooks (POST /webhooks/{self.name})"
        )

    def payments(self, config: GatewayAccountConfig) -> PaymentsClient:
        self._not_offered("payments")

    def refunds(self, config: GatewayAccountConfig) -> RefundsClient:
        self._not_offered("refunds")

    def status_sync(self, config: GatewayAccountConfig) -> StatusSync:
        self._not_offered("a payment status API")

    def webhook_verifier(self, config: GatewayAccountConfig, *, account: str) -> WebhookVerifier:
        return StandardWebhooksVerifier(config, account=account, gateway=self.name)

    def report_fetcher(self, config: GatewayAccountConfig) -> ReportFetcher:
        self._not_offered("reports")
