"""Which request paths are webhooks: exactly those Starlette's router matched as the routes
``/webhooks/{gateway}`` and ``/webhooks/{gateway}/{account}``."""

from __future__ import annotations

import pytest

from webhook_ingest.routes import webhook_target


@pytest.mark.parametrize(
    ("path", "root_path", "target"),
    [
        ("/webhooks/stripe", "", ("stripe", "default")),
        ("/webhooks/stripe/eu", "", ("stripe", "eu")),
        ("/webhooks/stripe/default", "", ("stripe", "default")),
        ("/ingest/webhooks/adyen/live", "/ingest", ("adyen", "live")),
        ("/webhooks/stripe", "/ingest", ("stripe", "default")),
    ],
)
def test_webhook_paths_name_the_gateway_and_account(
    path: str, root_path: str, target: tuple[str, str]
) -> None:
    assert webhook_target({"path": path, "root_path": root_path}) == target


@pytest.mark.parametrize(
    "path",
    [
        "/webhooks",
        "/webhooks/",
        "/webhooks/stripe/",  # the router redirects the trailing slash
        "/webhooks//eu",
        "/webhooks/stripe/eu/extra",
        "/healthz",
        "/webhookss/stripe",
    ],
)
def test_other_paths_are_left_to_the_router(path: str) -> None:
    assert webhook_target({"path": path}) is None
