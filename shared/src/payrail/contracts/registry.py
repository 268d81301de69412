"""The contract registry: which payload model every ``ce_type`` carries.

Decoding a message looks its ``ce_type`` up here; a type that is not registered is poison (the
consumer cannot know what it means), so adding an event type starts with registering it here.
Gateway events are registered for every :class:`GatewayEventKind`, so a kind added to the
gateway package is a valid ``ce_type`` at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pydantic import BaseModel

from payrail.contracts.entitlements import EntitlementEvent, EntitlementEventType
from payrail.contracts.payments import (
    PAYMENT_INTENT_REQUESTED,
    LifecycleEventType,
    PaymentIntentRequested,
    PaymentLifecycle,
)
from payrail.contracts.reconciliation import (
    RECONCILIATION_DISCREPANCY,
    ReconciliationDiscrepancy,
)
from payrail.gateways.events import GatewayEvent, GatewayEventKind

GATEWAY_TYPE_PREFIX = "gateway."


class UnknownEventType(LookupError):
    """No contract is registered for this ``ce_type``."""


def gateway_event_type(kind: GatewayEventKind) -> str:
    """The ``ce_type`` of a gateway event of ``kind``, e.g. ``gateway.payment.succeeded``."""
    return f"{GATEWAY_TYPE_PREFIX}{kind.value}"


CONTRACTS: Mapping[str, type[BaseModel]] = MappingProxyType(
    {
        PAYMENT_INTENT_REQUESTED: PaymentIntentRequested,
        **{gateway_event_type(kind): GatewayEvent for kind in GatewayEventKind},
        **{event.value: PaymentLifecycle for event in LifecycleEventType},
        **{event.value: EntitlementEvent for event in EntitlementEventType},
        RECONCILIATION_DISCREPANCY: ReconciliationDiscrepancy,
    }
)


def contract_for(ce_type: str) -> type[BaseModel]:
    """The payload model of ``ce_type``; :class:`UnknownEventType` when none is registered."""
    try:
        return CONTRACTS[ce_type]
    except KeyError:
        raise UnknownEventType(f"no contract registered for ce_type {ce_type!r}") from None
