"""A reconciliation run as the people who read it see it: JSON, CSV and a self-contained HTML page.

:class:`RunReport` is the one shape every output is rendered from - built from an engine result
(a dry run) or from a stored run - so the API, the CLI and the files always agree. Amounts stay
integer minor units in JSON and CSV (CSV adds the major-unit text next to them); the HTML shows
major units with the currency.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from payrail.money import Money, exponent
from reconciler.domain import ReconciliationResult, Summary, Waterfall
from reconciler.rows import money_text

#: rows shown in the HTML table before pointing to the CSV (a browser page stays usable)
HTML_ROW_LIMIT = 2_000
_LINKS = ("ledger_refs", "gateway_line_ids", "payout_ids", "bank_line_ids")


@dataclass(frozen=True)
class RunReport:
    run_id: str | None
    status: str
    params: Mapping[str, Any]
    summary: Summary | None
    waterfall: Waterfall | None
    rows: pl.DataFrame
    warnings: tuple[str, ...] = ()
    stage: str = "done"
    progress: int = 100
    error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_result(cls, result: ReconciliationResult, params: Mapping[str, Any]) -> RunReport:
        return cls(
            run_id=None,
            status="succeeded",
            params=params,
            summary=result.summary,
            waterfall=result.waterfall,
            rows=result.rows,
            warnings=result.warnings,
        )

    @property
    def currency(self) -> str:
        return str(self.params["currency"])

    @property
    def discrepancies(self) -> pl.DataFrame:
        return self.rows.filter(pl.col("kind") == "discrepancy")


def money(amount: int, currency: str) -> str:
    """``1,220.50 INR`` - major units, thousands separated (display only)."""
    return f"{Money(amount, currency).to_major():,} {currency}"


def _row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    if out.get("expected_by") is not None:
        out["expected_by"] = out["expected_by"].isoformat()
    return out


def to_json(report: RunReport, *, limit: int = 1_000, offset: int = 0) -> dict[str, Any]:
    """The API's JSON body. Discrepancy rows are paged (``limit``/``offset``); expected items
    (fees, taxes, earlier payouts, cut-off) are aggregate rows and always included."""
    found = report.discrepancies
    counts = found.group_by("cause").agg(pl.len(), pl.col("amount").sum()).sort("cause")
    body: dict[str, Any] = {
        "id": report.run_id,
        "status": report.status,
        "stage": report.stage,
        "progress": report.progress,
        "params": dict(report.params),
        "error": report.error,
        "created_at": report.created_at.isoformat() if report.created_at else None,
        "finished_at": report.finished_at.isoformat() if report.finished_at else None,
        **report.extra,
    }
    if report.summary is None or report.waterfall is None:
        return body
    waterfall = report.waterfall
    body.update(
        summary=asdict(report.summary),
        waterfall={
            "currency": waterfall.currency,
            "start": waterfall.start,
            "end": waterfall.end,
            "difference": waterfall.end - waterfall.start,
            "steps": [asdict(step) for step in waterfall.steps],
        },
        expected_items=[
            _row_json(r)
            for r in report.rows.filter(pl.col("kind") == "expected").iter_rows(named=True)
        ],
        discrepancies={
            "total": found.height,
            "by_cause": {
                cause: {"rows": n, "amount": amount} for cause, n, amount in counts.iter_rows()
            },
            "offset": offset,
            "items": [_row_json(r) for r in found.slice(offset, limit).iter_rows(named=True)],
        },
        warnings=list(report.warnings),
    )
    return body


def to_csv(report: RunReport) -> str:
    """Every reconciling row, links joined with ``|``; amounts in minor and major units."""
    frame = report.rows.with_columns(
        currency=pl.lit(report.currency),
        amount_major=money_text(pl.col("amount"), exponent(report.currency)),
        **{name: pl.col(name).list.join("|") for name in _LINKS},
    ).select(
        "cause",
        "kind",
        "stage",
        "amount",
        "amount_major",
        "currency",
        "ref",
        "gateway",
        "payment_id",
        *_LINKS,
        "line_count",
        "expected_by",
        "detail",
    )
    buffer = io.StringIO()
    frame.write_csv(buffer)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------ HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.25rem}h2{font-size:1.15rem;margin-top:2rem}
.muted{color:#5d6678}table{border-collapse:collapse;width:100%;margin-top:.5rem}
th,td{padding:.35rem .5rem;border-bottom:1px solid #e3e6ec;text-align:left;vertical-align:top}
th{background:#f5f6f8;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #e3e6ec;border-radius:8px;
padding:.75rem 1rem;min-width:220px}.card b{display:block;font-size:1.3rem}
.tag{display:inline-block;padding:0 .4rem;border-radius:4px;font-size:12px}
.expected{background:#e7eefc;color:#244a9e}.discrepancy{background:#fdecea;color:#9b2c1f}
.links{font-size:12px;color:#5d6678;word-break:break-all}.warn{background:#fff7e0;padding:.5rem}
"""


