"""Adyen standard notifications: per-item HMAC verification, whole-batch acceptance.

Signature (https://docs.adyen.com/development-resources/webhooks/secure-webhooks/verify-hmac-signatures):
each ``NotificationRequestItem`` carries ``additionalData.hmacSignature``, the base64
HMAC-SHA256, keyed with the hex-decoded HMAC key, of::

    pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success

(``value``/``currency`` from ``amount``; absent fields are empty strings). The values are joined
as they are, without escaping: that is what Adyen signs and what Adyen's own libraries (Python
``Adyen.util.generate_notification_sig``, Java ``HMACValidator.getDataToSign``, PHP, Ruby)
compute. Backslash/colon escaping belongs to the retired Hosted Payment Pages ``merchantSig``
(sorted key/value pairs), not to notifications; escaping here would reject every genuine
notification whose reference contains ``:`` or ``\\``.

Because the signatures live inside the JSON, the body must be parsed before anything is
verified: a body that is not JSON of the notification shape is :class:`MalformedPayload`, and
nothing in it is trusted. A batch is accepted or rejected as a whole: one item with a missing
or wrong signature rejects every item, so a forged item cannot ride along with genuine ones and
Adyen retries the batch. A verified batch is acknowledged with the body ``[accepted]``
(``text/plain``), which is what Adyen waits for.

Normalization (one payrail event per used item; amounts are already minor units):

==========================  =======  =================================================
eventCode                   success  payrail event
==========================  =======  =================================================
AUTHORISATION               true     payment.succeeded (payrail captures automatically)
AUTHORISATION               false    payment.failed, failure_message = ``reason``
CANCELLATION                true     payment.canceled
REFUND                      true     refund.succeeded
REFUND                      false    refund.failed, failure_message = ``reason``
REFUND_FAILED               true     refund.failed, failure_message = ``reason``
NOTIFICATION_OF_CHARGEBACK  true     dispute.opened
CHARGEBACK                  true     dispute.lost (funds debited)
CHARGEBACK_REVERSED         true     dispute.won (funds returned)
==========================  =======  =================================================

Adyen has no event id, so ``gateway_event_id`` is ``<pspReference>:<eventCode>:<success>``: the
same on every retry of a notification, and distinct for the different events one PSP reference
goes through. ``payment_id`` is ``merchantReference`` (checkout sends payrail's payment id as
the payment's ``reference``; it must send it as the ``reference`` of refunds and cancels too,
because modification notifications echo the modification's reference). ``gateway_payment_id`` is
the payment's PSP reference: ``pspReference`` for AUTHORISATION, ``originalReference`` for
modifications and disputes, whose own ``pspReference`` becomes the refund / dispute id.
``occurred_at`` is ``eventDate``; ``raw`` is the item.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from payrail.gateways.base import (
    GatewayAccountConfig,
    MalformedPayload,
    SignatureInvalid,
    SignatureMissing,
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
    from_iso,
    hmac_sha256,
    obj,
    opt_str,
    parse_json_object,
    req_int,
    req_str,
)

GATEWAY = "adyen"
ACKNOWLEDGEMENT = "[accepted]"
SIGNED_FIELDS = (
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "merchantReference",
    "value",
    "currency",
    "eventCode",
    "success",
)

_K = GatewayEventKind
_KINDS: dict[tuple[str, str], GatewayEventKind] = {
    ("AUTHORISATION", "true"): _K.PAYMENT_SUCCEEDED,
    ("AUTHORISATION", "false"): _K.PAYMENT_FAILED,
    ("CANCELLATION", "true"): _K.PAYMENT_CANCELED,
    ("REFUND", "true"): _K.REFUND_SUCCEEDED,
    ("REFUND", "false"): _K.REFUND_FAILED,
    ("REFUND_FAILED", "true"): _K.REFUND_FAILED,
    ("NOTIFICATION_OF_CHARGEBACK", "true"): _K.DISPUTE_OPENED,
    ("CHARGEBACK", "true"): _K.DISPUTE_LOST,
    ("CHARGEBACK_REVERSED", "true"): _K.DISPUTE_WON,
}
_REFUNDS = {_K.REFUND_SUCCEEDED, _K.REFUND_FAILED}
_DISPUTES = {_K.DISPUTE_OPENED, _K.DISPUTE_LOST, _K.DISPUTE_WON}
_FAILURES = {_K.PAYMENT_FAILED, _K.REFUND_FAILED}


def _signed_value(item: JsonObject, field: str) -> str:
    source = obj(item, "amount") if field in ("value", "currency") else item
    value = source.get(field)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    raise MalformedPayload(f"{field} is not a scalar")


def signing_string(item: JsonObject) -> bytes:
    """The colon-joined, unescaped fields Adyen signs for one NotificationRequestItem."""
    return ":".join(_signed_value(item, field) for field in SIGNED_FIELDS).encode()


def notification_items(batch: JsonObject) -> list[JsonObject]:
    """The ``NotificationRequestItem`` objects of a notification batch (at least one)."""
    wrappers = batch.get("notificationItems")
    if not isinstance(wrappers, list) or not wrappers:
        raise MalformedPayload("notificationItems is missing or empty")
    items = [obj(w, "NotificationRequestItem") if isinstance(w, dict) else {} for w in wrappers]
    if not all(items):
        raise MalformedPayload("a notification item has no NotificationRequestItem")
    return items


class AdyenWebhookVerifier(WebhookVerifier):
    """Verifies every item's HMAC signature and normalizes the batch."""

    def __init__(self, config: GatewayAccountConfig, *, account: str) -> None:
        self._keys = decode_secrets(config.webhook_secrets, gateway=GATEWAY, decode=bytes.fromhex)
        self._account = account

    async def verify(self, headers: Mapping[str, str], body: bytes) -> list[GatewayEvent]:
        items = notification_items(parse_json_object(body))
        for item in items:
            signature = opt_str(obj(item, "additionalData"), "hmacSignature")
            if signature is None:
                raise SignatureMissing("a notification item has no hmacSignature")
            message = signing_string(item)
            expected = [base64.b64encode(hmac_sha256(key, message)) for key in self._keys]
            if not any_match(expected, [ascii_bytes(signature)]):
                raise SignatureInvalid("a notification item's signature does not match")
        return [event for item in items for event in normalize(item, account=self._account)]

    def acknowledgement(self, events: list[GatewayEvent]) -> tuple[str, str]:
        return ACKNOWLEDGEMENT, "text/plain"


