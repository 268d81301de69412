"""Reconciliation runs: the request, the background execution, the events.

A run of a month at full volume takes seconds to tens of seconds, so ``POST`` answers ``202`` at
once with the run's id and the work continues in the service: loading the period's data,
optionally fetching fresh gateway reports, reconciling (in a worker thread: the engine is CPU
bound), then storing the run - its waterfall, every row, and the discrepancy events staged in
the outbox - in one transaction. ``GET`` shows the stage and progress meanwhile. A dry run is
computed while the client waits and stores nothing.

Idempotency, twice over: a retried ``POST`` with the same ``Idempotency-Key`` gets the first
answer back and starts nothing (:mod:`payrail.web.idempotency`), and a discrepancy event is
staged once ever -
its ``ce_id`` is derived from the period, currency, code, row and amount - so re-running an
unchanged month announces nothing new, while a changed amount is a new event.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import polars as pl
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payrail.contracts.reconciliation import (
    RECONCILIATION_DISCREPANCY,
    DiscrepancyCode,
    ReconciliationDiscrepancy,
)
from payrail.contracts.sources import RECONCILER
from payrail.contracts.topics import RECONCILIATION_DISCREPANCIES
from payrail.gateways.base import GatewayAccountConfig
from payrail.gateways.registry import get as gateway_family
from payrail.messaging.envelope import Envelope
from payrail.messaging.outbox import Outbox
from payrail.money import normalize_currency
from reconciler.domain import (
    FeeSchedule,
    Period,
    ReconcileParams,
    ReconciliationError,
    SettlementWindow,
    Tolerances,
)
from reconciler.engine import reconcile
from reconciler.frames import report_lines_frame
from reconciler.report import RunReport, to_json
from reconciler.store import MARGIN, Store, digest_of

log = structlog.get_logger("reconciler.runs")

#: codes announced on ``reconciliation.discrepancies``; TIMING_UNSETTLED is not (it resolves on
#: its own, and becomes MISSING_IN_BANK - which is announced - if it does not)
ANNOUNCED = frozenset(
    code for code in DiscrepancyCode if code is not DiscrepancyCode.TIMING_UNSETTLED
)
_MAX_IDS = 50


class TolerancesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_abs: int = Field(0, ge=0, description="minor units")
    amount_percent: Decimal = Field(Decimal(0), ge=0, le=100, decimal_places=2)
    date_window_days: int = Field(2, ge=0, le=60)
    fee_abs: int = Field(0, ge=0)


class SettlementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domestic_days: int = Field(2, ge=0, le=60)
    international_days: int = Field(7, ge=0, le=60)
    holidays: list[date] = Field(default_factory=list)


class FeeScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    percent: Decimal = Field(ge=0, le=100, decimal_places=2)
    fixed: int = Field(0, ge=0, description="minor units")


class ReconciliationRequest(BaseModel):
    """``POST /v1/reconciliations``."""

    model_config = ConfigDict(extra="forbid")

    period: str = Field(description="YYYY-MM, or START..END (dates, END exclusive)")
    currency: str
    gateways: list[str] | None = Field(None, description="default: every gateway in the data")
    as_of: date | None = Field(None, description="the day aging is judged at; default today")
    timezone: str = "UTC"
    tolerances: TolerancesIn = Field(default_factory=TolerancesIn)
    settlement: SettlementIn = Field(default_factory=SettlementIn)
    fee_schedules: dict[str, FeeScheduleIn] = Field(default_factory=dict)
    fx_rates: dict[str, Decimal] = Field(default_factory=dict)
    fetch_reports: bool = Field(False, description="fetch gateway reports for the period first")
    dry_run: bool = False

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalize_currency(value)

    def parsed_period(self) -> Period:
        return Period.parse(self.period)

    def engine_params(self, *, today: date, bank_covered_until: date | None) -> ReconcileParams:
        t, s = self.tolerances, self.settlement
        return ReconcileParams(
            period=self.parsed_period(),
            currency=self.currency,
            as_of=self.as_of or today,
            timezone=self.timezone,
            gateways=frozenset(self.gateways) if self.gateways else None,
            tolerances=Tolerances(
                amount_abs=t.amount_abs,
                amount_bps=int(t.amount_percent * 100),
                date_window_days=t.date_window_days,
                fee_abs=t.fee_abs,
            ),
            settlement=SettlementWindow(s.domestic_days, s.international_days, tuple(s.holidays)),
            fee_schedules={
                name: FeeSchedule(percent_bps=int(fee.percent * 100), fixed=fee.fixed)
                for name, fee in self.fee_schedules.items()
            },
            fx_rates=self.fx_rates,
            bank_covered_until=bank_covered_until,
        )

    def echo(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def discrepancy_ce_id(
    period: Period, currency: str, cause: str, ref: str | None, amount: int
) -> str:
    key = f"{period}|{currency}|{cause}|{ref}|{amount}".encode()
    return f"reconciler:{hashlib.sha256(key).hexdigest()[:40]}"


class Runner:
    """Starts runs and executes them in the background; one per service instance."""

    def __init__(
        self,
        *,
        store: Store,
        engine: AsyncEngine,
        outbox: Outbox | None,
        gateway_accounts: dict[str, dict[str, GatewayAccountConfig]],
    ) -> None:
        self.store = store
        self.sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        self.engine = engine
        self.outbox = outbox
        self.gateway_accounts = gateway_accounts
        self._tasks: set[asyncio.Task[None]] = set()

    async def recover(self) -> None:
        """At start: runs a stopped instance left running will never finish; say so."""
        async with self.sessions.begin() as session:
            interrupted = await self.store.fail_interrupted(session)
        if interrupted:
            log.warning("interrupted runs marked failed", runs=interrupted)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def dry_run(self, request: ReconciliationRequest) -> RunReport:
        period = request.parsed_period()
        if request.fetch_reports:
            await self._fetch_reports(request, period)
        async with self.engine.connect() as conn:
            inputs, covered = await self.store.load_inputs(
                conn, period, request.currency, request.gateways
            )
        params = request.engine_params(today=datetime.now(UTC).date(), bank_covered_until=covered)
        result = await asyncio.to_thread(reconcile, inputs, params)
        return RunReport.from_result(result, request.echo())

    async def create(self, session: AsyncSession, request: ReconciliationRequest) -> str:
        """Record a new run, queued, in the caller's transaction; :meth:`start` it once that
        transaction committed (the POST's answer and its Idempotency-Key are stored with it)."""
        run_id = str(uuid.uuid4())
        await self.store.create_run(
            session,
            run_id=run_id,
            params=request.echo(),
            period=request.parsed_period(),
            currency=request.currency,
        )
        return run_id

    def start(self, run_id: str, request: ReconciliationRequest) -> None:
        """Execute a created run in the background."""
        task = asyncio.create_task(self._execute(run_id, request), name=f"reconciliation-{run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _progress(self, run_id: str, stage: str, percent: int) -> None:
        async with self.sessions.begin() as session:
            await self.store.progress(session, run_id, stage, percent)

    async def _execute(self, run_id: str, request: ReconciliationRequest) -> None:
        bound = log.bind(run_id=run_id, period=request.period, currency=request.currency)
        try:
            period = request.parsed_period()
            if request.fetch_reports:
                await self._progress(run_id, "fetching gateway reports", 5)
                await self._fetch_reports(request, period)
            await self._progress(run_id, "loading", 20)
            async with self.engine.connect() as conn:
                inputs, covered = await self.store.load_inputs(
                    conn, period, request.currency, request.gateways
                )
            await self._progress(run_id, "reconciling", 45)
            params = request.engine_params(
                today=datetime.now(UTC).date(), bank_covered_until=covered
            )
            result = await asyncio.to_thread(reconcile, inputs, params)
            await self._progress(run_id, "saving", 80)
            rows = result.rows
            ce_ids = [
                discrepancy_ce_id(period, request.currency, cause, ref, amount)
                if cause in ANNOUNCED and kind == "discrepancy"
                else None
                for cause, kind, ref, amount in rows.select(
                    "cause", "kind", "ref", "amount"
                ).iter_rows()
            ]
            async with self.sessions.begin() as session:
                fresh = await self.store.claim_events(session, run_id, [c for c in ce_ids if c])
                if self.outbox is not None:
                    await self._stage(session, run_id, request.currency, rows, ce_ids, fresh)
                await self.store.finish_run(
                    session,
                    run_id,
                    summary=result.summary,
                    waterfall=result.waterfall,
                    rows=rows,
                    warnings=result.warnings,
                    digest=digest_of(result.waterfall, rows),
                    ce_ids=ce_ids,
                )
            bound.info(
                "reconciliation finished",
                discrepancies=result.discrepancies.height,
                announced=len(fresh),
                unexplained=result.waterfall.unexplained,
            )
        except asyncio.CancelledError:
            raise
        except (ReconciliationError, ValueError) as exc:
            await self._fail(run_id, str(exc))
        except Exception as exc:
            bound.exception("reconciliation failed")
            await self._fail(run_id, f"{type(exc).__name__}: {exc}")

    async def _fail(self, run_id: str, error: str) -> None:
        async with self.sessions.begin() as session:
            await self.store.fail_run(session, run_id, error)

    async def _stage(
        self,
        session: AsyncSession,
        run_id: str,
        currency: str,
        rows: pl.DataFrame,
        ce_ids: list[str | None],
        fresh: set[str],
    ) -> None:
        assert self.outbox is not None
        for row, ce_id in zip(rows.iter_rows(named=True), ce_ids, strict=True):
            if ce_id is None or ce_id not in fresh:
                continue
            refs = {
                name: str(row[name])
                for name in ("ref", "gateway", "payment_id")
                if row[name] is not None
            }
            for name in ("ledger_refs", "gateway_line_ids", "payout_ids", "bank_line_ids"):
                ids = row[name]
                if ids:
                    refs[name] = ",".join(ids[:_MAX_IDS])
                    if len(ids) > _MAX_IDS:
                        refs[f"{name}_count"] = str(len(ids))
            event = ReconciliationDiscrepancy(
                run_id=run_id,
                code=DiscrepancyCode(row["cause"]),
                amount=row["amount"],
                currency=currency,
                refs=refs,
                detail=row["detail"] or row["cause"],
            )
            envelope = Envelope.create(RECONCILIATION_DISCREPANCY, RECONCILER, event, id=ce_id)
            key = row["payment_id"] or row["ref"] or row["cause"]
            await self.outbox.stage(session, RECONCILIATION_DISCREPANCIES, key, envelope)

    async def _fetch_reports(self, request: ReconciliationRequest, period: Period) -> None:
        """Fetch every configured account's report lines for the period (with the margin)."""
        if not request.gateways:
            raise ReconciliationError("fetch_reports needs the gateways to fetch from")
        since = datetime.combine(period.start, time(), UTC) - MARGIN
        until = datetime.combine(period.end, time(), UTC) + MARGIN
        for gateway in request.gateways:
            accounts = self.gateway_accounts.get(gateway, {})
            if not accounts:
                raise ReconciliationError(f"no account of gateway {gateway!r} is configured")
            for config in accounts.values():
                fetcher = gateway_family(gateway).report_fetcher(config)
                lines = [line async for line in fetcher.lines(since=since, until=until)]
                async with self.sessions.begin() as session:
                    await self.store.import_report_lines(session, report_lines_frame(lines))


def report_body(report: RunReport, *, limit: int, offset: int) -> dict[str, Any]:
    body = to_json(report, limit=limit, offset=offset)
    if report.run_id:
        body["links"] = {
            "self": f"/v1/reconciliations/{report.run_id}",
            "csv": f"/v1/reconciliations/{report.run_id}?format=csv",
            "html": f"/v1/reconciliations/{report.run_id}?format=html",
        }
    return body