def _cell(text: object, *, num: bool = False, head: bool = False, raw: bool = False) -> str:
    tag = "th" if head else "td"
    attributes = " class='num'" if num else ""
    content = str(text) if raw else html.escape(str(text))
    return f"<{tag}{attributes}>{content}</{tag}>"


def _row(*cells: str) -> str:
    return "<tr>" + "".join(cells) + "</tr>"


def _tag(kind: str, text: str) -> str:
    return f"<span class='tag {kind}'>{html.escape(text)}</span>"


def _bar(n: int, label: str, amount: int, span: tuple[float, float], kind: str, cur: str) -> str:
    """One labelled bar of the chart, from ``span[0]`` to ``span[1]`` (pixels)."""
    colors = {"total": "#44546a", "expected": "#5b8def", "discrepancy": "#e0603a"}
    y = 5 + n * 30
    left, right = min(span), max(span)
    shown = ("+" if kind != "total" and amount > 0 else "") + money(amount, cur)
    return (
        f'<text x="{_LABEL_W - 10}" y="{y + 15}" text-anchor="end" font-size="12">'
        f"{html.escape(label)}</text>"
        f'<rect x="{left:.1f}" y="{y}" width="{max(right - left, 1.5):.1f}" height="22" '
        f'fill="{colors[kind]}"><title>{html.escape(label)}: {html.escape(shown)}</title></rect>'
        f'<text x="{right + 6:.1f}" y="{y + 15}" font-size="12">{html.escape(shown)}</text>'
    )


_LABEL_W = 300
_CHART_W = 980


def _svg(waterfall: Waterfall) -> str:
    """The waterfall chart: start bar, one floating bar per step, end bar (inline SVG)."""
    levels = [0, waterfall.start]
    for step in waterfall.steps:
        levels.append(levels[-1] + step.amount)
    lo, hi = min(levels), max(levels)
    scale = (_CHART_W - _LABEL_W - 140) / ((hi - lo) or 1)

    def x(value: int) -> float:
        return _LABEL_W + (value - lo) * scale

    cur = waterfall.currency
    bars = [_bar(0, "Payrail expects", waterfall.start, (x(0), x(waterfall.start)), "total", cur)]
    for n, step in enumerate(waterfall.steps, 1):
        base = levels[n]
        bars.append(
            _bar(n, step.label, step.amount, (x(base), x(base + step.amount)), step.kind, cur)
        )
    last = len(waterfall.steps) + 1
    bars.append(_bar(last, "Bank received", waterfall.end, (x(0), x(waterfall.end)), "total", cur))
    height = (last + 1) * 30 + 10
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_CHART_W}" height="{height}" role="img" '
        f'aria-label="waterfall from what payrail expects to what the bank received">'
        + "".join(bars)
        + "</svg>"
    )


def _links(row: Mapping[str, Any]) -> str:
    parts = []
    for name in _LINKS:
        ids = row[name]
        if ids:
            more = " …" if len(ids) > 20 else ""
            parts.append(f"{name.replace('_', ' ')}: {', '.join(ids[:20])}{more}")
    return "; ".join(parts)


