"""Reading and writing the reconciler's schema.

Imports are transactional and idempotent: a statement file is parsed completely before anything
is written (a bad file raises and writes nothing), then all its statements are inserted in the
caller's transaction; a file seen before (same content hash) or a statement seen before (same
account and bank statement id, whatever the file) is reported as already imported and skipped.
Report lines are upserted by (gateway, line id): importing the same report twice changes nothing.

Runs load only what a period needs: rows within ``MARGIN`` of it (a payment captured on the 31st
that the gateway dates the 1st, a payout that reached the bank in the next month).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import polars as pl
from sqlalchemy import ColumnElement, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from reconciler.domain import (
    ROW_SCHEMA,
    Period,
    Summary,
    Waterfall,
    WaterfallStep,
)
from reconciler.engine import Inputs
from reconciler.frames import (
    BANK_LINES,
    GATEWAY_LINES,
    LEDGER_DISPUTES,
    LEDGER_PAYMENTS,
    LEDGER_REFUNDS,
    conform,
)
from reconciler.report import RunReport
from reconciler.statements import BankStatement
from reconciler.tables import ReconcilerTables, reconciler_tables

#: how far around the period rows are loaded for matching (never counted in its totals)
MARGIN = timedelta(days=45)
_CHUNK = 5_000


@dataclass(frozen=True)
class StatementImport:
    statement_id: str
    account: str | None
    lines: int
    status: str  # imported | duplicate_file | duplicate_statement


def _utc(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


class Store:
    def __init__(self, schema: str) -> None:
        self.t: ReconcilerTables = reconciler_tables(schema)

    # ------------------------------------------------------------------ imports

    async def import_statements(
        self, session: AsyncSession, statements: Sequence[BankStatement]
    ) -> list[StatementImport]:
        t = self.t.statements
        results = []
        for statement in statements:
            seen = await session.execute(
                select(t.c.content_hash, t.c.statement_id).where(
                    or_(
                        t.c.content_hash == statement.content_hash,
                        (t.c.statement_id == statement.statement_id)
                        & t.c.account.is_not_distinct_from(statement.account),
                    )
                )
            )
            found = seen.first()
            if found is not None:
                same_file = found.content_hash == statement.content_hash
                reason = "duplicate_file" if same_file else "duplicate_statement"
                results.append(
                    StatementImport(statement.statement_id, statement.account, 0, reason)
                )
                continue
            pk = await session.scalar(
                insert(t)
                .values(
                    account=statement.account,
                    statement_id=statement.statement_id,
                    format=statement.format,
                    source=statement.source,
                    currency=statement.currency,
                    period_start=statement.period_start,
                    period_end=statement.period_end,
                    opening_balance=statement.opening_balance,
                    closing_balance=statement.closing_balance,
                    content_hash=statement.content_hash,
                    line_count=statement.lines.height,
                )
                .returning(t.c.id)
            )
            rows = (
                statement.lines.with_columns(statement_pk=pl.lit(pk))
                .drop("statement_id")
                .to_dicts()
            )
            for row in rows:
                row["statement_id"] = statement.statement_id
            for start in range(0, len(rows), _CHUNK):
                await session.execute(insert(self.t.bank_lines), rows[start : start + _CHUNK])
            results.append(
                StatementImport(statement.statement_id, statement.account, len(rows), "imported")
            )
        return results

    async def import_report_lines(self, session: AsyncSession, lines: pl.DataFrame) -> int:
        """Upsert report lines (a conformed :data:`GATEWAY_LINES` frame); returns how many."""
        rows = conform(lines, GATEWAY_LINES).to_dicts()
        t = self.t.report_lines
        for start in range(0, len(rows), _CHUNK):
            statement = pg_insert(t).values(rows[start : start + _CHUNK])
            excluded = statement.excluded
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=[t.c.gateway, t.c.line_id],
                    set_={
                        c.name: excluded[c.name]
                        for c in t.c
                        if c.name not in ("gateway", "line_id")
                    },
                )
            )
        return len(rows)

    # ------------------------------------------------------------------ run inputs

    async def load_inputs(
        self, conn: AsyncConnection, period: Period, currency: str, gateways: Sequence[str] | None
    ) -> tuple[Inputs, date | None]:
        """The three datasets around ``period``, and the last day the bank statements cover."""
        lo, hi = _utc(period.start) - MARGIN, _utc(period.end) + MARGIN
        t = self.t

        def only(column: ColumnElement[str]) -> ColumnElement[bool]:
            return column.in_(list(gateways)) if gateways else column.is_not(None)

        payments = await self._frame(
            conn,
            select(
                t.payments.c.payment_id,
                t.payments.c.gateway,
                t.payments.c.gateway_payment_id,
                t.payments.c.status,
                t.payments.c.amount,
                t.payments.c.currency,
                t.payments.c.amount_refunded,
                t.payments.c.user_id,
                t.payments.c.sku,
                func.coalesce(t.payments.c.captured_at, t.payments.c.last_event_at).label(
                    "occurred_at"
                ),
            ).where(
                only(t.payments.c.gateway),
                func.coalesce(t.payments.c.captured_at, t.payments.c.last_event_at).between(lo, hi),
            ),
            LEDGER_PAYMENTS.columns,
        )
        refunds = await self._frame(
            conn,
            select(*(t.refunds.c[name] for name in LEDGER_REFUNDS.columns)).where(
                t.refunds.c.occurred_at.between(lo, hi)
            ),
            LEDGER_REFUNDS.columns,
        )
        disputes = await self._frame(
            conn,
            select(*(t.disputes.c[name] for name in LEDGER_DISPUTES.columns)).where(
                or_(t.disputes.c.opened_at.between(lo, hi), t.disputes.c.closed_at.between(lo, hi))
            ),
            LEDGER_DISPUTES.columns,
        )
        lines = await self._frame(
            conn,
            select(*(t.report_lines.c[name] for name in GATEWAY_LINES.columns)).where(
                only(t.report_lines.c.gateway), t.report_lines.c.created_at.between(lo, hi)
            ),
            GATEWAY_LINES.columns,
        )
        bank = await self._frame(
            conn,
            select(*(t.bank_lines.c[name] for name in BANK_LINES.columns)).where(
                t.bank_lines.c.booking_date.between(lo.date(), hi.date()),
                t.bank_lines.c.currency == currency,
            ),
            BANK_LINES.columns,
        )
        covered = await conn.scalar(
            select(func.max(func.coalesce(t.statements.c.period_end, t.bank_lines.c.booking_date)))
            .select_from(
                t.statements.join(t.bank_lines, t.bank_lines.c.statement_pk == t.statements.c.id)
            )
            .where(t.bank_lines.c.currency == currency)
        )
        inputs = Inputs(
            payments=conform(payments, LEDGER_PAYMENTS),
            refunds=conform(refunds, LEDGER_REFUNDS),
            disputes=conform(disputes, LEDGER_DISPUTES),
            gateway_lines=conform(lines, GATEWAY_LINES),
            bank_lines=conform(bank, BANK_LINES),
        )
        return inputs, covered

    @staticmethod
    async def _frame(
        conn: AsyncConnection, query: Any, schema: Mapping[str, pl.DataType]
    ) -> pl.DataFrame:
        result = await conn.execute(query)
        rows = result.all()
        return pl.DataFrame(
            [tuple(row) for row in rows],
            schema=dict(schema),
            orient="row",
            infer_schema_length=None,
        )

    # ------------------------------------------------------------------ runs

    async def create_run(
        self,
        session: AsyncSession,
        *,
        run_id: str,
        params: Mapping[str, Any],
        period: Period,
        currency: str,
    ) -> None:
        await session.execute(
            insert(self.t.runs).values(
                id=run_id,
                params=dict(params),
                period_start=period.start,
                period_end=period.end,
                currency=currency,
                status="running",
                stage="queued",
            )
        )

    async def progress(self, session: AsyncSession, run_id: str, stage: str, percent: int) -> None:
        await session.execute(
            update(self.t.runs)
            .where(self.t.runs.c.id == run_id)
            .values(stage=stage, progress=percent)
        )

    async def fail_run(self, session: AsyncSession, run_id: str, error: str) -> None:
        await session.execute(
            update(self.t.runs)
            .where(self.t.runs.c.id == run_id)
            .values(status="failed", stage="failed", error=error, finished_at=func.now())
        )

    async def fail_interrupted(self, session: AsyncSession) -> int:
        """Runs left ``running`` by an instance that stopped: they will never finish."""
        failed = await session.execute(
            update(self.t.runs)
            .where(self.t.runs.c.status == "running")
            .values(
                status="failed",
                stage="failed",
                error="interrupted: the service stopped",
                finished_at=func.now(),
            )
            .returning(self.t.runs.c.id)
        )
        return len(failed.all())

    async def finish_run(
        self,
        session: AsyncSession,
        run_id: str,
        *,
        summary: Summary,
        waterfall: Waterfall,
        rows: pl.DataFrame,
        warnings: Sequence[str],
        digest: str,
        ce_ids: Sequence[str | None],
    ) -> None:
        t = self.t
        steps = [
            {"run_id": run_id, "position": n, **asdict(step)}
            for n, step in enumerate(waterfall.steps)
        ]
        if steps:
            await session.execute(insert(t.waterfall_steps), steps)
        records = rows.to_dicts()
        for n, record in enumerate(records):
            record.update(run_id=run_id, position=n, ce_id=ce_ids[n])
        for start in range(0, len(records), _CHUNK):
            await session.execute(insert(t.discrepancies), records[start : start + _CHUNK])
        await session.execute(
            update(t.runs)
            .where(t.runs.c.id == run_id)
            .values(
                status="succeeded",
                stage="done",
                progress=100,
                digest=digest,
                summary={**asdict(summary), "start": waterfall.start, "end": waterfall.end},
                warnings=list(warnings),
                finished_at=func.now(),
            )
        )

    async def claim_events(
        self, session: AsyncSession, run_id: str, ce_ids: Sequence[str]
    ) -> set[str]:
        """The ``ce_ids`` not staged by any earlier run (now recorded as staged by this one)."""
        if not ce_ids:
            return set()
        statement = (
            pg_insert(self.t.discrepancy_events)
            .values([{"ce_id": ce_id, "run_id": run_id} for ce_id in ce_ids])
            .on_conflict_do_nothing()
            .returning(self.t.discrepancy_events.c.ce_id)
        )
        return set((await session.execute(statement)).scalars())

    async def load_run(self, session: AsyncSession, run_id: str) -> RunReport | None:
        t = self.t
        run = (
            (await session.execute(select(t.runs).where(t.runs.c.id == run_id))).mappings().first()
        )
        if run is None:
            return None
        summary = waterfall = None
        rows = pl.DataFrame(schema=dict(ROW_SCHEMA))
        if run["status"] == "succeeded":
            stored = dict(run["summary"])
            start, end = stored.pop("start"), stored.pop("end")
            summary = Summary(**stored)
            steps = await session.execute(
                select(t.waterfall_steps)
                .where(t.waterfall_steps.c.run_id == run_id)
                .order_by(t.waterfall_steps.c.position)
            )
            waterfall = Waterfall(
                currency=run["currency"],
                start=start,
                end=end,
                steps=tuple(
                    WaterfallStep(
                        cause=s.cause, kind=s.kind, label=s.label, amount=s.amount, rows=s.rows
                    )
                    for s in steps
                ),
            )
            found = await session.execute(
                select(*(t.discrepancies.c[name] for name in ROW_SCHEMA))
                .where(t.discrepancies.c.run_id == run_id)
                .order_by(t.discrepancies.c.position)
            )
            rows = pl.DataFrame([tuple(r) for r in found], schema=dict(ROW_SCHEMA), orient="row")
        return RunReport(
            run_id=run_id,
            status=run["status"],
            params=run["params"],
            summary=summary,
            waterfall=waterfall,
            rows=rows,
            warnings=tuple(run["warnings"] or ()),
            stage=run["stage"],
            progress=run["progress"],
            error=run["error"],
            created_at=run["created_at"],
            finished_at=run["finished_at"],
        )


def digest_of(waterfall: Waterfall, rows: pl.DataFrame) -> str:
    """A fingerprint of a run's outcome: two runs with equal digests found the same things."""
    h = hashlib.sha256(json.dumps(asdict(waterfall), sort_keys=True).encode())
    h.update(
        rows.select("cause", "ref", "amount").sort("cause", "ref", "amount").write_csv().encode()
    )
    return h.hexdigest()
