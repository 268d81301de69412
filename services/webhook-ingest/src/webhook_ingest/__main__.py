"""`python -m webhook_ingest`: run the webhook-ingest service."""

from __future__ import annotations

from payrail.web.server import serve
from webhook_ingest.app import create_app
from webhook_ingest.settings import WebhookIngestSettings


def main() -> None:
    settings = WebhookIngestSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
