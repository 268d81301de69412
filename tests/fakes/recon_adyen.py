"""A fake Adyen report download server (the Customer Area's report file URL).

Follows Adyen's published API as payrail's report fetcher uses it: ``GET
/reports/download/MerchantAccount/{merchantAccount}/{reportFileName}`` with HTTP basic auth of a
report user (``report_<id>@Company.<company>`` and its password). A request without valid
credentials gets ``401`` with a ``WWW-Authenticate: Basic`` challenge; a merchant account the
user may not read gets ``403``; a file not generated (yet) gets ``404``; a published file is
answered as ``text/csv`` bytes.
"""

from __future__ import annotations

import base64
import hmac

from aiohttp import web

from tests.fakes.http_fake import FakeGateway


class FakeAdyenReports(FakeGateway):
    def __init__(
        self,
        merchant_account: str = "PayrailEU",
        user: str = "report_123456@Company.PayrailCo",
        password: str = "report-password",  # noqa: S107
    ) -> None:
        super().__init__()
        self.merchant_account = merchant_account
        self.user = user
        self.password = password
        self.files: dict[str, bytes] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/reports/download/MerchantAccount/{merchant}/{name}", self._download)]

    def refuse(self, request: web.Request) -> web.Response | None:
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Basic {expected}".encode()):
            return web.Response(
                status=401,
                text="HTTP Status 401 - Unauthorized",
                headers={"WWW-Authenticate": 'Basic realm="Adyen Report Download"'},
            )
        return None

    def fault_body(self, status: int) -> str:
        return f"HTTP Status {status}"

    def publish(self, name: str, content: bytes) -> None:
        """Adyen generated report ``name`` for the merchant account."""
        with self.lock:
            self.files[name] = content

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["merchant"] != self.merchant_account:
            return web.Response(status=403, text="HTTP Status 403 - Forbidden")
        with self.lock:
            content = self.files.get(request.match_info["name"])
        if content is None:
            return web.Response(status=404, text="HTTP Status 404 - Not Found")
        return web.Response(body=content, content_type="text/csv")
