"""``ce_source`` values: which payrail component produced an event (a URI-reference).

The source says *who* emitted an event, which an SRE needs when two components can emit the
same type (a ``gateway.payment.succeeded`` from a webhook versus from the checkout janitor's
status sync).
"""

from __future__ import annotations

from typing import Final

CHECKOUT: Final = "/payrail/checkout"
CHECKOUT_JANITOR: Final = "/payrail/checkout/janitor"
ENTITLEMENTS: Final = "/payrail/entitlements"
RECONCILER: Final = "/payrail/reconciler"


def webhook_ingest(gateway: str) -> str:
    """The source of events normalized from ``gateway``'s webhooks."""
    return f"/payrail/webhook-ingest/{gateway}"
