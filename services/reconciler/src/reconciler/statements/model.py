"""What every bank statement parser produces, and how it fails.

A parser turns one file into one or more :class:`BankStatement` (camt.053 and MT940 files may
hold several). It either returns every statement of the file or raises
:class:`StatementError` naming the file and the line or element at fault: a bad file must import
nothing, so there is no partial result to fall back to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from reconciler.domain import ReconciliationError
from reconciler.frames import BANK_LINES, records_frame


class StatementError(ReconciliationError):
    """A statement file payrail cannot import; ``where`` is a line number or element path."""

    def __init__(self, source: str, where: str, message: str) -> None:
        super().__init__(f"{source}: {where}: {message}" if where else f"{source}: {message}")
        self.source = source
        self.where = where


@dataclass(frozen=True)
class BankStatement:
    """One statement of one account: its identity, balances and lines (:data:`BANK_LINES`).

    ``statement_id`` is the bank's id for the statement (camt ``Stmt/Id``, MT940 ``:20:`` and
    ``:28C:``); together with ``account`` it recognises the same statement imported twice even
    from a differently formatted file. ``content_hash`` recognises the same file byte for byte.
    """

    source: str
    format: str
    statement_id: str
    account: str | None
    currency: str | None
    period_start: date | None
    period_end: date | None
    opening_balance: int | None
    closing_balance: int | None
    content_hash: str
    lines: pl.DataFrame


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_balances(
    source: str, where: str, opening: int | None, closing: int | None, lines: Iterable[int]
) -> None:
    """A statement whose lines do not lead from its opening to its closing balance is
    truncated or corrupt; importing it would silently miss money."""
    if opening is None or closing is None:
        return
    moved = sum(lines)
    if opening + moved != closing:
        raise StatementError(
            source,
            where,
            f"lines sum to {moved} but the balance moves from {opening} to {closing}"
            " (minor units): the statement is incomplete",
        )


def lines_frame(records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    return records_frame(records, BANK_LINES)
