"""``payrail payments show <id>``: one payment's story across services, in time order.

It reads only the services' public HTTP APIs (no database access needed):

* checkout - ``GET /v1/payments/{id}`` (the payment now) and ``GET /v1/payments/{id}/events``
  (its timeline: API actions, gateway events applied with their ``ce_id`` and source, status
  changes, gateway calls);
* entitlements - ``GET /v1/payments/{id}/access`` (pending, granted, revoked or denied, and
  when).

Both are merged into one table ordered by time (``--json`` prints the same as JSON). Failures
print one line on stderr: an unknown payment exits 1; a service that cannot be reached or
answers with an error exits 2, naming the URL it tried.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from payrail.money import CurrencyError, Money

app = typer.Typer(help="Inspect payments across services.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)

EXIT_UNKNOWN_PAYMENT = 1
EXIT_SERVICE_DOWN = 2

CheckoutUrl = Annotated[
    str,
    typer.Option("--checkout-url", envvar="PAYRAIL_CHECKOUT_URL", help="checkout's base URL"),
]
EntitlementsUrl = Annotated[
    str,
    typer.Option(
        "--entitlements-url", envvar="PAYRAIL_ENTITLEMENTS_URL", help="entitlements' base URL"
    ),
]
Timeout = Annotated[float, typer.Option(min=0.1, help="seconds to wait for each service")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


class ServiceDown(Exception):
    """A service did not answer, or answered with an error (the message names the URL)."""


class UnknownPayment(Exception):
    """checkout has no such payment."""


@dataclass(frozen=True)
class Step:
    """One line of the merged timeline."""

    at: str | None
    service: str
    what: str
    source: str | None = None
    ce_id: str | None = None
    status: str | None = None
    detail: str | None = None


def _get(client: httpx.Client, url: str) -> httpx.Response:
    try:
        response = client.get(url)
    except httpx.TransportError as exc:
        raise ServiceDown(f"cannot reach {url}: {type(exc).__name__}") from None
    if response.status_code >= 500 or (response.status_code >= 400 and response.status_code != 404):
        raise ServiceDown(f"{url} answered HTTP {response.status_code}")
    return response


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ServiceDown(f"{response.request.url} did not answer JSON") from None
    if not isinstance(body, dict):
        raise ServiceDown(f"{response.request.url} answered unexpected JSON")
    return body


#: detail fields the table leaves out: the payment's header already says them
_KNOWN = frozenset({"amount", "currency", "gateway_payment_id", "occurred_at"})


def _detail(detail: Any) -> str | None:
    if not detail:
        return None
    if isinstance(detail, dict):
        shown = ", ".join(f"{k}={v}" for k, v in detail.items() if k not in _KNOWN)
        return shown or None
    return str(detail)


def _checkout_steps(events: list[dict[str, Any]]) -> list[Step]:
    steps = []
    for event in events:
        before, after = event.get("status_before"), event.get("status_after")
        status = f"{before or '-'} -> {after}" if after and after != before else None
        steps.append(
            Step(
                at=event.get("at"),
                service="checkout",
                what=str(event.get("kind")),
                source=event.get("source"),
                ce_id=event.get("ce_id"),
                status=status,
                detail=_detail(event.get("detail")),
            )
        )
    return steps


def _access_steps(access: dict[str, Any]) -> list[Step]:
    """The entitlement's milestones: granted, then revoked; or denied; or still pending."""
    state, reason = access.get("state"), access.get("reason")
    steps = []
    if access.get("granted_at"):
        steps.append(Step(at=access["granted_at"], service="entitlements", what="access granted"))
    if state == "revoked":
        steps.append(
            Step(
                at=access.get("revoked_at") or access.get("updated_at"),
                service="entitlements",
                what="access revoked",
                detail=f"reason={reason}",
            )
        )
    elif state == "denied":
        steps.append(
            Step(
                at=access.get("updated_at"),
                service="entitlements",
                what="access denied",
                detail=f"reason={reason}",
            )
        )
    elif state == "pending":
        seen = access.get("updated_at")
        steps.append(
            Step(
                at=seen,
                service="entitlements",
                what="access pending",
                detail=None if seen else "no lifecycle event of this payment consumed yet",
            )
        )
    return steps


