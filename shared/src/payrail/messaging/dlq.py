"""Dead-letter topics for operators: list, read, replay, purge (the API behind ``payrail dlq``).

A dead letter lives in ``<topic>.<group>.dlt`` (see :mod:`payrail.messaging.deadletter` for its
headers). Replaying it produces a copy to ``<topic>.<group>.retry``, which only the group that
failed consumes: the fix is tried by that group again, and no other group on the source topic
sees anything new. The copy keeps the original key, value and headers (``ce_*``,
``traceparent``), drops the dead-letter headers and adds ``payrail_replay-id``,
``payrail_replayed-at``, ``payrail_replayed-by`` and ``payrail_replay-source``. The consumer's
inbox makes a replay idempotent: replaying a message twice, or one that meanwhile succeeded,
applies it once.

Every replay is recorded in the Kafka topic ``payrail.dlq-replays`` (kept forever, one
partition so the trail reads in order): one JSON record per replayed message, naming who, when,
which dead letter and the filter used. A topic rather than a table because dead letters belong to
no service schema and the CLI needs only the broker. The record is written *before* the copy,
so an interrupted replay may leave a record without a copy, never a copy without a record.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaConnectionError, KafkaError

from payrail.contracts.topics import DLQ_REPLAYS, DLT_SUFFIX, retry_topic, split_group_topic
from payrail.messaging import deadletter as dlh
from payrail.messaging.admin import TopicSpec, ensure_topics, partition_counts, retention_config
from payrail.messaging.envelope import format_time


class DlqError(Exception):
    """A dead-letter operation that cannot be done; the message says why, for a human."""


class BrokerUnavailable(DlqError):
    """The Kafka broker did not answer."""


class UnknownTopic(DlqError):
    """The topic does not exist or is not a dead-letter topic."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a dead-letter topic, with its failure headers parsed."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime  # when it was dead-lettered
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        """The last header called ``name``, as text (undecodable bytes replaced)."""
        for key, value in reversed(self.headers):
            if key == name:
                return value.decode("utf-8", errors="replace")
        return None

    @property
    def ce_id(self) -> str | None:
        return self.header("ce_id")

    @property
    def ce_type(self) -> str | None:
        return self.header("ce_type")

    @property
    def key_text(self) -> str:
        return self.header(dlh.ORIGINAL_KEY) or (self.key or b"").decode("utf-8", "replace")

    @property
    def original_topic(self) -> str | None:
        return self.header(dlh.ORIGINAL_TOPIC)

    @property
    def consumer_group(self) -> str | None:
        return self.header(dlh.ORIGINAL_CONSUMER_GROUP)

    @property
    def exception_fqcn(self) -> str:
        return self.header(dlh.EXCEPTION_FQCN) or "unknown"

    @property
    def exception_message(self) -> str:
        return self.header(dlh.EXCEPTION_MESSAGE) or ""

    @property
    def attempts(self) -> int | None:
        raw = self.header(dlh.ATTEMPTS)
        return int(raw) if raw and raw.isdigit() else None

    def payload(self) -> Any:
        """The body parsed as JSON, or its text when it is not JSON (for display)."""
        text = (self.value or b"").decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except ValueError:
            return text


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters an operation applies to; empty criteria match everything.

    Times compare with when a record was dead-lettered; offsets are inclusive and, without a
    ``partition``, apply to every partition. An exception class matches its fully qualified or
    its short name.
    """

    event_types: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()
    exception_classes: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    partition: int | None = None
    min_offset: int | None = None
    max_offset: int | None = None

    def matches(self, letter: DeadLetter) -> bool:
        fqcn = letter.exception_fqcn
        checks = (
            not self.event_types or letter.ce_type in self.event_types,
            not self.keys or letter.key_text in self.keys,
            not self.exception_classes
            or fqcn in self.exception_classes
            or fqcn.rsplit(".", 1)[-1] in self.exception_classes,
            self.since is None or letter.timestamp >= self.since,
            self.until is None or letter.timestamp <= self.until,
            self.partition is None or letter.partition == self.partition,
            self.min_offset is None or letter.offset >= self.min_offset,
            self.max_offset is None or letter.offset <= self.max_offset,
        )
        return all(checks)

    def describe(self) -> dict[str, Any]:
        """The criteria that are set, JSON-able (recorded with each replay)."""
        described: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if value is None or value == frozenset():
                continue
            if isinstance(value, frozenset):
                described[name] = sorted(value)
            elif isinstance(value, datetime):
                described[name] = format_time(value)
            else:
                described[name] = value
        return described


@dataclass(frozen=True, slots=True)
class DeadLetterTopicSummary:
    """One dead-letter topic at a glance."""

    topic: str
    source_topic: str
    group: str
    count: int
    oldest: datetime | None
    newest: datetime | None
    top_exceptions: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay did (or, with ``dry_run``, would do)."""

    replay_id: str
    dead_letter_topic: str
    target_topic: str
    replayed_by: str
    replayed_at: datetime
    dry_run: bool
    letters: list[DeadLetter] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    """One entry of the replay audit trail (``payrail.dlq-replays``)."""

    replay_id: str
    replayed_by: str
    replayed_at: datetime
    dead_letter_topic: str
    dead_letter_partition: int
    dead_letter_offset: int
    target_topic: str
    ce_id: str | None
    ce_type: str | None
    key: str
    exception_fqcn: str
    filter: dict[str, Any]


