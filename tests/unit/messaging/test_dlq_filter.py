"""Which dead letters an SRE's filter selects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from payrail.messaging import deadletter as dlh
from payrail.messaging.dlq import DeadLetter, DeadLetterFilter

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def letter(offset: int, *, ce_type: str, key: str, fqcn: str, at: datetime = AT) -> DeadLetter:
    return DeadLetter(
        topic="payments.lifecycle.entitlements.dlt",
        partition=offset % 2,
        offset=offset,
        timestamp=at,
        key=key.encode(),
        value=b'{"payment_id": "p"}',
        headers=(
            ("ce_type", ce_type.encode()),
            (dlh.EXCEPTION_FQCN, fqcn.encode()),
            (dlh.ORIGINAL_KEY, key.encode()),
        ),
    )


LETTERS = [
    letter(0, ce_type="payment.succeeded", key="pay_1", fqcn="builtins.KeyError"),
    letter(1, ce_type="payment.refunded", key="pay_2", fqcn="sqlalchemy.exc.IntegrityError"),
    letter(
        2,
        ce_type="payment.succeeded",
        key="pay_3",
        fqcn="builtins.KeyError",
        at=AT + timedelta(hours=2),
    ),
]


def selected(where: DeadLetterFilter) -> list[int]:
    return [item.offset for item in LETTERS if where.matches(item)]


def test_an_empty_filter_selects_everything() -> None:
    assert selected(DeadLetterFilter()) == [0, 1, 2]


def test_criteria_combine() -> None:
    assert selected(DeadLetterFilter(event_types=frozenset({"payment.succeeded"}))) == [0, 2]
    assert selected(DeadLetterFilter(keys=frozenset({"pay_2"}))) == [1]
    assert selected(DeadLetterFilter(exception_classes=frozenset({"IntegrityError"}))) == [1]
    assert selected(DeadLetterFilter(exception_classes=frozenset({"builtins.KeyError"}))) == [0, 2]
    assert selected(DeadLetterFilter(since=AT + timedelta(hours=1))) == [2]
    assert selected(DeadLetterFilter(until=AT)) == [0, 1]
    assert selected(DeadLetterFilter(partition=0, min_offset=1)) == [2]
    both = DeadLetterFilter(event_types=frozenset({"payment.succeeded"}), max_offset=1)
    assert selected(both) == [0]


def test_a_filter_describes_only_what_is_set() -> None:
    where = DeadLetterFilter(keys=frozenset({"b", "a"}), since=AT, partition=0)
    assert where.describe() == {"keys": ["a", "b"], "since": "2026-11-25T09:00:00Z", "partition": 0}
