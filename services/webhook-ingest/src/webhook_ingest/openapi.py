"""The webhook routes in ``/docs``.

The webhook paths are served by a pure ASGI middleware (``routes.WebhookRoutes``: FastAPI's
routing layers cost about a fifth of a webhook's CPU), which FastAPI does not describe on its
own. This adds them to the OpenAPI document by hand, so ``/docs`` still shows what a gateway
may POST and every answer it can get.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

_PROBLEM = {"application/problem+json": {"schema": {"type": "object"}}}


def _answer(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": _PROBLEM}
    if retry_after:
        answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return answer


def _operation(with_account: bool) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": "gateway",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "registry name: stripe, paypal, razorpay, adyen, standardwebhooks, ...",
        }
    ]
    if with_account:
        parameters.append(
            {
                "name": "account",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "the gateway account whose secrets verify it",
            }
        )
    summary = "A gateway's webhook" + (" for one of its accounts" if with_account else "")
    return {
        "post": {
            "tags": ["webhooks"],
            "summary": summary,
            "description": (
                "The body exactly as the gateway sent it, with its signature headers. Verified "
                "over the raw bytes, normalized and published to payments.gateway-events; the "
                "2xx comes only after the broker acknowledged it (acks=all)."
            ),
            "operationId": "receive_webhook" + ("_for_account" if with_account else ""),
            "parameters": parameters,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": {"description": "held by the broker (or a duplicate, or an unused type)"},
                "400": _answer("signature missing or invalid, stale timestamp, malformed body"),
                "404": _answer("unknown gateway or account"),
                "413": _answer("body over the limit"),
                "429": _answer("too many rejected webhooks from this source", retry_after=True),
                "503": _answer("broker or gateway verification unavailable", retry_after=True),
            },
        }
    }


def describe_webhook_routes(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the webhook paths."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema["paths"] = {
                "/webhooks/{gateway}": _operation(with_account=False),
                "/webhooks/{gateway}/{account}": _operation(with_account=True),
                **schema["paths"],
            }
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
