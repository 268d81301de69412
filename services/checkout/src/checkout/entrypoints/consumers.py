"""checkout's inbox consumers: payment intents and gateway events.

Each handler runs in the consumer's transaction (inbox row, effects and staged lifecycle events
commit together, once per ``ce_id``).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from checkout.service_layer.calls import GatewayCalls
from checkout.service_layer.gateway_events import handle_gateway_event
from checkout.service_layer.gateways import DEFAULT_ACCOUNT, Gateways
from checkout.service_layer.payments import CreatePayment, create_payment
from checkout.service_layer.unit_of_work import Store, UnitOfWork
from payrail.contracts.payments import PaymentIntentRequested
from payrail.gateways.events import GatewayEvent
from payrail.logging import get_logger
from payrail.messaging.envelope import Envelope
from payrail.money import Money

log = get_logger(__name__)


class IntentRejected(ValueError):
    """A well-formed intent checkout cannot take (unknown or unconfigured gateway).

    Not retryable: the consumer dead-letters it at once, where an SRE sees it.
    """


class IntentsHandler:
    """``payment.intent.requested``: the same rules as ``POST /v1/payments``; the producer's
    ``payment_id`` makes a repeat a no-op. The gateway call is owed (due at once) and made by
    the gateway-call executor after this transaction commits."""

    def __init__(
        self, store: Store, gateways: Gateways, calls: GatewayCalls, first_sync_after: timedelta
    ) -> None:
        self.store = store
        self.gateways = gateways
        self.calls = calls
        self.first_sync_after = first_sync_after

    async def __call__(
        self, session: AsyncSession, envelope: Envelope[PaymentIntentRequested]
    ) -> None:
        intent = envelope.data
        try:
            self.gateways.check(intent.gateway, DEFAULT_ACCOUNT)
        except LookupError as exc:
            raise IntentRejected(str(exc)) from None
        created = await create_payment(
            UnitOfWork.of(session, self.store),
            CreatePayment(
                payment_id=intent.payment_id,
                money=Money(intent.amount, intent.currency),
                user_id=intent.user_id,
                sku=intent.sku,
                gateway=intent.gateway,
                account=DEFAULT_ACCOUNT,
                description=intent.description,
                metadata=intent.metadata,
            ),
            source=envelope.source,
            call_delay=timedelta(0),
            first_sync_after=self.first_sync_after,
        )
        if created is None:
            log.info("payment intent for an existing payment ignored", payment=intent.payment_id)
            return
        self.calls.wake()  # early; the loop finds the call once this transaction committed


class GatewayEventsHandler:
    """``payments.gateway-events``: webhooks (webhook-ingest) and status syncs (the janitor)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __call__(self, session: AsyncSession, envelope: Envelope[GatewayEvent]) -> None:
        await handle_gateway_event(UnitOfWork.of(session, self.store), envelope)
