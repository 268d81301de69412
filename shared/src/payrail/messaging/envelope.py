"""The CloudEvents 1.0 envelope of every payrail message (Kafka protocol binding, binary mode).

Attributes travel as ``ce_*`` headers and the payload is the JSON body, so a consumer can route
and deduplicate (``ce_id``) without parsing the body, and tools that do not know payrail still
read plain JSON. A W3C ``traceparent`` header carries the trace across services.

:func:`decode` is strict: anything it cannot turn into a valid, registered event raises
:class:`PoisonMessage`, which the consumer dead-letters at once instead of retrying, because no
amount of retrying makes a malformed message well-formed.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, NamedTuple, Protocol, TypeVar

from opentelemetry import trace
from pydantic import BaseModel, ValidationError

from payrail.contracts.registry import UnknownEventType, contract_for

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

H_SPECVERSION = "ce_specversion"
H_ID = "ce_id"
H_TYPE = "ce_type"
H_SOURCE = "ce_source"
H_TIME = "ce_time"
H_SUBJECT = "ce_subject"
H_CONTENT_TYPE = "content-type"
H_TRACEPARENT = "traceparent"

_REQUIRED = (H_SPECVERSION, H_ID, H_TYPE, H_SOURCE, H_TIME, H_CONTENT_TYPE)
_TRACEPARENT = re.compile(
    r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$"
)

T = TypeVar("T", bound=BaseModel, covariant=True)
M = TypeVar("M", bound=BaseModel)


class PoisonMessage(Exception):
    """A message that can never be handled: undecodable, incomplete, unknown or schema-invalid.

    The text names what is wrong without quoting payload values (they may be personal data).
    """


@dataclass(frozen=True, slots=True)
class Envelope(Generic[T]):
    """One event: CloudEvents context attributes plus a typed payload (``data``)."""

    id: str
    type: str
    source: str
    time: datetime
    data: T
    subject: str | None = None
    traceparent: str | None = None
    specversion: str = SPECVERSION

    @staticmethod
    def create(
        type: str,
        source: str,
        data: M,
        *,
        id: str | None = None,
        subject: str | None = None,
        time: datetime | None = None,
        traceparent: str | None = None,
    ) -> Envelope[M]:
        """Build an envelope for a new event, checking ``data`` against ``type``'s contract.

        ``id`` defaults to a random UUID; pass a deterministic one when the same real-world
        event may be produced twice (a gateway event id), so consumers deduplicate it.
        ``traceparent`` defaults to the active trace (see :func:`current_traceparent`).
        """
        model = contract_for(type)
        if not isinstance(data, model):
            raise TypeError(
                f"ce_type {type!r} carries {model.__name__}, not {data.__class__.__name__}"
            )
        moment = time or datetime.now(UTC)
        if moment.tzinfo is None:
            raise ValueError("ce_time must be timezone-aware")
        if not source:
            raise ValueError("ce_source must not be empty")
        return Envelope(
            id=id or str(uuid.uuid4()),
            type=type,
            source=source,
            time=moment,
            data=data,
            subject=subject,
            traceparent=traceparent or current_traceparent(),
        )


class EncodedRecord(NamedTuple):
    """What goes to Kafka: the record key, value and headers."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class RecordLike(Protocol):
    """The part of a Kafka record :func:`decode` reads (aiokafka's ``ConsumerRecord`` fits)."""

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the active span (or the trace a consumer continued), else a
    fresh trace id, so that every event can be followed across services.

    Fresh ids come from :func:`random.getrandbits`, as in OpenTelemetry's own id generator: they
    must be unique, not secret, and two ``os.urandom`` calls per event were measurable.
    """
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    # W3C forbids all-zero ids; ``or 1`` keeps a 2**-128 (2**-64) draw valid
    trace_id = random.getrandbits(128) or 1
    span_id = random.getrandbits(64) or 1
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, as CloudEvents expects for ``time``."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


_CONTENT_TYPE_HEADER = (H_CONTENT_TYPE, CONTENT_TYPE.encode())


def encode(envelope: Envelope[BaseModel], key: str) -> EncodedRecord:
    """Serialize ``envelope`` for Kafka (binary mode); ``key`` is the partition key."""
    headers = [
        (H_SPECVERSION, envelope.specversion.encode()),
        (H_ID, envelope.id.encode()),
        (H_TYPE, envelope.type.encode()),
        (H_SOURCE, envelope.source.encode()),
        (H_TIME, format_time(envelope.time).encode()),
        _CONTENT_TYPE_HEADER,
    ]
    if envelope.subject is not None:
        headers.append((H_SUBJECT, envelope.subject.encode()))
    if envelope.traceparent is not None:
        headers.append((H_TRACEPARENT, envelope.traceparent.encode()))
    return EncodedRecord(
        key=key.encode(),
        value=envelope.data.__pydantic_serializer__.to_json(envelope.data),
        headers=headers,
    )


def decode(record: RecordLike) -> Envelope[BaseModel]:
    """Parse and validate a consumed record; raises :class:`PoisonMessage` when it is not a valid
    payrail event (missing or malformed ``ce_*`` headers, unknown ``ce_type``, invalid body)."""
    attributes = _attributes(record.headers)
    for name in _REQUIRED:
        if not attributes.get(name):
            raise PoisonMessage(f"missing required header {name!r}")
    if attributes[H_SPECVERSION] != SPECVERSION:
        raise PoisonMessage(f"unsupported ce_specversion {attributes[H_SPECVERSION]!r}")
    media_type = attributes[H_CONTENT_TYPE].split(";", 1)[0].strip().lower()
    if media_type != CONTENT_TYPE:
        raise PoisonMessage(f"unsupported content-type {media_type!r}")
    try:
        moment = datetime.fromisoformat(attributes[H_TIME])
    except ValueError:
        raise PoisonMessage("ce_time is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise PoisonMessage("ce_time has no UTC offset")
    try:
        model = contract_for(attributes[H_TYPE])
    except UnknownEventType as exc:
        raise PoisonMessage(str(exc)) from None
    if record.value is None:
        raise PoisonMessage("the record has no body")
    try:
        data = model.model_validate_json(record.value)
    except ValidationError as exc:
        raise PoisonMessage(_describe(attributes[H_TYPE], exc)) from None
    traceparent = attributes.get(H_TRACEPARENT)
    return Envelope(
        id=attributes[H_ID],
        type=attributes[H_TYPE],
        source=attributes[H_SOURCE],
        time=moment,
        data=data,
        subject=attributes.get(H_SUBJECT),
        # an invalid traceparent restarts the trace (W3C), it does not make the event invalid
        traceparent=traceparent if traceparent and _TRACEPARENT.match(traceparent) else None,
    )


def _attributes(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    """The CloudEvents headers as text; a duplicated or non-UTF-8 one is poison."""
    wanted = {*_REQUIRED, H_SUBJECT, H_TRACEPARENT}
    found: dict[str, str] = {}
    for name, raw in headers:
        if name not in wanted:
            continue
        if name in found:
            raise PoisonMessage(f"header {name!r} appears more than once")
        try:
            found[name] = raw.decode("utf-8")
        except (UnicodeDecodeError, AttributeError):
            raise PoisonMessage(f"header {name!r} is not UTF-8 text") from None
    return found


def _describe(ce_type: str, exc: ValidationError) -> str:
    """A validation failure without the offending values (which may be personal data)."""
    problems: list[str] = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = ".".join(str(part) for part in error["loc"]) or "<body>"
        problems.append(f"{location}: {error['msg']}")
    return f"body is not a valid {ce_type}: " + "; ".join(problems[:10])
