"""`python -m entitlements`: run the entitlements service."""

from __future__ import annotations

from entitlements.app import create_app
from entitlements.settings import EntitlementsSettings
from payrail.web.server import serve


def main() -> None:
    settings = EntitlementsSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
