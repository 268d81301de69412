"""Typed payloads of every event on every payrail topic, the ``ce_type`` -> model registry, and
the topic names.

Producers build payloads from these models and consumers receive them validated, so a schema
change is a code change reviewed in one place rather than a surprise in a consumer.
"""

from payrail.contracts.entitlements import EntitlementEvent, EntitlementEventType
from payrail.contracts.payments import (
    PAYMENT_INTENT_REQUESTED,
    LifecycleEventType,
    PaymentIntentRequested,
    PaymentLifecycle,
)
from payrail.contracts.reconciliation import (
    RECONCILIATION_DISCREPANCY,
    DiscrepancyCode,
    ReconciliationDiscrepancy,
)
from payrail.contracts.registry import (
    CONTRACTS,
    UnknownEventType,
    contract_for,
    gateway_event_type,
)
from payrail.contracts.topics import (
    DLQ_REPLAYS,
    ENTITLEMENTS_EVENTS,
    PAYMENTS_GATEWAY_EVENTS,
    PAYMENTS_INTENTS,
    PAYMENTS_LIFECYCLE,
    RECONCILIATION_DISCREPANCIES,
    dlt_topic,
    retry_topic,
    split_group_topic,
)
from payrail.gateways.events import GatewayEvent, GatewayEventKind

__all__ = [
    "CONTRACTS",
    "DLQ_REPLAYS",
    "ENTITLEMENTS_EVENTS",
    "PAYMENTS_GATEWAY_EVENTS",
    "PAYMENTS_INTENTS",
    "PAYMENTS_LIFECYCLE",
    "PAYMENT_INTENT_REQUESTED",
    "RECONCILIATION_DISCREPANCIES",
    "RECONCILIATION_DISCREPANCY",
    "DiscrepancyCode",
    "EntitlementEvent",
    "EntitlementEventType",
    "GatewayEvent",
    "GatewayEventKind",
    "LifecycleEventType",
    "PaymentIntentRequested",
    "PaymentLifecycle",
    "ReconciliationDiscrepancy",
    "UnknownEventType",
    "contract_for",
    "dlt_topic",
    "gateway_event_type",
    "retry_topic",
    "split_group_topic",
]
