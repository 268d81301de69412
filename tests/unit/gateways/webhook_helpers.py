"""Helpers shared by the webhook verifier tests: a fixed clock and rejection assertions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from payrail.gateways.base import (
    MalformedPayload,
    SignatureInvalid,
    SignatureMissing,
    TimestampOutOfTolerance,
    WebhookRejected,
    WebhookVerifier,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)

#: The metric labels webhook-ingest counts rejections by: they must not drift.
REASONS: dict[type[WebhookRejected], str] = {
    SignatureInvalid: "invalid_signature",
    SignatureMissing: "missing_signature",
    TimestampOutOfTolerance: "stale_timestamp",
    MalformedPayload: "malformed_payload",
}


def fixed_clock() -> datetime:
    return NOW


async def assert_rejected(
    verifier: WebhookVerifier,
    headers: Mapping[str, str],
    body: bytes,
    error: type[WebhookRejected],
    *never_shown: str,
) -> WebhookRejected:
    """The webhook is rejected with ``error`` and its stable reason, and nothing the error
    says contains any of ``never_shown`` (secrets, expected signatures)."""
    with pytest.raises(error) as info:
        await verifier.verify(headers, body)
    assert info.value.reason == REASONS[error]
    shown = f"{info.value} {info.value!r} {info.value.args!r}"
    for secret in never_shown:
        assert secret not in shown
    return info.value
