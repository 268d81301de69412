"""Stripe webhooks: ``Stripe-Signature`` verification and normalization of Stripe events.

Signature (https://docs.stripe.com/webhooks#verify-manually): the header is
``t=<unix seconds>,v1=<hex>[,v1=<hex>...]``; each ``v1`` is the hex HMAC-SHA256 of
``"<t>.<raw body>"`` keyed with the endpoint secret (the whole ``whsec_...`` string, as bytes).
Stripe sends one ``v1`` per active secret while an endpoint secret is being rolled, and payrail
may itself hold several secrets per account, so any configured secret matching any ``v1``
verifies. ``t`` is signed, so checking it against the tolerance (300 s by default, both
directions) stops replays of old captured requests.

Normalization (``gateway_event_id`` = the ``evt_...`` id, ``occurred_at`` = the event's
``created``; amounts are already minor units, currencies are upper-cased):

==========================================  ===============================================
Stripe event                                payrail event
==========================================  ===============================================
payment_intent.succeeded                    payment.succeeded, amount = ``amount_received``
payment_intent.payment_failed               payment.failed, from ``last_payment_error``
payment_intent.canceled                     payment.canceled, failure_code =
                                            ``cancellation_reason``
payment_intent.processing                   payment.processing
payment_intent.requires_action              payment.requires_action
payment_intent.amount_capturable_updated    payment.authorized (manual capture; checkout
                                            captures), amount = ``amount_capturable``
charge.refunded                             refund.succeeded, ``amount_refunded`` = the
                                            charge's cumulative refunded amount
                                            (authoritative); amount and refund id from the
                                            newest refund when the event embeds them
refund.failed                               refund.failed, failure_code = ``failure_reason``
charge.dispute.created                      dispute.opened
charge.dispute.closed                       dispute.won (status ``won`` or
                                            ``warning_closed``) / dispute.lost (``lost``)
==========================================  ===============================================

``payment_id`` is ``metadata.payrail_payment_id`` of the PaymentIntent (checkout sets it), of the
charge for charge events, of the refund / dispute for those; ``gateway_payment_id`` is always
the PaymentIntent id (the charge id only for a charge made without one). Every other verified
event type normalizes to ``[]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from payrail.gateways.base import GatewayAccountConfig, SignatureInvalid, WebhookVerifier
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
    from_unix,
    hmac_sha256,
    notes_value,
    obj,
    opt_int,
    opt_str,
    parse_json_object,
    req_int,
    req_str,
    require_header,
    unix_seconds,
    utc_now,
)

GATEWAY = "stripe"
SIGNATURE_HEADER = "Stripe-Signature"
DEFAULT_TOLERANCE = timedelta(seconds=300)
PAYMENT_ID_KEY = "payrail_payment_id"


def parse_signature_header(value: str) -> tuple[int, list[str]]:
    """``(t, [v1, ...])`` from a ``Stripe-Signature`` value; other schemes (``v0``) are ignored."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in value.split(","):
        key, sep, part = item.strip().partition("=")
        if not sep:
            continue
        if key == "t" and timestamp is None:
            try:
                timestamp = unix_seconds(part)
            except ValueError:
                raise SignatureInvalid("Stripe-Signature timestamp is malformed") from None
        elif key == "v1":
            signatures.append(part)
    if timestamp is None:
        raise SignatureInvalid("Stripe-Signature has no timestamp")
    if not signatures:
        raise SignatureInvalid("Stripe-Signature has no v1 signature")
    return timestamp, signatures


class StripeWebhookVerifier(WebhookVerifier):
    """Verifies ``Stripe-Signature`` over the raw body and normalizes the event."""

    def __init__(
        self,
        config: GatewayAccountConfig,
        *,
        account: str,
        tolerance: timedelta = DEFAULT_TOLERANCE,
        clock: Clock = utc_now,
    ) -> None:
        self._keys = decode_secrets(config.webhook_secrets, gateway=GATEWAY)
        self._account = account
        self._tolerance = tolerance
        self._clock = clock

    async def verify(self, headers: Mapping[str, str], body: bytes) -> list[GatewayEvent]:
        timestamp, signatures = parse_signature_header(require_header(headers, SIGNATURE_HEADER))
        signed = b"%d." % timestamp + body
        expected = [hmac_sha256(key, signed).hex().encode() for key in self._keys]
        if not any_match(expected, [ascii_bytes(s) for s in signatures]):
            raise SignatureInvalid()
        check_tolerance(timestamp, now=self._clock(), tolerance=self._tolerance)
        return normalize(parse_json_object(body), account=self._account)


def normalize(event: JsonObject, *, account: str) -> list[GatewayEvent]:
    """payrail events for one verified Stripe event (``[]`` for types payrail does not use)."""
    stamp = EventStamp(
        gateway=GATEWAY,
        account=account,
        gateway_event_id=req_str(event, "id"),
        occurred_at=from_unix(req_int(event, "created")),
        raw=event,
    )
    handler = _HANDLERS.get(req_str(event, "type"))
    if handler is None:
        return []
    found = handler(stamp, obj(obj(event, "data"), "object"))
    return [] if found is None else [found]


