"""PayPal Orders v2 over httpx: orders, captures, refunds and status sync.

Flow: :meth:`PayPalPaymentsClient.create` opens an order (intent ``CAPTURE``) whose only purchase
unit carries payrail's payment id as ``custom_id`` and ``invoice_id``; the customer approves it
at ``redirect_url``; PayPal then reports the order ``APPROVED`` (webhook
``CHECKOUT.ORDER.APPROVED`` or a status sync: ``payment.authorized``) and nothing is charged
until checkout calls :meth:`~PayPalPaymentsClient.capture`. A capture answers with the order
``COMPLETED`` and its capture, whose status is the payment's outcome.

Authentication is OAuth2 client credentials (``api_key`` = client id, ``api_secret`` = secret):
the access token is cached per account, refreshed shortly before it expires and, if PayPal still
answers 401 (revoked or expired early), refreshed once and the request repeated once.

Idempotency: the caller's key is the ``PayPal-Request-Id`` header of every attempt, so PayPal
answers a retried create / capture / refund with the result of the first one.

``api_base`` defaults to the sandbox (``https://api-m.sandbox.paypal.com``); set it to
``https://api-m.paypal.com`` for live.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from pydantic import SecretStr

from payrail.gateways.base import (
    SYNC_EVENT_KINDS,
    CreatePayment,
    CreateRefund,
    GatewayAccountConfig,
    GatewayDeclined,
    GatewayPayment,
    GatewayPaymentStatus,
    GatewayRefund,
    PaymentsClient,
    RefundsClient,
    StatusSync,
)
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.gateways.http import (
    CallPolicy,
    GatewayNotFound,
    Transient,
    call,
    status_failure,
    transport_failure,
)
from payrail.money import Money, exponent, normalize_currency

GATEWAY = "paypal"
SANDBOX_API_BASE = "https://api-m.sandbox.paypal.com"

# ISO 4217 gives these two decimals, PayPal accepts whole units only.
_WHOLE_UNITS_ONLY = frozenset({"HUF", "TWD"})

# Order status -> payrail status; COMPLETED is decided by the capture (see _order_status).
_ORDER_STATUS = {
    "CREATED": GatewayPaymentStatus.REQUIRES_ACTION,
    "SAVED": GatewayPaymentStatus.REQUIRES_ACTION,
    "PAYER_ACTION_REQUIRED": GatewayPaymentStatus.REQUIRES_ACTION,
    "APPROVED": GatewayPaymentStatus.REQUIRES_CAPTURE,
    "VOIDED": GatewayPaymentStatus.CANCELED,
}
_CAPTURE_STATUS = {
    "COMPLETED": GatewayPaymentStatus.SUCCEEDED,
    "PARTIALLY_REFUNDED": GatewayPaymentStatus.SUCCEEDED,
    "REFUNDED": GatewayPaymentStatus.SUCCEEDED,
    "PENDING": GatewayPaymentStatus.PROCESSING,
    "DECLINED": GatewayPaymentStatus.FAILED,
    "FAILED": GatewayPaymentStatus.FAILED,
}
_REFUND_STATUS = {"COMPLETED": "succeeded", "PENDING": "pending"}  # CANCELLED, FAILED: failed

JsonObject = dict[str, Any]


def paypal_amount(amount: int, currency: str) -> JsonObject:
    """PayPal's ``{"currency_code", "value"}``: an exact decimal string, never a float."""
    code = normalize_currency(currency)
    major = Money(amount, code).to_major()
    digits = exponent(code)
    if code in _WHOLE_UNITS_ONLY:
        if major != major.to_integral_value():
            raise GatewayDeclined(
                f"PayPal accepts whole {code} amounts only", code="currency_precision"
            )
        digits = 0
    return {"currency_code": code, "value": f"{major:.{digits}f}"}


def _minor(amount: Mapping[str, Any]) -> tuple[int, str]:
    money = Money.from_major(Decimal(str(amount["value"])), str(amount["currency_code"]))
    return money.amount, money.currency


@dataclass(frozen=True, slots=True)
class _Token:
    value: SecretStr
    refresh_at: float


