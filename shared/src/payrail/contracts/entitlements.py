"""Entitlement events entitlements publishes on ``entitlements.events`` (keyed by user id)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel

from payrail.contracts.types import CONTRACT_CONFIG, Id


class EntitlementEventType(StrEnum):
    GRANTED = "entitlement.granted"
    REVOKED = "entitlement.revoked"


class EntitlementEvent(BaseModel):
    """Access to ``sku`` was granted to or revoked from ``user_id`` because of ``payment_id``."""

    model_config = CONTRACT_CONFIG

    user_id: Id
    sku: Id
    payment_id: Id
    occurred_at: AwareDatetime
    reason: str | None = None