def _money(source: Mapping[str, Any], amount_key: str = "amount") -> dict[str, Any]:
    return {"amount": req_int(source, amount_key), "currency": currency(source.get("currency"))}


def _intent(kind: GatewayEventKind) -> Callable[[EventStamp, JsonObject], GatewayEvent]:
    def handle(stamp: EventStamp, intent: JsonObject) -> GatewayEvent:
        fields: dict[str, Any] = {
            "payment_id": notes_value(intent, "metadata", PAYMENT_ID_KEY),
            "gateway_payment_id": req_str(intent, "id"),
            **_money(intent),
        }
        if kind is GatewayEventKind.PAYMENT_SUCCEEDED:
            # With partial capture (or localstripe, which omits it) amount_received may differ
            # from or be missing next to the authorized amount; what was received is what counts.
            received = opt_int(intent, "amount_received")
            if received:
                fields["amount"] = received
        elif kind is GatewayEventKind.PAYMENT_AUTHORIZED:
            fields["amount"] = opt_int(intent, "amount_capturable") or fields["amount"]
        elif kind is GatewayEventKind.PAYMENT_FAILED:
            error = obj(intent, "last_payment_error")
            fields["failure_code"] = opt_str(error, "decline_code") or opt_str(error, "code")
            fields["failure_message"] = opt_str(error, "message")
        elif kind is GatewayEventKind.PAYMENT_CANCELED:
            fields["failure_code"] = opt_str(intent, "cancellation_reason")
        return stamp.event(kind, **fields)

    return handle


def _payment_ref(source: JsonObject, fallback_key: str) -> str | None:
    """The PaymentIntent id an object belongs to, else its charge (pre-PaymentIntent charges)."""
    return opt_str(source, "payment_intent") or opt_str(source, fallback_key)


def _charge_refunded(stamp: EventStamp, charge: JsonObject) -> GatewayEvent:
    fields: dict[str, Any] = {
        "payment_id": notes_value(charge, "metadata", PAYMENT_ID_KEY),
        "gateway_payment_id": _payment_ref(charge, "id"),
        "amount_refunded": req_int(charge, "amount_refunded"),
        "currency": currency(charge.get("currency")),
    }
    # Since API version 2022-11-15 charges no longer embed their refunds; when they do, the
    # list is newest first and the newest is the refund this event announces.
    refunds = obj(charge, "refunds").get("data")
    if isinstance(refunds, list) and refunds and isinstance(refunds[0], dict):
        fields["gateway_refund_id"] = req_str(refunds[0], "id")
        fields["amount"] = req_int(refunds[0], "amount")
    return stamp.event(GatewayEventKind.REFUND_SUCCEEDED, **fields)


def _refund_failed(stamp: EventStamp, refund: JsonObject) -> GatewayEvent:
    return stamp.event(
        GatewayEventKind.REFUND_FAILED,
        payment_id=notes_value(refund, "metadata", PAYMENT_ID_KEY),
        gateway_payment_id=_payment_ref(refund, "charge"),
        gateway_refund_id=req_str(refund, "id"),
        failure_code=opt_str(refund, "failure_reason"),
        **_money(refund),
    )


def _dispute(stamp: EventStamp, dispute: JsonObject, kind: GatewayEventKind) -> GatewayEvent:
    return stamp.event(
        kind,
        payment_id=notes_value(dispute, "metadata", PAYMENT_ID_KEY),
        gateway_payment_id=_payment_ref(dispute, "charge"),
        gateway_dispute_id=req_str(dispute, "id"),
        **_money(dispute),
    )


_DISPUTE_OUTCOMES = {
    "won": GatewayEventKind.DISPUTE_WON,
    # An inquiry closed without becoming a chargeback: the merchant keeps the money.
    "warning_closed": GatewayEventKind.DISPUTE_WON,
    "lost": GatewayEventKind.DISPUTE_LOST,
}


def _dispute_closed(stamp: EventStamp, dispute: JsonObject) -> GatewayEvent | None:
    kind = _DISPUTE_OUTCOMES.get(opt_str(dispute, "status") or "")
    return None if kind is None else _dispute(stamp, dispute, kind)


_HANDLERS: dict[str, Callable[[EventStamp, JsonObject], GatewayEvent | None]] = {
    "payment_intent.succeeded": _intent(GatewayEventKind.PAYMENT_SUCCEEDED),
    "payment_intent.payment_failed": _intent(GatewayEventKind.PAYMENT_FAILED),
    "payment_intent.canceled": _intent(GatewayEventKind.PAYMENT_CANCELED),
    "payment_intent.processing": _intent(GatewayEventKind.PAYMENT_PROCESSING),
    "payment_intent.requires_action": _intent(GatewayEventKind.PAYMENT_REQUIRES_ACTION),
    "payment_intent.amount_capturable_updated": _intent(GatewayEventKind.PAYMENT_AUTHORIZED),
    "charge.refunded": _charge_refunded,
    "refund.failed": _refund_failed,
    "charge.dispute.created": lambda s, d: _dispute(s, d, GatewayEventKind.DISPUTE_OPENED),
    "charge.dispute.closed": _dispute_closed,
}
