"""Every service boots as a real process against real PostgreSQL and Kafka.

These are the operational promises of DESIGN: /healthz, /readyz (really checks the database and
the broker), /metrics, /docs, RFC 9457 errors, migrations applied to the service's own schema at
start, and a clean exit on SIGTERM.
"""

from __future__ import annotations

import re
import select
import signal
import socket
import socketserver
import threading
from pathlib import Path

import httpx
import psycopg
import pytest

from payrail.devstack.paths import free_port
from tests.support.processes import service

SERVICES = ["checkout", "webhook_ingest", "entitlements", "reconciler"]
SCHEMAS = {"checkout": "checkout", "entitlements": "entitlements", "reconciler": "reconciler"}
#: DESIGN's HTTP surface per service, as OpenAPI path templates (parameter names aside)
DESIGN_ROUTES = {
    "checkout": {
        "/v1/payments",
        "/v1/payments/{}",
        "/v1/payments/{}/refunds",
        "/v1/payments/{}/events",
    },
    "webhook_ingest": {"/webhooks/{}", "/webhooks/{}/{}"},
    "entitlements": {"/v1/users/{}/entitlements", "/v1/payments/{}/access"},
    "reconciler": {"/v1/reconciliations", "/v1/reconciliations/{}"},
}


def _plain_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://")


@pytest.mark.parametrize("module", SERVICES)
def test_service_serves_its_operational_surface(
    module: str, kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    env = {"PAYRAIL_DATABASE_URL": database_url, "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    with service(module, env, tmp_path) as svc:
        ready = httpx.get(f"{svc.url}/readyz").json()
        assert ready["status"] == "ready"
        assert ready["checks"]["kafka"] == "ok"
        if module in SCHEMAS:
            assert ready["checks"]["database"] == "ok"
        assert httpx.get(f"{svc.url}/healthz").json()["status"] == "ok"
        metrics = httpx.get(f"{svc.url}/metrics")
        assert metrics.status_code == 200
        assert "python_info" in metrics.text
        assert httpx.get(f"{svc.url}/docs").status_code == 200
        openapi = httpx.get(f"{svc.url}/openapi.json").json()
        assert openapi["info"]["title"] == f"payrail {module.replace('_', '-')}"
        documented = {re.sub(r"\{[^}]+\}", "{}", path) for path in openapi["paths"]}
        assert DESIGN_ROUTES[module] <= documented
        missing = httpx.get(f"{svc.url}/no-such-route")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["status"] == 404
        # uvicorn finishes its graceful shutdown, then re-raises the signal it caught
        assert svc.stop(signal.SIGTERM) in (0, -signal.SIGTERM), svc.log()
    assert "service stopping" in svc.log()
    assert "Application shutdown complete" in svc.log()


@pytest.mark.parametrize("module", list(SCHEMAS))
def test_migrations_create_the_service_schema(
    module: str, kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    env = {"PAYRAIL_DATABASE_URL": database_url, "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    with service(module, env, tmp_path):
        pass
    with psycopg.connect(_plain_dsn(database_url)) as conn:
        query = f'SELECT version_num FROM "{SCHEMAS[module]}".alembic_version'
        version = conn.execute(query).fetchone()
    assert version is not None


class TcpForwarder:
    """A TCP port that forwards to ``target`` once opened: a broker that "comes back"."""

    def __init__(self, port: int, target: str) -> None:
        self.port = port
        host, target_port = target.rsplit(":", 1)
        self._target = (host, int(target_port))
        self._server: socketserver.ThreadingTCPServer | None = None

    def open(self) -> None:
        target = self._target

        class Pipe(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with socket.create_connection(target) as upstream:
                    sockets = [self.request, upstream]
                    while True:
                        readable, _, _ = select.select(sockets, [], [], 30)
                        for source in readable:
                            data = source.recv(65536)
                            if not data:
                                return
                            (upstream if source is self.request else self.request).sendall(data)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Pipe)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _ready_checks(url: str) -> tuple[int, dict[str, str]]:
    readyz = httpx.get(f"{url}/readyz", timeout=10)
    checks: dict[str, str] = readyz.json()["checks"]
    return readyz.status_code, checks


@pytest.mark.parametrize("module", ["checkout", "entitlements", "reconciler"])
def test_a_service_started_during_a_broker_outage_is_alive_unready_then_ready_when_it_is_back(
    module: str, kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    """A broker outage must not crash-loop the services: they come up, /readyz says 503 naming
    the broker and their messaging, and they become ready on their own once it answers."""
    broker = TcpForwarder(free_port(), kafka_bootstrap)
    env = {
        "PAYRAIL_DATABASE_URL": database_url,
        "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker.port}",
    }
    with service(module, env, tmp_path, ready=False) as svc:
        svc.wait_alive()
        status, checks = _ready_checks(svc.url)
        assert status == 503
        assert checks["kafka"].startswith("unavailable")
        assert checks["messaging"].startswith("unavailable")
        assert checks["database"] == "ok"

        broker.open()
        try:
            svc.wait_ready()
            assert _ready_checks(svc.url) == (
                200,
                {"kafka": "ok", "database": "ok", "messaging": "ok"},
            )
        finally:
            broker.close()


def test_a_service_without_its_database_refuses_to_start_and_keeps_the_password_out_of_its_log(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Without its database a service cannot migrate its schema, so it exits non-zero."""
    dsn = f"postgresql+psycopg://payrail:s3cr3t-pw@127.0.0.1:{free_port()}/payrail"
    env = {"PAYRAIL_DATABASE_URL": dsn, "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    with service("entitlements", env, tmp_path, ready=False) as svc:
        assert svc.process.wait(60) != 0
        assert "s3cr3t-pw" not in svc.log()
        assert "OperationalError" in svc.log()
