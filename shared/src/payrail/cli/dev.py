"""``payrail dev``: run the whole platform locally in the foreground (behind ``make run``).

Kafka, PostgreSQL and localstripe start first, then the four services; their output streams
here with a coloured ``[name]`` prefix (full logs stay in ``<state>/logs``). Ctrl-C or SIGTERM
stops every child, in reverse order, and nothing is left running. If a child dies, the launcher
says which one and why (the tail of its log) and stops the rest.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from payrail.devstack.kafka import DESIGN_TOPICS
from payrail.devstack.process import ProcessFailed, StartCancelled
from payrail.devstack.stack import COMPONENTS, SERVICES, DevStack, StackConfig

app = typer.Typer(
    help="Run payrail locally: real Kafka and PostgreSQL, localstripe and the four services.",
    no_args_is_help=True,
)

_COLOURS = {
    "payrail": "bold white",
    "kafka": "magenta",
    "postgres": "blue",
    "localstripe": "yellow",
    "checkout": "green",
    "webhook-ingest": "cyan",
    "entitlements": "bright_green",
    "reconciler": "bright_cyan",
}
_PREFIX_WIDTH = max(len(name) for name in _COLOURS) + 3

FIRST_PAYMENT_BODY = json.dumps(
    {"amount": 1999, "currency": "USD", "user_id": "u_1", "sku": "pro-monthly", "gateway": "stripe"}
)


class _PrefixedConsole:
    """Prints child output as ``[name] line`` with one colour per component."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def __call__(self, name: str, line: str) -> None:
        prefix = f"[{name}]".ljust(_PREFIX_WIDTH)
        self._console.print(
            Text.assemble((prefix, _COLOURS.get(name, "white")), line),
            soft_wrap=True,
            highlight=False,
        )


class _LauncherLogHandler(logging.Handler):
    """Routes the devstack's own messages (jar downloads, orphans stopped) to the console."""

    def __init__(self, sink: _PrefixedConsole) -> None:
        super().__init__(level=logging.INFO)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink("payrail", record.getMessage())


def _summary(stack: DevStack, seconds: float) -> Table:
    table = Table(
        title=f"payrail dev stack is up (started in {seconds:.1f}s)", title_justify="left"
    )
    table.add_column("component", no_wrap=True)
    table.add_column("address", overflow="fold")
    table.add_column("notes", overflow="fold")
    wanted = stack.config.components
    if "kafka" in wanted:
        table.add_row(
            "kafka",
            stack.kafka_bootstrap,
            f"{len(DESIGN_TOPICS)} payrail topics; deploy/kafka/bin/kafka-topics --list",
        )
    if "postgres" in wanted:
        table.add_row("postgres", stack.database_url, "a schema per service")
    if "localstripe" in wanted:
        table.add_row(
            "localstripe", stack.localstripe_url, f"webhooks -> {stack.stripe_webhook_url()}"
        )
    for spec in SERVICES:
        if spec.name in wanted:
            url = stack.service_url(spec.name)
            table.add_row(spec.name, url, f"{url}/docs")
    table.caption = f"state and logs: {stack.config.state_dir}  -  Ctrl-C stops everything"
    return table


def _first_payment_command(stack: DevStack) -> str:
    return (
        f"curl -sS -X POST {stack.service_url('checkout')}/v1/payments "
        "-H 'Content-Type: application/json' -H 'Idempotency-Key: first-payment-1' "
        f"-d '{FIRST_PAYMENT_BODY}'"
    )


def _install_stop_handlers(stop: threading.Event, console: Console) -> None:
    """Ctrl-C / SIGTERM request one orderly stop.

    Repeats are ignored: a terminal's Ctrl-C reaches the launcher both directly and through
    ``uv run``, and the stop escalates to SIGKILL on its own for any child that hangs.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            console.print(f"[bold]{signal.Signals(signum).name}: stopping payrail...[/bold]")
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _report_failure(console: Console, error: Exception) -> None:
    if isinstance(error, ProcessFailed):
        console.print(f"[bold red]{error.name} exited (code {error.returncode}); last lines:[/]")
        console.print(Text(error.log_tail or "(no output)"), soft_wrap=True)
    else:
        console.print(f"[bold red]payrail dev stack failed to start:[/] {error}", highlight=False)


@app.callback()
def dev() -> None:
    """The local dev stack (what `make run` and the test fixtures use)."""


@app.command()
def run(
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help=f"Run only these components (repeatable): {', '.join(COMPONENTS)}.",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="PAYRAIL_STATE_DIR", help="Where data and logs live (default: <repo>/.state)."
        ),
    ] = None,
    partitions: Annotated[
        int, typer.Option(min=1, help="Partitions of each payrail topic (the parallelism).")
    ] = 3,
) -> None:
    """Start everything in the foreground; Ctrl-C stops it all."""
    console = Console(highlight=False)
    sink = _PrefixedConsole(console)
    devstack_log = logging.getLogger("payrail.devstack")
    devstack_log.addHandler(_LauncherLogHandler(sink))
    devstack_log.setLevel(logging.INFO)
    try:
        config = StackConfig.from_env(state_dir=state_dir, components=only, partitions=partitions)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    stop = threading.Event()
    _install_stop_handlers(stop, console)
    stack = DevStack(config, sink=sink)
    exit_code = 0
    try:
        started = time.monotonic()
        stack.start(cancel=stop)
        console.print(_summary(stack, time.monotonic() - started))
        if "checkout" in config.components:
            console.print("First payment:", style="bold")
            console.print(Text(_first_payment_command(stack)), soft_wrap=True)
            console.print(
                f"or buy in a browser at {stack.service_url('checkout')}/demo;"
                " then follow it with: payrail payments show <payment id>"
                " (walk-through: docs/quickstart.md)",
                soft_wrap=True,
            )
        while not stop.wait(0.5):
            stack.check_alive()
    except StartCancelled:
        exit_code = 130
    except (ProcessFailed, TimeoutError, RuntimeError, OSError) as exc:
        _report_failure(console, exc)
        exit_code = 1
    finally:
        stack.stop()
        console.print("[bold]payrail dev stack stopped[/bold]")
    raise typer.Exit(exit_code)
