"""A fake Adyen Checkout API: payment sessions and refunds.

It follows Adyen's published Checkout API as far as payrail's client (the official library) uses
it: ``X-API-Key`` authentication; ``POST /{version}/sessions`` (``reference`` is the merchant
reference, ``mode`` ``hosted`` returns a hosted-page ``url``); ``POST
/{version}/payments/{pspReference}/refunds`` answering ``status: received``; the
``Idempotency-Key`` header (a repeated key replays the first answer, a repeated key with another
body is refused); errors as ``{"status", "errorCode", "message", "errorType"}``.

The shopper's part happens through :meth:`FakeAdyen.authorise` (a payment made in the session,
which Adyen would report in an ``AUTHORISATION`` webhook with its ``pspReference``).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes.http_fake import FakeGateway

JsonObject = dict[str, Any]


def _error(status: int, code: str, message: str, error_type: str = "validation") -> JsonObject:
    return {
        "status": status,
        "errorCode": code,
        "message": message,
        "errorType": error_type,
        "pspReference": _psp(),
    }


def _psp() -> str:
    return secrets.token_hex(8).upper()


class FakeAdyen(FakeGateway):
    def __init__(
        self, api_key: str = "fake-api-key", merchant_account: str = "PayrailECOM"
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.merchant_account = merchant_account
        self.sessions: dict[str, JsonObject] = {}
        self.payments: dict[str, JsonObject] = {}  # pspReference -> payment
        self.refunds: dict[str, JsonObject] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/{version}/sessions", self._create_session),
            web.post("/{version}/payments/{psp}/refunds", self._refund),
        ]

    def fault_body(self, status: int) -> Any:
        return _error(status, "000", "injected fault", "internal")

    # ------------------------------------------------------------------ test controls

    def authorise(self, session_id: str) -> str:
        """The shopper pays in the session; returns the payment's pspReference."""
        with self.lock:
            session = self.sessions[session_id]
            psp = _psp()
            self.payments[psp] = {
                "pspReference": psp,
                "merchantReference": session["reference"],
                "amount": dict(session["amount"]),
            }
            return psp

    # ------------------------------------------------------------------ handlers

    def refuse(self, request: web.Request) -> web.Response | None:
        if request.headers.get("X-API-Key") == self.api_key:
            return None
        body = _error(401, "000", "HTTP Status Response - Unauthorized", "security")
        return web.json_response(body, status=401)

    @staticmethod
    def _reused() -> web.Response:
        body = _error(422, "704", "request already processed or in progress")
        return web.json_response(body, status=422)

    async def _create_session(self, request: web.Request) -> web.Response:
        return await self.once(
            request,
            request.headers.get("Idempotency-Key"),
            self._new_session,
            mismatch=self._reused,
        )

    def _new_session(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, _error(400, "702", "Structure of the request is invalid")
        problem = self._amount_problem(body)
        if body.get("merchantAccount") != self.merchant_account:
            problem = ("901", "Invalid Merchant Account")
        elif not body.get("reference"):
            problem = ("130", "Required field 'reference' is not provided.")
        elif not body.get("returnUrl"):
            problem = ("14_012", "Required field 'returnUrl' is not provided.")
        if problem is not None:
            return 422, _error(422, *problem)
        session_id = "CS" + secrets.token_hex(8).upper()
        mode = body.get("mode", "embedded")
        session: JsonObject = {
            "id": session_id,
            "amount": body["amount"],
            "merchantAccount": body["merchantAccount"],
            "reference": body["reference"],
            "returnUrl": body["returnUrl"],
            "metadata": body.get("metadata", {}),
            "mode": mode,
            "expiresAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds"),
            "sessionData": "Ab02b4c0!" + secrets.token_urlsafe(48),
        }
        if mode == "hosted":
            session["url"] = (
                f"https://checkoutshopper-test.adyen.com/checkoutshopper/checkout/{session_id}"
            )
        with self.lock:
            self.sessions[session_id] = session
        return 201, session

    @staticmethod
    def _amount_problem(body: JsonObject) -> tuple[str, str] | None:
        amount = body.get("amount")
        if not isinstance(amount, dict) or not isinstance(amount.get("value"), int):
            return "100", "Required field 'amount' is not provided."
        if not isinstance(amount.get("currency"), str) or len(amount["currency"]) != 3:
            return "101", "Invalid currency"
        if amount["value"] <= 0:
            return "137", "Invalid amount specified"
        return None

    async def _refund(self, request: web.Request) -> web.Response:
        psp = request.match_info["psp"]
        return await self.once(
            request,
            request.headers.get("Idempotency-Key"),
            lambda body: self._new_refund(psp, body),
            mismatch=self._reused,
        )

    def _new_refund(self, psp: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            payment = self.payments.get(psp)
        if payment is None:
            return 422, _error(422, "167", "Original pspReference required for this operation")
        if not isinstance(body, dict) or body.get("merchantAccount") != self.merchant_account:
            return 422, _error(422, "901", "Invalid Merchant Account")
        if (problem := self._amount_problem(body)) is not None:
            return 422, _error(422, *problem)
        refund = {
            "merchantAccount": body["merchantAccount"],
            "paymentPspReference": psp,
            "pspReference": _psp(),
            "reference": body.get("reference"),
            "status": "received",
            "amount": body["amount"],
        }
        with self.lock:
            self.refunds[refund["pspReference"]] = refund
        return 201, refund
