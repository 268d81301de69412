"""Razorpay orders, payments and refunds with the official SDK (``razorpay.Client``).

Flow: :meth:`RazorpayPaymentsClient.create` opens an order (amount in the currency's subunits,
``receipt`` = payrail's payment id, ``notes.payrail_payment_id``, automatic capture); the front
end opens Razorpay Checkout with the order id (``gateway_payment_id``) and the account's public
key id - there is no redirect URL; payments of the order are captured automatically, and
:meth:`~RazorpayPaymentsClient.capture` captures an ``authorized`` one for accounts that capture
manually. ``gateway_payment_id`` is the order id; calls that need a payment (capture, refund)
accept either an ``order_`` or a ``pay_`` id and resolve the order's captured payment.

Idempotency: Razorpay has no idempotency keys. Orders are deduplicated by ``receipt``: create
looks the receipt up first (``GET /v1/orders?receipt=``) and returns the order it finds, so a
retry after a timeout - the policy's or the janitor's - never opens a second order. Refunds are
deduplicated the same way by their ``receipt`` (payrail's refund id) among the payment's refunds.
Two *concurrent* creates of one payment could still both create; checkout serializes them.

The SDK is synchronous (``requests``): calls run in a worker thread, and the client's session is
replaced by one that applies the policy's timeout and reports HTTP statuses (the SDK's own error
classes drop the status code, which the retry policy needs). ``api_base`` overrides
``https://api.razorpay.com`` (tests point it at the fake server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import razorpay
import requests

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
    call,
    status_failure,
    transport_failure,
)
from payrail.money import exponent, normalize_currency

T = TypeVar("T")

GATEWAY = "razorpay"
DEFAULT_API_BASE = "https://api.razorpay.com"
RECEIPT_MAX = 40  # Razorpay's limit for order and refund receipts

JsonObject = dict[str, Any]

_REFUND_STATUS = {"processed": "succeeded", "pending": "pending", "failed": "failed"}


class _PolicySession(requests.Session):
    """A ``requests`` session that enforces the call timeout and raises payrail's errors.

    Raising here, before the SDK inspects the response, keeps the HTTP status and
    ``Retry-After`` for the retry policy (the SDK's errors carry neither) and keeps the SDK's
    ``print`` calls on network errors out of the service logs.
    """

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs["timeout"] = self._timeout
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            raise transport_failure(exc, gateway=GATEWAY) from exc
        if response.status_code >= 400:
            try:
                error = response.json().get("error") or {}
            except ValueError:
                error = {}
            detail = str(error.get("description") or response.reason)
            # Razorpay answers an unknown id with 400 "The id provided does not exist".
            unknown = response.status_code == 400 and "does not exist" in detail
            raise status_failure(
                404 if unknown else response.status_code,
                gateway=GATEWAY,
                detail=detail,
                code=error.get("reason") or error.get("code"),
                retry_after=response.headers.get("Retry-After"),
            )
        return response


class RazorpayApi:
    """One Razorpay account: the SDK client (on a policy session) and the call policy."""

    def __init__(self, config: GatewayAccountConfig, *, policy: CallPolicy | None = None) -> None:
        if config.api_key is None or config.api_secret is None:
            raise ValueError("Razorpay needs api_key (key id) and api_secret (key secret)")
        self.policy = policy or CallPolicy.for_account(config)
        self._client = razorpay.Client(
            session=_PolicySession(self.policy.timeout),
            auth=(config.api_key.get_secret_value(), config.api_secret.get_secret_value()),
            base_url=(config.api_base or DEFAULT_API_BASE).rstrip("/"),
        )

    async def call(
        self, operation: str, request: Callable[[Any], T], *, idempotency_key: str | None = None
    ) -> T:
        """Run ``request(sdk_client)`` in a worker thread under the policy."""

        async def attempt() -> T:
            return await asyncio.to_thread(request, self._client)

        return await call(self.policy, GATEWAY, operation, attempt, idempotency_key=idempotency_key)

    async def order_by_receipt(self, receipt: str) -> JsonObject | None:
        found = await self.call("orders.all", lambda c: c.order.all({"receipt": receipt}))
        items: list[JsonObject] = found.get("items", [])
        return items[0] if items else None

    async def order_with_payments(self, order_id: str) -> tuple[JsonObject, list[JsonObject]]:
        order: JsonObject = await self.call("orders.fetch", lambda c: c.order.fetch(order_id))
        payments = await self.call("orders.payments", lambda c: c.order.payments(order_id))
        return order, list(payments.get("items", []))

    async def resolve_order_id(self, gateway_payment_id: str) -> str:
        """The order of an ``order_`` or ``pay_`` id."""
        if not gateway_payment_id.startswith("pay_"):
            return gateway_payment_id
        payment = await self.call("payments.fetch", lambda c: c.payment.fetch(gateway_payment_id))
        return str(payment["order_id"])


def _subunits(amount: int, currency: str) -> tuple[int, str]:
    """Amount and currency as Razorpay wants them: subunits; 3-decimal ones end in 0."""
    code = normalize_currency(currency)
    if exponent(code) == 3 and amount % 10:
        raise GatewayDeclined(
            f"Razorpay needs {code} amounts whose last decimal is 0", code="currency_precision"
        )
    return amount, code


def _receipt(value: str) -> str:
    if len(value) > RECEIPT_MAX:
        raise GatewayDeclined(
            f"Razorpay receipts are at most {RECEIPT_MAX} characters", code="receipt_too_long"
        )
    return value


def _settled(payments: list[JsonObject]) -> JsonObject | None:
    """The order's payment that took the money (captured, possibly refunded since)."""
    return next((p for p in payments if p.get("status") in ("captured", "refunded")), None)


def _decisive(payments: list[JsonObject]) -> JsonObject | None:
    """The payment that decides the order's status: settled, else authorized, else the newest."""
    settled = _settled(payments)
    if settled is not None:
        return settled
    authorized = next((p for p in payments if p.get("status") == "authorized"), None)
    if authorized is not None:
        return authorized
    return max(payments, key=lambda p: int(p.get("created_at", 0)), default=None)


_PAYMENT_STATUS = {
    "captured": GatewayPaymentStatus.SUCCEEDED,
    "refunded": GatewayPaymentStatus.SUCCEEDED,
    "authorized": GatewayPaymentStatus.REQUIRES_CAPTURE,
    "failed": GatewayPaymentStatus.FAILED,
    "created": GatewayPaymentStatus.PROCESSING,
}


def _payment(order: JsonObject, payments: list[JsonObject]) -> GatewayPayment:
    decisive = _decisive(payments)
    status = (
        _PAYMENT_STATUS.get(str(decisive.get("status")), GatewayPaymentStatus.PROCESSING)
        if decisive is not None
        else GatewayPaymentStatus.REQUIRES_ACTION
    )
    return GatewayPayment(
        gateway_payment_id=str(order["id"]),
        status=status,
        amount=int(order["amount"]),
        currency=str(order["currency"]).upper(),
        amount_refunded=int(decisive.get("amount_refunded") or 0) if decisive else 0,
        raw={"order": order, "payments": payments},
    )


class RazorpayPaymentsClient(PaymentsClient):
    def __init__(self, api: RazorpayApi) -> None:
        self._api = api

    async def create(self, request: CreatePayment) -> GatewayPayment:
        amount, currency = _subunits(request.amount, request.currency)
        receipt = _receipt(request.payment_id)
        notes = request.gateway_metadata()
        body = {
            "amount": amount,
            "currency": currency,
            "receipt": receipt,
            "notes": notes,
            "payment_capture": 1,
        }
        attempted = False

        def find_or_create(client: Any) -> JsonObject:
            nonlocal attempted
            if attempted:  # an earlier attempt may have created it: never create twice
                found: JsonObject = client.order.all({"receipt": receipt})
                if found.get("items"):
                    existing: JsonObject = found["items"][0]
                    return existing
            attempted = True
            created: JsonObject = client.order.create(dict(body))
            return created

        order = await self._api.order_by_receipt(receipt)
        if order is None:
            order = await self._api.call(
                "orders.create", find_or_create, idempotency_key=request.idempotency_key
            )
            return _payment(order, [])
        _, payments = await self._api.order_with_payments(str(order["id"]))
        return _payment(order, payments)

    async def capture(self, gateway_payment_id: str, *, idempotency_key: str) -> GatewayPayment:
        """Capture the order's authorized payment (accounts with manual capture)."""
        order_id = await self._api.resolve_order_id(gateway_payment_id)
        order, payments = await self._api.order_with_payments(order_id)
        if _settled(payments) is not None:
            return _payment(order, payments)
        authorized = next((p for p in payments if p.get("status") == "authorized"), None)
        if authorized is None:
            raise GatewayDeclined(
                f"Razorpay order {order_id} has no authorized payment to capture",
                code="not_authorized",
            )
        payment_id, amount, currency = (
            authorized["id"],
            authorized["amount"],
            authorized["currency"],
        )
        await self._api.call(
            "payments.capture",
            lambda c: c.payment.capture(payment_id, amount, {"currency": currency}),
            idempotency_key=idempotency_key,
        )
        order, payments = await self._api.order_with_payments(order_id)
        return _payment(order, payments)

    async def cancel(self, gateway_payment_id: str, *, idempotency_key: str) -> GatewayPayment:
        """Razorpay cannot cancel an order: it stays payable until it expires.

        Declined, definitively: checkout keeps the payment as it is. An authorized payment that
        is never captured is returned to the customer by Razorpay automatically.
        """
        raise GatewayDeclined(
            f"Razorpay orders cannot be canceled ({gateway_payment_id})",
            code="cancel_not_supported",
        )


class RazorpayRefundsClient(RefundsClient):
    """Refunds the order's captured payment; deduplicated by ``receipt`` = payrail's refund id."""

    def __init__(self, api: RazorpayApi) -> None:
        self._api = api

    async def refund(self, request: CreateRefund) -> GatewayRefund:
        amount, _ = _subunits(request.amount, request.currency)
        receipt = _receipt(request.refund_id)
        payment_id = await self._payment_id(request.gateway_payment_id)
        notes = {"payrail_payment_id": request.payment_id, "payrail_refund_id": request.refund_id}
        if request.reason:
            notes["reason"] = request.reason[:256]
        body = {"amount": amount, "receipt": receipt, "notes": notes, "speed": "normal"}

        def find(client: Any) -> JsonObject | None:
            refunds = client.payment.fetch_multiple_refund(payment_id, {"count": 100})
            return next((r for r in refunds.get("items", []) if r.get("receipt") == receipt), None)

        attempted = False

        def find_or_refund(client: Any) -> JsonObject:
            nonlocal attempted
            if attempted and (existing := find(client)) is not None:
                return existing
            attempted = True
            created: JsonObject = client.payment.refund(payment_id, dict(body))
            return created

        refund = await self._api.call("refunds.find", find)
        if refund is None:
            refund = await self._api.call(
                "payments.refund", find_or_refund, idempotency_key=request.idempotency_key
            )
        return GatewayRefund(
            gateway_refund_id=str(refund["id"]),
            status=_REFUND_STATUS.get(str(refund.get("status")), "pending"),
            amount=int(refund["amount"]),
            currency=str(refund.get("currency") or request.currency).upper(),
            raw=refund,
        )

    async def _payment_id(self, gateway_payment_id: str) -> str:
        if gateway_payment_id.startswith("pay_"):
            return gateway_payment_id
        _, payments = await self._api.order_with_payments(gateway_payment_id)
        settled = _settled(payments)
        if settled is None:
            raise GatewayDeclined(
                f"Razorpay order {gateway_payment_id} has no captured payment to refund",
                code="not_captured",
            )
        return str(settled["id"])


class RazorpayStatusSync(StatusSync):
    """Reads the order and its payments (and the captured payment's refunds).

    With the order id unknown, the order is found by ``receipt`` = payrail's payment id.
    """

    def __init__(self, api: RazorpayApi) -> None:
        self._api = api

    async def sync(self, *, payment_id: str, gateway_payment_id: str | None) -> list[GatewayEvent]:
        try:
            if gateway_payment_id is not None:
                order_id = await self._api.resolve_order_id(gateway_payment_id)
            else:
                found = await self._api.order_by_receipt(payment_id)
                if found is None:
                    return []
                order_id = str(found["id"])
            order, payments = await self._api.order_with_payments(order_id)
        except GatewayNotFound:
            return []
        payment = _payment(order, payments)
        decisive = _decisive(payments) or {}
        state = f"{decisive['id']}:{decisive.get('status')}" if decisive else order.get("status")
        now = datetime.now(UTC)
        events = [
            GatewayEvent(
                gateway=GATEWAY,
                gateway_event_id=f"sync:{order_id}:{state}",
                kind=SYNC_EVENT_KINDS[payment.status],
                payment_id=payment_id,
                gateway_payment_id=order_id,
                amount=payment.amount,
                currency=payment.currency,
                amount_refunded=payment.amount_refunded,
                failure_code=decisive.get("error_code") if decisive else None,
                failure_message=decisive.get("error_description") if decisive else None,
                occurred_at=now,
                source="status-sync",
                raw=dict(payment.raw),
            )
        ]
        settled = _settled(payments)
        if settled is None:
            return events
        settled_id = str(settled["id"])
        refunds = await self._api.call(
            "payments.refunds",
            lambda c: c.payment.fetch_multiple_refund(settled_id, {"count": 100}),
        )
        for refund in refunds.get("items", []):
            status = str(refund.get("status"))
            if status not in ("processed", "failed"):
                continue
            events.append(
                GatewayEvent(
                    gateway=GATEWAY,
                    gateway_event_id=f"sync:{refund['id']}:{status}",
                    kind=GatewayEventKind.REFUND_SUCCEEDED
                    if status == "processed"
                    else GatewayEventKind.REFUND_FAILED,
                    payment_id=payment_id,
                    gateway_payment_id=order_id,
                    gateway_refund_id=str(refund["id"]),
                    amount=int(refund["amount"]),
                    currency=str(refund.get("currency") or payment.currency).upper(),
                    amount_refunded=payment.amount_refunded,
                    occurred_at=now,
                    source="status-sync",
                    raw=refund,
                )
            )
        return events
