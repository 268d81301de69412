"""The PayPal family (``paypal`` in the ``payrail.gateways`` entry-point group).

Orders v2 with captures, refunds and status sync (:mod:`.payments`; the OAuth token is shared by
an account's clients), webhooks (:mod:`.webhooks`) and settlement reports (:mod:`.reports`),
loaded on first use.
"""

from __future__ import annotations

from payrail.gateways.base import ConventionalFamily


class PayPalFamily(ConventionalFamily):
    name = "paypal"
    package = "payrail.gateways.paypal"
    prefix = "PayPal"
