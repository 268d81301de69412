"""The CloudEvents envelope: what goes on the wire, and what decode accepts or calls poison."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from payrail.contracts import (
    PAYMENT_INTENT_REQUESTED,
    GatewayEvent,
    GatewayEventKind,
    PaymentIntentRequested,
    gateway_event_type,
)
from payrail.messaging.envelope import EncodedRecord, Envelope, PoisonMessage, decode, encode

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def intent(**changes: object) -> PaymentIntentRequested:
    fields: dict[str, object] = {
        "payment_id": "pay_1",
        "amount": 1999,
        "currency": "usd",
        "user_id": "u_1",
        "sku": "pro-monthly",
        "gateway": "stripe",
        "metadata": {"order": "o-7"},
    }
    return PaymentIntentRequested.model_validate({**fields, **changes})


def record(encoded: EncodedRecord) -> SimpleNamespace:
    return SimpleNamespace(key=encoded.key, value=encoded.value, headers=encoded.headers)


def test_encode_writes_cloudevents_binary_mode_headers_and_a_json_body() -> None:
    at = datetime(2026, 11, 25, 10, 30, 0, 123000, tzinfo=timezone(timedelta(hours=2)))
    envelope = Envelope.create(
        PAYMENT_INTENT_REQUESTED,
        "/payrail/checkout",
        intent(),
        id="evt-1",
        subject="pay_1",
        time=at,
    )
    key, value, headers = encode(envelope, "pay_1")
    found = dict(headers)
    assert key == b"pay_1"
    assert found["ce_specversion"] == b"1.0"
    assert found["ce_id"] == b"evt-1"
    assert found["ce_type"] == b"payment.intent.requested"
    assert found["ce_source"] == b"/payrail/checkout"
    assert found["ce_time"] == b"2026-11-25T08:30:00.123000Z"
    assert found["ce_subject"] == b"pay_1"
    assert found["content-type"] == b"application/json"
    assert TRACEPARENT.match(found["traceparent"].decode())
    assert PaymentIntentRequested.model_validate_json(value) == intent()


def test_decode_returns_the_typed_event_that_was_encoded() -> None:
    envelope = Envelope.create(PAYMENT_INTENT_REQUESTED, "/payrail/checkout", intent())
    decoded = decode(record(encode(envelope, "pay_1")))
    assert decoded == envelope
    assert isinstance(decoded.data, PaymentIntentRequested)
    assert decoded.data.currency == "USD"


def test_gateway_events_travel_under_their_kind() -> None:
    event = GatewayEvent(
        gateway="stripe",
        gateway_event_id="evt_123",
        kind=GatewayEventKind.PAYMENT_SUCCEEDED,
        payment_id="pay_1",
        amount=1999,
        currency="USD",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    ce_type = gateway_event_type(event.kind)
    envelope = Envelope.create(ce_type, "/payrail/webhook-ingest/stripe", event, id=event.ce_id)
    decoded = decode(record(encode(envelope, event.partition_key)))
    assert decoded.type == "gateway.payment.succeeded"
    assert decoded.id == "stripe:evt_123"
    assert decoded.data == event


def test_the_active_trace_is_continued() -> None:
    context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
    )
    with trace.use_span(NonRecordingSpan(context)):
        envelope = Envelope.create(PAYMENT_INTENT_REQUESTED, "/payrail/checkout", intent())
    assert envelope.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_create_refuses_a_payload_of_the_wrong_contract_or_a_naive_time() -> None:
    with pytest.raises(TypeError):
        Envelope.create("payment.succeeded", "/payrail/checkout", intent())
    with pytest.raises(ValueError, match="timezone"):
        Envelope.create(PAYMENT_INTENT_REQUESTED, "/x", intent(), time=datetime(2026, 1, 1))


def _poison(mutate: dict[str, bytes | None], value: bytes | None = None) -> SimpleNamespace:
    good = encode(Envelope.create(PAYMENT_INTENT_REQUESTED, "/x", intent()), "pay_1")
    headers = {**dict(good.headers), **mutate}
    return SimpleNamespace(
        key=good.key,
        value=good.value if value is None else value,
        headers=[(k, v) for k, v in headers.items() if v is not None],
    )


@pytest.mark.parametrize(
    ("poison", "reason"),
    [
        (_poison({"ce_id": None}), "missing required header 'ce_id'"),
        (_poison({"ce_specversion": b"0.3"}), "unsupported ce_specversion"),
        (_poison({"content-type": b"application/avro"}), "unsupported content-type"),
        (_poison({"ce_time": b"yesterday"}), "RFC 3339"),
        (_poison({"ce_time": b"2026-01-01T00:00:00"}), "no UTC offset"),
        (_poison({"ce_type": b"payment.teleported"}), "no contract registered"),
        (_poison({"ce_source": b"\xff"}), "not UTF-8"),
        (_poison({}, value=b"{oops"), "not a valid payment.intent.requested"),
        (_poison({}, value=b'{"payment_id": "p", "amount": 19.99}'), "amount"),
    ],
)
def test_decode_calls_poison_what_it_cannot_trust(poison: SimpleNamespace, reason: str) -> None:
    with pytest.raises(PoisonMessage, match=re.escape(reason)):
        decode(poison)


def test_a_duplicated_attribute_header_is_poison() -> None:
    poison = _poison({})
    poison.headers.append(("ce_type", b"payment.intent.requested"))
    with pytest.raises(PoisonMessage, match="more than once"):
        decode(poison)


def test_poison_reasons_do_not_quote_payload_values() -> None:
    body = b'{"payment_id": "p", "amount": 19.99, "currency": "USD", "user_id": "secret-user"}'
    with pytest.raises(PoisonMessage) as caught:
        decode(_poison({}, value=body))
    assert "19.99" not in str(caught.value)
    assert "secret-user" not in str(caught.value)


def test_a_content_type_with_parameters_and_an_invalid_traceparent_are_tolerated() -> None:
    decoded = decode(
        _poison({"content-type": b"application/json; charset=utf-8", "traceparent": b"garbage"})
    )
    assert decoded.traceparent is None
    assert decoded.data == intent()
