"""``payrail``: the operator CLI (typer + rich).

Sub-commands live in their own modules and are mounted here:
``payrail dev`` (local stack), ``payrail dlq`` (dead letters), ``payrail payments``,
``payrail recon`` (reconciliation).
"""

from __future__ import annotations

import typer

from payrail.cli import dev, dlq, payments, recon

app = typer.Typer(
    name="payrail",
    help="Operate payrail: run the local stack, inspect payments, replay dead letters, reconcile.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)

app.add_typer(
    dev.app, name="dev", help="Run the local stack (Kafka, PostgreSQL, localstripe, services)."
)
app.add_typer(
    recon.app, name="recon", help="Reconcile payrail, gateway reports and bank statements."
)
app.add_typer(
    dlq.app, name="dlq", help="Inspect, replay and purge dead-letter topics (<topic>.<group>.dlt)."
)
app.add_typer(payments.app, name="payments", help="Inspect payments across services.")
