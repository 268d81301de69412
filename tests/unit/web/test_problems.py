"""Errors reach clients as RFC 9457 problem+json, also when the database cannot take a request."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from payrail.web.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers


async def _post_to_an_app_failing_with(error: Exception) -> httpx.Response:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/v1/things")
    async def create() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.post("/v1/things")


@pytest.mark.parametrize(
    "error",
    [
        PoolTimeout("QueuePool limit of size 20 overflow 10 reached"),
        OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused")),
    ],
    ids=["pool exhausted", "database unreachable"],
)
async def test_a_database_that_cannot_take_the_request_is_503_with_retry_after(
    error: Exception,
) -> None:
    response = await _post_to_an_app_failing_with(error)

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["type"].endswith("/database-unavailable")
    assert body["instance"] == "/v1/things"
    assert "QueuePool" not in response.text  # internals stay in the log


async def test_any_other_error_stays_a_500() -> None:
    response = await _post_to_an_app_failing_with(RuntimeError("bug"))

    assert response.status_code == 500
