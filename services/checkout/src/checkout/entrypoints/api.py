"""checkout's HTTP API (DESIGN: "Default ports and HTTP surface").

* ``POST /v1/payments`` (``Idempotency-Key`` required) - the payment is committed ``initiated``
  before the gateway is called; then the gateway's create call is made (outside any
  transaction, key ``<payment id>:create``) and its answer recorded. ``201`` when the gateway
  answered (``pending`` with ``client_secret``/``redirect_url``, or ``failed`` when it declined);
  ``202`` with ``status: initiated`` and ``outcome_unknown: true`` when it timed out or was
  unavailable - the payment is due for the janitor's status sync; poll ``GET``.
* ``GET /v1/payments/{id}``, ``GET /v1/payments?user_id=`` (newest first),
  ``GET /v1/payments/{id}/events`` (the timeline).
* ``POST /v1/payments/{id}/refunds`` (``Idempotency-Key`` required), body
  ``{"amount": 500, "reason": "..."}``; no amount refunds everything refundable.

Idempotency: the same key and the same body replay the first response, status and bytes; the
same key with another body is ``422``. A request whose key is still in flight (the first is
calling the gateway) waits for its answer up to ``PAYRAIL_IDEMPOTENCY_WAIT_SECONDS``, then gets
``409`` with ``Retry-After``. Problems are RFC 9457 ``application/problem+json`` and change
nothing.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from checkout.domain.payment import RefundRejected
from checkout.entrypoints.requests import (
    PaymentRequest,
    RefundRequest,
    parse_payment,
    parse_refund,
)
from checkout.service_layer.calls import CREATE_SCOPE, GatewayCalls, refund_scope
from checkout.service_layer.gateways import (
    DEFAULT_ACCOUNT,
    GatewayNotConfigured,
    Gateways,
    GatewayTakesNoPayments,
    UnknownGateway,
)
from checkout.service_layer.payments import CreatePayment, create_payment
from checkout.service_layer.refunds import PaymentNotFound, request_refund
from checkout.service_layer.unit_of_work import Store, UnitOfWork
from checkout.service_layer.views import payment_view, refund_view
from checkout.settings import CheckoutSettings
from payrail.money import Money
from payrail.web.idempotency import (
    Claim,
    Idempotency,
    IdempotencyKey,
    StoredRequest,
    fingerprint,
)
from payrail.web.problems import Problem

router = APIRouter(tags=["payments"])
SOURCE = "/payrail/checkout/api"


def _store(request: Request) -> Store:
    store: Store = request.app.state.checkout_store
    return store


def _calls(request: Request) -> GatewayCalls:
    calls: GatewayCalls = request.app.state.gateway_calls
    return calls


def _gateways(request: Request) -> Gateways:
    gateways: Gateways = request.app.state.gateways
    return gateways


def _settings(request: Request) -> CheckoutSettings:
    settings: CheckoutSettings = request.app.state.settings
    return settings


def _not_found(payment_id: str) -> Problem:
    return Problem(404, "Payment not found", f"no payment {payment_id}", type_="payment-not-found")


def _request_hash(request: Request, body: BaseModel) -> str:
    """The validated body, canonically (the POSTs take no query parameters; the scope is the
    endpoint)."""
    return fingerprint(request.method, request.url.path, (), body)


async def _answer(
    request: Request, scope: str, key: str, request_hash: str, earlier: StoredRequest | None
) -> Response:
    """The stored response of ``key`` (``earlier``: None when this request claimed it):
    replayed when done, waited for up to ``PAYRAIL_IDEMPOTENCY_WAIT_SECONDS`` when in flight."""
    store = _store(request)
    idempotency = Idempotency(
        store.tables.idempotency_keys,
        store.sessions,
        wait_seconds=_settings(request).idempotency_wait_seconds,
    )
    return await idempotency.answer(scope, key, request_hash, earlier)


@router.post(
    "/v1/payments",
    status_code=201,
    summary="Create a payment (recorded before the gateway is called)",
    responses={
        202: {"description": "recorded; the gateway's answer is unknown (timeout)"},
        409: {"description": "a request with this Idempotency-Key is still in flight"},
        422: {"description": "invalid amount/currency, unknown gateway, key reused"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PaymentRequest.model_json_schema()}},
        }
    },
)
async def create(request: Request, key: IdempotencyKey) -> Response:
    body = parse_payment(await request.body())
    try:
        _gateways(request).check(body.gateway, DEFAULT_ACCOUNT)
    except UnknownGateway as exc:
        raise Problem(422, "Unknown gateway", str(exc), type_="unknown-gateway") from None
    except GatewayNotConfigured as exc:
        raise Problem(
            422, "Gateway not configured", str(exc), type_="gateway-not-configured"
        ) from None
    except GatewayTakesNoPayments as exc:
        raise Problem(
            422, "Gateway takes no payments", str(exc), type_="gateway-not-supported"
        ) from None
    request_hash = _request_hash(request, body)
    payment_id = f"pay_{uuid.uuid4().hex}"
    settings = _settings(request)
    command = CreatePayment(
        payment_id=payment_id,
        money=Money(body.amount, body.currency),
        user_id=body.user_id,
        sku=body.sku,
        gateway=body.gateway,
        account=DEFAULT_ACCOUNT,
        description=body.description,
        metadata=body.metadata,
    )
    claim = Claim(CREATE_SCOPE, key, request_hash, resource_id=payment_id)
    async with UnitOfWork.begin(_store(request)) as uow:
        # the key and the payment in one statement, or the request holding the key
        created, earlier = await uow.idempotency.claim_with(
            claim,
            lambda: create_payment(
                uow,
                command,
                source=SOURCE,
                call_delay=timedelta(seconds=settings.gateway_call_lease_seconds),
                first_sync_after=timedelta(seconds=settings.first_sync_after_seconds),
                claim=claim,
            ),
        )
    if created is not None:
        record, call = created
        answer = await _calls(request).execute(call, record)
        if answer is not None:  # this request stored its key's answer: no need to read it back
            return answer.response(replayed=False)
    return await _answer(request, CREATE_SCOPE, key, request_hash, earlier)


@router.get("/v1/payments/{payment_id}", summary="A payment, with its refunds")
async def get_payment(payment_id: str, request: Request) -> JSONResponse:
    async with UnitOfWork.begin(_store(request)) as uow:
        record = await uow.payments.get(payment_id)
        refunds = await uow.payments.refunds_of(payment_id)
    if record is None:
        raise _not_found(payment_id)
    return JSONResponse({**payment_view(record), "refunds": [refund_view(r) for r in refunds]})


@router.get(
    "/v1/payments",
    summary="A user's payments, newest first; or (needs_attention=true) those flagged for a human",
)
async def list_payments(
    request: Request,
    user_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    needs_attention: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    if needs_attention and user_id is None:
        async with UnitOfWork.begin(_store(request)) as uow:
            flagged = await uow.payments.list_needing_attention(limit=limit)
        return JSONResponse(
            {"needs_attention": True, "payments": [payment_view(r) for r in flagged]}
        )
    if user_id is None:
        raise Problem(
            422,
            "Filter required",
            "list by user_id, or the payments needing attention with needs_attention=true",
            type_="filter-required",
        )
    async with UnitOfWork.begin(_store(request)) as uow:
        records = await uow.payments.list_by_user(user_id, limit=limit)
    if needs_attention:
        records = [r for r in records if r.needs_attention]
    return JSONResponse({"user_id": user_id, "payments": [payment_view(r) for r in records]})


@router.get("/v1/payments/{payment_id}/events", summary="The payment's timeline")
async def timeline(payment_id: str, request: Request) -> JSONResponse:
    async with UnitOfWork.begin(_store(request)) as uow:
        record = await uow.payments.get(payment_id)
        entries = await uow.payments.timeline(payment_id)
    if record is None:
        raise _not_found(payment_id)
    events: list[dict[str, Any]] = [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "kind": e.kind,
            "source": e.source,
            "ce_id": e.ce_id,
            "status_before": e.status_before,
            "status_after": e.status_after,
            "detail": e.detail,
        }
        for e in entries
    ]
    return JSONResponse({"payment_id": payment_id, "events": events})


@router.post(
    "/v1/payments/{payment_id}/refunds",
    status_code=201,
    summary="Refund all or part of a succeeded payment",
    responses={
        202: {"description": "requested; the gateway's answer is unknown (timeout)"},
        404: {"description": "unknown payment"},
        409: {"description": "the payment did not succeed, or the key is in flight"},
        422: {"description": "amount above the refundable amount, key reused"},
    },
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": RefundRequest.model_json_schema()}},
        }
    },
)
async def refund(payment_id: str, request: Request, key: IdempotencyKey) -> Response:
    body = parse_refund(await request.body())
    request_hash = _request_hash(request, body)
    scope = refund_scope(payment_id)
    refund_id = f"re_{uuid.uuid4().hex}"
    settings = _settings(request)
    try:
        async with UnitOfWork.begin(_store(request)) as uow:
            earlier = await uow.idempotency.claim(
                scope, key, request_hash=request_hash, resource_id=refund_id
            )
            call = None
            if earlier is None:
                _, call = await request_refund(
                    uow,
                    payment_id,
                    refund_id=refund_id,
                    amount=body.amount,
                    reason=body.reason,
                    source=SOURCE,
                    call_delay=timedelta(seconds=settings.gateway_call_lease_seconds),
                )
    except PaymentNotFound:
        raise _not_found(payment_id) from None
    except RefundRejected as exc:
        status = 409 if exc.reason == "payment-not-refundable" else 422
        title = {
            "payment-not-refundable": "Payment not refundable",
            "refund-exceeds-refundable": "Refund exceeds refundable amount",
        }.get(exc.reason, "Invalid refund")
        raise Problem(status, title, str(exc), type_=exc.reason) from None
    if call is not None:
        answer = await _calls(request).execute(call)
        if answer is not None:
            return answer.response(replayed=False)
    return await _answer(request, scope, key, request_hash, earlier)
