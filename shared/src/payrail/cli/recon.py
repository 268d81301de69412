"""``payrail recon``: run reconciliations and read their reports from a terminal.

The commands talk to the reconciler's HTTP API (``--url``, or ``PAYRAIL_RECONCILER_URL``), so an
operator needs no database access and the reconciler stays the only writer of its schema. Every
POST carries an ``Idempotency-Key`` (``--idempotency-key``, or a new one per command):

* ``payrail recon import-statement FILE`` - a camt.053 / MT940 / CSV bank statement;
* ``payrail recon import-report --gateway G FILE`` - a gateway report file;
* ``payrail recon run --period 2025-03 --currency USD`` - start a run, follow it with a progress
  bar, print the waterfall and the discrepancies per cause (``--dry-run`` stores nothing);
* ``payrail recon report RUN_ID`` - the same tables for a stored run, or ``--format json|csv|html
  --output FILE`` for the files finance opens.

Amounts are shown in major units with their currency; the files keep minor units.
"""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from payrail.money import Money

app = typer.Typer(
    help="Reconcile payrail's records, gateway reports and bank statements.", no_args_is_help=True
)
console = Console()

DEFAULT_URL = "http://127.0.0.1:8004"
Url = Annotated[
    str, typer.Option(envvar="PAYRAIL_RECONCILER_URL", help="the reconciler's base URL")
]
IdempotencyKey = Annotated[
    str | None,
    typer.Option(help="repeat a command with the same key to get its first answer; default: new"),
]


def _idempotency(key: str | None) -> dict[str, str]:
    """The ``Idempotency-Key`` header every POST carries: the operator's key, or a new one."""
    return {"Idempotency-Key": key or f"cli-{uuid.uuid4()}"}


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url.rstrip("/"), timeout=httpx.Timeout(600.0, connect=5.0))


def _money(amount: int, currency: str) -> str:
    return f"{Money(amount, currency).to_major():,} {currency}"


def _fail(response: httpx.Response) -> typer.Exit:
    """Print a problem+json answer (title and detail) and exit non-zero."""
    try:
        problem = response.json()
        message = f"{problem.get('title', response.reason_phrase)}: {problem.get('detail', '')}"
    except ValueError:
        message = f"HTTP {response.status_code}: {response.text[:500]}"
    console.print(f"[red]{message}[/red]")
    return typer.Exit(1)


def _percent(text: str) -> str:
    """``2.9%`` or ``2.9`` -> ``"2.9"`` (kept as text: the API reads it as an exact decimal)."""
    return str(Decimal(text.strip().rstrip("%")))


def _fee(text: str) -> tuple[str, dict[str, Any]]:
    """``stripe=2.9%+30``: 2.9 % of the gross plus 30 minor units."""
    gateway, _, rule = text.partition("=")
    percent, _, fixed = rule.partition("+")
    if not gateway or not percent:
        raise typer.BadParameter(f"{text!r}: expected GATEWAY=PERCENT%[+FIXED]")
    return gateway, {"percent": _percent(percent), "fixed": int(fixed or 0)}


