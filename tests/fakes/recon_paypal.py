"""A fake PayPal Transaction Search API (``/v1/reporting/transactions``) with OAuth2.

As PayPal publishes it: ``POST /v1/oauth2/token`` with HTTP basic client credentials returns a
bearer token; ``GET /v1/reporting/transactions`` needs that token, ``start_date`` and
``end_date`` (ISO 8601) at most 31 days apart, and answers ``transaction_details`` (each a
``transaction_info``) page by page (``page_size``, ``page``, ``total_pages``). Amounts are
decimal strings; a charged fee is negative.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes.http_fake import FakeGateway

JsonObject = dict[str, Any]


def _error(status: int, name: str, message: str) -> web.Response:
    return web.json_response({"name": name, "message": message, "details": []}, status=status)


class FakePayPalReporting(FakeGateway):
    def __init__(
        self,
        client_id: str = "recon-client",
        client_secret: str = "recon-secret",  # noqa: S107
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.tokens: set[str] = set()
        self.transactions: list[JsonObject] = []

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/oauth2/token", self._token),
            web.get("/v1/reporting/transactions", self._search),
        ]

    def fault_body(self, status: int) -> Any:
        return {"name": "INTERNAL_SERVER_ERROR", "message": "injected fault"}

    def add(self, **info: Any) -> None:
        """Record one transaction (the fields of ``transaction_info``)."""
        with self.lock:
            self.transactions.append(info)

    async def _token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
                status=401,
            )
        token = secrets.token_urlsafe(16)
        with self.lock:
            self.tokens.add(token)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": 32400}
        )

    async def _search(self, request: web.Request) -> web.Response:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with self.lock:
            known = bearer in self.tokens
        if not known:
            return _error(
                401, "AUTHENTICATION_FAILURE", "Authentication failed due to invalid token"
            )
        try:
            start = datetime.fromisoformat(request.query["start_date"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(request.query["end_date"].replace("Z", "+00:00"))
        except (KeyError, ValueError):
            return _error(400, "INVALID_REQUEST", "start_date and end_date are required")
        if end - start > timedelta(days=31):
            return _error(400, "INVALID_REQUEST", "Date range is greater than 31 days")
        size = int(request.query.get("page_size", "100"))
        page = int(request.query.get("page", "1"))
        with self.lock:
            matching = [
                info
                for info in self.transactions
                if start
                <= datetime.strptime(info["transaction_initiation_date"], "%Y-%m-%dT%H:%M:%S%z")
                <= end
            ]
        pages = max(1, -(-len(matching) // size))
        chosen = matching[(page - 1) * size : page * size]
        return web.json_response(
            {
                "transaction_details": [{"transaction_info": info} for info in chosen],
                "start_date": request.query["start_date"],
                "end_date": request.query["end_date"],
                "page": page,
                "total_items": len(matching),
                "total_pages": pages,
            }
        )
