"""The Stripe family (``stripe`` in the ``payrail.gateways`` entry-point group).

PaymentIntents, refunds and status sync (:mod:`.payments`), ``Stripe-Signature`` webhooks
(:mod:`.webhooks`) and balance-transaction reports (:mod:`.reports`), loaded on first use.
"""

from __future__ import annotations

from payrail.gateways.base import ConventionalFamily


class StripeFamily(ConventionalFamily):
    name = "stripe"
    package = "payrail.gateways.stripe"
    prefix = "Stripe"
