"""How failures are classified and described in dead letters and logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import psycopg
import pytest
import sqlalchemy.exc

from payrail.contracts import PaymentIntentRequested
from payrail.messaging import deadletter as dlh
from payrail.messaging.consumer import ConsumerSpec, RetryPolicy
from payrail.messaging.deadletter import dead_letter_headers
from payrail.messaging.envelope import PoisonMessage
from payrail.messaging.errors import (
    MAX_MESSAGE_LENGTH,
    RetryableError,
    describe_exception,
    exception_fqcn,
    is_retryable,
)


class GatewayBusy(RetryableError):
    pass


@pytest.mark.parametrize(
    "exc",
    [
        GatewayBusy("503"),
        TimeoutError(),
        ConnectionResetError(),
        sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("deadlock")),
        psycopg.OperationalError("server closed the connection"),
        httpx.ConnectTimeout("timed out"),
    ],
)
def test_transient_failures_are_retryable(exc: BaseException) -> None:
    assert is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        PoisonMessage("junk"),
        ValueError("bad amount"),
        KeyError("sku"),
        sqlalchemy.exc.IntegrityError("INSERT", {}, psycopg.IntegrityError("duplicate key")),
    ],
)
def test_everything_else_is_not(exc: BaseException) -> None:
    assert not is_retryable(exc)


def test_descriptions_keep_the_first_line_without_sql_parameters_or_secrets() -> None:
    wrapped = sqlalchemy.exc.IntegrityError(
        "INSERT INTO payments VALUES (%(card)s)",
        {"card": "4242424242424242"},
        psycopg.IntegrityError('duplicate key value violates unique constraint "pk"\nDETAIL: x'),
    )
    assert describe_exception(wrapped) == 'duplicate key value violates unique constraint "pk"'
    assert exception_fqcn(wrapped) == "sqlalchemy.exc.IntegrityError"
    leaked = describe_exception(ValueError("cannot reach postgresql://app:hunter2@db/x"))
    assert "hunter2" not in leaked
    assert len(describe_exception(ValueError("x" * 5000))) == MAX_MESSAGE_LENGTH
    assert describe_exception(KeyError()) == "KeyError"


def test_dead_letter_headers_replace_those_of_an_earlier_dead_lettering() -> None:
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    replayed = SimpleNamespace(
        topic="payments.lifecycle.entitlements.retry",
        partition=2,
        offset=41,
        timestamp=1764072000000,
        key=b"pay_1",
        headers=[
            ("ce_id", b"evt-1"),
            (dlh.ATTEMPTS, b"5"),
            (dlh.EXCEPTION_FQCN, b"builtins.KeyError"),
            (dlh.REPLAY_ID, b"r-1"),
        ],
    )
    headers = dead_letter_headers(
        replayed,
        group="entitlements",
        exc=ValueError("still broken"),
        attempts=2,
        first_failure=at,
        last_failure=at + timedelta(seconds=3),
    )
    names = [name for name, _ in headers]
    assert len(names) == len(set(names))  # one consistent set, no stale duplicates
    found = {name: value.decode() for name, value in headers}
    assert found["ce_id"] == "evt-1"
    assert found[dlh.REPLAY_ID] == "r-1"  # the replay that led here stays traceable
    assert found[dlh.ORIGINAL_TOPIC] == "payments.lifecycle.entitlements.retry"
    assert found[dlh.ORIGINAL_PARTITION] == "2"
    assert found[dlh.ORIGINAL_OFFSET] == "41"
    assert found[dlh.ORIGINAL_TIMESTAMP] == "1764072000000"
    assert found[dlh.ORIGINAL_CONSUMER_GROUP] == "entitlements"
    assert found[dlh.EXCEPTION_FQCN] == "builtins.ValueError"
    assert found[dlh.EXCEPTION_MESSAGE] == "still broken"
    assert found[dlh.ATTEMPTS] == "2"
    assert found[dlh.FIRST_FAILURE] == "2026-11-25T12:00:00Z"
    assert found[dlh.LAST_FAILURE] == "2026-11-25T12:00:03Z"
    assert found[dlh.ORIGINAL_KEY] == "pay_1"


async def _noop(*_: object) -> None:
    """A handler that does nothing."""


def test_a_consumer_knows_the_source_topic_of_its_retry_topic() -> None:
    spec = ConsumerSpec(
        "entitlements",
        "entitlements",
        ("payments.lifecycle",),
        PaymentIntentRequested,
        _noop,
    )
    assert spec.source_of("payments.lifecycle.entitlements.retry") == "payments.lifecycle"
    assert spec.source_of("payments.lifecycle") == "payments.lifecycle"
    assert spec.dead_letter_topics == ("payments.lifecycle.entitlements.dlt",)
    with pytest.raises(ValueError, match="does not consume"):
        spec.source_of("payments.lifecycle.reconciler.retry")


def test_retry_budgets_must_make_sense() -> None:
    with pytest.raises(ValueError, match="at least one attempt"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(initial_backoff=2.0, max_backoff=1.0)
