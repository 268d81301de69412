"""The whole local platform: Kafka, PostgreSQL, localstripe and the four services.

``DevStack`` starts the infrastructure concurrently (Kafka's JVM dominates), points localstripe's
webhooks at webhook-ingest, then starts the services and waits for every ``/readyz``. Stopping
goes in reverse order. ``payrail dev run`` wraps it with signals and a console; the launcher
test drives the same code.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from payrail.devstack.kafka import KafkaServer
from payrail.devstack.localstripe import LocalStripe
from payrail.devstack.paths import default_state_dir, require_free_port
from payrail.devstack.postgres import PostgresServer, database_url
from payrail.devstack.process import (
    POLL_INTERVAL,
    LineSink,
    ManagedProcess,
    StartCancelled,
    stop_stale,
    wait_until,
)


@dataclass(frozen=True)
class ServiceSpec:
    """One payrail service: its display name, ``python -m`` module and port setting."""

    name: str
    module: str
    default_port: int
    port_env: str


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("checkout", "checkout", 8001, "PAYRAIL_CHECKOUT_PORT"),
    ServiceSpec("webhook-ingest", "webhook_ingest", 8002, "PAYRAIL_WEBHOOK_INGEST_PORT"),
    ServiceSpec("entitlements", "entitlements", 8003, "PAYRAIL_ENTITLEMENTS_PORT"),
    ServiceSpec("reconciler", "reconciler", 8004, "PAYRAIL_RECONCILER_PORT"),
)
INFRA: tuple[str, ...] = ("kafka", "postgres", "localstripe")
COMPONENTS: tuple[str, ...] = INFRA + tuple(s.name for s in SERVICES)

#: the API key the services use against localstripe (it accepts any ``sk_`` key)
LOCALSTRIPE_API_KEY = "sk_test_payrail"
#: how long the services may take to answer /readyz (they run their migrations first)
SERVICE_READY_TIMEOUT = 120.0


def _port_from_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{name}={port} is out of range")
    return port


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its data, which ports it uses and which components it runs."""

    state_dir: Path
    kafka_port: int = 9092
    postgres_port: int = 55432
    localstripe_port: int = 8420
    service_ports: Mapping[str, int] = field(
        default_factory=lambda: {s.name: s.default_port for s in SERVICES}
    )
    partitions: int = 3
    components: frozenset[str] = frozenset(COMPONENTS)

    @classmethod
    def from_env(
        cls,
        *,
        state_dir: Path | None = None,
        components: Iterable[str] | None = None,
        partitions: int = 3,
    ) -> StackConfig:
        """Ports from ``PAYRAIL_*_PORT`` variables (DESIGN defaults otherwise)."""
        env = os.environ
        chosen = frozenset(components) if components else frozenset(COMPONENTS)
        unknown = chosen - set(COMPONENTS)
        if unknown:
            raise ValueError(
                f"unknown component(s) {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(COMPONENTS)}"
            )
        return cls(
            state_dir=(state_dir or default_state_dir()).resolve(),
            kafka_port=_port_from_env(env, "PAYRAIL_KAFKA_PORT", 9092),
            postgres_port=_port_from_env(env, "PAYRAIL_POSTGRES_PORT", 55432),
            localstripe_port=_port_from_env(env, "PAYRAIL_LOCALSTRIPE_PORT", 8420),
            service_ports={
                s.name: _port_from_env(env, s.port_env, s.default_port) for s in SERVICES
            },
            partitions=partitions,
            components=chosen,
        )


def webhook_secret(state_dir: Path) -> SecretStr:
    """The stack's Stripe webhook signing secret, created once and kept in the state folder.

    Keeping it means a restarted stack still verifies webhooks localstripe signed before.
    """
    path = state_dir / "stripe-webhook-secret"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"whsec_{secrets.token_urlsafe(32)}\n")
    return SecretStr(path.read_text().strip())


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