@app.command("import-statement")
def import_statement(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    statement_format: Annotated[
        str | None, typer.Option("--format", help="camt.053, mt940 or csv")
    ] = None,
    mapping: Annotated[Path | None, typer.Option(help="CSV column mapping (JSON file)")] = None,
    idempotency_key: IdempotencyKey = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Import a bank statement file. A bad file imports nothing; a known one is skipped."""
    params: dict[str, str] = {"filename": file.name}
    if statement_format:
        params["format"] = statement_format
    if mapping:
        params["mapping"] = mapping.read_text()
    with _client(url) as client:
        response = client.post(
            "/v1/statements",
            params=params,
            content=file.read_bytes(),
            headers=_idempotency(idempotency_key),
        )
    if response.status_code >= 400:
        raise _fail(response)
    for result in response.json()["statements"]:
        status = result["status"].replace("_", " ")
        account = result["account"] or "no account"
        console.print(f"{result['statement_id']} ({account}): {status}, {result['lines']} lines")


@app.command("import-report")
def import_report(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    gateway: Annotated[str, typer.Option(help="stripe, razorpay, paypal, adyen, ...")],
    idempotency_key: IdempotencyKey = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Import a gateway report file (lines already known are updated, not duplicated)."""
    with _client(url) as client:
        response = client.post(
            "/v1/report-lines",
            params={"gateway": gateway, "filename": file.name},
            content=file.read_bytes(),
            headers=_idempotency(idempotency_key),
        )
    if response.status_code >= 400:
        raise _fail(response)
    body = response.json()
    kinds = ", ".join(f"{n} {kind}" for kind, n in body["by_type"].items())
    console.print(f"{body['lines']} {gateway} report lines imported ({kinds})")


def _show(report: dict[str, Any]) -> None:
    """The waterfall and the discrepancies per cause as rich tables."""
    params, waterfall = report["params"], report.get("waterfall")
    if waterfall is None:
        console.print(
            f"run {report['id']}: {report['status']} ({report.get('error') or report['stage']})"
        )
        return
    currency = waterfall["currency"]
    title = f"Reconciliation {params['period']} {currency}" + (
        f" - run {report['id']}" if report["id"] else " (dry run)"
    )
    table = Table(title=title)
    table.add_column("Step")
    table.add_column("Cause")
    table.add_column("Amount", justify="right")
    table.add_column("Rows", justify="right")
    table.add_row("Payrail expects", "", _money(waterfall["start"], currency), "", style="bold")
    for step in waterfall["steps"]:
        style = "red" if step["kind"] == "discrepancy" and step["amount"] else None
        table.add_row(
            step["label"],
            step["cause"],
            _money(step["amount"], currency),
            f"{step['rows']:,}",
            style=style,
        )
    table.add_row("Bank received", "", _money(waterfall["end"], currency), "", style="bold")
    console.print(table)
    causes = report["discrepancies"]["by_cause"]
    if causes:
        found = Table(title=f"Discrepancies ({report['discrepancies']['total']:,})")
        found.add_column("Cause")
        found.add_column("Rows", justify="right")
        found.add_column("Amount", justify="right")
        for cause, counts in causes.items():
            found.add_row(cause, f"{counts['rows']:,}", _money(counts["amount"], currency))
        console.print(found)
    for warning in report.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")


def _follow(client: httpx.Client, location: str) -> dict[str, Any]:
    """Poll a run until it ends, with a progress bar of its stages."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("queued", total=100)
        while True:
            response = client.get(location, params={"limit": 1})
            if response.status_code >= 400:
                raise _fail(response)
            state: dict[str, Any] = response.json()
            progress.update(task, description=state["stage"], completed=state["progress"])
            if state["status"] != "running":
                break
            time.sleep(0.5)
    full = client.get(location)
    if full.status_code >= 400:
        raise _fail(full)
    result: dict[str, Any] = full.json()
    return result


@app.command("run")
def run(
    period: Annotated[str, typer.Option(help="YYYY-MM, or START..END (END exclusive)")],
    currency: Annotated[str, typer.Option(help="the settlement / bank account currency")],
    gateway: Annotated[
        list[str] | None, typer.Option(help="repeat for several; default all")
    ] = None,
    as_of: Annotated[str | None, typer.Option(help="judge aging at this date (YYYY-MM-DD)")] = None,
    amount_tolerance: Annotated[int, typer.Option(help="minor units, payout vs bank line")] = 0,
    percent_tolerance: Annotated[str, typer.Option(help="percent, payout vs bank line")] = "0",
    window_days: Annotated[int, typer.Option(help="business days, payout vs bank line")] = 2,
    fee: Annotated[list[str] | None, typer.Option(help="contracted fee: stripe=2.9%+30")] = None,
    fx: Annotated[list[str] | None, typer.Option(help="reference rate: EUR=1.0845")] = None,
    fetch_reports: Annotated[bool, typer.Option(help="fetch gateway reports first")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="compute and show, store and announce nothing")
    ] = False,
    idempotency_key: IdempotencyKey = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Reconcile a period and show where every difference comes from."""
    body: dict[str, Any] = {
        "period": period,
        "currency": currency,
        "tolerances": {
            "amount_abs": amount_tolerance,
            "amount_percent": _percent(percent_tolerance),
            "date_window_days": window_days,
        },
        "fee_schedules": dict(_fee(rule) for rule in fee or []),
        "fx_rates": {code: rate for code, _, rate in (pair.partition("=") for pair in fx or [])},
        "fetch_reports": fetch_reports,
        "dry_run": dry_run,
    }
    if gateway:
        body["gateways"] = gateway
    if as_of:
        body["as_of"] = as_of
    with _client(url) as client:
        response = client.post(
            "/v1/reconciliations", json=body, headers=_idempotency(idempotency_key)
        )
        if response.status_code >= 400:
            raise _fail(response)
        report = response.json() if dry_run else _follow(client, response.headers["location"])
    _show(report)
    if report["status"] != "succeeded":
        raise typer.Exit(1)


@app.command("report")
def report(
    run_id: Annotated[str, typer.Argument(help="the run's id")],
    output_format: Annotated[
        str, typer.Option("--format", help="table, json, csv or html")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option(help="write to this file instead of the terminal")
    ] = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Show a stored run, or save its JSON, CSV or HTML report."""
    wire = "json" if output_format == "table" else output_format
    with _client(url) as client:
        response = client.get(
            f"/v1/reconciliations/{run_id}", params={"format": wire, "limit": 100_000}
        )
    if response.status_code >= 400:
        raise _fail(response)
    if output_format == "table":
        _show(response.json())
        return
    text = json.dumps(response.json(), indent=2) if wire == "json" else response.text
    if output is None:
        console.out(text, highlight=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"written {output} ({len(text):,} characters)")
