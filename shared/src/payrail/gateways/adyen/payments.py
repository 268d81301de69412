"""Adyen Checkout sessions and refunds with the official library (``Adyen.Adyen``).

Flow: :meth:`AdyenPaymentsClient.create` opens a Checkout session (``POST /sessions``) whose
``reference`` - Adyen's ``merchantReference`` in every webhook - is payrail's payment id. In the
default ``hosted`` mode Adyen returns a hosted payment page (``redirect_url``); in ``embedded``
mode (option ``session_mode``) the front end mounts Drop-in with the session id and
``sessionData`` (``client_secret``). Payments are captured automatically.

What Adyen does not offer, and what payrail does instead:

* **Status:** there is no "get payment" call. ``GET /sessions/{id}`` needs the ``sessionResult``
  only the shopper's browser receives, and Adyen says its status is not updated. The outcome
  arrives by webhook (``AUTHORISATION`` with the ``pspReference``; Adyen retries undelivered
  webhooks and they can be resent from the Customer Area), so :class:`AdyenStatusSync` reports
  nothing and the janitor flags a payment that stays unknown for a human.
* **Cancel:** an unpaid session cannot be canceled - it expires (one hour by default) - and a
  paid one is captured automatically, so :meth:`~AdyenPaymentsClient.cancel` is declined; refund
  a captured payment instead. :meth:`~AdyenPaymentsClient.capture` is declined likewise.
* **Refunds** need the payment's ``pspReference`` (from the ``AUTHORISATION`` webhook), not the
  session id; Adyen acknowledges them as ``received`` and confirms by ``REFUND`` webhook.

Idempotency: the caller's key is the ``Idempotency-Key`` header of every attempt. ``api_base``
replaces ``https://checkout-test.adyen.com`` (tests point it at the fake server); live accounts
set options ``platform=live`` and ``live_endpoint_prefix``. ``api_key`` is the API key and
``merchant_account`` the merchant account.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import Adyen
import requests

from payrail.gateways.base import (
    CreatePayment,
    CreateRefund,
    GatewayAccountConfig,
    GatewayDeclined,
    GatewayError,
    GatewayPayment,
    GatewayPaymentStatus,
    GatewayRefund,
    PaymentsClient,
    RefundsClient,
    StatusSync,
)
from payrail.gateways.events import GatewayEvent
from payrail.gateways.http import CallPolicy, Transient, call, status_failure, transport_failure
from payrail.money import normalize_currency

GATEWAY = "adyen"

JsonObject = dict[str, Any]


def _classify(exc: Exception) -> Transient | GatewayError | None:
    if isinstance(exc, requests.RequestException):
        return transport_failure(exc, gateway=GATEWAY)
    if isinstance(exc, Adyen.AdyenError) and isinstance(exc.status_code, int):
        message = exc.message if isinstance(exc.message, dict) else {}
        headers = exc.headers if hasattr(exc.headers, "get") else {}
        return status_failure(
            exc.status_code,
            gateway=GATEWAY,
            detail=str(message.get("message") or type(exc).__name__),
            code=str(exc.error_code) if exc.error_code else None,
            retry_after=headers.get("Retry-After"),
        )
    return None


def is_session_id(gateway_payment_id: str) -> bool:
    """Checkout session ids (``CS`` + 16 hex) are not pspReferences (16 characters)."""
    return gateway_payment_id.startswith("CS") and len(gateway_payment_id) != 16


class AdyenApi:
    """One Adyen merchant account: the library client, its Checkout services and the policy."""

    def __init__(self, config: GatewayAccountConfig, *, policy: CallPolicy | None = None) -> None:
        if config.api_key is None or not config.merchant_account:
            raise ValueError("Adyen needs api_key and merchant_account")
        self.policy = policy or CallPolicy.for_account(config)
        self.merchant_account = config.merchant_account
        self.options = config.options
        adyen = Adyen.Adyen(
            xapikey=config.api_key.get_secret_value(),
            merchant_account=config.merchant_account,
            platform=config.options.get("platform", "test"),
            live_endpoint_prefix=config.options.get("live_endpoint_prefix"),
            http_timeout=self.policy.timeout,
        )
        self.payments_api = adyen.checkout.payments_api
        self.modifications_api = adyen.checkout.modifications_api
        if config.api_base:
            version = self.payments_api.baseUrl.rsplit("/", 1)[-1]  # the library's API version
            base = f"{config.api_base.rstrip('/')}/{version}"
            self.payments_api.baseUrl = base
            self.modifications_api.baseUrl = base

    async def call(
        self, operation: str, request: Callable[[], Any], *, idempotency_key: str | None = None
    ) -> JsonObject:
        """Run one library call in a worker thread under the policy; the answer's JSON body."""

        def send() -> JsonObject:
            try:
                result = request()
            except Exception as exc:
                failure = _classify(exc)
                if failure is None:
                    raise
                raise failure from exc
            message: JsonObject = result.message or {}
            return message

        async def attempt() -> JsonObject:
            return await asyncio.to_thread(send)

        return await call(self.policy, GATEWAY, operation, attempt, idempotency_key=idempotency_key)


