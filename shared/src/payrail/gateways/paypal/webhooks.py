"""PayPal webhooks: certificate-based (RSA) signature verification and normalization.

Signature (https://developer.paypal.com/api/rest/webhooks/rest/#link-selfverificationmethod):
PayPal signs ``<transmission id>|<transmission time>|<webhook id>|<crc32 of the raw body>``
(the CRC as an unsigned decimal) with RSA PKCS#1 v1.5 / SHA-256 and sends the pieces in
``PAYPAL-TRANSMISSION-ID``, ``PAYPAL-TRANSMISSION-TIME``, ``PAYPAL-TRANSMISSION-SIG`` (base64),
``PAYPAL-CERT-URL`` and ``PAYPAL-AUTH-ALGO`` (``SHA256withRSA``). The webhook id is not sent: it
is the id of payrail's webhook subscription, ``options["webhook_id"]`` (comma-separate several
while a subscription is being replaced).

The certificate URL comes from the request, so it is the dangerous part:

* it must be ``https`` and its host must be in ``options["cert_hosts"]`` (comma-separated;
  default PayPal's API hosts). Anything else is rejected before any network call, so a forged
  header can neither make payrail fetch from an attacker's server nor probe internal hosts;
* the certificate is fetched with httpx (no redirects, size-capped) and cached by URL;
* its validity period is checked on every use, and its chain is verified once, with
  ``cryptography``'s path builder, against ``options["ca_bundle"]`` (a PEM file; default the
  certifi bundle). A self-signed or otherwise unanchored certificate is rejected.

A certificate host that cannot be reached (network error, 5xx, 429) raises
:class:`GatewayUnavailable`, not a rejection: the outcome is unknown, and answering 503 makes
PayPal retry rather than drop a genuine event.

``options["verify_mode"] = "online"`` asks PayPal instead (``POST
/v1/notifications/verify-webhook-signature`` at ``api_base`` with an OAuth token from
``/v1/oauth2/token``, client id = ``api_key``, secret = ``api_secret``). That costs a PayPal call
per webhook, so offline is the default. PayPal checks the event it is sent, so the raw body is
spliced into the request unchanged rather than re-serialized; that needs the body to be JSON
before anything is verified, so a non-JSON body is :class:`MalformedPayload` in this mode.

PayPal signs no freshness window (its retries reuse the transmission), so replays are left to
dedup on the event id, which is the same on every retry.

Normalization (``gateway_event_id`` = the ``WH-...`` event id, ``occurred_at`` = its
``create_time``; PayPal amounts are decimal strings in major units and are converted exactly,
exponent-aware, with :meth:`payrail.money.Money.from_major`):

===========================  =================================================================
PayPal event                 payrail event
===========================  =================================================================
CHECKOUT.ORDER.APPROVED      payment.authorized (approved by the buyer; checkout captures it)
PAYMENT.CAPTURE.COMPLETED    payment.succeeded
PAYMENT.CAPTURE.DENIED       payment.failed
PAYMENT.CAPTURE.DECLINED     payment.failed
PAYMENT.CAPTURE.REFUNDED     refund.succeeded
PAYMENT.CAPTURE.REVERSED     refund.succeeded (PayPal returned the money to the buyer)
CUSTOMER.DISPUTE.CREATED     dispute.opened
CUSTOMER.DISPUTE.RESOLVED    dispute.won / dispute.lost by ``dispute_outcome.outcome_code``
                             (an outcome payrail does not know normalizes to ``[]``)
===========================  =================================================================

``payment_id`` is ``custom_id`` (of the purchase unit for orders, of the capture / refund;
``custom`` of the disputed transaction). ``gateway_payment_id`` is the PayPal order id where the
event names it (orders, captures via ``supplementary_data.related_ids``), else the capture id
(refunds via their ``up`` link, disputes via ``seller_transaction_id``).
"""

from __future__ import annotations

import base64
import binascii
import json
import warnings
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from pydantic import SecretStr