def to_html(report: RunReport) -> str:
    """A page a finance person can open offline: summary, waterfall chart, discrepancy table."""
    esc = html.escape
    params = report.params
    title = f"Reconciliation {params.get('period', '')} {report.currency}"
    gateways = ", ".join(params.get("gateways") or ["all"])
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p class='muted'>run {esc(report.run_id or 'dry run')} · status {esc(report.status)}"
        f" · gateways {esc(gateways)} · as of {esc(str(params.get('as_of', '')))}</p>",
    ]
    if report.summary is None or report.waterfall is None:
        out.append(f"<p>{esc(report.error or 'The run has not finished.')}</p></body></html>")
        return "".join(out)
    s, w, cur = report.summary, report.waterfall, report.currency
    out.append("<div class='cards'>")
    for label, amount in (
        ("Payrail expects", w.start),
        ("Bank received", w.end),
        ("Difference", w.end - w.start),
        ("Unexplained", w.unexplained),
    ):
        out.append(f"<div class='card'>{esc(label)}<b>{esc(money(amount, cur))}</b></div>")
    out.append("</div>")
    out.extend(f"<p class='warn'>{esc(warning)}</p>" for warning in report.warnings)
    out.append("<h2>From payrail's records to the bank</h2>" + _svg(w) + "<table>")
    out.append(
        _row(
            *(_cell(h, head=True) for h in ("Step", "Cause")),
            _cell("Amount", num=True, head=True),
            _cell("Rows", num=True, head=True),
        )
    )
    out.append(
        _row(_cell("Payrail expects"), _cell(""), _cell(money(w.start, cur), num=True), _cell(""))
    )
    for step in w.steps:
        out.append(
            _row(
                _cell(step.label),
                _cell(_tag(step.kind, step.cause), raw=True),
                _cell(money(step.amount, cur), num=True),
                _cell(f"{step.rows:,}", num=True),
            )
        )
    out.append(
        _row(
            _cell("Bank received", head=True),
            _cell("", head=True),
            _cell(money(w.end, cur), num=True, head=True),
            _cell("", head=True),
        )
    )
    out.append("</table><h2>Totals</h2><table>")
    for label, amount in (
        ("Captured (payrail)", s.ledger_captured),
        ("Refunded (payrail)", s.ledger_refunded),
        ("Charged back (payrail)", s.ledger_disputed),
        ("Gateway gross", s.gateway_gross),
        ("Gateway fees", s.gateway_fees),
        ("Gateway net", s.gateway_net),
        ("Payouts landed", s.payouts_landed),
        ("Bank received", s.bank_received),
    ):
        out.append(_row(_cell(label), _cell(money(amount, cur), num=True)))
    out.append(
        _row(
            _cell("Payrail entries matched at a gateway"),
            _cell(f"{s.matched_ledger_gateway:,}", num=True),
        )
    )
    out.append(
        _row(
            _cell("Payouts matched to bank lines"),
            _cell(f"{s.matched_payouts:,} of {s.payouts:,}", num=True),
        )
    )
    found = report.discrepancies.sort("cause", "ref")
    out.append(f"</table><h2>Discrepancies ({found.height:,})</h2>")
    if found.height > HTML_ROW_LIMIT:
        out.append(
            f"<p class='muted'>The first {HTML_ROW_LIMIT:,} are shown; the CSV has them all.</p>"
        )
    headers = ("Cause", "Reference", "Amount", "Due", "Detail", "Linked rows")
    out.append("<table>" + _row(*(_cell(h, head=True, num=h == "Amount") for h in headers)))
    for row in found.head(HTML_ROW_LIMIT).iter_rows(named=True):
        out.append(
            _row(
                _cell(_tag("discrepancy", row["cause"]), raw=True),
                _cell(row["ref"] or ""),
                _cell(money(row["amount"], cur), num=True),
                _cell(row["expected_by"] or ""),
                _cell(row["detail"] or ""),
                f"<td class='links'>{esc(_links(row))}</td>",
            )
        )
    out.append("</table></body></html>")
    return "".join(out)
