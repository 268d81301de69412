"""Session fixtures: a real Kafka, a real PostgreSQL and localstripe for the whole suite.

Where they come from, in this order:

1. services named by ``PAYRAIL_TEST_KAFKA_BOOTSTRAP`` / ``PAYRAIL_TEST_DATABASE_URL`` /
   ``PAYRAIL_TEST_LOCALSTRIPE_URL`` (a shared CI stack, or your own ``make run``);
2. Docker containers through testcontainers, when a Docker engine answers (Kafka and
   PostgreSQL; localstripe is a Python package and always runs locally);
3. the dev stack launcher (``payrail.devstack``, the code behind ``make run``) in a temporary
   state folder on free ports, torn down at the end of the session.

Nothing is started until a test asks for it, so a unit-test run starts no server at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from payrail.devstack.kafka import DESIGN_TOPICS, broker_ready, ensure_topics
from payrail.devstack.localstripe import LocalStripe
from payrail.devstack.paths import free_port, repo_root
from payrail.devstack.process import wait_until
from payrail.devstack.stack import DevStack, StackConfig

#: PostgreSQL image for the Docker path (the compose file's major version)
POSTGRES_IMAGE = "postgres:16"


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    database_url: str


def _temporary_state_dir(cleanup: ExitStack) -> Path:
    """A fresh, short state folder (unix socket paths are limited to ~100 bytes)."""
    state = Path(tempfile.mkdtemp(prefix="payrail-test-"))
    cleanup.callback(shutil.rmtree, state, ignore_errors=True)
    return state


def _docker_engine_answers() -> bool:
    """Whether a Docker engine is reachable (the ``docker`` CLI alone is not enough)."""
    try:
        from testcontainers.core.docker_client import DockerClient

        return bool(DockerClient(timeout=3).client.ping())
    except Exception:  # any failure to reach an engine means: no Docker here
        return False


def _kafka_container(cleanup: ExitStack) -> str:
    """The official Apache Kafka image, configured like docker-compose.yml's broker."""
    from testcontainers.core.container import DockerContainer

    compose = yaml.safe_load((repo_root() / "docker-compose.yml").read_text())
    service = compose["services"]["kafka"]
    host_port = free_port()
    env = {
        **service["environment"],
        # one listener, advertised at the host port mapped to it, plus the controller
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{host_port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
    }
    container = (
        DockerContainer(service["image"])
        .with_bind_ports(9092, host_port)
        .with_envs(**{key: str(value) for key, value in env.items()})
    )
    container.start()
    cleanup.callback(container.stop)
    bootstrap = f"127.0.0.1:{host_port}"
    wait_until(lambda: broker_ready(bootstrap), what=f"Kafka container on {bootstrap}", timeout=120)
    ensure_topics(bootstrap, DESIGN_TOPICS)
    return bootstrap


def _postgres_container(cleanup: ExitStack) -> str:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        POSTGRES_IMAGE, username="payrail", password="payrail", dbname="payrail", driver="psycopg"
    )
    container.start()
    cleanup.callback(container.stop)
    url: str = container.get_connection_url()
    return url


@pytest.fixture(scope="session")
def _infra() -> Iterator[Infra]:
    kafka = os.environ.get("PAYRAIL_TEST_KAFKA_BOOTSTRAP") or None
    database = os.environ.get("PAYRAIL_TEST_DATABASE_URL") or None
    with ExitStack() as cleanup:
        if (kafka is None or database is None) and _docker_engine_answers():
            kafka = kafka or _kafka_container(cleanup)
            database = database or _postgres_container(cleanup)
        if kafka is None or database is None:
            wanted = {"kafka"} if kafka is None else set()
            wanted |= {"postgres"} if database is None else set()
            stack = DevStack(
                StackConfig(
                    state_dir=_temporary_state_dir(cleanup),
                    kafka_port=free_port(),
                    postgres_port=free_port(),
                    components=frozenset(wanted),
                )
            )
            cleanup.callback(stack.stop)
            stack.start()  # Kafka and PostgreSQL concurrently
            kafka = kafka or stack.kafka_bootstrap
            database = database or stack.database_url
        yield Infra(kafka_bootstrap=kafka, database_url=database)


@pytest.fixture(scope="session")
def kafka_bootstrap(_infra: Infra) -> str:
    """``host:port`` of a real Kafka broker on which the DESIGN topics exist."""
    return _infra.kafka_bootstrap


@pytest.fixture(scope="session")
def database_url(_infra: Infra) -> str:
    """``postgresql+psycopg://`` URL of a real PostgreSQL database the tests may write to."""
    return _infra.database_url


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """Base URL of a localstripe server (a fake Stripe API), empty at session start."""
    given = os.environ.get("PAYRAIL_TEST_LOCALSTRIPE_URL")
    if given:
        yield given.rstrip("/")
        return
    with ExitStack() as cleanup:
        server = LocalStripe(
            free_port(), state_dir=_temporary_state_dir(cleanup), from_scratch=True
        )
        cleanup.callback(server.stop)
        server.start()
        yield server.url