from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayUnavailable,
    MalformedPayload,
    SignatureInvalid,
    WebhookVerifier,
)
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.gateways.signing import (
    Clock,
    EventStamp,
    JsonObject,
    from_iso,
    minor_units_from_major,
    obj,
    opt_str,
    parse_json_object,
    req_str,
    require_header,
    utc_now,
)

GATEWAY = "paypal"
TRANSMISSION_ID = "PAYPAL-TRANSMISSION-ID"
TRANSMISSION_TIME = "PAYPAL-TRANSMISSION-TIME"
TRANSMISSION_SIG = "PAYPAL-TRANSMISSION-SIG"
CERT_URL = "PAYPAL-CERT-URL"
AUTH_ALGO = "PAYPAL-AUTH-ALGO"
SUPPORTED_ALGO = "SHA256withRSA"
DEFAULT_CERT_HOSTS = (
    "api.paypal.com,api-m.paypal.com,api.sandbox.paypal.com,api-m.sandbox.paypal.com"
)
DEFAULT_API_BASE = "https://api-m.paypal.com"
MAX_CERT_BYTES = 64 * 1024
CERT_CACHE_SIZE = 16
TOKEN_MARGIN = timedelta(seconds=60)


@cache
def load_trust_store(path: str) -> Store:
    """The CA certificates of a PEM bundle, parsed once per process.

    Certificates the parser refuses (system bundles carry a few legacy roots with negative
    serial numbers) are skipped rather than failing the whole bundle.
    """
    marker = b"-----END CERTIFICATE-----"
    anchors: list[x509.Certificate] = []
    for block in Path(path).read_bytes().split(marker):
        if b"-----BEGIN CERTIFICATE-----" not in block:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                anchors.append(x509.load_pem_x509_certificate(block + marker))
            except ValueError:
                continue
    if not anchors:
        raise ValueError("the PayPal CA bundle holds no certificate")
    return Store(anchors)


def signed_message(
    transmission_id: str, transmission_time: str, webhook_id: str, body: bytes
) -> bytes:
    """What PayPal signs for one delivery of ``body``."""
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}".encode()


