"""A fake PayPal REST API: OAuth2 tokens, Orders v2 and capture refunds.

It follows PayPal's published API as far as payrail's client uses it:

* ``POST /v1/oauth2/token`` - client credentials over HTTP basic auth; tokens expire after
  ``token_lifetime`` seconds (``expires_in``), and :meth:`FakePayPal.expire_tokens` revokes every
  token issued so far (the API then answers 401 ``AUTHENTICATION_FAILURE``);
* ``POST /v2/checkout/orders``, ``GET /v2/checkout/orders/{id}``,
  ``POST /v2/checkout/orders/{id}/capture``, ``POST /v2/payments/captures/{id}/refund`` with
  PayPal's status codes, error bodies (``name``/``details[].issue``) and ``PayPal-Request-Id``
  idempotency (a repeated id replays the first answer).

The buyer's part happens through :meth:`FakePayPal.approve` (the approval PayPal records when the
buyer accepts on the approve link).
"""

from __future__ import annotations

import base64
import secrets
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from tests.fakes.http_fake import FakeGateway

_ZERO_DECIMAL = {"HUF", "JPY", "TWD"}
JsonObject = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _paypal_id() -> str:
    return secrets.token_hex(9).upper()[:17]


def _reused() -> web.Response:
    return web.json_response(
        _unprocessable(
            "PAYPAL_REQUEST_ID_PREVIOUSLY_USED",
            "The PayPal-Request-Id has already been used for another request.",
        ),
        status=422,
    )


def _cents(amount: JsonObject) -> Decimal:
    return Decimal(str(amount["value"]))


