"""A real single-node Apache Kafka (KRaft broker + controller) run straight from Maven jars.

No Docker and no Kafka distribution: ``deploy/kafka/pom.xml`` pins the broker, its tools and a
logging binding; Maven fetches them once into the cache, and ``java -cp libs/* kafka.Kafka`` runs
them. The broker settings are the ones a one-broker cluster needs for what payrail relies on:
``acks=all`` and idempotent producers (min.insync.replicas=1) and transactions / consumer groups
(internal topics with replication 1), with no rebalance delay so tests don't wait for groups.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import signal
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from payrail.contracts.topics import (
    ENTITLEMENTS_EVENTS,
    PAYMENTS_GATEWAY_EVENTS,
    PAYMENTS_INTENTS,
    PAYMENTS_LIFECYCLE,
    RECONCILIATION_DISCREPANCIES,
)
from payrail.devstack.paths import (
    cache_dir,
    free_port,
    port_in_use,
    repo_root,
    require_free_port,
)
from payrail.devstack.process import (
    LineSink,
    ManagedProcess,
    ManagedServer,
    run_command,
    stop_stale,
    wait_until,
)

log = logging.getLogger(__name__)

#: the topics of DESIGN.md (named once, in payrail.contracts), created at every start
DESIGN_TOPICS: tuple[str, ...] = (
    PAYMENTS_INTENTS,
    PAYMENTS_GATEWAY_EVENTS,
    PAYMENTS_LIFECYCLE,
    ENTITLEMENTS_EVENTS,
    RECONCILIATION_DISCREPANCIES,
)

#: heap for a dev broker: plenty for local traffic, small enough to sit beside four services
JVM_HEAP = ("-Xms128m", "-Xmx512m")

_T = TypeVar("_T")


def pom_path() -> Path:
    return repo_root() / "deploy" / "kafka" / "pom.xml"


def kafka_version(pom: Path | None = None) -> str:
    """The Kafka version pinned in the pom (``<kafka.version>``), the one source of truth."""
    tree = ET.parse(pom or pom_path())  # noqa: S314 - our own pom, not untrusted input
    for element in tree.iter():
        if element.tag.rsplit("}", 1)[-1] == "kafka.version" and element.text:
            return element.text.strip()
    raise ValueError(f"no <kafka.version> property in {pom or pom_path()}")


def libs_dir(version: str) -> Path:
    """Where the jars of one Kafka version live: ``<cache>/kafka-<version>/libs``."""
    return cache_dir() / f"kafka-{version}" / "libs"


#: written into the libs folder after Maven succeeded, so a half-finished fetch is redone
_COMPLETE_MARKER = ".complete"


def ensure_jars() -> Path:
    """Fetch the pinned Kafka jars with Maven unless the cache already has them.

    Maven writes into a temporary sibling folder that is renamed into place only on success,
    so an interrupted download never looks complete and two concurrent runs don't mix files.
    """
    pom = pom_path()
    target = libs_dir(kafka_version(pom))
    if (target / _COMPLETE_MARKER).is_file():
        return target
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka jars; install it first")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f"libs.partial-{uuid.uuid4().hex[:8]}"
    log.info(
        "fetching Kafka %s jars with Maven into %s (first run only)", kafka_version(pom), target
    )
    try:
        run_command(
            [
                "mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
            ],
            what="fetching the Kafka jars with Maven",
        )  # fmt: skip
        (staging / _COMPLETE_MARKER).write_text(f"{pom}\n")
        try:
            staging.rename(target)
        except OSError:  # target exists: a concurrent run won (keep its jars) or a stale leftover
            if not (target / _COMPLETE_MARKER).is_file():
                shutil.rmtree(target)
                staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from sync code, even when the caller is inside a loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _broker_ready(bootstrap: str) -> bool:
    """True once the broker answers a metadata request listing at least one live broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        await admin.close()