class PayPalWebhookVerifier(WebhookVerifier):
    """Verifies a PayPal webhook offline (certificate) or online (PayPal API); normalizes it."""

    def __init__(
        self,
        config: GatewayAccountConfig,
        *,
        account: str,
        http_client: httpx.AsyncClient | None = None,
        clock: Clock = utc_now,
    ) -> None:
        options = config.options
        self._webhook_ids = _csv(options.get("webhook_id", ""))
        if not self._webhook_ids:
            raise ValueError("paypal account needs options.webhook_id")
        self._cert_hosts = frozenset(
            host.lower() for host in _csv(options.get("cert_hosts", DEFAULT_CERT_HOSTS))
        )
        mode = options.get("verify_mode", "offline")
        if mode not in ("offline", "online"):
            raise ValueError("paypal options.verify_mode must be 'offline' or 'online'")
        self._online = mode == "online"
        if self._online and (config.api_key is None or config.api_secret is None):
            raise ValueError("paypal online verification needs api_key and api_secret")
        self._account = account
        self._client = http_client
        self._timeout = config.timeout_seconds
        self._clock = clock
        self._api_key = config.api_key
        self._api_secret = config.api_secret
        self._api_base = (config.api_base or DEFAULT_API_BASE).rstrip("/")
        self._token: tuple[str, datetime] | None = None
        self._certificates: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._trust = load_trust_store(options.get("ca_bundle") or certifi.where())

    async def verify(self, headers: Mapping[str, str], body: bytes) -> list[GatewayEvent]:
        transmission_id = require_header(headers, TRANSMISSION_ID)
        transmission_time = require_header(headers, TRANSMISSION_TIME)
        raw_signature = require_header(headers, TRANSMISSION_SIG)
        cert_url = require_header(headers, CERT_URL)
        if require_header(headers, AUTH_ALGO) != SUPPORTED_ALGO:
            raise SignatureInvalid("unsupported PAYPAL-AUTH-ALGO")
        self._check_cert_url(cert_url)
        if self._online:
            event = parse_json_object(body)
            await self._verify_online(
                body,
                {
                    "auth_algo": SUPPORTED_ALGO,
                    "cert_url": cert_url,
                    "transmission_id": transmission_id,
                    "transmission_sig": raw_signature,
                    "transmission_time": transmission_time,
                },
            )
        else:
            try:
                signature = base64.b64decode(raw_signature, validate=True)
            except binascii.Error:
                raise SignatureInvalid("PAYPAL-TRANSMISSION-SIG is not base64") from None
            key = await self._public_key(cert_url)
            messages = [
                signed_message(transmission_id, transmission_time, webhook_id, body)
                for webhook_id in self._webhook_ids
            ]
            if not any(_rsa_verifies(key, signature, message) for message in messages):
                raise SignatureInvalid()
            event = parse_json_object(body)
        return normalize(event, account=self._account)

    # ------------------------------------------------------------------------------ offline

    def _check_cert_url(self, cert_url: str) -> None:
        try:
            parts = urlsplit(cert_url)
            host = (parts.hostname or "").lower()
        except ValueError:
            raise SignatureInvalid("PAYPAL-CERT-URL is not a URL") from None
        if parts.scheme != "https" or parts.username or parts.password:
            raise SignatureInvalid("PAYPAL-CERT-URL must be a plain https URL")
        if host not in self._cert_hosts:
            raise SignatureInvalid("PAYPAL-CERT-URL host is not an allowed PayPal host")

    async def _public_key(self, cert_url: str) -> rsa.RSAPublicKey:
        """The RSA key of the verified certificate at ``cert_url``, valid now."""
        certificate = self._certificates.get(cert_url)
        if certificate is None:
            certificate = self._verified_certificate(await self._download(cert_url))
            self._certificates[cert_url] = certificate
            while len(self._certificates) > CERT_CACHE_SIZE:
                self._certificates.popitem(last=False)
        else:
            self._certificates.move_to_end(cert_url)
        now = self._clock()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SignatureInvalid("PayPal certificate is expired or not yet valid")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureInvalid("PayPal certificate does not hold an RSA key")
        return key

    async def _download(self, cert_url: str) -> bytes:
        async with self._http() as client:
            try:
                async with client.stream("GET", cert_url, follow_redirects=False) as response:
                    if response.status_code == 429 or response.status_code >= 500:
                        raise GatewayUnavailable("PayPal certificate host is unavailable")
                    if response.status_code != 200:
                        raise SignatureInvalid("PAYPAL-CERT-URL does not serve a certificate")
                    content = b""
                    async for chunk in response.aiter_bytes():
                        content += chunk
                        if len(content) > MAX_CERT_BYTES:
                            raise SignatureInvalid("PayPal certificate response is too large")
                    return content
            except httpx.HTTPError:
                raise GatewayUnavailable("PayPal certificate host is unreachable") from None

    def _verified_certificate(self, pem: bytes) -> x509.Certificate:
        """The leaf of a downloaded PEM chain, once its chain verifies against the trust store."""
        try:
            leaf, *intermediates = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise SignatureInvalid("PAYPAL-CERT-URL does not serve a PEM certificate") from None
        now = self._clock()
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            raise SignatureInvalid("PayPal certificate is expired or not yet valid")
        verifier = (
            PolicyBuilder()
            .store(self._trust)
            .time(now)
            # PayPal's signing certificate is not a TLS server or client certificate: check the
            # chain (CA constraints, signatures, validity) but not end-entity usage extensions.
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, intermediates)
        except VerificationError:
            raise SignatureInvalid("PayPal certificate does not chain to a trusted CA") from None
        return leaf

    # ------------------------------------------------------------------------------- online

    async def _verify_online(self, body: bytes, fields: dict[str, str]) -> None:
        async with self._http() as client:
            token = await self._access_token(client)
            for webhook_id in self._webhook_ids:
                prefix = json.dumps({**fields, "webhook_id": webhook_id})[:-1]
                request = f'{prefix}, "webhook_event": '.encode() + body + b"}"
                response = await _post(
                    client,
                    f"{self._api_base}/v1/notifications/verify-webhook-signature",
                    content=request,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                )
                if response.status_code == 401:
                    self._token = None
                    raise GatewayUnavailable("PayPal rejected payrail's access token")
                if response.status_code == 429 or response.status_code >= 500:
                    raise GatewayUnavailable("PayPal verify-webhook-signature is unavailable")
                if response.status_code != 200:
                    raise SignatureInvalid("PayPal refused to verify the webhook")
                if _json_field(response, "verification_status") == "SUCCESS":
                    return
        raise SignatureInvalid()

    async def _access_token(self, client: httpx.AsyncClient) -> str:
        now = self._clock()
        if self._token is not None and self._token[1] > now:
            return self._token[0]
        response = await _post(
            client,
            f"{self._api_base}/v1/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(_reveal(self._api_key), _reveal(self._api_secret)),
        )
        token = _json_field(response, "access_token") if response.status_code == 200 else None
        if not isinstance(token, str):
            raise GatewayUnavailable("PayPal did not issue an access token")
        expires_in = _json_field(response, "expires_in")
        lifetime = timedelta(seconds=expires_in if isinstance(expires_in, int) else 0)
        self._token = (token, now + lifetime - TOKEN_MARGIN)
        return token

    @asynccontextmanager
    async def _http(self) -> AsyncIterator[httpx.AsyncClient]:
        """The injected client, else a short-lived one (fetches are rare thanks to caching)."""
        if self._client is not None:
            yield self._client
            return
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            yield client


