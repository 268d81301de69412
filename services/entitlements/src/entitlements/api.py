"""The entitlements HTTP API (read-only; the only writer is the lifecycle consumer).

* ``GET /v1/users/{user_id}/entitlements`` - every grant the user ever had, oldest first, each
  ``granted`` or ``revoked``.
* ``GET /v1/payments/{payment_id}/access`` - what a front end polls after the customer paid:
  ``pending`` | ``granted`` | ``revoked`` | ``denied`` (``pending`` also for a payment never
  heard of). ``?wait=N`` makes it a long poll: the answer comes as soon as the state differs
  from ``?since=`` (default ``pending``), or after ``N`` seconds (at most
  ``PAYRAIL_ACCESS_WAIT_MAX_SECONDS``; a longer ask is shortened, not refused) with the state
  as it then is. A final state (``revoked``, ``denied``) answers at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from entitlements.domain import AccessState
from entitlements.settings import EntitlementsSettings
from entitlements.store import Access, AccessStore
from entitlements.waiting import AccessWatch

router = APIRouter(tags=["entitlements"])

Identifier = Annotated[str, Path(min_length=1, max_length=255)]
#: every time is answered in UTC, whatever the database session's time zone
Utc = Annotated[datetime, AfterValidator(lambda moment: moment.astimezone(UTC))]


class EntitlementOut(BaseModel):
    sku: str
    payment_id: str
    status: str  # granted | revoked
    granted_at: Utc
    revoked_at: Utc | None


class UserEntitlements(BaseModel):
    user_id: str
    entitlements: list[EntitlementOut]


class PaymentAccess(BaseModel):
    payment_id: str
    state: AccessState
    #: who and what the payment is for (null until a lifecycle event of it arrived)
    user_id: str | None = None
    sku: str | None = None
    #: the ce_type of the lifecycle event that last changed the state
    reason: str | None = None
    granted_at: Utc | None = None
    revoked_at: Utc | None = None
    updated_at: Utc | None = None


@router.get(
    "/v1/users/{user_id}/entitlements",
    summary="What a user owns (and owned: revoked grants stay listed)",
)
async def user_entitlements(
    request: Request, response: Response, user_id: Identifier
) -> UserEntitlements:
    store: AccessStore = request.app.state.access_store
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        grants = await store.grants_of(conn, user_id)
    response.headers["Cache-Control"] = "no-store"
    return UserEntitlements(
        user_id=user_id,
        entitlements=[
            EntitlementOut(
                sku=g.sku,
                payment_id=g.payment_id,
                status=g.status,
                granted_at=g.granted_at,
                revoked_at=g.revoked_at,
            )
            for g in grants
        ],
    )


@router.get(
    "/v1/payments/{payment_id}/access",
    summary="Whether the payment unlocked its sku (long poll with ?wait=)",
)
async def payment_access(
    request: Request,
    response: Response,
    payment_id: Identifier,
    wait: Annotated[
        float,
        Query(ge=0, description="seconds to wait for the state to leave `since` (long poll)"),
    ] = 0,
    since: Annotated[
        AccessState, Query(description="the state the caller already knows")
    ] = AccessState.PENDING,
) -> PaymentAccess:
    settings: EntitlementsSettings = request.app.state.settings
    store: AccessStore = request.app.state.access_store
    engine: AsyncEngine = request.app.state.engine
    watch: AccessWatch = request.app.state.access_watch

    async def read() -> PaymentAccess:
        async with engine.connect() as conn:
            return _view(payment_id, await store.access(conn, payment_id))

    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, settings.access_wait_max_seconds)
    with watch.watching(payment_id) as waiter:
        view = await read()
        while view.state is since and not since.is_final:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            news = await watch.wait(waiter, remaining)
            view = PaymentAccess.model_validate_json(news) if news else await read()
    response.headers["Cache-Control"] = "no-store"
    return view


def _view(payment_id: str, access: Access | None) -> PaymentAccess:
    if access is None:
        return PaymentAccess(payment_id=payment_id, state=AccessState.PENDING)
    return PaymentAccess(
        payment_id=payment_id,
        state=access.state,
        user_id=access.user_id,
        sku=access.sku,
        reason=access.reason,
        granted_at=access.granted_at,
        revoked_at=access.revoked_at,
        updated_at=access.updated_at,
    )