class DevStack:
    """The components chosen by a :class:`StackConfig`, started and stopped as one."""

    def __init__(self, config: StackConfig, *, sink: LineSink | None = None) -> None:
        self.config = config
        self._sink = sink
        state = config.state_dir
        wanted = config.components
        self.kafka = (
            KafkaServer(state, config.kafka_port, partitions=config.partitions, sink=sink)
            if "kafka" in wanted
            else None
        )
        self.postgres = (
            PostgresServer(state, config.postgres_port, sink=sink) if "postgres" in wanted else None
        )
        self.localstripe = (
            LocalStripe(config.localstripe_port, state_dir=state, sink=sink)
            if "localstripe" in wanted
            else None
        )
        self.services: dict[str, ManagedProcess] = {}
        self._abort = threading.Event()

    # -- addresses every component is reached at (whether or not this stack runs it) --

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.config.kafka_port}"

    @property
    def database_url(self) -> str:
        return database_url(self.config.postgres_port)

    @property
    def localstripe_url(self) -> str:
        return f"http://127.0.0.1:{self.config.localstripe_port}"

    def service_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.config.service_ports[name]}"

    def stripe_webhook_url(self) -> str:
        return f"{self.service_url('webhook-ingest')}/webhooks/stripe"

    def service_env(self, spec: ServiceSpec) -> dict[str, str]:
        """The environment of one service process (secrets included: never log it)."""
        gateways = {
            "stripe": {
                "default": {
                    "api_key": LOCALSTRIPE_API_KEY,
                    "api_base": self.localstripe_url,
                    "webhook_secrets": [webhook_secret(self.config.state_dir).get_secret_value()],
                }
            }
        }
        env = dict(os.environ)
        env.setdefault("PAYRAIL_LOG_JSON", "false")  # readable lines in the dev console
        env.update(
            PAYRAIL_HTTP_PORT=str(self.config.service_ports[spec.name]),
            PAYRAIL_DATABASE_URL=self.database_url,
            PAYRAIL_KAFKA_BOOTSTRAP_SERVERS=self.kafka_bootstrap,
            PAYRAIL_GATEWAYS=json.dumps(gateways),
            PAYRAIL_DEMO_ENTITLEMENTS_URL=self.service_url("entitlements"),  # the /demo page
            # ... which polls entitlements from checkout's origin, on whatever port it runs
            PAYRAIL_CORS_ALLOW_ORIGINS=json.dumps(
                [
                    f"http://{host}:{self.config.service_ports['checkout']}"
                    for host in ("127.0.0.1", "localhost")
                ]
            ),
            PYTHONUNBUFFERED="1",
        )
        return env

    # -- lifecycle --

    def processes(self) -> list[ManagedProcess]:
        """Every child process started so far, in start order."""
        infra = [c.process for c in (self.kafka, self.postgres, self.localstripe) if c is not None]
        return [p for p in infra if p is not None] + list(self.services.values())

    def start(self, cancel: threading.Event | None = None) -> None:
        """Start everything chosen; raise (after stopping nothing: call ``stop``) on failure.

        Failures name the component and carry the tail of its log (``ProcessFailed``); a set
        ``cancel`` aborts the waits promptly with ``StartCancelled``.
        """
        self._abort.clear()
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self._start_infra(cancel)
        if self.localstripe is not None:
            self.localstripe.register_webhook(
                "payrail", self.stripe_webhook_url(), webhook_secret(self.config.state_dir)
            )
        self._start_services(cancel)

    def _start_infra(self, cancel: threading.Event | None) -> None:
        components = [c for c in (self.kafka, self.postgres, self.localstripe) if c is not None]
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(c.start, cancel=self._abort) for c in components]
            self._await(futures, cancel)

    def _await(
        self, futures: list[concurrent.futures.Future[None]], cancel: threading.Event | None
    ) -> None:
        """Wait for concurrent starts; on the first failure or a cancel, abort the others.

        The error raised is the first real failure, not the cancellations it caused.
        """
        pending = set(futures)
        try:
            while pending:
                if cancel is not None and cancel.is_set():
                    self._abort.set()
                done, pending = concurrent.futures.wait(
                    pending, timeout=POLL_INTERVAL, return_when=concurrent.futures.FIRST_EXCEPTION
                )
                if any(f.exception() is not None for f in done):
                    self._abort.set()
        except BaseException:  # e.g. KeyboardInterrupt in a test run: let the starters give up
            self._abort.set()
            raise
        errors = [e for f in futures if (e := f.exception()) is not None]
        if errors:
            raise next((e for e in errors if not isinstance(e, StartCancelled)), errors[0])

    def _start_services(self, cancel: threading.Event | None) -> None:
        specs = [s for s in SERVICES if s.name in self.config.components]
        if not specs:
            return
        run_dir = self.config.state_dir / "run"
        for spec in specs:
            argv = [sys.executable, "-m", spec.module]
            pid_file = run_dir / f"{spec.name}.pid"
            if pid_file.is_file():
                stop_stale(int(pid_file.read_text()), f"-m {spec.module}", spec.name)
            port = self.config.service_ports[spec.name]
            require_free_port(port, spec.name, spec.port_env)
            process = ManagedProcess(
                spec.name,
                argv,
                log_path=self.config.state_dir / "logs" / f"{spec.name}.log",
                env=self.service_env(spec),
                pid_file=pid_file,
                stop_timeout=20.0,
                sink=self._sink,
            )
            self.services[spec.name] = process
            process.start()
        urls = [f"{self.service_url(s.name)}/readyz" for s in specs]
        wait_until(
            lambda: all(_ready(url) for url in urls),
            what="the services' /readyz",
            timeout=SERVICE_READY_TIMEOUT,
            processes=list(self.services.values()),
            cancel=cancel,
        )

    def check_alive(self) -> None:
        """Raise :class:`ProcessFailed` for the first child that has exited on its own."""
        for process in self.processes():
            process.check_alive()

    def stop(self) -> None:
        """Stop every child in reverse start order; safe to call at any point, twice too."""
        self._abort.set()
        for process in reversed(list(self.services.values())):
            process.stop()
        for component in (self.localstripe, self.postgres, self.kafka):
            if component is not None:
                component.stop()