class PayPalApi:
    """One PayPal account: a pooled httpx client, the cached OAuth2 token and the call policy.

    Shared by the payments, refunds and status-sync clients of the account (the family memoizes
    it), so they share one token. ``clock`` is monotonic seconds; tests move it to expire tokens.
    """

    def __init__(
        self,
        config: GatewayAccountConfig,
        *,
        policy: CallPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.api_key is None or config.api_secret is None:
            raise ValueError("PayPal needs api_key (client id) and api_secret (client secret)")
        self._client_id = config.api_key
        self._client_secret = config.api_secret
        self.policy = policy or CallPolicy.for_account(config)
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=(config.api_base or SANDBOX_API_BASE).rstrip("/"),
            timeout=self.policy.timeout,
        )
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        body: JsonObject | None = None,
        request_id: str | None = None,
    ) -> JsonObject:
        """Call the REST API with the policy's retries; ``request_id`` is PayPal-Request-Id."""
        headers = {"Prefer": "return=representation"}
        if request_id is not None:
            headers["PayPal-Request-Id"] = request_id

        async def attempt() -> JsonObject:
            token = await self._access_token()
            response = await self._send(method, path, body, headers, token)
            if response.status_code == 401:
                # Expired or revoked before our estimate: one fresh token, one more try.
                token = await self._access_token(rejected=token)
                response = await self._send(method, path, body, headers, token)
            return _json_or_raise(response)

        return await call(self.policy, GATEWAY, operation, attempt, idempotency_key=request_id)

    async def _send(
        self,
        method: str,
        path: str,
        body: JsonObject | None,
        headers: Mapping[str, str],
        token: SecretStr,
    ) -> httpx.Response:
        try:
            return await self._http.request(
                method,
                path,
                json=body,
                headers={**headers, "Authorization": f"Bearer {token.get_secret_value()}"},
            )
        except httpx.TransportError as exc:
            raise transport_failure(exc, gateway=GATEWAY) from exc

    async def _access_token(self, *, rejected: SecretStr | None = None) -> SecretStr:
        """The cached token, fetched anew when close to expiry or when PayPal ``rejected`` it."""
        async with self._token_lock:
            token = self._token
            usable = token is not None and (
                token.value != rejected
                if rejected is not None
                else self._clock() < token.refresh_at
            )
            if token is not None and usable:
                return token.value
            self._token = await self._fetch_token()
            return self._token.value

    async def _fetch_token(self) -> _Token:
        try:
            response = await self._http.post(
                "/v1/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(self._client_id.get_secret_value(), self._client_secret.get_secret_value()),
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise transport_failure(exc, gateway=GATEWAY) from exc
        payload = _json_or_raise(response)
        lifetime = float(payload.get("expires_in", 0))
        if not payload.get("access_token") or lifetime <= 0:
            raise Transient("PayPal token response without access_token/expires_in")
        # Refresh ahead of expiry: 10% of the lifetime, at most five minutes.
        margin = min(300.0, lifetime / 10)
        return _Token(SecretStr(str(payload["access_token"])), self._clock() + lifetime - margin)


def _json_or_raise(response: httpx.Response) -> JsonObject:
    try:
        payload = response.json() if response.content else {}
    except ValueError:
        payload = None
    if response.is_success:
        if not isinstance(payload, dict):
            raise Transient(f"PayPal answered HTTP {response.status_code} with an unreadable body")
        return payload
    code, detail = _error_of(payload if isinstance(payload, dict) else {})
    raise status_failure(
        response.status_code,
        gateway=GATEWAY,
        detail=detail or response.reason_phrase,
        code=code,
        retry_after=response.headers.get("Retry-After"),
    )


def _error_of(payload: JsonObject) -> tuple[str | None, str | None]:
    """(code, detail) of a PayPal error body: REST (``name``/``details``) or OAuth (``error``)."""
    details = payload.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        first = details[0]
        return first.get("issue"), first.get("description") or payload.get("message")
    if "error" in payload:
        return str(payload["error"]), payload.get("error_description")
    return payload.get("name"), payload.get("message")


def _unit(order: JsonObject) -> JsonObject:
    units = order.get("purchase_units") or [{}]
    first: JsonObject = units[0]
    return first


def _captures(order: JsonObject) -> list[JsonObject]:
    captures: list[JsonObject] = _unit(order).get("payments", {}).get("captures", [])
    return captures


def _refunds(order: JsonObject) -> list[JsonObject]:
    refunds: list[JsonObject] = _unit(order).get("payments", {}).get("refunds", [])
    return refunds


def _order_status(order: JsonObject) -> GatewayPaymentStatus:
    status = str(order.get("status", ""))
    if status == "COMPLETED":
        captures = _captures(order)
        if not captures:
            return GatewayPaymentStatus.PROCESSING
        return _CAPTURE_STATUS.get(str(captures[0].get("status")), GatewayPaymentStatus.PROCESSING)
    return _ORDER_STATUS.get(status, GatewayPaymentStatus.PROCESSING)


def _refunded(order: JsonObject) -> int:
    return sum(_minor(r["amount"])[0] for r in _refunds(order) if r.get("status") == "COMPLETED")


def _payment(order: JsonObject) -> GatewayPayment:
    amount, currency = _minor(_unit(order)["amount"])
    links = {link.get("rel"): link.get("href") for link in order.get("links", [])}
    return GatewayPayment(
        gateway_payment_id=str(order["id"]),
        status=_order_status(order),
        amount=amount,
        currency=currency,
        redirect_url=links.get("payer-action") or links.get("approve"),
        amount_refunded=_refunded(order),
        raw=order,
    )


class PayPalPaymentsClient(PaymentsClient):
    """Orders: create, capture (needed after approval), cancel (see :meth:`cancel`)."""

    def __init__(self, api: PayPalApi) -> None:
        self._api = api

    async def create(self, request: CreatePayment) -> GatewayPayment:
        unit: JsonObject = {
            "custom_id": request.payment_id,
            "invoice_id": request.payment_id,
            "amount": paypal_amount(request.amount, request.currency),
        }
        if request.description:
            unit["description"] = request.description[:127]
        body: JsonObject = {"intent": "CAPTURE", "purchase_units": [unit]}
        if request.return_url:
            body["payment_source"] = {
                "paypal": {
                    "experience_context": {
                        "return_url": request.return_url,
                        "cancel_url": request.return_url,
                        "user_action": "PAY_NOW",
                        "shipping_preference": "NO_SHIPPING",
                    }
                }
            }
        order = await self._api.request(
            "POST",
            "/v2/checkout/orders",
            operation="orders.create",
            body=body,
            request_id=request.idempotency_key,
        )
        return _payment(order)

    async def capture(self, gateway_payment_id: str, *, idempotency_key: str) -> GatewayPayment:
        """Capture an approved order; an order captured already answers with its current state."""
        try:
            order = await self._api.request(
                "POST",
                f"/v2/checkout/orders/{gateway_payment_id}/capture",
                operation="orders.capture",
                body={},
                request_id=idempotency_key,
            )
        except GatewayDeclined as exc:
            if exc.code != "ORDER_ALREADY_CAPTURED":
                raise
            order = await get_order(self._api, gateway_payment_id)
        return _payment(order)

    async def cancel(self, gateway_payment_id: str, *, idempotency_key: str) -> GatewayPayment:
        """Give up an order that is not captured.

        Orders v2 has no cancel call for ``CAPTURE`` orders: an order only moves money when the
        merchant captures it, so an uncaptured order is canceled by never capturing it (PayPal
        expires it). The answer is ``canceled`` with the order as PayPal holds it in ``raw``;
        a captured order cannot be canceled (refund it instead).
        """
        order = await get_order(self._api, gateway_payment_id)
        current = _payment(order)
        if current.status in (GatewayPaymentStatus.SUCCEEDED, GatewayPaymentStatus.PROCESSING):
            raise GatewayDeclined(
                f"PayPal order {gateway_payment_id} is captured; refund it instead",
                code="already_captured",
            )
        if current.status in (GatewayPaymentStatus.FAILED, GatewayPaymentStatus.CANCELED):
            return current
        return GatewayPayment(
            gateway_payment_id=current.gateway_payment_id,
            status=GatewayPaymentStatus.CANCELED,
            amount=current.amount,
            currency=current.currency,
            raw=order,
        )


async def get_order(api: PayPalApi, order_id: str) -> JsonObject:
    return await api.request("GET", f"/v2/checkout/orders/{order_id}", operation="orders.get")


class PayPalRefundsClient(RefundsClient):
    """Refunds a capture; ``gateway_payment_id`` may be the order id or the capture id."""

    def __init__(self, api: PayPalApi) -> None:
        self._api = api

    async def refund(self, request: CreateRefund) -> GatewayRefund:
        capture_id = await self._capture_id(request.gateway_payment_id)
        body: JsonObject = {
            "amount": paypal_amount(request.amount, request.currency),
            "invoice_id": request.refund_id,
            "custom_id": request.payment_id,
        }
        if request.reason:
            body["note_to_payer"] = request.reason[:255]
        refund = await self._api.request(
            "POST",
            f"/v2/payments/captures/{capture_id}/refund",
            operation="captures.refund",
            body=body,
            request_id=request.idempotency_key,
        )
        amount, currency = (
            _minor(refund["amount"]) if "amount" in refund else (request.amount, request.currency)
        )
        return GatewayRefund(
            gateway_refund_id=str(refund["id"]),
            status=_REFUND_STATUS.get(str(refund.get("status")), "failed"),
            amount=amount,
            currency=currency,
            raw=refund,
        )

    async def _capture_id(self, gateway_payment_id: str) -> str:
        try:
            order = await get_order(self._api, gateway_payment_id)
        except GatewayNotFound:
            return gateway_payment_id  # not an order: PayPal's capture events name the capture
        for capture in _captures(order):
            if _CAPTURE_STATUS.get(str(capture.get("status"))) is GatewayPaymentStatus.SUCCEEDED:
                return str(capture["id"])
        raise GatewayDeclined(
            f"PayPal order {gateway_payment_id} has no completed capture to refund",
            code="not_captured",
        )


class PayPalStatusSync(StatusSync):
    """Reads the order (``GET /v2/checkout/orders/{id}``): its status, capture and refunds.

    PayPal cannot search orders by ``custom_id``: with the order id unknown (create's outcome was
    unknown) nothing is reported; repeating create with the same idempotency key (PayPal-Request-Id)
    returns the order if it exists.
    """

    def __init__(self, api: PayPalApi) -> None:
        self._api = api

    async def sync(self, *, payment_id: str, gateway_payment_id: str | None) -> list[GatewayEvent]:
        if gateway_payment_id is None:
            return []
        try:
            order = await get_order(self._api, gateway_payment_id)
        except GatewayNotFound:
            return []
        now = datetime.now(UTC)
        payment = _payment(order)
        captures = _captures(order)
        capture = captures[0] if captures else {}
        state = str(capture.get("status") or order.get("status"))
        reason = capture.get("status_details", {}).get("reason")
        events = [
            GatewayEvent(
                gateway=GATEWAY,
                gateway_event_id=f"sync:{payment.gateway_payment_id}:{state}",
                kind=SYNC_EVENT_KINDS[payment.status],
                payment_id=payment_id,
                gateway_payment_id=payment.gateway_payment_id,
                amount=payment.amount,
                currency=payment.currency,
                amount_refunded=payment.amount_refunded,
                failure_code=reason if payment.status is GatewayPaymentStatus.FAILED else None,
                occurred_at=now,
                source="status-sync",
                raw=order,
            )
        ]
        for refund in _refunds(order):
            status = str(refund.get("status"))
            if status not in ("COMPLETED", "CANCELLED", "FAILED"):
                continue
            amount, currency = _minor(refund["amount"])
            events.append(
                GatewayEvent(
                    gateway=GATEWAY,
                    gateway_event_id=f"sync:{refund['id']}:{status}",
                    kind=GatewayEventKind.REFUND_SUCCEEDED
                    if status == "COMPLETED"
                    else GatewayEventKind.REFUND_FAILED,
                    payment_id=payment_id,
                    gateway_payment_id=payment.gateway_payment_id,
                    gateway_refund_id=str(refund["id"]),
                    amount=amount,
                    currency=currency,
                    amount_refunded=payment.amount_refunded,
                    occurred_at=now,
                    source="status-sync",
                    raw=refund,
                )
            )
        return events
