"""The inbox handler of ``payments.lifecycle``: access decided once per event, announced once.

Runs inside the inbox consumer's transaction (:mod:`payrail.messaging.consumer`): the inbox row,
the access change, the grant and the ``entitlement.granted`` / ``entitlement.revoked`` outbox row
commit together or not at all, so a redelivered or replayed event changes nothing and a crash
loses nothing. The announced event's ``ce_id`` is derived from the payment
(``entitlement.granted:<payment_id>``): a payment is granted and revoked at most once, and a
consumer downstream can deduplicate a relay re-send by it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from entitlements.domain import Moves, Policy, classify, moves
from entitlements.store import AccessStore
from payrail.contracts.entitlements import EntitlementEvent, EntitlementEventType
from payrail.contracts.payments import PaymentLifecycle
from payrail.contracts.sources import ENTITLEMENTS
from payrail.contracts.topics import ENTITLEMENTS_EVENTS
from payrail.logging import get_logger
from payrail.messaging.envelope import Envelope
from payrail.messaging.outbox import Outbox

log = get_logger(__name__)


class LifecycleHandler:
    """Applies one lifecycle event to the payment's access (an inbox consumer handler)."""

    def __init__(self, store: AccessStore, outbox: Outbox, policy: Policy) -> None:
        self._store = store
        self._outbox = outbox
        self._policy = policy

    async def __call__(self, session: AsyncSession, envelope: Envelope[PaymentLifecycle]) -> None:
        payment = envelope.data
        planned = moves(classify(envelope.type, payment, self._policy))
        at = datetime.now(UTC)
        announcement = None
        kind = _announced(planned)
        if kind is not None:
            event = EntitlementEvent(
                user_id=payment.user_id,
                sku=payment.sku,
                payment_id=payment.payment_id,
                occurred_at=at,
                reason=envelope.type,
            )
            announced = Envelope.create(
                kind.value,
                ENTITLEMENTS,
                event,
                id=f"{kind.value}:{payment.payment_id}",
                subject=payment.payment_id,
                time=at,
            )
            announcement = self._outbox.parameters(ENTITLEMENTS_EVENTS, payment.user_id, announced)
        decided = await self._store.decide(
            session, payment, planned, reason=envelope.type, at=at, announcement=announcement
        )
        if decided.moved:
            log.debug(
                "access changed",
                payment_id=payment.payment_id,
                state=decided.state.value,
                ce_type=envelope.type,
                announced=decided.announced,
            )


def _announced(planned: Moves) -> EntitlementEventType | None:
    """The event a grant change of ``planned`` would announce (a verdict makes at most one)."""
    if planned.granting is not None:
        return EntitlementEventType.GRANTED
    if planned.revoking is not None:
        return EntitlementEventType.REVOKED
    return None