class DeadLetterQueue:
    """Operator access to dead-letter topics (an async context manager)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "payrail-dlq",
        request_timeout_ms: int = 10_000,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._timeout_ms = request_timeout_ms
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
        )
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> DeadLetterQueue:
        # bounded as a whole: a host that accepts connections and never answers must not hang
        # an operator's terminal
        try:
            await asyncio.wait_for(self._admin.start(), self._timeout_ms / 1000)
        except (KafkaError, TimeoutError) as exc:
            await self._admin.close()
            raise BrokerUnavailable(f"no Kafka broker answers at {self._bootstrap}") from exc
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self._admin.close()

    async def list_topics(self) -> list[DeadLetterTopicSummary]:
        """Every dead-letter topic on the cluster, summarized, sorted by name."""
        names = sorted(t for t in await self._admin.list_topics() if t.endswith(DLT_SUFFIX))
        return [await self.summarize(name) for name in names]

    async def summarize(self, topic: str) -> DeadLetterTopicSummary:
        """Count, oldest and newest dead-lettering time and the most frequent exceptions."""
        source, group = await self._check_topic(topic)
        letters = await self.read(topic)
        stamps = [letter.timestamp for letter in letters]
        return DeadLetterTopicSummary(
            topic=topic,
            source_topic=source,
            group=group,
            count=len(letters),
            oldest=min(stamps, default=None),
            newest=max(stamps, default=None),
            top_exceptions=Counter(letter.exception_fqcn for letter in letters).most_common(5),
        )

    async def read(
        self, topic: str, where: DeadLetterFilter | None = None, *, limit: int | None = None
    ) -> list[DeadLetter]:
        """The dead letters of ``topic`` matching ``where``, oldest offset first per partition."""
        await self._check_topic(topic)
        where = where or DeadLetterFilter()
        found: list[DeadLetter] = []
        for record in await self._read_all(topic, where):
            letter = _letter(record)
            if where.matches(letter):
                found.append(letter)
                if limit is not None and len(found) >= limit:
                    break
        return found

    async def replay(
        self,
        topic: str,
        where: DeadLetterFilter | None = None,
        *,
        replayed_by: str,
        rate_per_second: float = 50.0,
        dry_run: bool = False,
        limit: int | None = None,
    ) -> ReplayReport:
        """Send copies of the matching dead letters to the failed group's retry topic.

        At most ``rate_per_second`` messages per second, so a replay of thousands does not
        flood the consumer it is meant to help. With ``dry_run`` nothing is sent or recorded.
        """
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        if not replayed_by:
            raise ValueError("a replay must name who performs it")
        source, group = await self._check_topic(topic)
        where = where or DeadLetterFilter()
        letters = await self.read(topic, where, limit=limit)
        report = ReplayReport(
            replay_id=str(uuid.uuid4()),
            dead_letter_topic=topic,
            target_topic=retry_topic(source, group),
            replayed_by=replayed_by,
            replayed_at=datetime.now(UTC),
            dry_run=dry_run,
            letters=letters,
        )
        if dry_run or not letters:
            return report
        producer = await self._ensure_producer()
        started = time.monotonic()
        for index, letter in enumerate(letters):
            delay = started + index / rate_per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            audit = _audit_record(report, letter, where)
            await producer.send_and_wait(
                DLQ_REPLAYS, value=json.dumps(audit).encode(), key=topic.encode()
            )
            await producer.send_and_wait(
                report.target_topic,
                value=letter.value,
                key=letter.key,
                headers=_replay_headers(report, letter),
            )
        return report

    async def replays(self, dead_letter_topic: str | None = None) -> list[ReplayRecord]:
        """The replay audit trail, oldest first (optionally for one dead-letter topic)."""
        if DLQ_REPLAYS not in await self._admin.list_topics():
            return []
        records: list[ReplayRecord] = []
        for record in await self._read_all(DLQ_REPLAYS, DeadLetterFilter()):
            entry = json.loads(record.value)
            entry["replayed_at"] = datetime.fromisoformat(entry["replayed_at"])
            if dead_letter_topic is None or entry["dead_letter_topic"] == dead_letter_topic:
                records.append(ReplayRecord(**entry))
        return sorted(records, key=lambda r: r.replayed_at)

    async def purge(
        self, topic: str, *, before_offsets: Mapping[int, int] | None = None
    ) -> dict[int, int]:
        """Delete dead letters: per partition, every record below ``before_offsets[partition]``
        (default: all of them). Returns how many records each partition lost."""
        await self._check_topic(topic)
        partitions = await self._partitions(topic)
        consumer = await self._consumer()
        try:
            begin = await consumer.beginning_offsets(partitions)
            end = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        targets = {
            tp: min(end[tp], max(begin[tp], (before_offsets or {}).get(tp.partition, end[tp])))
            for tp in partitions
            if before_offsets is None or tp.partition in before_offsets
        }
        targets = {tp: offset for tp, offset in targets.items() if offset > begin[tp]}
        if not targets:
            return {}
        low = await self._admin.delete_records(
            {tp: RecordsToDelete(before_offset=offset) for tp, offset in targets.items()},
            timeout_ms=self._timeout_ms,
        )
        return {tp.partition: low[tp] - begin[tp] for tp in targets}

    async def _check_topic(self, topic: str) -> tuple[str, str]:
        """(source topic, group) of a dead-letter topic that exists, else UnknownTopic."""
        try:
            source, group, kind = split_group_topic(topic)
        except ValueError:
            kind = None
        if kind != "dlt":
            raise UnknownTopic(f"{topic!r} is not a dead-letter topic ('<topic>.<group>.dlt')")
        try:
            existing = await self._admin.list_topics()
        except KafkaConnectionError as exc:
            raise BrokerUnavailable(f"no Kafka broker answers at {self._bootstrap}") from exc
        if topic not in existing:
            raise UnknownTopic(f"dead-letter topic {topic!r} does not exist")
        return source, group

    async def _partitions(self, topic: str) -> list[TopicPartition]:
        count = (await partition_counts(self._admin, [topic])).get(topic, 0)
        return [TopicPartition(topic, partition) for partition in range(count)]

    async def _consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=self._timeout_ms,
        )
        await consumer.start()
        return consumer

    async def _read_all(
        self, topic: str, where: DeadLetterFilter
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Every record of ``topic`` present now (up to the current end), within ``where``'s
        partition and offset bounds."""
        partitions = [
            tp
            for tp in await self._partitions(topic)
            if where.partition is None or tp.partition == where.partition
        ]
        consumer = await self._consumer()
        try:
            consumer.assign(partitions)
            begin = await consumer.beginning_offsets(partitions)
            end = await consumer.end_offsets(partitions)
            stop = {
                tp: min(end[tp], where.max_offset + 1) if where.max_offset is not None else end[tp]
                for tp in partitions
            }
            for tp in partitions:
                consumer.seek(tp, max(begin[tp], where.min_offset or 0))
            remaining = {tp for tp in partitions if await consumer.position(tp) < stop[tp]}
            records: list[ConsumerRecord[bytes, bytes]] = []
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000)
                for tp, fetched in batch.items():
                    records += [r for r in fetched if r.offset < stop[tp]]
                remaining = {tp for tp in remaining if await consumer.position(tp) < stop[tp]}
            return sorted(records, key=lambda r: (r.partition, r.offset))
        finally:
            await consumer.stop()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            await ensure_topics(
                self._admin, [TopicSpec(DLQ_REPLAYS, partitions=1, config=retention_config(None))]
            )
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
            )
            await self._producer.start()
        return self._producer


