"""`python -m checkout`: run the checkout service."""

from __future__ import annotations

from checkout.app import create_app
from checkout.settings import CheckoutSettings
from payrail.web.server import serve


def main() -> None:
    settings = CheckoutSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
