"""The FastAPI app factory every service uses.

It gives each service the same operational surface: ``/healthz`` (the process is alive),
``/readyz`` (its database and broker answer), ``/metrics`` (Prometheus), ``/docs`` (OpenAPI),
RFC 9457 errors, JSON logs, and a lifespan that runs the service's start-up and shut-down hooks
in order (and the shut-down ones in reverse, even when start-up failed half-way).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from payrail.logging import configure_logging, get_logger
from payrail.settings import ServiceSettings
from payrail.web.components import Component
from payrail.web.health import Probe, run_probes
from payrail.web.problems import install_problem_handlers


def telemetry_config() -> TelemetryConfig | None:
    """FastAPI's native OpenTelemetry instrumentation: FastAPI's default where this process can
    have OpenTelemetry, off where it cannot.

    FastAPI records a span, metrics and logs per request once an OpenTelemetry provider is
    configured, and to know whether one is, it asks on every request - three environment look-ups
    while none is, about 10 us (5 % of a webhook's CPU in webhook-ingest). A payrail service gets
    OpenTelemetry from its environment: ``OTEL_*`` variables (exporter endpoints, the
    ``OTEL_PYTHON_*_PROVIDER`` names, ``FASTAPI_OTEL_AUTO_CONFIGURE``) or a provider installed
    before the app is built (``opentelemetry-instrument``). With none of these, nothing could ever
    be recorded, so the per-request question is not asked.
    """
    wanted = any(name.startswith(("OTEL_", "FASTAPI_OTEL_")) for name in os.environ)
    if wanted or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None
    return {"tracing": False, "metrics": False, "logs": False}


def create_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    components: Sequence[Component] = (),
    probes: Callable[[FastAPI], dict[str, Probe]] | None = None,
) -> FastAPI:
    """Build a service app.

    ``components`` are called with the app at start-up and must return async context managers;
    they are entered in order and exited in reverse at shutdown. ``probes`` returns the readiness
    probes (evaluated lazily, after the components created what they check).
    """
    configure_logging(settings.service_name, level=settings.log_level, json=settings.log_json)
    log = get_logger("payrail.web")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for component in components:
                await stack.enter_async_context(component(app))
            log.info("service started", port=settings.http_port)
            yield
            log.info("service stopping")

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        telemetry=telemetry_config(),
    )
    app.state.settings = settings
    install_problem_handlers(app)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name}

    @app.get("/readyz", tags=["operations"], summary="Database and broker answer")
    async def readyz() -> JSONResponse:
        checks = await run_probes(probes(app) if probes else {}, settings.readiness_timeout_seconds)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
