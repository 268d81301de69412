"""The Adyen family (``adyen`` in the ``payrail.gateways`` entry-point group).

Checkout sessions and refunds (:mod:`.payments`), HMAC-signed notifications (:mod:`.webhooks`)
and settlement reports (:mod:`.reports`), loaded on first use. Its status sync reports nothing:
Adyen has no payment status API, its webhooks are the source.
"""

from __future__ import annotations

from payrail.gateways.base import ConventionalFamily, GatewayAccountConfig, StatusSync


class AdyenFamily(ConventionalFamily):
    name = "adyen"
    package = "payrail.gateways.adyen"
    prefix = "Adyen"

    def status_sync(self, config: GatewayAccountConfig) -> StatusSync:
        sync: StatusSync = self.member("payments", "StatusSync")()
        return sync
