"""Run a service app with uvicorn: graceful shutdown on SIGTERM/SIGINT, no access-log noise."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from payrail.settings import ServiceSettings


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # payrail.logging already routes uvicorn's loggers to JSON
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
        lifespan="on",
    )
    uvicorn.Server(config).run()
