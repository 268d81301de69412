"""The reconciler's HTTP API.

Every POST needs an ``Idempotency-Key`` (:mod:`payrail.web.idempotency`): missing is ``400``, a
repeat of the same request replays the first answer, the key with another request is ``422``.
Keys are the service's, not an endpoint's (:data:`SCOPE`): the fingerprint names the route, so
a key reused on another route is ``422`` too. An answer is stored in the transaction of its
effect, and only a ``2xx`` one.

* ``POST /v1/reconciliations`` - start a run: ``202`` with its id and ``Location``.
  ``"dry_run": true`` answers ``200`` with the report, stores no run and announces nothing.
* ``GET /v1/reconciliations/{id}`` - the run: stage and progress while it runs, then summary,
  waterfall and discrepancies (paged with ``limit``/``offset``); ``?format=csv`` every row,
  ``?format=html`` a self-contained page with the waterfall chart.
* ``POST /v1/statements?filename=...`` - import a bank statement file (the request body, as is):
  camt.053 and MT940 are recognised, CSV needs ``mapping`` (JSON of
  :class:`~reconciler.statements.CsvMapping`). A bad file imports nothing (``422`` naming the
  line or element); a statement imported before (same file, or same account and statement id)
  is reported, not imported again - under any key.
* ``POST /v1/report-lines?gateway=...&filename=...`` - import a gateway report file through that
  gateway's report fetcher (Stripe CSV, Razorpay recon CSV, PayPal STL, Adyen settlement
  details); lines are upserted by (gateway, line id), so a re-import under a new key changes
  nothing.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from payrail.gateways.base import GatewayAccountConfig, GatewayError
from payrail.gateways.registry import UnknownGateway
from payrail.gateways.registry import get as gateway_family
from payrail.web.idempotency import Effect, Idempotency, IdempotencyKey, fingerprint
from payrail.web.problems import Problem
from reconciler.domain import ReconciliationError
from reconciler.frames import report_lines_frame
from reconciler.report import to_csv, to_html
from reconciler.runs import ReconciliationRequest, Runner, report_body
from reconciler.statements import CsvMapping, StatementError, parse_statement
from reconciler.store import Store

router = APIRouter(tags=["reconciliation"])
_EVER = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
#: the one scope of the reconciler's keys (every POST shares them)
SCOPE = "POST"


def _runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def _once(request: Request, key: str, body: bytes | BaseModel, effect: Effect) -> Response:
    """``effect``'s answer under ``key``, or the one stored for this request."""
    idempotency: Idempotency = request.app.state.idempotency
    request_hash = fingerprint(
        request.method, request.url.path, request.query_params.multi_items(), body
    )
    return await idempotency.once(SCOPE, key, request_hash, effect)


@router.post(
    "/v1/reconciliations",
    status_code=202,
    summary="Start a reconciliation run (or a dry run)",
    responses={200: {"description": "a dry run's report"}},
)
async def start_reconciliation(
    body: ReconciliationRequest, request: Request, idempotency_key: IdempotencyKey
) -> Response:
    runner, store = _runner(request), _store(request)
    started: list[str] = []

    async def effect(session: AsyncSession) -> Response:
        if body.dry_run:
            report = await runner.dry_run(body)
            return JSONResponse(report_body(report, limit=1_000, offset=0), status_code=200)
        run_id = await runner.create(session, body)
        started.append(run_id)
        created = await store.load_run(session, run_id)
        assert created is not None  # inserted by this transaction
        return JSONResponse(
            report_body(created, limit=1_000, offset=0),
            status_code=202,
            headers={"Location": f"/v1/reconciliations/{run_id}"},
        )

    try:
        body.parsed_period()
        # the validated body, not its bytes: the same request spelled another way is the same
        response = await _once(request, idempotency_key, body, effect)
    except (ReconciliationError, UnknownGateway, GatewayError) as exc:
        raise Problem(422, "Reconciliation not possible", str(exc)) from None
    for run_id in started:
        runner.start(run_id, body)
    return response


@router.get(
    "/v1/reconciliations/{run_id}", summary="A run: progress, or its report (JSON, CSV, HTML)"
)
async def get_reconciliation(
    run_id: str,
    request: Request,
    format: Literal["json", "csv", "html"] = "json",
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1_000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    async with _runner(request).sessions() as session:
        report = await _store(request).load_run(session, run_id)
    if report is None:
        raise Problem(404, "Run not found", f"no reconciliation run {run_id}")
    if format == "html":
        return HTMLResponse(to_html(report))
    if format == "csv":
        if report.status != "succeeded":
            raise Problem(409, "Run not finished", f"run {run_id} is {report.status}")
        filename = f"reconciliation-{run_id}.csv"
        return PlainTextResponse(
            to_csv(report),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return JSONResponse(report_body(report, limit=limit, offset=offset))


@router.post("/v1/statements", summary="Import a bank statement file (the request body)")
async def import_statement(
    request: Request,
    idempotency_key: IdempotencyKey,
    filename: Annotated[str, Query(min_length=1, max_length=255)],
    format: Literal["camt.053", "mt940", "csv"] | None = None,
    mapping: Annotated[str | None, Query(description="CsvMapping as JSON (CSV files)")] = None,
) -> Response:
    data = await request.body()

    async def effect(session: AsyncSession) -> Response:
        try:
            csv_mapping = CsvMapping.model_validate_json(mapping) if mapping else None
        except ValidationError as exc:
            raise Problem(422, "Bad CSV mapping", str(exc)) from None
        try:
            statements = await asyncio.to_thread(
                parse_statement, data, filename, format=format, mapping=csv_mapping
            )
        except StatementError as exc:
            raise Problem(
                422, "Statement not imported", str(exc), source=exc.source, where=exc.where
            ) from None
        results = await _store(request).import_statements(session, statements)
        imported = any(r.status == "imported" for r in results)
        return JSONResponse(
            {"statements": [asdict(r) for r in results]}, status_code=201 if imported else 200
        )

    return await _once(request, idempotency_key, data, effect)


@router.post("/v1/report-lines", summary="Import a gateway report file (the request body)")
async def import_report(
    request: Request,
    idempotency_key: IdempotencyKey,
    gateway: Annotated[str, Query(min_length=1)],
    filename: Annotated[str, Query(min_length=1, max_length=255)],
) -> Response:
    data = await request.body()

    async def effect(session: AsyncSession) -> Response:
        try:
            family = gateway_family(gateway)
        except UnknownGateway as exc:
            raise Problem(422, "Unknown gateway", str(exc)) from None
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(filename).name
            await asyncio.to_thread(path.write_bytes, data)
            config = GatewayAccountConfig(options={"report_file": str(path)})
            try:
                lines = [
                    line
                    async for line in family.report_fetcher(config).lines(
                        since=_EVER[0], until=_EVER[1]
                    )
                ]
            except GatewayError as exc:
                raise Problem(422, "Report not imported", str(exc)) from None
        frame = report_lines_frame(lines)
        count = await _store(request).import_report_lines(session, frame)
        by_type: dict[str, Any] = dict(frame.group_by("type").len().sort("type").iter_rows())
        return JSONResponse(
            {"gateway": gateway, "lines": count, "by_type": by_type}, status_code=201
        )

    return await _once(request, idempotency_key, data, effect)