class AdyenPaymentsClient(PaymentsClient):
    def __init__(self, api: AdyenApi) -> None:
        self._api = api

    async def create(self, request: CreatePayment) -> GatewayPayment:
        return_url = request.return_url or self._api.options.get("return_url")
        if not return_url:
            raise GatewayDeclined(
                "Adyen sessions need a return_url (request or account option)",
                code="return_url_required",
            )
        currency = normalize_currency(request.currency)
        metadata = request.gateway_metadata()
        body: JsonObject = {
            "merchantAccount": self._api.merchant_account,
            "amount": {"value": request.amount, "currency": currency},
            "reference": request.payment_id,
            "returnUrl": return_url,
            "metadata": metadata,
            "mode": self._api.options.get("session_mode", "hosted"),
        }
        key = request.idempotency_key
        session = await self._api.call(
            "sessions.create",
            lambda: self._api.payments_api.sessions(body, idempotency_key=key),
            idempotency_key=key,
        )
        amount = session.get("amount") or {}
        return GatewayPayment(
            gateway_payment_id=str(session["id"]),
            status=GatewayPaymentStatus.REQUIRES_ACTION,
            amount=int(amount.get("value", request.amount)),
            currency=str(amount.get("currency", currency)),
            client_secret=session.get("sessionData"),
            redirect_url=session.get("url"),
            raw=session,
        )

    async def capture(self, gateway_payment_id: str, *, idempotency_key: str) -> GatewayPayment:
        """Declined: payrail's Adyen sessions are captured automatically."""
        raise GatewayDeclined(
            "Adyen payments are captured automatically; there is nothing to capture",
            code="capture_not_supported",
        )

    async def cancel(self, gateway_payment_id: str, *, idempotency_key: str) -> GatewayPayment:
        """Declined: an unpaid session expires by itself, a paid one is captured (refund it)."""
        raise GatewayDeclined(
            f"Adyen cannot cancel {gateway_payment_id}: unpaid sessions expire, "
            "captured payments are refunded",
            code="cancel_not_supported",
        )


class AdyenRefundsClient(RefundsClient):
    """``POST /payments/{pspReference}/refunds``; the refund stays ``pending`` until its webhook."""

    def __init__(self, api: AdyenApi) -> None:
        self._api = api

    async def refund(self, request: CreateRefund) -> GatewayRefund:
        psp_reference = request.gateway_payment_id
        if is_session_id(psp_reference):
            raise GatewayDeclined(
                "an Adyen refund needs the payment's pspReference (from the AUTHORISATION "
                f"webhook), not the session id {psp_reference}",
                code="psp_reference_required",
            )
        currency = normalize_currency(request.currency)
        body: JsonObject = {
            "merchantAccount": self._api.merchant_account,
            "amount": {"value": request.amount, "currency": currency},
            "reference": request.refund_id,
        }
        key = request.idempotency_key
        refund = await self._api.call(
            "payments.refunds",
            lambda: self._api.modifications_api.refund_captured_payment(
                body, psp_reference, idempotency_key=key
            ),
            idempotency_key=key,
        )
        amount = refund.get("amount") or {}
        return GatewayRefund(
            gateway_refund_id=str(refund["pspReference"]),
            status="pending",  # "received": the REFUND webhook carries the outcome
            amount=int(amount.get("value", request.amount)),
            currency=str(amount.get("currency", currency)),
            raw=refund,
        )


class AdyenStatusSync(StatusSync):
    """Reports nothing: Adyen has no payment status API (see the module docstring)."""

    async def sync(self, *, payment_id: str, gateway_payment_id: str | None) -> list[GatewayEvent]:
        return []
