"""What `payrail dev run` makes of its environment, before it starts anything."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from payrail.devstack.stack import SERVICES, DevStack, StackConfig, webhook_secret


def test_ports_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for spec in SERVICES:
        monkeypatch.delenv(spec.port_env, raising=False)
    monkeypatch.delenv("PAYRAIL_POSTGRES_PORT", raising=False)
    monkeypatch.setenv("PAYRAIL_KAFKA_PORT", "19092")
    monkeypatch.setenv("PAYRAIL_WEBHOOK_INGEST_PORT", "18002")
    config = StackConfig.from_env(state_dir=tmp_path)
    assert config.kafka_port == 19092
    assert config.postgres_port == 55432
    assert config.service_ports["webhook-ingest"] == 18002
    assert config.service_ports["checkout"] == 8001


@pytest.mark.parametrize("value", ["ninety", "0", "70000"])
def test_a_bad_port_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    monkeypatch.setenv("PAYRAIL_POSTGRES_PORT", value)
    with pytest.raises(ValueError, match="PAYRAIL_POSTGRES_PORT"):
        StackConfig.from_env(state_dir=tmp_path)


def test_an_unknown_component_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose from kafka, postgres, localstripe, checkout"):
        StackConfig.from_env(state_dir=tmp_path, components=["kafka", "zookeeper"])


def test_the_webhook_secret_is_created_once_and_private(tmp_path: Path) -> None:
    first = webhook_secret(tmp_path)
    assert first.get_secret_value().startswith("whsec_")
    assert webhook_secret(tmp_path) == first
    mode = stat.S_IMODE((tmp_path / "stripe-webhook-secret").stat().st_mode)
    assert mode & 0o077 == 0


def test_services_are_pointed_at_the_stack(tmp_path: Path) -> None:
    config = StackConfig(state_dir=tmp_path, kafka_port=19092, postgres_port=15432)
    stack = DevStack(config)
    env = stack.service_env(SERVICES[0])
    assert env["PAYRAIL_HTTP_PORT"] == "8001"
    assert env["PAYRAIL_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
    assert env["PAYRAIL_DATABASE_URL"].endswith("@127.0.0.1:15432/payrail")
    stripe = json.loads(env["PAYRAIL_GATEWAYS"])["stripe"]["default"]
    assert stripe["api_base"] == "http://127.0.0.1:8420"
    assert stripe["webhook_secrets"] == [webhook_secret(tmp_path).get_secret_value()]