def _reveal(secret: SecretStr | None) -> str:
    return "" if secret is None else secret.get_secret_value()


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _rsa_verifies(key: rsa.RSAPublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


async def _post(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return await client.post(url, **kwargs)
    except httpx.HTTPError:
        raise GatewayUnavailable("PayPal API is unreachable") from None


def _json_field(response: httpx.Response, key: str) -> object:
    try:
        parsed = response.json()
    except ValueError:
        return None
    return parsed.get(key) if isinstance(parsed, dict) else None


# -------------------------------------------------------------------------------- normalize


def normalize(event: JsonObject, *, account: str) -> list[GatewayEvent]:
    """payrail events for one verified PayPal event (``[]`` for types payrail does not use)."""
    stamp = EventStamp(
        gateway=GATEWAY,
        account=account,
        gateway_event_id=req_str(event, "id"),
        occurred_at=from_iso(req_str(event, "create_time")),
        raw=event,
    )
    handler = _HANDLERS.get(req_str(event, "event_type"))
    if handler is None:
        return []
    found = handler(stamp, obj(event, "resource"))
    return [] if found is None else [found]


def _money(amount: JsonObject) -> dict[str, Any]:
    money = minor_units_from_major(amount.get("value"), amount.get("currency_code"))
    return {"amount": money.amount, "currency": money.currency}


def _order_id(resource: JsonObject) -> str | None:
    return opt_str(obj(obj(resource, "supplementary_data"), "related_ids"), "order_id")


def _up_link_id(resource: JsonObject) -> str | None:
    """The id at the end of the ``rel: up`` link (a refund's capture)."""
    links = resource.get("links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "up":
            href = opt_str(link, "href")
            return href.rstrip("/").rsplit("/", 1)[-1] if href else None
    return None


def _first(resource: JsonObject, key: str) -> JsonObject:
    """The first object of a list field (payrail opens orders with one purchase unit)."""
    items = resource.get(key)
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        raise MalformedPayload(f"{key} is missing")
    return items[0]


def _order_approved(stamp: EventStamp, order: JsonObject) -> GatewayEvent:
    unit = _first(order, "purchase_units")
    return stamp.event(
        GatewayEventKind.PAYMENT_AUTHORIZED,
        payment_id=opt_str(unit, "custom_id"),
        gateway_payment_id=req_str(order, "id"),
        **_money(obj(unit, "amount")),
    )


def _capture(kind: GatewayEventKind) -> Callable[[EventStamp, JsonObject], GatewayEvent]:
    def handle(stamp: EventStamp, capture: JsonObject) -> GatewayEvent:
        failed = kind is GatewayEventKind.PAYMENT_FAILED
        return stamp.event(
            kind,
            payment_id=opt_str(capture, "custom_id"),
            gateway_payment_id=_order_id(capture) or req_str(capture, "id"),
            failure_code=opt_str(obj(capture, "status_details"), "reason") if failed else None,
            **_money(obj(capture, "amount")),
        )

    return handle


def _refund(stamp: EventStamp, refund: JsonObject) -> GatewayEvent:
    total = obj(obj(refund, "seller_payable_breakdown"), "total_refunded_amount")
    return stamp.event(
        GatewayEventKind.REFUND_SUCCEEDED,
        payment_id=opt_str(refund, "custom_id"),
        gateway_payment_id=_order_id(refund) or _up_link_id(refund),
        gateway_refund_id=req_str(refund, "id"),
        amount_refunded=_money(total)["amount"] if total else None,
        **_money(obj(refund, "amount")),
    )


_DISPUTE_OUTCOMES = {
    "RESOLVED_BUYER_FAVOUR": GatewayEventKind.DISPUTE_LOST,
    "ACCEPTED": GatewayEventKind.DISPUTE_LOST,  # the merchant accepted the claim
    "RESOLVED_SELLER_FAVOUR": GatewayEventKind.DISPUTE_WON,
    "CANCELED_BY_BUYER": GatewayEventKind.DISPUTE_WON,
    "DENIED": GatewayEventKind.DISPUTE_WON,  # PayPal denied the buyer's claim
    "RESOLVED_WITH_PAYOUT": GatewayEventKind.DISPUTE_WON,  # PayPal paid the buyer itself
}


def _dispute(kind: GatewayEventKind, stamp: EventStamp, dispute: JsonObject) -> GatewayEvent:
    transaction = _first(dispute, "disputed_transactions")
    return stamp.event(
        kind,
        payment_id=opt_str(transaction, "custom") or opt_str(transaction, "custom_id"),
        gateway_payment_id=opt_str(transaction, "seller_transaction_id"),
        gateway_dispute_id=req_str(dispute, "dispute_id"),
        **_money(obj(dispute, "dispute_amount")),
    )


def _dispute_resolved(stamp: EventStamp, dispute: JsonObject) -> GatewayEvent | None:
    outcome = opt_str(obj(dispute, "dispute_outcome"), "outcome_code")
    kind = _DISPUTE_OUTCOMES.get(outcome or "")
    return None if kind is None else _dispute(kind, stamp, dispute)


_HANDLERS: dict[str, Callable[[EventStamp, JsonObject], GatewayEvent | None]] = {
    "CHECKOUT.ORDER.APPROVED": _order_approved,
    "PAYMENT.CAPTURE.COMPLETED": _capture(GatewayEventKind.PAYMENT_SUCCEEDED),
    "PAYMENT.CAPTURE.DENIED": _capture(GatewayEventKind.PAYMENT_FAILED),
    "PAYMENT.CAPTURE.DECLINED": _capture(GatewayEventKind.PAYMENT_FAILED),
    "PAYMENT.CAPTURE.REFUNDED": _refund,
    "PAYMENT.CAPTURE.REVERSED": _refund,
    "CUSTOMER.DISPUTE.CREATED": lambda s, d: _dispute(GatewayEventKind.DISPUTE_OPENED, s, d),
    "CUSTOMER.DISPUTE.RESOLVED": _dispute_resolved,
}
