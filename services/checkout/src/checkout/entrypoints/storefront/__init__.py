"""The demo storefront at ``GET /demo``: a purchase as a customer makes it, end to end.

A static page (no build step, nothing from a CDN) picks a product, starts a payment with
``POST /v1/payments`` (an ``Idempotency-Key`` generated in the browser), collects the card with
Stripe.js - localstripe's fake one in development - and, once the gateway took the money, shows
"Payment successful, verifying..." while it long-polls entitlements'
``GET /v1/payments/{id}/access?wait=`` until access is ``granted`` (or ``denied``). The browser is
never the source of truth: it unlocks only what entitlements says is granted, which only a
verified webhook (or the janitor's status sync) makes happen.

Routes:

* ``GET /demo`` - the page; ``GET /demo/storefront.js`` and ``/demo/storefront.css`` its assets;
* ``GET /demo/config.json`` - what the page needs: the catalog, Stripe.js's URL, the publishable
  key, entitlements' base URL;
* ``POST /demo/payments/{id}/confirm`` - confirms the payment's PaymentIntent with the card
  Stripe.js tokenized (:mod:`checkout.entrypoints.storefront.confirm` says why this step runs
  on the server).

Turned off (404) with ``PAYRAIL_DEMO_ENABLED=false``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, StringConstraints

from checkout.entrypoints.storefront.confirm import ConfirmRejected, confirm_card_payment
from checkout.entrypoints.storefront.settings import STRIPE_JS_URL, StorefrontSettings
from checkout.service_layer.unit_of_work import Store
from checkout.settings import CheckoutSettings
from payrail.money import Money
from payrail.web.problems import Problem

STATIC = Path(__file__).parent / "static"
#: localstripe accepts any ``pk_`` key; real Stripe needs the account's own
DEFAULT_PUBLISHABLE_KEY = "pk_test_payrail"


class Product(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    name: str
    amount: int
    currency: str


#: what the demo sells (amounts in minor units: 1999 USD is 19.99, 1500 JPY is 1500 yen)
CATALOG: tuple[Product, ...] = (
    Product(sku="pro-monthly", name="Pro plan, one month", amount=1999, currency="USD"),
    Product(sku="ebook-payments", name="E-book: Payments in practice", amount=1250, currency="EUR"),
    Product(sku="sticker-pack", name="Sticker pack", amount=1500, currency="JPY"),
)


@cache
def storefront_settings() -> StorefrontSettings:
    """Read once per process: the environment does not change under a running service."""
    return StorefrontSettings()


def _enabled() -> StorefrontSettings:
    settings = storefront_settings()
    if not settings.enabled:
        raise Problem(404, "Not found", "the demo storefront is turned off", type_="not-found")
    return settings


Enabled = Annotated[StorefrontSettings, Depends(_enabled)]
router = APIRouter(prefix="/demo", tags=["demo storefront"], include_in_schema=False)


@router.get("")
async def page(_: Enabled) -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


@router.get("/storefront.js")
async def script(_: Enabled) -> FileResponse:
    return FileResponse(STATIC / "storefront.js", media_type="text/javascript")


@router.get("/storefront.css")
async def style(_: Enabled) -> FileResponse:
    return FileResponse(STATIC / "storefront.css", media_type="text/css")


@router.get("/config.json")
async def config(request: Request, settings: Enabled) -> JSONResponse:
    checkout: CheckoutSettings = request.app.state.settings
    account = checkout.gateway_account("stripe", settings.stripe_account)
    api_base = account.api_base if account is not None else None
    stripe_js = settings.stripe_js_url or (
        f"{api_base.rstrip('/')}/js.stripe.com/v3/" if api_base else STRIPE_JS_URL
    )
    options = account.options if account is not None else {}
    body: dict[str, Any] = {
        "gateway": "stripe",
        "stripe_js_url": stripe_js,
        "publishable_key": settings.publishable_key
        or options.get("publishable_key", DEFAULT_PUBLISHABLE_KEY),
        "entitlements_url": settings.entitlements_url.rstrip("/"),
        "products": [
            {**p.model_dump(), "price": Money(p.amount, p.currency).format()} for p in CATALOG
        ],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


class ConfirmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    payment_method: Annotated[str, StringConstraints(pattern=r"^(pm|card|src)_\w{1,200}$")]


@router.post("/payments/{payment_id}/confirm")
async def confirm(
    payment_id: str, body: ConfirmRequest, request: Request, settings: Enabled
) -> JSONResponse:
    store: Store = request.app.state.checkout_store
    checkout: CheckoutSettings = request.app.state.settings
    account = checkout.gateway_account("stripe", settings.stripe_account)
    if account is None:
        raise Problem(
            422,
            "Gateway not configured",
            f"no Stripe account {settings.stripe_account!r} in PAYRAIL_GATEWAYS",
            type_="gateway-not-configured",
        )
    try:
        status = await confirm_card_payment(
            store,
            account,
            payment_id,
            client_secret=body.client_secret,
            payment_method=body.payment_method,
        )
    except ConfirmRejected as exc:
        raise Problem(exc.status, exc.title, str(exc), type_=exc.kind) from None
    return JSONResponse({"payment_id": payment_id, "gateway_status": status})
