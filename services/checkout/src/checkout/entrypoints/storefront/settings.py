"""Settings of the demo storefront (``PAYRAIL_DEMO_*`` environment variables).

The page learns every address from ``/demo/config.json``, built from these, so it works on any
port layout (``make run``'s defaults, a test stack on free ports) without a build step.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

#: where Stripe.js comes from when the Stripe account has no ``api_base`` (the real Stripe)
STRIPE_JS_URL = "https://js.stripe.com/v3/"


class StorefrontSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYRAIL_DEMO_", extra="ignore", frozen=True)

    #: serve ``/demo`` at all (a development aid: turn it off in production)
    enabled: bool = True
    #: where the browser long-polls access (entitlements must allow checkout's origin in CORS)
    entitlements_url: str = "http://127.0.0.1:8003"
    #: the Stripe account the demo pays through (``PAYRAIL_GATEWAYS["stripe"][account]``)
    stripe_account: str = "default"
    #: Stripe.js's URL; unset: ``<api_base>/js.stripe.com/v3/`` (localstripe's fake Stripe.js)
    stripe_js_url: str | None = None
    #: the publishable key given to Stripe.js; unset: the account's ``options.publishable_key``,
    #: else ``pk_test_payrail`` (localstripe accepts any ``pk_`` key)
    publishable_key: str | None = None
