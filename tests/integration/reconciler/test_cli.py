"""``payrail recon`` against a real reconciler (uvicorn, PostgreSQL, Kafka)."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import uvicorn
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from payrail.cli.recon import app as recon
from payrail.devstack.paths import free_port
from reconciler.app import create_app
from reconciler.settings import ReconcilerSettings

FIXTURES = Path(__file__).parents[2] / "unit" / "reconciler" / "fixtures"
SUFFIX = uuid.uuid4().hex[:8]


class CliSettings(ReconcilerSettings):
    service_name: ClassVar[str] = f"recon_cli_{SUFFIX}"
    db_schema: ClassVar[str] = f"recon_cli_{SUFFIX}"


@pytest.fixture(scope="module")
def url(database_url: str, kafka_bootstrap: str) -> Iterator[str]:
    port = free_port()
    settings = CliSettings(database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.1)
    assert server.started, "the reconciler did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{CliSettings.db_schema}" CASCADE'))
    engine.dispose()


def cli(*args: str) -> str:
    result = CliRunner().invoke(recon, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_import_run_and_report_from_the_command_line(url: str, tmp_path: Path) -> None:
    statement = tmp_path / "icici-march.csv"
    statement.write_text(
        "Date,Amount,Reference,Details\n2025-03-05,7264.00,UTR0503HDFC000123,RAZORPAY\n"
    )
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps(
            {
                "booking_date": "Date",
                "amount": "Amount",
                "references": ["Reference"],
                "description": "Details",
                "default_currency": "INR",
                "account": f"ICICI-{SUFFIX}",
            }
        )
    )
    assert "imported, 1 lines" in cli(
        "import-statement", str(statement), "--mapping", str(mapping), "--url", url
    )
    assert "duplicate file" in cli(
        "import-statement", str(statement), "--mapping", str(mapping), "--url", url
    )
    # a repeated command with its key gets the first answer back, not a second import's
    april = tmp_path / "icici-april.csv"
    april.write_text("Date,Amount,Reference,Details\n2025-04-02,10.00,UTR0402,RAZORPAY\n")
    keyed = ("--mapping", str(mapping), "--idempotency-key", f"cli-{SUFFIX}", "--url", url)
    for _ in range(2):
        assert "imported, 1 lines" in cli("import-statement", str(april), *keyed)
    imported = cli(
        "import-report", str(FIXTURES / "razorpay_recon.csv"), "--gateway", "razorpay", "--url", url
    )
    assert "4 razorpay report lines imported" in imported

    shown = cli(
        "run",
        "--period",
        "2025-03",
        "--currency",
        "INR",
        "--gateway",
        "razorpay",
        "--as-of",
        "2025-04-10",
        "--fee",
        "razorpay=2%",
        "--url",
        url,
    )
    assert "Payrail expects" in shown
    assert "Bank received" in shown
    assert "7,264.00 INR" in shown  # the bank line, matched to the settlement by its UTR
    for cause in ("MISSING_IN_LEDGER", "REFUND_NOT_RECORDED", "CHARGEBACK_NOT_RECORDED"):
        assert cause in shown  # payrail has no records for this gateway yet
    run_id = re.search(r"run ([0-9a-f-]{36})", shown.replace("\n", " "))
    assert run_id is not None

    page = tmp_path / "march.html"
    cli("report", run_id.group(1), "--format", "html", "--output", str(page), "--url", url)
    assert "<svg" in page.read_text()
    rows = cli("report", run_id.group(1), "--format", "csv", "--url", url)
    assert rows.splitlines()[0].startswith("cause,kind,stage,amount,amount_major,currency,ref")

    dry = cli("run", "--period", "2025-03", "--currency", "INR", "--dry-run", "--url", url)
    assert "(dry run)" in dry


def test_a_failing_request_says_why_and_exits_non_zero(url: str) -> None:
    result = CliRunner().invoke(
        recon, ["run", "--period", "March", "--currency", "INR", "--url", url]
    )
    assert result.exit_code == 1
    assert "Reconciliation not possible" in result.output
