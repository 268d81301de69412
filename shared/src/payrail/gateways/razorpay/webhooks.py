"""Razorpay webhooks: ``X-Razorpay-Signature`` verification and normalization.

Signature (https://razorpay.com/docs/webhooks/validate-test/): the header is the hex
HMAC-SHA256 of the raw body keyed with the webhook secret (UTF-8). Razorpay signs no timestamp,
so there is no tolerance window; replays are harmless because the event id dedupes them and
state transitions downstream are monotonic. Razorpay keeps retrying old deliveries with the
secret they were signed with, so keep the previous secret configured until its retries are over.

``gateway_event_id`` is the ``X-Razorpay-Event-Id`` header (Razorpay's dedup id, the same on
every retry of an event). It is not covered by the signature: a replayed body under a forged id
gets a new ce_id, so consumers must also be idempotent on the gateway ids (refund id above all).

Normalization (amounts are already minor units, paise for INR; ``occurred_at`` = the event's
``created_at``):

========================  =====================================================================
Razorpay event            payrail event
========================  =====================================================================
payment.authorized        payment.authorized (not captured yet: checkout captures it)
payment.captured          payment.succeeded
order.paid                payment.succeeded (amount = the payment's, else ``amount_paid``)
payment.failed            payment.failed, failure = ``error_code`` / ``error_description``
refund.processed          refund.succeeded, ``amount_refunded`` = the payment's cumulative
refund.failed             refund.failed
payment.dispute.created   dispute.opened
payment.dispute.won       dispute.won
payment.dispute.lost      dispute.lost
========================  =====================================================================

``payment_id`` is ``notes.payrail_payment_id`` of the payment entity, else of the order entity
(order.paid carries both; Razorpay does not copy order notes onto payments), else of the refund.
``gateway_payment_id`` is the Razorpay order id when the payment belongs to an order (that is
the id checkout gets back when it opens the payment), else the payment id (``pay_...``); the
payment id is always in ``raw``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payrail.gateways.base import (
    GatewayAccountConfig,
    MalformedPayload,
    SignatureInvalid,
    WebhookVerifier,
)
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.gateways.signing import (
    EventStamp,
    JsonObject,
    any_match,
    ascii_bytes,
    currency,
    decode_secrets,
    from_unix,
    header,
    hmac_sha256,
    notes_value,
    obj,
    opt_int,
    opt_str,
    parse_json_object,
    req_int,
    req_str,
    require_header,
)

GATEWAY = "razorpay"
SIGNATURE_HEADER = "X-Razorpay-Signature"
EVENT_ID_HEADER = "X-Razorpay-Event-Id"
PAYMENT_ID_KEY = "payrail_payment_id"

_PAYMENT_KINDS = {
    "payment.authorized": GatewayEventKind.PAYMENT_AUTHORIZED,
    "payment.captured": GatewayEventKind.PAYMENT_SUCCEEDED,
    "order.paid": GatewayEventKind.PAYMENT_SUCCEEDED,
    "payment.failed": GatewayEventKind.PAYMENT_FAILED,
}
_REFUND_KINDS = {
    "refund.processed": GatewayEventKind.REFUND_SUCCEEDED,
    "refund.failed": GatewayEventKind.REFUND_FAILED,
}
_DISPUTE_KINDS = {
    "payment.dispute.created": GatewayEventKind.DISPUTE_OPENED,
    "payment.dispute.won": GatewayEventKind.DISPUTE_WON,
    "payment.dispute.lost": GatewayEventKind.DISPUTE_LOST,
}


class RazorpayWebhookVerifier(WebhookVerifier):
    """Verifies ``X-Razorpay-Signature`` over the raw body and normalizes the event."""

    def __init__(self, config: GatewayAccountConfig, *, account: str) -> None:
        self._keys = decode_secrets(config.webhook_secrets, gateway=GATEWAY)
        self._account = account

    async def verify(self, headers: Mapping[str, str], body: bytes) -> list[GatewayEvent]:
        signature = ascii_bytes(require_header(headers, SIGNATURE_HEADER))
        expected = [hmac_sha256(key, body).hex().encode() for key in self._keys]
        if not any_match(expected, [signature]):
            raise SignatureInvalid()
        event_id = header(headers, EVENT_ID_HEADER)
        if event_id is None:
            raise MalformedPayload(f"{EVENT_ID_HEADER} header is missing")
        return normalize(parse_json_object(body), event_id=event_id, account=self._account)


def normalize(event: JsonObject, *, event_id: str, account: str) -> list[GatewayEvent]:
    """payrail events for one verified Razorpay event (``[]`` for types payrail does not use)."""
    stamp = EventStamp(
        gateway=GATEWAY,
        account=account,
        gateway_event_id=event_id,
        occurred_at=from_unix(req_int(event, "created_at")),
        raw=event,
    )
    name = req_str(event, "event")
    entities = obj(event, "payload")
    payment = obj(obj(entities, "payment"), "entity")
    order = obj(obj(entities, "order"), "entity")
    if kind := _PAYMENT_KINDS.get(name):
        return [_payment_event(stamp, kind, payment, order)]
    if kind := _REFUND_KINDS.get(name):
        return [_refund_event(stamp, kind, obj(obj(entities, "refund"), "entity"), payment)]
    if kind := _DISPUTE_KINDS.get(name):
        dispute = obj(obj(entities, "dispute"), "entity")
        return [
            stamp.event(
                kind,
                **_routing(payment, order),
                gateway_dispute_id=req_str(dispute, "id"),
                **_money(dispute),
            )
        ]
    return []


def _money(entity: JsonObject, amount_key: str = "amount") -> dict[str, Any]:
    return {"amount": req_int(entity, amount_key), "currency": currency(entity.get("currency"))}


def _routing(payment: JsonObject, order: JsonObject, *others: JsonObject) -> dict[str, Any]:
    """payrail's payment id (from the first notes that carry it) and the gateway's payment id."""
    payment_id = next(
        (
            found
            for entity in (payment, order, *others)
            if (found := notes_value(entity, "notes", PAYMENT_ID_KEY))
        ),
        None,
    )
    gateway_payment_id = (
        opt_str(payment, "order_id") or opt_str(order, "id") or opt_str(payment, "id")
    )
    return {"payment_id": payment_id, "gateway_payment_id": gateway_payment_id}


def _payment_event(
    stamp: EventStamp, kind: GatewayEventKind, payment: JsonObject, order: JsonObject
) -> GatewayEvent:
    if not payment and not order:
        raise MalformedPayload("payment event without a payment or order entity")
    fields = _routing(payment, order)
    if payment:
        fields |= _money(payment)
    else:
        fields |= _money(order, "amount_paid")
    if kind is GatewayEventKind.PAYMENT_FAILED:
        fields["failure_code"] = opt_str(payment, "error_code")
        fields["failure_message"] = opt_str(payment, "error_description")
    return stamp.event(kind, **fields)


def _refund_event(
    stamp: EventStamp, kind: GatewayEventKind, refund: JsonObject, payment: JsonObject
) -> GatewayEvent:
    fields = _routing(payment, {}, refund)
    # refund.* events embed the payment; when they do not, the refund still names it.
    fields["gateway_payment_id"] = fields["gateway_payment_id"] or req_str(refund, "payment_id")
    return stamp.event(
        kind,
        **fields,
        gateway_refund_id=req_str(refund, "id"),
        amount_refunded=opt_int(payment, "amount_refunded"),
        **_money(refund),
    )