class FakePayPal(FakeGateway):
    def __init__(
        self,
        client_id: str = "fake-client",
        client_secret: str = "fake-secret",  # noqa: S107 - a fake's credential
        *,
        token_lifetime: int = 32400,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.orders: dict[str, JsonObject] = {}
        self.captures: dict[str, str] = {}  # capture id -> order id

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/oauth2/token", self._token),
            web.post("/v2/checkout/orders", self._create_order),
            web.get("/v2/checkout/orders/{id}", self._get_order),
            web.post("/v2/checkout/orders/{id}/capture", self._capture),
            web.post("/v2/payments/captures/{id}/refund", self._refund),
        ]

    def fault_body(self, status: int) -> Any:
        if status == 401:
            return {"name": "AUTHENTICATION_FAILURE", "message": "Authentication failed."}
        if status == 429:
            return {"name": "RATE_LIMIT_REACHED", "message": "Too many requests."}
        if status < 500:
            return _invalid("INVALID_PARAMETER_VALUE", "injected fault")
        return {"name": "INTERNAL_SERVER_ERROR", "message": "An internal server error occurred."}

    # ------------------------------------------------------------------ test controls

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (as if it expired early or was revoked)."""
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def approve(self, order_id: str) -> None:
        """The buyer approves the order on PayPal's page."""
        with self.lock:
            order = self.orders[order_id]
            order["status"] = "APPROVED"
            order["payer"] = {"payer_id": "FAKEPAYER01", "email_address": "buyer@example.com"}

    # ------------------------------------------------------------------ handlers

    async def _token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        form = await request.post()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
                status=401,
            )
        if form.get("grant_type") != "client_credentials":
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "Grant type is invalid"},
                status=400,
            )
        token = "A21AA" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime
        return web.json_response(
            {
                "scope": "https://uri.paypal.com/services/payments/payment",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": self.token_lifetime,
                "nonce": secrets.token_hex(8),
            }
        )

    def refuse(self, request: web.Request) -> web.Response | None:
        """The REST API wants a live bearer token (the token endpoint checks basic auth)."""
        if request.path == "/v1/oauth2/token":
            return None
        header = request.headers.get("Authorization", "")
        with self.lock:
            expiry = self.tokens.get(header.removeprefix("Bearer "))
        if header.startswith("Bearer ") and expiry is not None and time.monotonic() < expiry:
            return None
        return web.json_response(
            {
                "name": "AUTHENTICATION_FAILURE",
                "message": "Authentication failed due to invalid authentication credentials "
                "or a missing Authorization header.",
            },
            status=401,
        )

    def _link(self, request: web.Request, path: str, rel: str, method: str) -> JsonObject:
        return {"href": f"http://{request.host}{path}", "rel": rel, "method": method}

    async def _create_order(self, request: web.Request) -> web.Response:
        return await self.once(
            request,
            request.headers.get("PayPal-Request-Id"),
            lambda body: self._new_order(request, body),
            mismatch=_reused,
        )

    def _new_order(self, request: web.Request, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or body.get("intent") not in ("CAPTURE", "AUTHORIZE"):
            return 400, _invalid("MISSING_REQUIRED_PARAMETER", "intent is required")
        units = body.get("purchase_units")
        if not isinstance(units, list) or not units or "amount" not in units[0]:
            return 400, _invalid("MISSING_REQUIRED_PARAMETER", "purchase_units[0].amount")
        amount = units[0]["amount"]
        problem = _amount_problem(amount)
        if problem is not None:
            return 422, _unprocessable(problem, f"amount {amount!r} is invalid")
        order_id = _paypal_id()
        experience = body.get("payment_source", {}).get("paypal", {}).get("experience_context")
        approve = {
            "href": f"https://www.sandbox.paypal.com/checkoutnow?token={order_id}",
            "rel": "payer-action" if experience else "approve",
            "method": "GET",
        }
        order: JsonObject = {
            "id": order_id,
            "intent": body["intent"],
            "status": "PAYER_ACTION_REQUIRED" if experience else "CREATED",
            "purchase_units": [{"reference_id": "default", **units[0]}],
            "create_time": _now(),
            "links": [
                self._link(request, f"/v2/checkout/orders/{order_id}", "self", "GET"),
                approve,
                self._link(request, f"/v2/checkout/orders/{order_id}", "update", "PATCH"),
                self._link(request, f"/v2/checkout/orders/{order_id}/capture", "capture", "POST"),
            ],
        }
        with self.lock:
            self.orders[order_id] = order
        return 201, order

    async def _get_order(self, request: web.Request) -> web.Response:
        with self.lock:
            order = self.orders.get(request.match_info["id"])
            if order is None:
                return _not_found()
            return web.json_response(order)

    async def _capture(self, request: web.Request) -> web.Response:
        order_id = request.match_info["id"]
        return await self.once(
            request,
            request.headers.get("PayPal-Request-Id"),
            lambda _body: self._capture_order(order_id),
            mismatch=_reused,
        )

    def _capture_order(self, order_id: str) -> tuple[int, Any]:
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return 404, _missing()
            if order["status"] == "COMPLETED":
                return 422, _unprocessable("ORDER_ALREADY_CAPTURED", "Order already captured.")
            if order["status"] != "APPROVED":
                return 422, _unprocessable(
                    "ORDER_NOT_APPROVED", "Payer has not yet approved the Order for payment."
                )
            unit = order["purchase_units"][0]
            capture_id = _paypal_id()
            unit["payments"] = {
                "captures": [
                    {
                        "id": capture_id,
                        "status": "COMPLETED",
                        "amount": dict(unit["amount"]),
                        "final_capture": True,
                        "custom_id": unit.get("custom_id"),
                        "invoice_id": unit.get("invoice_id"),
                        "create_time": _now(),
                    }
                ]
            }
            order["status"] = "COMPLETED"
            self.captures[capture_id] = order_id
            return 201, order

    async def _refund(self, request: web.Request) -> web.Response:
        capture_id = request.match_info["id"]
        return await self.once(
            request,
            request.headers.get("PayPal-Request-Id"),
            lambda body: self._refund_capture(capture_id, body or {}),
            mismatch=_reused,
        )

    def _refund_capture(self, capture_id: str, body: JsonObject) -> tuple[int, Any]:
        with self.lock:
            order_id = self.captures.get(capture_id)
            if order_id is None:
                return 404, _missing()
            payments = self.orders[order_id]["purchase_units"][0]["payments"]
            capture = payments["captures"][0]
            refunds = payments.setdefault("refunds", [])
            refunded = sum(_cents(r["amount"]) for r in refunds)
            remaining = _cents(capture["amount"]) - refunded
            amount = body.get("amount") or {
                "currency_code": capture["amount"]["currency_code"],
                "value": str(remaining),
            }
            problem = _amount_problem(amount)
            if problem is not None:
                return 422, _unprocessable(problem, f"amount {amount!r} is invalid")
            if amount["currency_code"] != capture["amount"]["currency_code"]:
                return 422, _unprocessable("REFUND_CURRENCY_MISMATCH", "Currency mismatch.")
            if _cents(amount) > remaining:
                return 422, _unprocessable(
                    "REFUND_AMOUNT_EXCEEDED", "The refund amount exceeds the captured amount."
                )
            refund = {
                "id": _paypal_id(),
                "status": "COMPLETED",
                "amount": amount,
                "invoice_id": body.get("invoice_id"),
                "custom_id": body.get("custom_id"),
                "note_to_payer": body.get("note_to_payer"),
                "create_time": _now(),
            }
            refunds.append(refund)
            fully = _cents(amount) == remaining
            capture["status"] = "REFUNDED" if fully else "PARTIALLY_REFUNDED"
            return 201, refund


def _amount_problem(amount: Any) -> str | None:
    """The PayPal issue with an amount object, if any."""
    if not isinstance(amount, dict) or "currency_code" not in amount or "value" not in amount:
        return "MISSING_REQUIRED_PARAMETER"
    try:
        value = Decimal(str(amount["value"]))
    except InvalidOperation:
        return "INVALID_PARAMETER_VALUE"
    digits = 0 if amount["currency_code"] in _ZERO_DECIMAL else 2
    if value <= 0 or value != round(value, digits):
        return "DECIMAL_PRECISION"
    return None


def _invalid(issue: str, description: str) -> JsonObject:
    return {
        "name": "INVALID_REQUEST",
        "message": "Request is not well-formed, syntactically incorrect, or violates schema.",
        "details": [{"issue": issue, "description": description}],
    }


def _unprocessable(issue: str, description: str) -> JsonObject:
    return {
        "name": "UNPROCESSABLE_ENTITY",
        "message": "The requested action could not be performed.",
        "details": [{"issue": issue, "description": description}],
    }


def _missing() -> JsonObject:
    return {
        "name": "RESOURCE_NOT_FOUND",
        "message": "The specified resource does not exist.",
        "details": [
            {"issue": "INVALID_RESOURCE_ID", "description": "Specified resource ID does not exist."}
        ],
    }


def _not_found() -> web.Response:
    return web.json_response(_missing(), status=404)
