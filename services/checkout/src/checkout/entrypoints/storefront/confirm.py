"""The demo's card confirmation: attach the card Stripe.js tokenized and confirm the intent.

At the real Stripe the browser does this itself: ``stripe.confirmCardPayment(client_secret,
{payment_method: {card}})`` confirms the PaymentIntent with the publishable key. localstripe's
fake Stripe.js cannot: its ``confirmCardPayment`` only completes a 3-D Secure challenge, and its
API takes a payment method and a confirmation only with a secret key. So the page tokenizes the
card with Stripe.js (``createToken``, publishable key, as at Stripe) and this step plays Stripe's
"finalize payments on the server" flow: update the intent with the card, confirm it. The caller
proves it holds the payment (the intent's ``client_secret``, compared in constant time), as
Stripe's client-side confirmation requires.

The answer is the gateway's status and nothing more: ``succeeded`` / ``processing`` let the page
say "Payment successful, verifying..."; ``requires_action`` sends it to Stripe.js's 3-D Secure
challenge. Access still comes only from entitlements, after the verified webhook.

The demo is Stripe-only by nature (it runs Stripe.js), so it calls Stripe through the SDK with the
account checkout is configured with; the Stripe calls carry idempotency keys derived from the
payment and the card, so a double click or a retried request confirms once.
"""

from __future__ import annotations

import hmac

import stripe

from checkout.service_layer.unit_of_work import Store, UnitOfWork
from payrail.gateways.base import GatewayAccountConfig


class ConfirmRejected(Exception):
    """The confirmation cannot go ahead; carries the problem's status, title and kind."""

    def __init__(self, status: int, title: str, detail: str, kind: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.kind = kind


def _client(account: GatewayAccountConfig) -> stripe.StripeClient:
    if account.api_key is None:
        raise ConfirmRejected(
            422,
            "Gateway not configured",
            "the Stripe account has no api_key",
            "gateway-not-configured",
        )
    return stripe.StripeClient(
        account.api_key.get_secret_value(),
        base_addresses={"api": account.api_base.rstrip("/")} if account.api_base else None,
        http_client=stripe.HTTPXClient(timeout=account.timeout_seconds),
        max_network_retries=0,
    )


async def confirm_card_payment(
    store: Store,
    account: GatewayAccountConfig,
    payment_id: str,
    *,
    client_secret: str,
    payment_method: str,
) -> str:
    """Attach ``payment_method`` to the payment's PaymentIntent and confirm it; the intent's
    status afterwards (Stripe's vocabulary)."""
    async with UnitOfWork.begin(store) as uow:
        record = await uow.payments.get(payment_id)
    if record is None:
        raise ConfirmRejected(
            404, "Payment not found", f"no payment {payment_id}", "payment-not-found"
        )
    intent_id = record.payment.gateway_payment_id
    secret = record.client_secret
    if (
        record.payment.gateway != "stripe"
        or intent_id is None
        or secret is None
        or not hmac.compare_digest(secret.encode(), client_secret.encode())
    ):
        # one answer for every mismatch: it must not tell a guesser which part was wrong
        raise ConfirmRejected(
            403,
            "Not payable here",
            "this payment cannot be confirmed with this client secret",
            "payment-not-confirmable",
        )
    intents = _client(account).v1.payment_intents
    try:
        intent = await intents.retrieve_async(intent_id)
        if intent.status == "requires_payment_method":
            intent = await intents.update_async(
                intent_id,
                {"payment_method": payment_method},
                {"idempotency_key": f"{payment_id}:demo-attach:{payment_method}"},
            )
        if intent.status == "requires_confirmation":
            intent = await intents.confirm_async(
                intent_id,
                options={"idempotency_key": f"{payment_id}:demo-confirm:{payment_method}"},
            )
    except stripe.CardError as exc:
        raise ConfirmRejected(
            402, "Card declined", exc.user_message or "the card was declined", "card-declined"
        ) from None
    except stripe.StripeError as exc:
        raise ConfirmRejected(
            502,
            "Gateway error",
            exc.user_message or "Stripe did not accept the confirmation",
            "gateway-error",
        ) from None
    return str(intent.status)
