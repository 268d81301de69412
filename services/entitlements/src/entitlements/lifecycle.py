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

from entitlements.domain import Effect, Policy, classify, decide
from entitlements.store import AccessStore
from payrail.contracts.entitlements import EntitlementEvent, EntitlementEventType
from payrail.contracts.payments import PaymentLifecycle
from payrail.contracts.sources import ENTITLEMENTS
from payrail.contracts.topics import ENTITLEMENTS_EVENTS
from payrail.logging import get_logger
from payrail.messaging.envelope import Envelope
from payrail.messaging.outbox import Outbox

log = get_logger(__name__)

_ANNOUNCED = {
    Effect.GRANT: EntitlementEventType.GRANTED,
    Effect.REVOKE: EntitlementEventType.REVOKED,
}


class LifecycleHandler:
    """Applies one lifecycle event to the payment's access (an inbox consumer handler)."""

    def __init__(self, store: AccessStore, outbox: Outbox, policy: Policy) -> None:
        self._store = store
        self._outbox = outbox
        self._policy = policy

    async def __call__(self, session: AsyncSession, envelope: Envelope[PaymentLifecycle]) -> None:
        payment = envelope.data
        verdict = classify(envelope.type, payment, self._policy)
        current = await self._store.lock(session, payment)
        decision = decide(current.state, verdict)
        if decision.state is current.state:
            return
        at = datetime.now(UTC)
        kind = _ANNOUNCED.get(decision.effect)
        announcement = None
        if kind is not None:
            event = EntitlementEvent(
                user_id=current.user_id,
                sku=current.sku,
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
            announcement = self._outbox.parameters(ENTITLEMENTS_EVENTS, current.user_id, announced)
        changed = await self._store.apply(
            session,
            payment.payment_id,
            decision,
            reason=envelope.type,
            at=at,
            announcement=announcement,
        )
        log.info(
            "access changed",
            payment_id=payment.payment_id,
            state=decision.state.value,
            previous=current.state.value,
            ce_type=envelope.type,
            announced=kind.value if changed and kind else None,
        )