def _letter(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
    )


def _replay_headers(report: ReplayReport, letter: DeadLetter) -> list[tuple[str, bytes]]:
    kept = [
        (name, value)
        for name, value in letter.headers
        if not name.startswith((*dlh.DEAD_LETTER_PREFIXES, dlh.REPLAY_PREFIX))
    ]
    added = {
        dlh.REPLAY_ID: report.replay_id,
        dlh.REPLAYED_AT: format_time(report.replayed_at),
        dlh.REPLAYED_BY: report.replayed_by,
        dlh.REPLAY_SOURCE: f"{letter.topic}:{letter.partition}:{letter.offset}",
    }
    return kept + [(name, value.encode("utf-8")) for name, value in added.items()]


def _audit_record(
    report: ReplayReport, letter: DeadLetter, where: DeadLetterFilter
) -> dict[str, Any]:
    return {
        "replay_id": report.replay_id,
        "replayed_by": report.replayed_by,
        "replayed_at": format_time(report.replayed_at),
        "dead_letter_topic": letter.topic,
        "dead_letter_partition": letter.partition,
        "dead_letter_offset": letter.offset,
        "target_topic": report.target_topic,
        "ce_id": letter.ce_id,
        "ce_type": letter.ce_type,
        "key": letter.key_text,
        "exception_fqcn": letter.exception_fqcn,
        "filter": where.describe(),
    }
