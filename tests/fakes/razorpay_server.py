"""A fake Razorpay API: orders, payments, captures and refunds.

It follows Razorpay's published API as far as payrail's client (the official SDK) uses it: HTTP
basic auth with key id and secret; ``POST /v1/orders``, ``GET /v1/orders`` (``receipt`` filter),
``GET /v1/orders/{id}``, ``GET /v1/orders/{id}/payments``, ``GET /v1/payments/{id}``,
``POST /v1/payments/{id}/capture``, ``POST /v1/payments/{id}/refund``,
``GET /v1/payments/{id}/refunds``; collections as ``{"entity": "collection", "count", "items"}``
and errors as ``{"error": {"code": "BAD_REQUEST_ERROR", "description", ...}}``. Like Razorpay it
has no idempotency keys and does not enforce unique receipts.

The customer's part happens through :meth:`FakeRazorpay.pay` (Razorpay Checkout completing a
payment of the order, captured at once when the order asked for automatic capture).
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

from aiohttp import web

from tests.fakes.http_fake import FakeGateway

JsonObject = dict[str, Any]


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(10).replace('-', 'x').replace('_', 'y')[:14]}"


def _bad_request(description: str, field: str | None = None) -> web.Response:
    return web.json_response(
        {
            "error": {
                "code": "BAD_REQUEST_ERROR",
                "description": description,
                "source": "business",
                "step": "payment_initiation",
                "reason": "input_validation_failed",
                "metadata": {},
                "field": field,
            }
        },
        status=400,
    )


def _collection(items: list[JsonObject]) -> web.Response:
    return web.json_response({"entity": "collection", "count": len(items), "items": items})


class FakeRazorpay(FakeGateway):
    def __init__(self, key_id: str = "rzp_test_fake", key_secret: str = "fake-secret") -> None:  # noqa: S107
        super().__init__()
        self.key_id = key_id
        self.key_secret = key_secret
        self.orders: dict[str, JsonObject] = {}
        self.payments: dict[str, JsonObject] = {}
        self.refunds: dict[str, JsonObject] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/orders", self._create_order),
            web.get("/v1/orders", self._list_orders),
            web.get("/v1/orders/{id}", self._get_order),
            web.get("/v1/orders/{id}/payments", self._order_payments),
            web.get("/v1/payments/{id}", self._get_payment),
            web.post("/v1/payments/{id}/capture", self._capture),
            web.post("/v1/payments/{id}/refund", self._refund),
            web.get("/v1/payments/{id}/refunds", self._payment_refunds),
        ]

    def fault_body(self, status: int) -> Any:
        code = "SERVER_ERROR" if status >= 500 else "BAD_REQUEST_ERROR"
        return {"error": {"code": code, "description": "injected fault"}}

    # ------------------------------------------------------------------ test controls

    def pay(self, order_id: str, *, succeed: bool = True, capture: bool | None = None) -> str:
        """The customer pays the order with a card; returns the payment id.

        ``capture`` overrides the order's ``payment_capture`` (an account set to capture
        manually in the Dashboard leaves payments ``authorized``).
        """
        with self.lock:
            order = self.orders[order_id]
            automatic = bool(order["payment_capture"]) if capture is None else capture
            status = ("captured" if automatic else "authorized") if succeed else "failed"
            payment: JsonObject = {
                "id": _id("pay"),
                "entity": "payment",
                "amount": order["amount"],
                "currency": order["currency"],
                "status": status,
                "order_id": order_id,
                "invoice_id": None,
                "international": False,
                "method": "card",
                "amount_refunded": 0,
                "refund_status": None,
                "captured": status == "captured",
                "description": None,
                "email": "customer@example.com",
                "contact": "+919000090000",
                "notes": {},  # Razorpay does not copy the order's notes onto its payments
                "fee": round(order["amount"] * 0.02) if status == "captured" else None,
                "tax": 0 if status == "captured" else None,
                "error_code": None if succeed else "BAD_REQUEST_ERROR",
                "error_description": None if succeed else "Payment failed",
                "created_at": int(time.time()),
            }
            self.payments[payment["id"]] = payment
            order["attempts"] += 1
            order["status"] = "paid" if status in ("captured", "authorized") else "attempted"
            if status == "captured":
                order["amount_paid"], order["amount_due"] = order["amount"], 0
            return str(payment["id"])

    # ------------------------------------------------------------------ handlers

    def refuse(self, request: web.Request) -> web.Response | None:
        expected = base64.b64encode(f"{self.key_id}:{self.key_secret}".encode()).decode()
        if request.headers.get("Authorization") == f"Basic {expected}":
            return None
        return web.json_response(
            {"error": {"code": "BAD_REQUEST_ERROR", "description": "Authentication failed"}},
            status=401,
        )

    async def _create_order(self, request: web.Request) -> web.Response:
        body = await request.json()
        amount, currency = body.get("amount"), body.get("currency")
        if not isinstance(amount, int) or amount < 100:
            return _bad_request("Order amount less than minimum amount allowed", "amount")
        if not isinstance(currency, str) or len(currency) != 3:
            return _bad_request("The currency field is invalid", "currency")
        receipt = body.get("receipt")
        if receipt is not None and len(receipt) > 40:
            return _bad_request("The receipt may not be greater than 40 characters.", "receipt")
        notes = body.get("notes") or {}
        if len(notes) > 15:
            return _bad_request("Number of fields in notes should be less than or equal to 15")
        order: JsonObject = {
            "id": _id("order"),
            "entity": "order",
            "amount": amount,
            "amount_paid": 0,
            "amount_due": amount,
            "currency": currency,
            "receipt": receipt,
            "offer_id": None,
            "status": "created",
            "attempts": 0,
            "notes": notes,
            "payment_capture": int(body.get("payment_capture", 1)),
            "created_at": int(time.time()),
        }
        with self.lock:
            self.orders[order["id"]] = order
        return web.json_response(order)

    async def _list_orders(self, request: web.Request) -> web.Response:
        receipt = request.query.get("receipt")
        with self.lock:
            orders = [o for o in self.orders.values() if receipt is None or o["receipt"] == receipt]
        orders.sort(key=lambda o: o["created_at"], reverse=True)
        return _collection(orders[: int(request.query.get("count", 10))])

    async def _get_order(self, request: web.Request) -> web.Response:
        with self.lock:
            order = self.orders.get(request.match_info["id"])
        if order is None:
            return _bad_request("The id provided does not exist", "id")
        return web.json_response(order)

    async def _order_payments(self, request: web.Request) -> web.Response:
        order_id = request.match_info["id"]
        with self.lock:
            if order_id not in self.orders:
                return _bad_request("The id provided does not exist", "id")
            payments = [p for p in self.payments.values() if p["order_id"] == order_id]
        return _collection(payments)

    async def _get_payment(self, request: web.Request) -> web.Response:
        with self.lock:
            payment = self.payments.get(request.match_info["id"])
        if payment is None:
            return _bad_request("The id provided does not exist", "id")
        return web.json_response(payment)

    async def _capture(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            payment = self.payments.get(request.match_info["id"])
            if payment is None:
                return _bad_request("The id provided does not exist", "id")
            if payment["status"] != "authorized":
                return _bad_request("This payment has already been captured")
            if body.get("amount") != payment["amount"]:
                return _bad_request("Capture amount must be equal to the amount authorized")
            if body.get("currency") != payment["currency"]:
                return _bad_request("The currency does not match the payment currency")
            payment.update(status="captured", captured=True, fee=0, tax=0)
            order = self.orders[payment["order_id"]]
            order["amount_paid"], order["amount_due"] = order["amount"], 0
            return web.json_response(payment)

    async def _refund(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            payment = self.payments.get(request.match_info["id"])
            if payment is None:
                return _bad_request("The id provided does not exist", "id")
            if payment["status"] not in ("captured", "refunded"):
                return _bad_request("The payment has not been captured")
            remaining = payment["amount"] - payment["amount_refunded"]
            amount = body.get("amount", remaining)
            if not isinstance(amount, int) or amount <= 0 or amount > remaining:
                return _bad_request(
                    "The total refund amount is greater than the refund payment amount", "amount"
                )
            refund: JsonObject = {
                "id": _id("rfnd"),
                "entity": "refund",
                "amount": amount,
                "currency": payment["currency"],
                "payment_id": payment["id"],
                "notes": body.get("notes") or {},
                "receipt": body.get("receipt"),
                "acquirer_data": {"arn": None},
                "created_at": int(time.time()),
                "batch_id": None,
                "status": "processed",
                "speed_processed": "normal",
                "speed_requested": body.get("speed", "normal"),
            }
            self.refunds[refund["id"]] = refund
            payment["amount_refunded"] += amount
            full = payment["amount_refunded"] == payment["amount"]
            payment["refund_status"] = "full" if full else "partial"
            if full:
                payment["status"] = "refunded"
            return web.json_response(refund)

    async def _payment_refunds(self, request: web.Request) -> web.Response:
        payment_id = request.match_info["id"]
        with self.lock:
            refunds = [r for r in self.refunds.values() if r["payment_id"] == payment_id]
        return _collection(refunds)
