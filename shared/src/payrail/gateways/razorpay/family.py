"""The Razorpay family (``razorpay`` in the ``payrail.gateways`` entry-point group).

Orders, payments, refunds and status sync (:mod:`.payments`), ``X-Razorpay-Signature`` webhooks
(:mod:`.webhooks`) and settlement reports (:mod:`.reports`), loaded on first use.
"""

from __future__ import annotations

from payrail.gateways.base import ConventionalFamily


class RazorpayFamily(ConventionalFamily):
    name = "razorpay"
    package = "payrail.gateways.razorpay"
    prefix = "Razorpay"