def normalize(item: JsonObject, *, account: str) -> list[GatewayEvent]:
    """The payrail event of one verified item (``[]`` for event codes payrail does not use)."""
    psp_reference = req_str(item, "pspReference")
    event_code = req_str(item, "eventCode")
    success = req_str(item, "success")
    if success not in ("true", "false"):
        raise MalformedPayload("success is neither 'true' nor 'false'")
    kind = _KINDS.get((event_code, success))
    if kind is None:
        return []
    stamp = EventStamp(
        gateway=GATEWAY,
        account=account,
        gateway_event_id=f"{psp_reference}:{event_code}:{success}",
        occurred_at=from_iso(req_str(item, "eventDate")),
        raw=item,
    )
    amount = obj(item, "amount")
    original = opt_str(item, "originalReference")
    return [
        stamp.event(
            kind,
            payment_id=opt_str(item, "merchantReference"),
            gateway_payment_id=psp_reference if event_code == "AUTHORISATION" else original,
            gateway_refund_id=psp_reference if kind in _REFUNDS else None,
            gateway_dispute_id=psp_reference if kind in _DISPUTES else None,
            amount=req_int(amount, "value"),
            currency=currency(amount.get("currency")),
            failure_message=opt_str(item, "reason") if kind in _FAILURES else None,
        )
    ]
