"""Standard Webhooks: the generic signed-webhook scheme for any gateway or internal source.

Signature (https://www.standardwebhooks.com/, symmetric ``v1``): three headers,
``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``, a space-separated
list of ``<version>,<base64>``; each ``v1`` value is the base64 HMAC-SHA256 of
``"<webhook-id>.<webhook-timestamp>.<raw body>"``. Secrets are ``whsec_<base64 key>`` (the
prefix is optional); any configured secret matching any ``v1`` verifies, and the timestamp must
be within five minutes of now in either direction. Other versions (``v1a``, asymmetric) are
ignored, so a header carrying only those does not verify.

Payload: payrail's own, documented small JSON, so a source needs no payrail code to speak it::

    {
      "type": "payment.succeeded",          # a GatewayEventKind value; other types -> ignored
      "timestamp": "2025-03-01T12:00:00Z",  # optional: when it happened (default: the
                                            #   webhook-timestamp header)
      "data": {
        "payment_id": "pay_123",            # payrail's id; payment_id or gateway_payment_id
        "gateway_payment_id": "ext_987",    #   (at least one) routes the event
        "gateway_refund_id": null,          # optional
        "gateway_dispute_id": null,         # optional
        "amount": 1999,                     # integer minor units, with currency or neither
        "currency": "USD",
        "amount_refunded": null,            # optional cumulative refunded amount, minor units
        "failure_code": null,               # optional
        "failure_message": null             # optional
      }
    }

Unknown fields in ``data`` are ignored (sources may send more). ``gateway_event_id`` is the
``webhook-id`` header: it is signed, and Standard Webhooks keeps it stable across retries, which
is exactly what dedup needs. ``gateway`` is ``standardwebhooks`` unless the family building the
verifier names itself (a plugin gateway that speaks this scheme keeps its own name in ce_ids).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timedelta

from payrail.gateways.base import (
    GatewayAccountConfig,
    MalformedPayload,
    SignatureInvalid,
    WebhookVerifier,
)
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.gateways.signing import (
    Clock,
    EventStamp,
    JsonObject,
    any_match,
    ascii_bytes,
    check_tolerance,
    currency,
    decode_secrets,
    from_iso,
    from_unix,
    hmac_sha256,
    obj,
    opt_int,
    opt_str,
    parse_json_object,
    req_str,
    require_header,
    unix_seconds,
    utc_now,
)

GATEWAY = "standardwebhooks"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
DEFAULT_TOLERANCE = timedelta(minutes=5)
KEY_PREFIX = "whsec_"

_KINDS = {kind.value: kind for kind in GatewayEventKind}


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (unpadded base64 is accepted, like the
    reference libraries do)."""
    encoded = secret.removeprefix(KEY_PREFIX)
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


class StandardWebhooksVerifier(WebhookVerifier):
    """Verifies a Standard Webhooks ``v1`` signature and reads payrail's generic payload."""

    def __init__(
        self,
        config: GatewayAccountConfig,
        *,
        account: str,
        gateway: str = GATEWAY,
        tolerance: timedelta = DEFAULT_TOLERANCE,
        clock: Clock = utc_now,
    ) -> None:
        self._keys = decode_secrets(config.webhook_secrets, gateway=gateway, decode=decode_secret)
        self._account = account
        self._gateway = gateway
        self._tolerance = tolerance
        self._clock = clock

    async def verify(self, headers: Mapping[str, str], body: bytes) -> list[GatewayEvent]:
        message_id = require_header(headers, ID_HEADER)
        raw_timestamp = require_header(headers, TIMESTAMP_HEADER)
        provided = [
            ascii_bytes(signature)
            for version, _, signature in (
                item.partition(",") for item in require_header(headers, SIGNATURE_HEADER).split()
            )
            if version == "v1"
        ]
        try:
            timestamp = unix_seconds(raw_timestamp)
        except ValueError:
            raise SignatureInvalid("webhook-timestamp is malformed") from None
        signed = f"{message_id}.{timestamp}.".encode() + body
        expected = [base64.b64encode(hmac_sha256(key, signed)) for key in self._keys]
        if not any_match(expected, provided):
            raise SignatureInvalid()
        check_tolerance(timestamp, now=self._clock(), tolerance=self._tolerance)
        return normalize(
            parse_json_object(body),
            gateway=self._gateway,
            account=self._account,
            message_id=message_id,
            sent_at=from_unix(timestamp),
        )


def normalize(
    payload: JsonObject, *, gateway: str, account: str, message_id: str, sent_at: datetime
) -> list[GatewayEvent]:
    """The payrail event described by a verified generic payload (``[]`` for unknown types)."""
    kind = _KINDS.get(req_str(payload, "type"))
    if kind is None:
        return []
    data = obj(payload, "data")
    payment_id = opt_str(data, "payment_id")
    gateway_payment_id = opt_str(data, "gateway_payment_id")
    if payment_id is None and gateway_payment_id is None:
        raise MalformedPayload("data needs payment_id or gateway_payment_id")
    amount = opt_int(data, "amount")
    code = data.get("currency")
    if (amount is None) != (code is None):
        raise MalformedPayload("data.amount and data.currency go together")
    occurred = opt_str(payload, "timestamp")
    stamp = EventStamp(
        gateway=gateway,
        account=account,
        gateway_event_id=message_id,
        occurred_at=sent_at if occurred is None else from_iso(occurred),
        raw=payload,
    )
    return [
        stamp.event(
            kind,
            payment_id=payment_id,
            gateway_payment_id=gateway_payment_id,
            gateway_refund_id=opt_str(data, "gateway_refund_id"),
            gateway_dispute_id=opt_str(data, "gateway_dispute_id"),
            amount=amount,
            currency=None if code is None else currency(code),
            amount_refunded=opt_int(data, "amount_refunded"),
            failure_code=opt_str(data, "failure_code"),
            failure_message=opt_str(data, "failure_message"),
        )
    ]
