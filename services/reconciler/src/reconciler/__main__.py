"""`python -m reconciler`: run the reconciler service."""

from __future__ import annotations

from payrail.web.server import serve
from reconciler.app import create_app
from reconciler.settings import ReconcilerSettings


def main() -> None:
    settings = ReconcilerSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
