"""docker-compose.yml cannot be run here (no Docker engine), so check what `docker compose up`
would trip over first: it parses, every file it and deploy/Dockerfile reference exists, build
targets exist, ports are the documented ones, and it runs the same Kafka and topics as
`make run`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from payrail.devstack.kafka import DESIGN_TOPICS, kafka_version
from payrail.devstack.paths import repo_root
from payrail.devstack.stack import SERVICES, ServiceSpec

ROOT = repo_root()
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICE_DEFS: dict[str, dict[str, Any]] = COMPOSE["services"]

#: host port -> container port of every published component (DESIGN's port table)
DESIGN_PORTS = {
    "checkout": ("8001", "8001"),
    "webhook-ingest": ("8002", "8002"),
    "entitlements": ("8003", "8003"),
    "reconciler": ("8004", "8004"),
    "localstripe": ("8420", "8420"),
    "kafka": ("9092", "9092"),
    "postgres": ("55432", "5432"),
}


def _stages(dockerfile: Path) -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.M | re.I))


def test_compose_has_the_whole_platform() -> None:
    assert set(DESIGN_PORTS) <= set(SERVICE_DEFS)


@pytest.mark.parametrize("name", sorted(n for n, d in SERVICE_DEFS.items() if "build" in d))
def test_build_context_dockerfile_and_target_exist(name: str) -> None:
    build = SERVICE_DEFS[name]["build"]
    context = ROOT / build["context"]
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert context.is_dir()
    assert dockerfile.is_file()
    assert build["target"] in _stages(dockerfile)


def test_every_file_the_dockerfile_copies_from_the_context_exists() -> None:
    dockerfile = ROOT / "deploy" / "Dockerfile"
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            *sources, _destination = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"{source} in: {line}"


@pytest.mark.parametrize("name", sorted(SERVICE_DEFS))
def test_bind_mounts_point_at_files_in_the_repo(name: str) -> None:
    for volume in SERVICE_DEFS[name].get("volumes", []):
        source = volume.split(":", 1)[0]
        if source.startswith((".", "/")):
            assert (ROOT / source).exists(), volume
        else:
            assert source in COMPOSE.get("volumes", {}), f"undeclared named volume {source}"


@pytest.mark.parametrize("name", sorted(SERVICE_DEFS))
def test_dependencies_are_defined_services(name: str) -> None:
    assert set(SERVICE_DEFS[name].get("depends_on", {})) <= set(SERVICE_DEFS)


@pytest.mark.parametrize(("name", "ports"), sorted(DESIGN_PORTS.items()))
def test_ports_are_the_documented_ones(name: str, ports: tuple[str, str]) -> None:
    assert ":".join(ports) in SERVICE_DEFS[name]["ports"]


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_each_service_runs_its_module_and_checks_its_own_readyz(spec: ServiceSpec) -> None:
    definition = SERVICE_DEFS[spec.name]
    assert definition["command"] == ["python", "-m", spec.module]
    assert list(ROOT.glob(f"services/*/src/{spec.module}/__main__.py"))
    assert definition["environment"]["PAYRAIL_HTTP_PORT"] == str(spec.default_port)
    assert f"127.0.0.1:{spec.default_port}/readyz" in " ".join(definition["healthcheck"]["test"])


def test_compose_runs_the_kafka_version_the_pom_pins() -> None:
    assert SERVICE_DEFS["kafka"]["image"] == f"apache/kafka:{kafka_version()}"


def test_compose_creates_the_design_topics() -> None:
    script = (ROOT / "deploy" / "kafka" / "create-topics.sh").read_text()
    listed = re.search(r"topics=\((.*?)\)", script, re.S)
    assert listed is not None
    assert tuple(listed.group(1).split()) == DESIGN_TOPICS
