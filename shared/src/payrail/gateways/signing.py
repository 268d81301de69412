"""Plumbing shared by every webhook verifier: headers, HMAC, timestamps, verified payloads.

The rules every verifier follows live here once, so no gateway gets them subtly wrong:

* headers are looked up case-insensitively (ASGI lower-cases them, test code and proxies may not);
* every configured secret is tried (rotation: old and new verify at the same time) and every
  candidate signature is compared with :func:`hmac.compare_digest`, without stopping at the first
  match, so timing reveals neither which secret nor which signature matched;
* error messages are fixed strings: they never carry a secret, a computed signature, or the
  attacker-controlled header they were derived from;
* JSON is read only after the signature verified, and reading a verified payload goes through the
  typed accessors below, which turn any unexpected shape into :class:`MalformedPayload` instead
  of a ``KeyError`` deep inside a normalizer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import SecretStr
from pydantic_core import from_json

from payrail.gateways.base import MalformedPayload, SignatureMissing, TimestampOutOfTolerance
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.money import CurrencyError, Money, normalize_currency

JsonObject = dict[str, Any]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock of every verifier (tests inject their own)."""
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------ headers


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` matched case-insensitively, or None when absent or blank."""
    wanted = name.lower()
    value = headers.get(wanted)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    if value is None or not value.strip():
        return None
    return value.strip()


def require_header(headers: Mapping[str, str], name: str) -> str:
    """Like :func:`header`, but a missing signature-related header is :class:`SignatureMissing`."""
    value = header(headers, name)
    if value is None:
        raise SignatureMissing(f"{name} header is missing")
    return value


# ------------------------------------------------------------------------------------ secrets


def decode_secrets(
    secrets: Sequence[SecretStr], *, gateway: str, decode: Callable[[str], bytes] = str.encode
) -> list[bytes]:
    """The HMAC keys of every configured secret, decoded once when the verifier is built.

    Raises ValueError (naming the secret's position, never its value) for a secret ``decode``
    rejects or for an account with no secret at all: that is a configuration error to fail on at
    start-up, not a reason to reject every webhook at run time.
    """
    keys: list[bytes] = []
    for position, secret in enumerate(secrets, start=1):
        try:
            key = decode(secret.get_secret_value().strip())
        except ValueError:  # binascii.Error is a ValueError
            raise ValueError(f"{gateway} webhook secret #{position} is malformed") from None
        if not key:
            raise ValueError(f"{gateway} webhook secret #{position} is empty")
        keys.append(key)
    if not keys:
        raise ValueError(f"{gateway} account has no webhook secret configured")
    return keys


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    # hmac.digest is the one-shot C implementation (hmac.new builds a Python HMAC object first)
    return hmac.digest(key, message, hashlib.sha256)


def ascii_bytes(text: str) -> bytes:
    """Bytes of an attacker-supplied signature for comparison.

    :func:`hmac.compare_digest` refuses non-ASCII ``str``; encoding with replacement keeps such a
    header comparable (and unequal) instead of crashing the verifier.
    """
    return text.encode("ascii", errors="replace")


def any_match(expected: Iterable[bytes], provided: Sequence[bytes]) -> bool:
    """True when any provided signature equals any expected one.

    Every pair is compared in constant time and the loop never exits early, so the time taken
    depends only on the number of secrets and signatures, not on which of them matched.
    """
    matched = False
    for candidate in expected:
        for signature in provided:
            matched |= hmac.compare_digest(candidate, signature)
    return matched


# --------------------------------------------------------------------------------- timestamps


def unix_seconds(value: str) -> int:
    """Parse a signed Unix-seconds timestamp; callers map ValueError to their own rejection."""
    if not value.isascii() or not value.isdigit():
        raise ValueError("not a Unix timestamp")
    return int(value)


def check_tolerance(signed_at: int, *, now: datetime, tolerance: timedelta) -> None:
    """Reject a signed timestamp further than ``tolerance`` from ``now`` in either direction.

    Checked after the signature, so a stale rejection always means an authentic message that is
    old (a replay) or a clock that drifted, which is what the metric should say.
    """
    if abs(now.timestamp() - signed_at) > tolerance.total_seconds():
        raise TimestampOutOfTolerance()


# ---------------------------------------------------------------------------- verified payloads


def parse_json_object(body: bytes) -> JsonObject:
    """The body as a JSON object; anything else is :class:`MalformedPayload`.

    pydantic-core's parser reads a webhook in half the time of :func:`json.loads` and yields the
    same objects; what it refuses (a UTF-8 BOM, UTF-16, lone surrogates) goes to
    :func:`json.loads`, so what is accepted is exactly what it was with :func:`json.loads` alone.
    """
    try:
        parsed = from_json(body)
    except ValueError:
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise MalformedPayload("body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise MalformedPayload("body is not a JSON object")
    return parsed


def obj(parent: Mapping[str, Any], key: str) -> JsonObject:
    """A nested object; missing or null reads as ``{}`` (gateways omit empty objects)."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedPayload(f"{key} is not an object")
    return value


def opt_str(parent: Mapping[str, Any], key: str) -> str | None:
    """A string field, None when missing, null or empty."""
    value = parent.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedPayload(f"{key} is not a string")
    return value


def req_str(parent: Mapping[str, Any], key: str) -> str:
    value = opt_str(parent, key)
    if value is None:
        raise MalformedPayload(f"{key} is missing")
    return value


def opt_int(parent: Mapping[str, Any], key: str) -> int | None:
    """A non-negative integer field (minor units, Unix seconds); floats, booleans and negative
    numbers are malformed."""
    value = parent.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedPayload(f"{key} is not a non-negative integer")
    return value


def req_int(parent: Mapping[str, Any], key: str) -> int:
    value = opt_int(parent, key)
    if value is None:
        raise MalformedPayload(f"{key} is missing")
    return value


def notes_value(container: Mapping[str, Any], notes_key: str, key: str) -> str | None:
    """A string from a free-form notes/metadata object.

    Some gateways (Razorpay) send an empty notes object as ``[]``; that reads as no value.
    """
    notes = container.get(notes_key)
    if not isinstance(notes, dict):
        return None
    value = notes.get(key)
    return value if isinstance(value, str) and value else None


def currency(code: object) -> str:
    """An upper-cased, known ISO 4217 code."""
    if not isinstance(code, str):
        raise MalformedPayload("currency is not a string")
    try:
        return normalize_currency(code)
    except CurrencyError:
        raise MalformedPayload("currency is not a known ISO 4217 code") from None


def minor_units_from_major(value: object, code: object) -> Money:
    """Exact minor units from a decimal string in major units ("19.99" USD -> 1999)."""
    if not isinstance(value, str):
        raise MalformedPayload("amount value is not a decimal string")
    iso = currency(code)
    try:
        return Money.from_major(Decimal(value), iso)
    except (ArithmeticError, CurrencyError):  # InvalidOperation, Infinity -> OverflowError
        raise MalformedPayload("amount value does not fit the currency") from None


def from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def from_iso(text: str) -> datetime:
    """An ISO 8601 instant (``Z`` or an offset); naive times are malformed, not guessed."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedPayload("timestamp is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise MalformedPayload("timestamp has no time zone")
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class EventStamp:
    """What every event normalized from one verified webhook shares.

    A normalizer reads the gateway's envelope once into a stamp, then only decides the
    event-specific fields (kind, ids, amounts) with :meth:`event`.
    """

    gateway: str
    account: str
    gateway_event_id: str
    occurred_at: datetime
    raw: JsonObject

    def event(self, kind: GatewayEventKind, **fields: Any) -> GatewayEvent:
        return GatewayEvent(
            gateway=self.gateway,
            account=self.account,
            gateway_event_id=self.gateway_event_id,
            kind=kind,
            occurred_at=self.occurred_at,
            raw=self.raw,
            **fields,
        )
