"""What the lifecycle contract's gateway facts change in a reconciliation: lifecycle events
become ledger rows through the projection's record builders, then meet the gateway's report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest

from payrail.contracts.payments import LifecycleEventType, PaymentLifecycle
from reconciler.domain import Cause, Item, Period, ReconcileParams, ReconciliationResult
from reconciler.engine import Inputs, reconcile
from reconciler.frames import (
    BANK_LINES,
    GATEWAY_LINES,
    LEDGER_DISPUTES,
    LEDGER_PAYMENTS,
    LEDGER_REFUNDS,
    records_frame,
)
from reconciler.projection import dispute_record, refund_record

CAPTURED = datetime(2025, 3, 3, 12, tzinfo=UTC)
PAYMENT = {
    "payment_id": "p1",
    "gateway": "stripe",
    "gateway_payment_id": "pi_1",
    "status": "succeeded",
    "amount": 20_000,
    "currency": "USD",
    "occurred_at": CAPTURED,
}


def lifecycle(status: str, at: datetime, **extra: Any) -> PaymentLifecycle:
    return PaymentLifecycle(
        payment_id="p1",
        status=status,
        amount=20_000,
        currency="USD",
        user_id="u1",
        sku="pro",
        gateway="stripe",
        gateway_payment_id="pi_1",
        occurred_at=at,
        **extra,
    )


def line(line_id: str, kind: str, gross: int, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "gateway": "stripe",
        "line_id": line_id,
        "type": kind,
        "gross": gross,
        "fee": 0,
        "net": gross,
        "currency": "USD",
        "created_at": at,
        "gateway_payment_id": "pi_1",
        **extra,
    }


def run(
    lines: list[dict[str, Any]],
    refunds: Sequence[dict[str, Any]] = (),
    disputes: Sequence[dict[str, Any]] = (),
) -> ReconciliationResult:
    return reconcile(
        Inputs(
            payments=records_frame([PAYMENT], LEDGER_PAYMENTS),
            refunds=records_frame(refunds, LEDGER_REFUNDS),
            disputes=records_frame(disputes, LEDGER_DISPUTES),
            gateway_lines=records_frame(
                [line("ch_1", "charge", 20_000, CAPTURED), *lines], GATEWAY_LINES
            ),
            bank_lines=BANK_LINES.empty(),
        ),
        ReconcileParams(period=Period.month(2025, 3), currency="USD", as_of=date(2025, 4, 10)),
    )


def ledger_gateway(result: ReconciliationResult, cause: str) -> list[tuple[str, list[str]]]:
    rows = result.rows.filter((pl.col("stage") == "ledger-gateway") & (pl.col("cause") == cause))
    return list(zip(rows["ref"], rows["gateway_line_ids"].to_list(), strict=True))


def test_two_equal_partial_refunds_pair_on_the_gateways_refund_id() -> None:
    """Two refunds of 5,000 on one payment: re_1 was still pending at the gateway and booked
    on 1 April, re_2 at once. Paired on amount in time order, payrail's first refund (re_1)
    would be matched with re_2's line and the second refund reported as crossing the period;
    paired on the gateway's refund id, the report names the refund that really did."""
    first = lifecycle(
        "partially_refunded",
        datetime(2025, 3, 31, 20, tzinfo=UTC),
        amount_refunded=5_000,
        refund_id="rf_payrail_1",
        gateway_refund_id="re_1",
        refund_amount=5_000,
    )
    second = lifecycle(
        "partially_refunded",
        datetime(2025, 3, 31, 21, tzinfo=UTC),
        amount_refunded=10_000,
        refund_id="rf_payrail_2",
        gateway_refund_id="re_2",
        refund_amount=5_000,
    )
    refunds = [
        refund_record(LifecycleEventType.PARTIALLY_REFUNDED, event) for event in (first, second)
    ]
    result = run(
        [
            line("re_2", "refund", -5_000, datetime(2025, 3, 31, 22, tzinfo=UTC), source_id="re_2"),
            line("re_1", "refund", -5_000, datetime(2025, 4, 1, 2, tzinfo=UTC), source_id="re_1"),
        ],
        refunds=[record for record in refunds if record is not None],
    )
    assert ledger_gateway(result, Item.PERIOD_CUTOFF) == [("rf_payrail_1", ["re_1"])]
    assert ledger_gateway(result, Cause.AMOUNT_MISMATCH) == []


@pytest.mark.parametrize(
    ("dispute_amount", "mismatch"),
    [
        (7_500, []),  # the contract says what was charged back: the line matches
        (None, [("dp_1", ["dp_line_1"])]),  # an event from before the field: the full payment
    ],
)
def test_a_partial_chargeback_is_booked_at_the_disputed_amount(
    dispute_amount: int | None, mismatch: list[tuple[str, list[str]]]
) -> None:
    opened = lifecycle(
        "disputed",
        datetime(2025, 3, 10, tzinfo=UTC),
        dispute_id="dp_1",
        dispute_amount=dispute_amount,
    )
    dispute = dispute_record(LifecycleEventType.DISPUTE_OPENED, opened)
    assert dispute is not None
    result = run(
        [
            line(
                "dp_line_1",
                "dispute",
                -7_500,
                datetime(2025, 3, 10, 1, tzinfo=UTC),
                source_id="dp_1",
            )
        ],
        disputes=[dispute],
    )
    assert ledger_gateway(result, Cause.AMOUNT_MISMATCH) == mismatch


def test_events_about_no_refund_or_dispute_make_no_ledger_rows() -> None:
    succeeded = lifecycle("succeeded", datetime(2025, 3, 3, tzinfo=UTC))
    assert refund_record(LifecycleEventType.SUCCEEDED, succeeded) is None
    assert dispute_record(LifecycleEventType.SUCCEEDED, succeeded) is None