def _moment(step: Step) -> tuple[int, datetime | None]:
    """Sort key: timed steps in time order, untimed ones (nothing happened yet) last."""
    if step.at is None:
        return (1, None)
    return (0, datetime.fromisoformat(step.at))


def payment_story(
    payment_id: str, *, checkout_url: str, entitlements_url: str, timeout: float
) -> dict[str, Any]:
    """The payment, its access and the merged timeline (the ``--json`` document)."""
    quoted = quote(payment_id, safe="")
    with httpx.Client(timeout=timeout) as client:
        base = checkout_url.rstrip("/")
        found = _get(client, f"{base}/v1/payments/{quoted}")
        if found.status_code == 404:
            raise UnknownPayment(f"checkout at {base} has no payment {payment_id}")
        payment = _json(found)
        events = _json(_get(client, f"{base}/v1/payments/{quoted}/events"))
        access_url = f"{entitlements_url.rstrip('/')}/v1/payments/{quoted}/access"
        access = _json(_get(client, access_url))
    steps = _checkout_steps(list(events.get("events", []))) + _access_steps(access)
    steps.sort(key=_moment)
    return {"payment": payment, "access": access, "timeline": [asdict(s) for s in steps]}


def _amount(payment: dict[str, Any], field: str) -> str:
    try:
        return Money(int(payment[field]), str(payment["currency"])).format()
    except (KeyError, TypeError, ValueError, CurrencyError):
        return str(payment.get(field))


def _clock(at: str | None) -> str:
    """``2026-11-25 02:41:42.446`` (UTC, milliseconds): narrow enough for a table column."""
    if at is None:
        return "-"
    from_iso = datetime.fromisoformat(at).astimezone(UTC)
    return from_iso.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _render(story: dict[str, Any]) -> None:
    payment, access = story["payment"], story["access"]
    console.print(
        Text.assemble(
            (f"{payment['id']}", "bold"),
            f"  {payment.get('status')}  {_amount(payment, 'amount')}",
            f"  refunded {_amount(payment, 'amount_refunded')}",
            f"\nuser {payment.get('user_id')}  sku {payment.get('sku')}",
            f"  {payment.get('gateway')} {payment.get('gateway_payment_id') or '-'}",
            "\naccess ",
            (str(access.get("state")), "bold"),
        )
    )
    table = Table(title="timeline (UTC)", title_justify="left")
    for column in ("time", "service", "what", "status", "ce_id / source", "detail"):
        table.add_column(column, overflow="fold")
    for step in story["timeline"]:
        origin = "\n".join(x for x in (step["ce_id"], step["source"]) if x)
        table.add_row(
            _clock(step["at"]),
            step["service"],
            step["what"],
            step["status"] or "",
            origin,
            step["detail"] or "",
        )
    console.print(table)


def _fail(message: str, code: int) -> NoReturn:
    errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def show(
    payment_id: Annotated[str, typer.Argument(help="payrail's payment id (pay_...)")],
    checkout_url: CheckoutUrl = "http://127.0.0.1:8001",
    entitlements_url: EntitlementsUrl = "http://127.0.0.1:8003",
    timeout: Timeout = 10.0,
    as_json: AsJson = False,
) -> None:
    """One payment's timeline across checkout and entitlements, in time order."""
    try:
        story = payment_story(
            payment_id,
            checkout_url=checkout_url,
            entitlements_url=entitlements_url,
            timeout=timeout,
        )
    except UnknownPayment as exc:
        _fail(str(exc), EXIT_UNKNOWN_PAYMENT)
    except ServiceDown as exc:
        _fail(str(exc), EXIT_SERVICE_DOWN)
    if as_json:
        print(json.dumps(story, indent=2))
    else:
        _render(story)
