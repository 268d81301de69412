"""FastAPI's OpenTelemetry instrumentation is on exactly where the environment asks for it."""

from __future__ import annotations

import os

import pytest

from payrail.web.app import telemetry_config


@pytest.fixture
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("OTEL_", "FASTAPI_OTEL_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_without_any_opentelemetry_setting_the_per_request_check_is_off(
    no_otel_environment: pytest.MonkeyPatch,
) -> None:
    assert telemetry_config() == {"tracing": False, "metrics": False, "logs": False}


@pytest.mark.parametrize(
    "variable",
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_PYTHON_TRACER_PROVIDER", "FASTAPI_OTEL_AUTO_CONFIGURE"],
)
def test_an_opentelemetry_environment_keeps_fastapis_default(
    no_otel_environment: pytest.MonkeyPatch, variable: str
) -> None:
    no_otel_environment.setenv(variable, "set")
    assert telemetry_config() is None
