"""Read what really landed on a topic: snapshot the end offsets, act, then read what is new."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str]


class TopicReader:
    """Reads records appended to ``topic`` after :meth:`mark` (no consumer group, no commits)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._marks: dict[TopicPartition, int] = {}

    async def _consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        return consumer

    async def mark(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            [described] = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        tps = [TopicPartition(self.topic, p["partition"]) for p in described["partitions"]]
        consumer = await self._consumer()
        try:
            self._marks = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()

    async def read(
        self, *, expect: int, timeout: float = 15.0, settle: float = 1.0
    ) -> list[Record]:
        """Records since the mark: wait until ``expect`` arrived, then ``settle`` seconds for
        any extra (so a test can assert that nothing *more* was published)."""
        consumer = await self._consumer()
        records: list[Record] = []
        try:
            consumer.assign(list(self._marks))
            for tp, offset in self._marks.items():
                consumer.seek(tp, offset)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            settle_until: float | None = None
            while True:
                now = loop.time()
                if len(records) >= expect and settle_until is None:
                    settle_until = now + settle
                if (settle_until is not None and now >= settle_until) or now >= deadline:
                    break
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    records.extend(
                        Record(
                            m.topic,
                            m.partition,
                            m.offset,
                            m.key.decode() if m.key is not None else None,
                            m.value or b"",
                            {k: v.decode() for k, v in m.headers},
                        )
                        for m in messages
                    )
        finally:
            await consumer.stop()
        return records
