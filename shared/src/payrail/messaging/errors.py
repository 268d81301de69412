"""Which failures a consumer retries, and how a failure is described in a dead letter.

Retrying helps only when the cause is outside the message: a database fail-over, a lock
conflict, a timeout, a dropped connection. Everything else (a bug, a violated invariant, a
poison message) fails the same way every time, so it goes to the dead-letter topic at once
rather than stalling its partition for the whole retry budget.
"""

from __future__ import annotations

import httpx
import psycopg
import sqlalchemy.exc

from payrail.logging import redact_text
from payrail.messaging.envelope import PoisonMessage

MAX_MESSAGE_LENGTH = 500


class RetryableError(Exception):
    """Raise (or subclass) this from a handler for a failure that may succeed if tried again."""


_TRANSIENT: tuple[type[BaseException], ...] = (
    RetryableError,
    TimeoutError,  # includes asyncio.TimeoutError
    ConnectionError,
    # SQLAlchemy wraps psycopg's OperationalError (lost connection, admin shutdown, and the
    # class-40 transaction rollbacks: serialization failure, deadlock) in its own
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.TimeoutError,  # connection pool exhausted
    psycopg.OperationalError,
    httpx.TransportError,  # a gateway call that timed out or could not connect
)


def is_retryable(exc: BaseException) -> bool:
    """True for transient failures worth retrying; poison and everything else is not."""
    if isinstance(exc, PoisonMessage):
        return False
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated


def exception_fqcn(exc: BaseException) -> str:
    """The fully qualified class name, e.g. ``sqlalchemy.exc.IntegrityError``."""
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def describe_exception(exc: BaseException) -> str:
    """A short, secret-free description of ``exc`` for logs and dead-letter headers.

    Only the first line is kept (SQLAlchemy appends the SQL and its parameters on later lines,
    pydantic the offending input values), credentials are redacted and the text is truncated.
    """
    inner = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig else exc
    lines = str(inner).strip().splitlines()
    first = lines[0] if lines else type(inner).__name__
    return redact_text(first)[:MAX_MESSAGE_LENGTH]
