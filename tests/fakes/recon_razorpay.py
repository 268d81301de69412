"""A fake Razorpay settlements API: the combined recon report and settlement entities.

Follows Razorpay's published API as payrail's report fetcher (the official SDK) uses it: HTTP
basic auth with key id and secret; ``GET /v1/settlements/recon/combined`` with ``year``,
``month``, optional ``day``, ``count`` (at most 1000) and ``skip``, answering the rows *settled*
in that month as ``{"entity": "collection", "count", "items"}``; ``GET /v1/settlements/{id}``.
Amounts are integers in paise; ``fee`` includes ``tax``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.http_fake import FakeGateway

JsonObject = dict[str, Any]


class FakeRazorpayRecon(FakeGateway):
    def __init__(self, key_id: str = "rzp_test_recon", key_secret: str = "recon-secret") -> None:  # noqa: S107
        super().__init__()
        self.key_id = key_id
        self.key_secret = key_secret
        self.rows: list[JsonObject] = []
        self.settlements: dict[str, JsonObject] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/settlements/recon/combined", self._recon),
            web.get("/v1/settlements/{id}", self._settlement),
        ]

    def refuse(self, request: web.Request) -> web.Response | None:
        expected = base64.b64encode(f"{self.key_id}:{self.key_secret}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response(
                {
                    "error": {
                        "code": "BAD_REQUEST_ERROR",
                        "description": "The api key provided is invalid",
                    }
                },
                status=401,
            )
        return None

    def fault_body(self, status: int) -> Any:
        return {"error": {"code": "SERVER_ERROR", "description": "injected fault"}}

    # ------------------------------------------------------------------ test controls

    def settle(
        self,
        settlement_id: str,
        utr: str,
        settled_at: datetime,
        rows: list[JsonObject],
        *,
        status: str = "processed",
    ) -> None:
        """Settle ``rows`` (recon items without settlement fields) in one settlement."""
        epoch = int(settled_at.timestamp())
        with self.lock:
            for row in rows:
                self.rows.append(
                    {
                        "on_hold": False,
                        "settled": True,
                        "settled_at": epoch,
                        "settlement_id": settlement_id,
                        "settlement_utr": utr,
                        **row,
                    }
                )
            self.settlements[settlement_id] = {
                "id": settlement_id,
                "entity": "settlement",
                "amount": sum(int(r["credit"]) - int(r["debit"]) for r in rows),
                "status": status,
                "fees": sum(int(r["fee"]) for r in rows),
                "tax": sum(int(r["tax"]) for r in rows),
                "utr": utr,
                "created_at": epoch,
            }

    # ------------------------------------------------------------------ API

    async def _recon(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            year, month = int(query["year"]), int(query["month"])
            count = int(query.get("count", "10"))
            skip = int(query.get("skip", "0"))
        except (KeyError, ValueError):
            return web.json_response(
                {
                    "error": {
                        "code": "BAD_REQUEST_ERROR",
                        "description": "year and month are required",
                    }
                },
                status=400,
            )
        if count > 1000:
            return web.json_response(
                {
                    "error": {
                        "code": "BAD_REQUEST_ERROR",
                        "description": "count may not be greater than 1000",
                    }
                },
                status=400,
            )
        day = int(query["day"]) if "day" in query else None
        with self.lock:
            matching = []
            for row in self.rows:
                settled = datetime.fromtimestamp(int(row["settled_at"]), UTC)
                if (settled.year, settled.month) == (year, month) and day in (None, settled.day):
                    matching.append(row)
        items = matching[skip : skip + count]
        return web.json_response({"entity": "collection", "count": len(items), "items": items})

    async def _settlement(self, request: web.Request) -> web.Response:
        with self.lock:
            found = self.settlements.get(request.match_info["id"])
        if found is None:
            return web.json_response(
                {
                    "error": {
                        "code": "BAD_REQUEST_ERROR",
                        "description": "The id provided does not exist",
                    }
                },
                status=400,
            )
        return web.json_response(found)
