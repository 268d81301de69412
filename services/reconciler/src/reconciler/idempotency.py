"""``Idempotency-Key`` on every POST of the reconciler (DESIGN, "HTTP idempotency").

A client that lost an answer (timeout, dropped connection) sends the same request again with the
same key and must not start a second run or import twice; it gets the first answer back:

* the key is required: a POST without one is refused with ``400`` (problem+json) before anything
  happens - ``400`` rather than ``428`` because the request itself is incomplete, not a
  precondition on the resource's state;
* same key, same request (method, path, query and body, see :func:`fingerprint`): the first
  response is replayed byte for byte - status, body, ``Location`` - with an
  ``Idempotent-Replayed: true`` header, and nothing is done again;
* same key, another request: ``422`` (problem+json), nothing is done.

Only a successful (2xx) answer is stored: it is written in the same transaction as the effect it
reports, so a stored key always means "done", and a refused request (a bad file, an unknown
gateway) stores nothing - retried, it is refused again, or accepted once corrected.

Two requests with one key at once: the second waits for the first (a transaction-scoped
advisory lock on the key) and then replays its answer. Keys are kept ``RETENTION`` (30 days, the
platform's replay horizon) and purged when the service starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from fastapi.responses import Response
from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payrail.web.problems import Problem

RETENTION = timedelta(days=30)
REPLAYED = "Idempotent-Replayed"
#: response headers a replay rebuilds itself (content-type travels as ``media_type``)
_OWN_HEADERS = frozenset({"content-length", "content-type"})

Effect = Callable[[AsyncSession], Awaitable[Response]]


def fingerprint(method: str, path: str, query: Mapping[str, str], body: bytes) -> str:
    """What makes two requests "the same": method, path, query parameters (in any order) and
    the exact body."""
    h = hashlib.sha256(f"{method} {path}".encode())
    for name, value in sorted(query.items()):
        h.update(f"\n{name}={value}".encode())
    h.update(b"\n\n")
    h.update(body)
    return h.hexdigest()


def require_key(key: str | None) -> str:
    if not key:
        raise Problem(
            400,
            "Idempotency-Key required",
            "every POST carries an Idempotency-Key header (a new unique value per operation)",
        )
    return key


@dataclass(frozen=True)
class _Stored:
    status: int
    media_type: str
    headers: dict[str, str]
    body: bytes

    def replay(self) -> Response:
        return Response(
            self.body,
            status_code=self.status,
            media_type=self.media_type,
            headers={**self.headers, REPLAYED: "true"},
        )


class IdempotencyKeys:
    """Runs a POST's effect once per key and replays its answer (one per service instance)."""

    def __init__(self, table: Table, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.table = table
        self.sessions = sessions

    async def once(self, key: str | None, request_hash: str, effect: Effect) -> Response:
        """The stored answer to ``key``, or ``effect``'s, stored in the effect's transaction."""
        key = require_key(key)
        t = self.table
        async with self.sessions.begin() as session:
            lock = f"{t.schema}.{t.name}:{key}"
            await session.execute(
                select(func.pg_advisory_xact_lock(func.hashtextextended(lock, 0)))
            )
            found = (await session.execute(select(t).where(t.c.key == key))).mappings().first()
            if found is not None:
                if found["request_hash"] != request_hash:
                    raise Problem(
                        422,
                        "Idempotency-Key reused",
                        "this Idempotency-Key was used with a different request",
                    )
                return _Stored(
                    found["status"], found["media_type"], found["headers"], found["body"]
                ).replay()
            response = await effect(session)
            if 200 <= response.status_code < 300:
                await session.execute(
                    insert(t).values(
                        key=key,
                        request_hash=request_hash,
                        status=response.status_code,
                        media_type=response.headers.get("content-type", "application/json"),
                        headers={
                            name: value
                            for name, value in response.headers.items()
                            if name not in _OWN_HEADERS
                        },
                        body=bytes(response.body),
                    )
                )
        return response

    async def purge(self) -> int:
        """Forget keys older than :data:`RETENTION`; how many."""
        async with self.sessions.begin() as session:
            purged = await session.execute(
                delete(self.table)
                .where(self.table.c.created_at < func.now() - RETENTION)
                .returning(self.table.c.key)
            )
            return len(purged.all())
