"""RFC 9457 problem details for every error payrail's HTTP APIs return.

Handlers turn :class:`Problem` (raised by route code), FastAPI's validation errors and plain
HTTP errors into ``application/problem+json`` bodies. Details never echo secrets or raw
request bodies back.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from payrail.logging import get_logger

#: seconds a client is told to wait before retrying a request the database could not take
DATABASE_BUSY_RETRY_AFTER = 1

log = get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "https://payrail.dev/problems/"


class Problem(Exception):
    """An error that should reach the client as problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_ or _slug(title)
        self.headers = headers or {}
        self.extensions = extensions

    def body(self, instance: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": _TYPE_BASE + self.type,
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            payload["detail"] = self.detail
        if instance:
            payload["instance"] = instance
        payload.update(self.extensions)
        return payload


def _slug(title: str) -> str:
    return "-".join(title.lower().split())


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    return JSONResponse(
        problem.body(instance),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "loc": list(err.get("loc", ())),
                "msg": err.get("msg", ""),
                "type": err.get("type", ""),
            }
            for err in exc.errors()
        ]
        problem = Problem(
            422,
            "Invalid request",
            "the request does not match the schema",
            type_="invalid-request",
            errors=errors,
        )
        return problem_response(problem, request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        problem = Problem(
            exc.status_code,
            _http_title(exc.status_code),
            str(exc.detail) if exc.detail else None,
            headers=dict(exc.headers or {}),
        )
        return problem_response(problem, request.url.path)

    async def on_database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Overload (no pooled connection within the pool timeout) or the database gone: the
        # request's transaction rolled back, so nothing happened and a retry - with the same
        # Idempotency-Key - is safe. 503 + Retry-After says exactly that; a 500 would not.
        log.warning(
            "request refused: database unavailable", error=type(exc).__name__, path=request.url.path
        )
        problem = Problem(
            503,
            "Service unavailable",
            "the service's database could not take the request; nothing was done, retry later",
            type_="database-unavailable",
            headers={"Retry-After": str(DATABASE_BUSY_RETRY_AFTER)},
        )
        return problem_response(problem, request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(PoolTimeout, on_database_unavailable)
    app.add_exception_handler(OperationalError, on_database_unavailable)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def _http_title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
