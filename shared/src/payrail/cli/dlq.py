"""``payrail dlq``: inspect, replay and purge dead-letter topics from a terminal.

The commands talk to Kafka only (``--bootstrap``, or ``PAYRAIL_KAFKA_BOOTSTRAP_SERVERS``) through
:class:`payrail.messaging.dlq.DeadLetterQueue`, so an operator needs no database access:

* ``payrail dlq list`` - every ``<topic>.<group>.dlt``: count, oldest, newest, top exceptions;
* ``payrail dlq show TOPIC`` - headers and pretty payload of the matching dead letters;
* ``payrail dlq replay TOPIC`` - copy the matching dead letters to ``<topic>.<group>.retry``,
  which only the failed group consumes (``--dry-run`` sends and records nothing);
* ``payrail dlq replays [TOPIC]`` - the audit trail: who replayed what, when, with which filter;
* ``payrail dlq purge TOPIC`` - delete dead letters, after a confirmation.

Failures print one line on stderr and exit with a code a script can branch on (no traceback):
2 invalid option or filter, 3 broker unreachable, 4 unknown or non-dead-letter topic,
5 nothing matches the filter, 1 anything else (including a declined confirmation).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from aiokafka.errors import KafkaError
from rich.console import Console, Group
from rich.json import JSON
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from payrail.messaging.dlq import (
    BrokerUnavailable,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterQueue,
    DeadLetterTopicSummary,
    DlqError,
    ReplayRecord,
    ReplayReport,
    UnknownTopic,
)
from payrail.messaging.envelope import format_time

app = typer.Typer(
    help="Inspect, replay and purge dead-letter topics (<topic>.<group>.dlt).",
    no_args_is_help=True,
)
console = Console()
errors = Console(stderr=True)

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_INVALID = 2  # click's own code for usage errors, used for bad filters too
EXIT_NO_BROKER = 3
EXIT_UNKNOWN_TOPIC = 4
EXIT_NOTHING_MATCHES = 5

Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap",
        envvar="PAYRAIL_KAFKA_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers",
    ),
]
Timeout = Annotated[
    float,
    typer.Option(min=0.1, help="seconds to wait for the broker before giving up"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]
Topic = Annotated[str, typer.Argument(help="the dead-letter topic, <topic>.<group>.dlt")]
Types = Annotated[
    list[str] | None,
    typer.Option("--type", help="event type (ce_type), e.g. payment.intent.requested; repeatable"),
]
Keys = Annotated[
    list[str] | None, typer.Option("--key", help="Kafka key (the payment id); repeatable")
]
Exceptions = Annotated[
    list[str] | None,
    typer.Option("--exception", help="exception class, short or fully qualified; repeatable"),
]
Since = Annotated[
    str | None,
    typer.Option(help="dead-lettered at or after: ISO 8601 (UTC if no zone) or 30m/2h/1d ago"),
]
Until = Annotated[
    str | None,
    typer.Option(help="dead-lettered at or before: ISO 8601 (UTC if no zone) or 30m/2h/1d ago"),
]
Partition = Annotated[
    int | None, typer.Option(min=0, help="only this partition of the dead-letter topic")
]
Offset = Annotated[
    int | None, typer.Option(min=0, help="only the record at this offset of the dead-letter topic")
]
FromOffset = Annotated[int | None, typer.Option(min=0, help="offsets from this one (inclusive)")]
ToOffset = Annotated[int | None, typer.Option(min=0, help="offsets up to this one (inclusive)")]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TIMEOUT = 10.0
_AGO = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _fail(message: str, code: int) -> NoReturn:
    errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _run(bootstrap: str, timeout: float, work: Callable[[DeadLetterQueue], Awaitable[T]]) -> T:
    """Run ``work`` against the broker; turn every broker or topic failure into a clear exit."""

    async def main() -> T:
        async with DeadLetterQueue(bootstrap, request_timeout_ms=int(timeout * 1000)) as dlq:
            return await work(dlq)

    # aiokafka logs each refused connection; the one-line error below says it better
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(main())
    except BrokerUnavailable as exc:
        _fail(f"{exc} (is Kafka running? check --bootstrap)", EXIT_NO_BROKER)
    except UnknownTopic as exc:
        _fail(f"{exc}; `payrail dlq list` shows the dead-letter topics", EXIT_UNKNOWN_TOPIC)
    except DlqError as exc:
        _fail(str(exc), EXIT_FAILED)
    except (KafkaError, TimeoutError) as exc:
        _fail(
            f"Kafka at {bootstrap} did not answer: {type(exc).__name__} {exc}".rstrip(),
            EXIT_NO_BROKER,
        )


def _login() -> str:
    """The login name when $USER is unset (cron, containers): LOGNAME, then the password file."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def _when(text: str | None, option: str, now: datetime) -> datetime | None:
    """``2026-11-25T10:00:00Z``, ``2026-11-25`` (UTC when no zone) or ``2h`` (ago)."""
    if text is None:
        return None
    relative = _AGO.match(text.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative[2]]: int(relative[1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an ISO 8601 time nor a duration like 30m, 2h, 1d",
            param_hint=option,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _filter(
    types: list[str] | None,
    keys: list[str] | None,
    exceptions: list[str] | None,
    since: str | None,
    until: str | None,
    partition: int | None,
    offset: int | None,
    from_offset: int | None,
    to_offset: int | None,
) -> DeadLetterFilter:
    """The command line's criteria as a filter, rejecting contradictions before any I/O."""
    now = datetime.now(UTC)
    start, end = _when(since, "--since", now), _when(until, "--until", now)
    if start and end and start > end:
        raise typer.BadParameter("--since is after --until")
    if offset is not None:
        if from_offset is not None or to_offset is not None:
            raise typer.BadParameter("use --offset or --from-offset/--to-offset, not both")
        from_offset = to_offset = offset
    if from_offset is not None and to_offset is not None and from_offset > to_offset:
        raise typer.BadParameter("--from-offset is after --to-offset")
    return DeadLetterFilter(
        event_types=frozenset(types or ()),
        keys=frozenset(keys or ()),
        exception_classes=frozenset(exceptions or ()),
        since=start,
        until=end,
        partition=partition,
        min_offset=from_offset,
        max_offset=to_offset,
    )


def _criteria(where: DeadLetterFilter) -> str:
    described = where.describe()
    return ", ".join(f"{k}={v}" for k, v in described.items()) if described else "no filter"


def _time(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}" if moment else "-"


def _letters(count: int) -> str:
    return f"{count:,} dead letter" + ("" if count == 1 else "s")


def _short(fqcn: str) -> str:
    return fqcn.rsplit(".", 1)[-1]


def _summary_json(summary: DeadLetterTopicSummary) -> dict[str, Any]:
    return {
        "topic": summary.topic,
        "source_topic": summary.source_topic,
        "group": summary.group,
        "count": summary.count,
        "oldest": format_time(summary.oldest) if summary.oldest else None,
        "newest": format_time(summary.newest) if summary.newest else None,
        "top_exceptions": [{"exception": e, "count": n} for e, n in summary.top_exceptions],
    }


def _letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "dead_lettered_at": format_time(letter.timestamp),
        "key": letter.key_text,
        "headers": {name: letter.header(name) for name, _ in letter.headers},
        "payload": letter.payload(),
    }


def _print_json(data: object) -> None:
    console.out(json.dumps(data, indent=2, ensure_ascii=False), highlight=False)


def _letter_panel(letter: DeadLetter) -> Panel:
    headers = Table.grid(padding=(0, 2))
    headers.add_column(style="cyan", no_wrap=True)
    headers.add_column(overflow="fold")
    headers.add_row("key", letter.key_text)
    headers.add_row("dead-lettered at", format_time(letter.timestamp))
    for name, _ in letter.headers:
        headers.add_row(name, letter.header(name) or "")
    payload = letter.payload()
    body = JSON.from_data(payload) if isinstance(payload, dict | list) else Text(str(payload))
    title = f"{letter.topic} partition {letter.partition} offset {letter.offset}"
    return Panel(Group(headers, Text(""), body), title=title, title_align="left")


def _letters_table(letters: list[DeadLetter], title: str) -> Table:
    table = Table(title=title)
    for column in ("Partition", "Offset"):
        table.add_column(column, justify="right")
    table.add_column("Key", overflow="fold")
    table.add_column("Type", overflow="fold")
    table.add_column("Exception", overflow="fold")
    table.add_column("ce_id", overflow="fold")
    for letter in letters:
        table.add_row(
            str(letter.partition),
            str(letter.offset),
            letter.key_text,
            letter.ce_type or "-",
            _short(letter.exception_fqcn),
            letter.ce_id or "-",
        )
    return table


@app.command("list")
def list_topics(
    as_json: AsJson = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Every dead-letter topic: how many letters, oldest and newest, top exception classes."""

    async def work(dlq: DeadLetterQueue) -> list[DeadLetterTopicSummary]:
        return await dlq.list_topics()

    summaries = _run(bootstrap, timeout, work)
    if as_json:
        _print_json([_summary_json(summary) for summary in summaries])
        return
    if not summaries:
        console.print(f"no dead-letter topics on {bootstrap}")
        return
    table = Table(title=f"Dead-letter topics on {bootstrap}")
    # whole names, to copy into the next command; the group is the name's second-last part
    longest = max(len(summary.topic) for summary in summaries)
    table.add_column("Dead-letter topic", no_wrap=True, min_width=longest)
    table.add_column("Count", justify="right")
    table.add_column("Oldest (UTC)", no_wrap=True)
    table.add_column("Newest (UTC)", no_wrap=True)
    table.add_column("Top exceptions")
    for summary in summaries:
        table.add_row(
            summary.topic,
            f"{summary.count:,}",
            _time(summary.oldest),
            _time(summary.newest),
            ", ".join(f"{_short(e)} x{n}" for e, n in summary.top_exceptions),
            style="red" if summary.count else "dim",
        )
    console.print(table)


@app.command("show")
def show(
    topic: Topic,
    types: Types = None,
    keys: Keys = None,
    exceptions: Exceptions = None,
    since: Since = None,
    until: Until = None,
    partition: Partition = None,
    offset: Offset = None,
    from_offset: FromOffset = None,
    to_offset: ToOffset = None,
    limit: Annotated[int, typer.Option(min=1, help="show at most this many")] = 10,
    as_json: AsJson = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Headers and pretty payload of the matching dead letters, oldest offset first."""
    where = _filter(
        types, keys, exceptions, since, until, partition, offset, from_offset, to_offset
    )

    async def work(dlq: DeadLetterQueue) -> list[DeadLetter]:
        return await dlq.read(topic, where)

    letters = _run(bootstrap, timeout, work)
    if not letters:
        _fail(f"no dead letter in {topic} matches ({_criteria(where)})", EXIT_NOTHING_MATCHES)
    shown = letters[:limit]
    if as_json:
        _print_json([_letter_json(letter) for letter in shown])
        return
    for letter in shown:
        console.print(_letter_panel(letter))
    more = f" (first {len(shown)}; raise --limit for more)" if len(shown) < len(letters) else ""
    console.print(f"{_letters(len(letters))} matching{more}")


@app.command("replay")
def replay(
    topic: Topic,
    types: Types = None,
    keys: Keys = None,
    exceptions: Exceptions = None,
    since: Since = None,
    until: Until = None,
    partition: Partition = None,
    offset: Offset = None,
    from_offset: FromOffset = None,
    to_offset: ToOffset = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="replay at most this many (oldest first)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="show what would be replayed; send and record nothing")
    ] = False,
    rate: Annotated[float, typer.Option(min=0.01, help="messages per second at most")] = 50.0,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            envvar="USER",
            help="who replays, for the audit trail [default: $USER or the login name]",
        ),
    ] = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Send the matching dead letters to <topic>.<group>.retry: only the failed group sees them.

    The group's inbox makes a replay idempotent: a message that meanwhile succeeded, or is
    replayed twice, is applied once. A message that fails again lands in the same dead-letter
    topic with fresh headers.
    """
    where = _filter(
        types, keys, exceptions, since, until, partition, offset, from_offset, to_offset
    )
    operator = (by or "").strip() or _login()
    if not operator:
        raise typer.BadParameter("say who replays (no $USER, no login name)", param_hint="--by")

    async def work(dlq: DeadLetterQueue) -> ReplayReport:
        with console.status(f"replaying from {topic} at most {rate:g}/s"):
            return await dlq.replay(
                topic,
                where,
                replayed_by=operator,
                rate_per_second=rate,
                dry_run=dry_run,
                limit=limit,
            )

    report = _run(bootstrap, timeout, work)
    if not report.letters:
        _fail(f"no dead letter in {topic} matches ({_criteria(where)})", EXIT_NOTHING_MATCHES)
    verb = "would replay" if report.dry_run else "replayed"
    console.print(_letters_table(report.letters, f"{verb} to {report.target_topic}"))
    if report.dry_run:
        console.print(
            f"dry run: {verb} {_letters(len(report.letters))} ({_criteria(where)}); "
            "nothing sent, nothing recorded"
        )
    else:
        console.print(
            f"{verb} {_letters(len(report.letters))} to {report.target_topic} "
            f"as replay {report.replay_id} by {report.replayed_by} ({_criteria(where)})"
        )


@app.command("replays")
def replays(
    topic: Annotated[
        str | None, typer.Argument(help="only replays of this dead-letter topic")
    ] = None,
    as_json: AsJson = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """The replay audit trail (payrail.dlq-replays): who replayed what, when, with which filter."""

    async def work(dlq: DeadLetterQueue) -> list[ReplayRecord]:
        return await dlq.replays(topic)

    records = _run(bootstrap, timeout, work)
    if as_json:
        _print_json([asdict(r) | {"replayed_at": format_time(r.replayed_at)} for r in records])
        return
    if not records:
        console.print("no replays recorded" + (f" for {topic}" if topic else ""))
        return
    runs: dict[str, list[ReplayRecord]] = {}
    for record in records:
        runs.setdefault(record.replay_id, []).append(record)
    table = Table(title="Dead-letter replays")
    table.add_column("Replayed at")
    table.add_column("By")
    table.add_column("Dead-letter topic", overflow="fold")
    table.add_column("Messages", justify="right")
    table.add_column("Keys", overflow="fold")
    table.add_column("Filter", overflow="fold")
    table.add_column("Replay id", overflow="fold")
    for replay_id, run in runs.items():
        first = run[0]
        keys = sorted({r.key for r in run})
        table.add_row(
            _time(first.replayed_at),
            first.replayed_by,
            first.dead_letter_topic,
            str(len(run)),
            ", ".join(keys[:5]) + (f" (+{len(keys) - 5})" if len(keys) > 5 else ""),
            json.dumps(first.filter) if first.filter else "-",
            replay_id,
        )
    console.print(table)


def _before(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise typer.BadParameter(f"{text!r}: expected PARTITION:OFFSET", param_hint="--before")
    return int(partition), int(offset)


@app.command("purge")
def purge(
    topic: Topic,
    before: Annotated[
        list[str] | None,
        typer.Option(
            help="PARTITION:OFFSET - delete only that partition's letters below OFFSET; repeatable"
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Delete dead letters for good (all of them, or per partition below an offset).

    Exactly the letters counted in the confirmation are deleted: one dead-lettered meanwhile
    stays.
    """
    bounds = dict(_before(text) for text in before or [])

    async def count(dlq: DeadLetterQueue) -> list[DeadLetter]:
        return await dlq.read(topic)

    doomed = [
        letter
        for letter in _run(bootstrap, timeout, count)
        if not bounds or letter.offset < bounds.get(letter.partition, 0)
    ]
    if not doomed:
        console.print(f"nothing to purge in {topic}")
        return
    if not yes:
        typer.confirm(
            f"Delete {_letters(len(doomed))} from {topic}? This cannot be undone", abort=True
        )
    # the snapshot, not "everything": a letter that arrived after the count survives
    below: dict[int, int] = {}
    for letter in doomed:
        below[letter.partition] = max(below.get(letter.partition, 0), letter.offset + 1)

    async def delete(dlq: DeadLetterQueue) -> dict[int, int]:
        return await dlq.purge(topic, before_offsets=below)

    deleted = _run(bootstrap, timeout, delete)
    total = sum(deleted.values())
    parts = ", ".join(f"partition {p}: {n}" for p, n in sorted(deleted.items()))
    console.print(f"purged {_letters(total)} from {topic} ({parts})")