async def _create_topics(bootstrap: str, topics: Sequence[str], partitions: int) -> None:
    """Create the missing topics and wait until every partition of them has a leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        missing = sorted(set(topics) - set(await admin.list_topics()))
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(name, num_partitions=partitions, replication_factor=1)
                    for name in missing
                ]
            )
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent creator)
                    raise RuntimeError(f"creating topic {name} failed with Kafka error {code}")
        for _ in range(100):
            described = await admin.describe_topics(list(topics))
            if all(
                t["error_code"] == 0
                and t["partitions"]
                and all(p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"topics {list(topics)} have no leader")
    finally:
        await admin.close()


def ensure_topics(
    bootstrap: str, topics: Sequence[str] = DESIGN_TOPICS, partitions: int = 3
) -> None:
    """Create ``topics`` (replication 1) on any reachable broker; existing ones are kept."""
    _run_async(_create_topics(bootstrap, topics, partitions))


def broker_ready(bootstrap: str) -> bool:
    """Whether a broker at ``bootstrap`` accepts connections and answers metadata."""
    return _run_async(_broker_ready(bootstrap))


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64, unpadded, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaServer(ManagedServer):
    """A single-node KRaft Kafka whose data lives under ``state_dir/kafka``."""

    def __init__(
        self,
        state_dir: Path,
        port: int = 9092,
        controller_port: int | None = None,
        partitions: int = 3,
        *,
        sink: LineSink | None = None,
    ) -> None:
        self.port = port
        self.partitions = partitions
        self.home = state_dir.resolve() / "kafka"
        self.data_dir = self.home / "data"
        self.config_path = self.home / "server.properties"
        #: the console (warnings and errors only) and Kafka's own full log
        self.log_path = state_dir.resolve() / "logs" / "kafka.log"
        self.server_log = state_dir.resolve() / "logs" / "kafka" / "server.log"
        self.pid_file = state_dir.resolve() / "run" / "kafka.pid"
        self._requested_controller_port = controller_port
        self._sink = sink

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ensure_jars(self) -> Path:
        return ensure_jars()

    def _controller_port(self) -> int:
        """The controller port: as requested, else the one this cluster was formatted with.

        ``format --standalone`` records the controller's endpoint in the metadata log, so a
        cluster keeps its controller port across restarts; a new cluster takes a free one.
        """
        if self._requested_controller_port is not None:
            return self._requested_controller_port
        if self.config_path.is_file():
            for line in self.config_path.read_text().splitlines():
                if line.startswith("controller.quorum.bootstrap.servers="):
                    return int(line.rsplit(":", 1)[1])
        return free_port()

    def _write_config(self, controller_port: int) -> None:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # one broker: every replicated internal topic and min ISR must fit on it
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "num.partitions": str(self.partitions),
        }
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))

    def _java(self, libs: Path, main_class: str, *args: str) -> list[str]:
        return [
            "java",
            *JVM_HEAP,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={repo_root() / 'deploy' / 'kafka' / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.server_log.parent}",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]

    def start(self, timeout: float = 120.0, *, cancel: threading.Event | None = None) -> None:
        """Start the broker (formatting storage the first time) and create the DESIGN topics."""
        if self._process is not None and self._process.running():
            return
        if shutil.which("java") is None:
            raise RuntimeError("a JDK (java 17+) is needed to run Kafka; install it first")
        libs = self.ensure_jars()
        pid_file = self.pid_file
        if pid_file.is_file():
            stop_stale(int(pid_file.read_text()), str(self.config_path), "Kafka")
        controller_port = self._controller_port()
        require_free_port(self.port, "Kafka", "PAYRAIL_KAFKA_PORT")
        require_free_port(controller_port, "the Kafka controller", "a new state folder")
        self._write_config(controller_port)
        if not (self.data_dir / "meta.properties").is_file():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            run_command(
                self._java(
                    libs, "kafka.tools.StorageTool", "format", "--standalone",
                    "-t", new_cluster_id(), "-c", str(self.config_path),
                ),
                what="formatting Kafka storage",
            )  # fmt: skip
        self._process = ManagedProcess(
            "kafka",
            self._java(libs, "kafka.Kafka", str(self.config_path)),
            log_path=self.log_path,
            pid_file=pid_file,
            stop_signal=signal.SIGTERM,
            stop_timeout=30.0,
            sink=self._sink,
        )
        self._process.start()
        wait_until(
            lambda: port_in_use(self.port) and broker_ready(self.bootstrap_servers),
            what=f"Kafka on {self.bootstrap_servers}",
            timeout=timeout,
            processes=[self._process],
            cancel=cancel,
        )
        ensure_topics(self.bootstrap_servers, DESIGN_TOPICS, self.partitions)
