"""PayPal webhook verification (offline certificate chain and online API) and normalization.

PayPal publishes no Python signing code, so PayPal's side is played by ``tests.fakes.paypal_certs``:
a local CA, PayPal-like signing certificates, and an HTTPS fake serving them (and the online
verification API) on a free port.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from payrail.devstack.paths import free_port
from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayUnavailable,
    MalformedPayload,
    SignatureInvalid,
    SignatureMissing,
)
from payrail.gateways.events import GatewayEvent, GatewayEventKind
from payrail.gateways.paypal.webhooks import PayPalWebhookVerifier
from payrail.gateways.signing import Clock
from tests.fakes.paypal_certs import Authority, Issued, PayPalCertHost, self_signed, sign_webhook
from tests.unit.gateways.webhook_helpers import NOW, assert_rejected, fixed_clock

WEBHOOK_ID = "1JE4291016473214C"
OLD_WEBHOOK_ID = "8PT597110X687430LKGECATA"


@dataclass(frozen=True)
class Pki:
    root: Authority
    leaf: Issued  # issued by an intermediate, like PayPal's real certificate
    intermediate: Authority
    expired: Issued
    rogue: Issued  # self-signed
    foreign: Issued  # issued by a CA payrail does not trust
    bundle: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = Authority.root()
    intermediate = root.intermediate()
    start, end = NOW - timedelta(days=30), NOW + timedelta(days=30)
    bundle = tmp_path_factory.mktemp("ca") / "bundle.pem"
    bundle.write_bytes(root.pem)
    return Pki(
        root=root,
        intermediate=intermediate,
        leaf=intermediate.issue(valid_from=start, valid_until=end),
        expired=intermediate.issue(
            valid_from=NOW - timedelta(days=60), valid_until=NOW - timedelta(seconds=1)
        ),
        rogue=self_signed(valid_from=start, valid_until=end),
        foreign=Authority.root("someone else's CA").issue(valid_from=start, valid_until=end),
        bundle=bundle,
    )


@pytest.fixture(scope="module")
def running_fake(pki: Pki) -> Iterator[PayPalCertHost]:
    with PayPalCertHost(pki.root).running() as fake:
        yield fake


@dataclass
class PayPal:
    """PayPal's side (the fake cert host and the PKI) and payrail's (verifiers) of one test."""

    fake: PayPalCertHost
    http: httpx.AsyncClient
    pki: Pki

    def verifier(
        self, *, clock: Clock = fixed_clock, api_secret: str | None = None, **options: str
    ) -> PayPalWebhookVerifier:
        config = GatewayAccountConfig(
            api_key=SecretStr(self.fake.client_id),
            api_secret=SecretStr(api_secret or self.fake.client_secret),
            api_base=self.fake.base_url,
            options={
                "webhook_id": WEBHOOK_ID,
                "cert_hosts": "127.0.0.1",
                "ca_bundle": str(self.pki.bundle),
                **options,
            },
        )
        return PayPalWebhookVerifier(config, account="us", http_client=self.http, clock=clock)

    def deliver(
        self,
        body: bytes | None = None,
        *,
        signer: Issued | None = None,
        chain: tuple[Issued, ...] | None = None,
        cert_url: str | None = None,
        webhook_id: str = WEBHOOK_ID,
    ) -> tuple[dict[str, str], bytes]:
        """Headers and body as PayPal sends them: ``body`` (a completed capture by default)
        signed by ``signer`` (the valid leaf by default), whose ``chain`` the fake publishes
        (leaf plus intermediate by default) unless ``cert_url`` points elsewhere."""
        body = completed() if body is None else body
        signer = signer or self.pki.leaf
        if cert_url is None:
            name = f"CERT-{uuid.uuid4().hex[:12]}"
            cert_url = self.fake.publish(name, *(chain or (signer, self.pki.intermediate)))
        return sign_webhook(signer.key, body, webhook_id=webhook_id, cert_url=cert_url), body

    async def verify(self, body: bytes) -> list[GatewayEvent]:
        """Deliver ``body`` validly signed and verify it (for the normalization tests)."""
        return await self.verifier().verify(*self.deliver(body))


@pytest.fixture
async def paypal(running_fake: PayPalCertHost, pki: Pki) -> AsyncIterator[PayPal]:
    running_fake.requests.clear()
    running_fake.statuses.clear()
    async with httpx.AsyncClient(verify=running_fake.client_context(), timeout=5) as client:
        yield PayPal(running_fake, client, pki)


def event(event_type: str, resource: dict[str, Any], event_id: str = "WH-58D3295-8HN65") -> bytes:
    body = {
        "id": event_id,
        "event_version": "1.0",
        "create_time": "2025-03-01T11:59:57.123Z",
        "resource_type": "capture",
        "event_type": event_type,
        "summary": "Payment completed",
        "resource": resource,
    }
    return json.dumps(body, indent=1).encode()


def capture(value: str = "19.99", currency: str = "USD", **overrides: Any) -> dict[str, Any]:
    return {
        "id": "42311647XV020574X",
        "amount": {"currency_code": currency, "value": value},
        "final_capture": True,
        "custom_id": "pay_abc",
        "status": "COMPLETED",
        "supplementary_data": {"related_ids": {"order_id": "5O190127TN364715T"}},
        **overrides,
    }


def completed() -> bytes:
    return event("PAYMENT.CAPTURE.COMPLETED", capture())


# ------------------------------------------------------------------------------- offline


async def test_signed_capture_verifies_offline_and_normalizes(paypal: PayPal) -> None:
    url = paypal.fake.publish("CERT-360caa42", paypal.pki.leaf, paypal.pki.intermediate)
    headers, body = paypal.deliver(cert_url=url)
    [ev] = await paypal.verifier().verify(headers, body)
    assert ev.kind is GatewayEventKind.PAYMENT_SUCCEEDED
    assert ev.ce_id == "paypal:WH-58D3295-8HN65"
    assert (ev.payment_id, ev.gateway_payment_id) == ("pay_abc", "5O190127TN364715T")
    assert (ev.amount, ev.currency) == (1999, "USD")
    assert ev.occurred_at == NOW - timedelta(seconds=2, microseconds=877000)
    assert ev.account == "us"
    assert paypal.fake.requests == [("GET", "/v1/notifications/certs/CERT-360caa42")]


async def test_the_certificate_is_fetched_once_per_url(paypal: PayPal) -> None:
    url = paypal.fake.publish("CERT-cached", paypal.pki.leaf, paypal.pki.intermediate)
    verifier = paypal.verifier()
    for n in range(3):
        body = event("PAYMENT.CAPTURE.COMPLETED", capture(), event_id=f"WH-{n}")
        assert len(await verifier.verify(*paypal.deliver(body, cert_url=url))) == 1
    assert len(paypal.fake.requests) == 1


async def test_header_names_are_case_insensitive(paypal: PayPal) -> None:
    headers, body = paypal.deliver()
    lowered = {k.lower(): v for k, v in headers.items()}
    assert len(await paypal.verifier().verify(lowered, body)) == 1


async def test_tampered_body_is_rejected(paypal: PayPal) -> None:
    headers, _ = paypal.deliver()
    tampered = event("PAYMENT.CAPTURE.COMPLETED", capture(value="1999.00"))
    await assert_rejected(paypal.verifier(), headers, tampered, SignatureInvalid)


async def test_signature_for_another_webhook_subscription_is_rejected(paypal: PayPal) -> None:
    headers, body = paypal.deliver(webhook_id="SOMEONE-ELSES")
    await assert_rejected(paypal.verifier(), headers, body, SignatureInvalid)


async def test_signature_by_another_key_is_rejected(paypal: PayPal) -> None:
    """The certificate served is PayPal's and chains fine; the signature is someone else's."""
    pki = paypal.pki
    headers, body = paypal.deliver(signer=pki.foreign, chain=(pki.leaf, pki.intermediate))
    error = await assert_rejected(paypal.verifier(), headers, body, SignatureInvalid)
    assert str(error) == "signature does not match"


@pytest.mark.parametrize("webhook_id", [OLD_WEBHOOK_ID, WEBHOOK_ID])
async def test_both_subscriptions_verify_while_one_replaces_the_other(
    paypal: PayPal, webhook_id: str
) -> None:
    verifier = paypal.verifier(webhook_id=f"{OLD_WEBHOOK_ID}, {WEBHOOK_ID}")
    assert len(await verifier.verify(*paypal.deliver(webhook_id=webhook_id))) == 1


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://evil.example/v1/notifications/certs/CERT-1",
        "https://localhost:{port}/v1/notifications/certs/CERT-0",
        "http://127.0.0.1:{port}/v1/notifications/certs/CERT-0",
        "https://user:pw@127.0.0.1:{port}/v1/notifications/certs/CERT-0",
        "https://127.0.0.1.evil.example/v1/notifications/certs/CERT-1",
        "not a url at all",
    ],
)
async def test_cert_urls_off_the_allow_list_are_rejected_before_any_fetch(
    paypal: PayPal, cert_url: str
) -> None:
    paypal.fake.publish("CERT-0", paypal.pki.leaf, paypal.pki.intermediate)
    port = paypal.fake.base_url.rsplit(":", 1)[1]
    headers, body = paypal.deliver(cert_url=cert_url.format(port=port))
    await assert_rejected(paypal.verifier(), headers, body, SignatureInvalid)
    assert paypal.fake.requests == []


async def test_the_default_allow_list_is_paypal_only(paypal: PayPal) -> None:
    config = GatewayAccountConfig(
        options={"webhook_id": WEBHOOK_ID, "ca_bundle": str(paypal.pki.bundle)}
    )
    verifier = PayPalWebhookVerifier(config, account="us", http_client=paypal.http)
    await assert_rejected(verifier, *paypal.deliver(), SignatureInvalid)
    assert paypal.fake.requests == []


async def test_expired_certificate_is_rejected(paypal: PayPal) -> None:
    headers, body = paypal.deliver(signer=paypal.pki.expired)
    error = await assert_rejected(paypal.verifier(), headers, body, SignatureInvalid)
    assert "expired" in str(error)


async def test_a_cached_certificate_stops_verifying_when_it_expires(paypal: PayPal) -> None:
    now = [NOW]
    verifier = paypal.verifier(clock=lambda: now[0])
    headers, body = paypal.deliver()
    assert len(await verifier.verify(headers, body)) == 1
    now[0] = paypal.pki.leaf.cert.not_valid_after_utc + timedelta(seconds=1)
    await assert_rejected(verifier, headers, body, SignatureInvalid)
    assert len(paypal.fake.requests) == 1


@pytest.mark.parametrize("which", ["rogue", "foreign", "leaf_without_intermediate"])
async def test_certificates_not_chaining_to_the_ca_bundle_are_rejected(
    paypal: PayPal, which: str
) -> None:
    pki = paypal.pki
    signer = {"rogue": pki.rogue, "foreign": pki.foreign}.get(which, pki.leaf)
    headers, body = paypal.deliver(signer=signer, chain=(signer,))
    error = await assert_rejected(paypal.verifier(), headers, body, SignatureInvalid)
    assert "trusted CA" in str(error)


async def test_the_default_ca_bundle_does_not_trust_a_private_ca(paypal: PayPal) -> None:
    config = GatewayAccountConfig(options={"webhook_id": WEBHOOK_ID, "cert_hosts": "127.0.0.1"})
    verifier = PayPalWebhookVerifier(
        config, account="us", http_client=paypal.http, clock=fixed_clock
    )
    await assert_rejected(verifier, *paypal.deliver(), SignatureInvalid)


async def test_a_url_that_serves_no_certificate_is_rejected(paypal: PayPal) -> None:
    missing = f"{paypal.fake.base_url}/v1/notifications/certs/CERT-missing"
    await assert_rejected(paypal.verifier(), *paypal.deliver(cert_url=missing), SignatureInvalid)


@pytest.mark.parametrize(
    ("served", "complaint"),
    [(b"<html>hello</html>", "PEM"), (b"A" * 70_000, "too large")],
)
async def test_a_url_serving_something_else_is_rejected(
    paypal: PayPal, served: bytes, complaint: str
) -> None:
    url = paypal.fake.publish("CERT-other")
    paypal.fake.certs[urlsplit(url).path] = served
    headers, body = paypal.deliver(cert_url=url)
    error = await assert_rejected(paypal.verifier(), headers, body, SignatureInvalid)
    assert complaint in str(error)


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_failing_cert_host_is_unavailable_not_a_rejection(
    paypal: PayPal, status: int
) -> None:
    url = paypal.fake.publish(f"CERT-{status}", paypal.pki.leaf, paypal.pki.intermediate)
    paypal.fake.statuses[urlsplit(url).path] = status
    with pytest.raises(GatewayUnavailable):
        await paypal.verifier().verify(*paypal.deliver(cert_url=url))


async def test_an_unreachable_cert_host_is_unavailable(paypal: PayPal) -> None:
    url = f"https://127.0.0.1:{free_port()}/v1/notifications/certs/CERT-1"
    with pytest.raises(GatewayUnavailable):
        await paypal.verifier().verify(*paypal.deliver(cert_url=url))


@pytest.mark.parametrize(
    "missing",
    [
        "PAYPAL-TRANSMISSION-ID",
        "PAYPAL-TRANSMISSION-TIME",
        "PAYPAL-TRANSMISSION-SIG",
        "PAYPAL-CERT-URL",
        "PAYPAL-AUTH-ALGO",
    ],
)
async def test_every_header_is_required(paypal: PayPal, missing: str) -> None:
    headers, body = paypal.deliver()
    del headers[missing]
    await assert_rejected(paypal.verifier(), headers, body, SignatureMissing)
    assert paypal.fake.requests == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("PAYPAL-AUTH-ALGO", "SHA1withRSA"), ("PAYPAL-TRANSMISSION-SIG", "not*base64")],
)
async def test_unsupported_algorithm_or_undecodable_signature_is_rejected(
    paypal: PayPal, name: str, value: str
) -> None:
    headers, body = paypal.deliver()
    headers[name] = value
    await assert_rejected(paypal.verifier(), headers, body, SignatureInvalid)


async def test_valid_signature_but_malformed_json(paypal: PayPal) -> None:
    headers, body = paypal.deliver(b'{"id": "WH-1", "event_type": ')
    await assert_rejected(paypal.verifier(), headers, body, MalformedPayload)


def test_configuration_errors_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="webhook_id"):
        PayPalWebhookVerifier(GatewayAccountConfig(), account="us")
    with pytest.raises(ValueError, match="verify_mode"):
        PayPalWebhookVerifier(
            GatewayAccountConfig(options={"webhook_id": "W", "verify_mode": "trusting"}),
            account="us",
        )
    with pytest.raises(ValueError, match="api_key and api_secret"):
        PayPalWebhookVerifier(
            GatewayAccountConfig(options={"webhook_id": "W", "verify_mode": "online"}),
            account="us",
        )


# -------------------------------------------------------------------------------- online


async def test_online_verification_asks_paypal_with_the_raw_event(paypal: PayPal) -> None:
    verifier = paypal.verifier(verify_mode="online")
    for n in range(2):
        # indent=1 makes the raw body differ from any re-serialization of it.
        body = event("PAYMENT.CAPTURE.COMPLETED", capture(), event_id=f"WH-online-{n}")
        [ev] = await verifier.verify(*paypal.deliver(body))
        assert ev.gateway_event_id == f"WH-online-{n}"
    assert paypal.fake.requests == [
        ("POST", "/v1/oauth2/token"),  # the token is reused
        ("POST", "/v1/notifications/verify-webhook-signature"),
        ("POST", "/v1/notifications/verify-webhook-signature"),
    ]


async def test_online_verification_rejects_what_paypal_rejects(paypal: PayPal) -> None:
    headers, _ = paypal.deliver()
    tampered = event("PAYMENT.CAPTURE.COMPLETED", capture(value="0.01"))
    verifier = paypal.verifier(verify_mode="online")
    await assert_rejected(verifier, headers, tampered, SignatureInvalid, paypal.fake.client_secret)


async def test_online_verification_with_bad_credentials_is_unavailable_and_secret_free(
    paypal: PayPal,
) -> None:
    wrong = "wrong-secret-do-not-print"
    verifier = paypal.verifier(verify_mode="online", api_secret=wrong)
    with pytest.raises(GatewayUnavailable) as info:
        await verifier.verify(*paypal.deliver())
    assert wrong not in f"{info.value} {info.value!r}"


async def test_online_verification_of_a_non_json_body_is_malformed_without_a_call(
    paypal: PayPal,
) -> None:
    headers, body = paypal.deliver(b"not json")
    paypal.fake.requests.clear()
    verifier = paypal.verifier(verify_mode="online")
    await assert_rejected(verifier, headers, body, MalformedPayload, paypal.fake.client_secret)
    assert paypal.fake.requests == []


async def test_online_verification_still_applies_the_cert_host_allow_list(
    paypal: PayPal,
) -> None:
    headers, body = paypal.deliver(cert_url="https://evil.example/c")
    verifier = paypal.verifier(verify_mode="online")
    await assert_rejected(verifier, headers, body, SignatureInvalid, paypal.fake.client_secret)
    assert paypal.fake.requests == []


# ------------------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [("19.99", "USD", 1999), ("500", "JPY", 500), ("1.234", "KWD", 1234), ("0.10", "eur", 10)],
)
async def test_major_unit_strings_become_exact_minor_units(
    paypal: PayPal, value: str, currency: str, minor: int
) -> None:
    [ev] = await paypal.verify(event("PAYMENT.CAPTURE.COMPLETED", capture(value, currency)))
    assert (ev.amount, ev.currency) == (minor, currency.upper())


@pytest.mark.parametrize(
    ("value", "currency"), [("19.999", "USD"), ("5.5", "JPY"), ("NaN", "USD"), ("1", "ZZZ")]
)
async def test_amounts_that_do_not_fit_the_currency_are_malformed(
    paypal: PayPal, value: str, currency: str
) -> None:
    with pytest.raises(MalformedPayload):
        await paypal.verify(event("PAYMENT.CAPTURE.COMPLETED", capture(value, currency)))


@pytest.mark.parametrize("event_type", ["PAYMENT.CAPTURE.DENIED", "PAYMENT.CAPTURE.DECLINED"])
async def test_denied_and_declined_captures_fail(paypal: PayPal, event_type: str) -> None:
    resource = capture(
        status="DECLINED", status_details={"reason": "DECLINED_BY_RISK_FRAUD_FILTERS"}
    )
    [ev] = await paypal.verify(event(event_type, resource))
    assert ev.kind is GatewayEventKind.PAYMENT_FAILED
    assert ev.failure_code == "DECLINED_BY_RISK_FRAUD_FILTERS"


async def test_approved_order_awaits_capture(paypal: PayPal) -> None:
    order = {
        "id": "5O190127TN364715T",
        "status": "APPROVED",
        "intent": "CAPTURE",
        "purchase_units": [
            {"reference_id": "d9f80740", "custom_id": "pay_abc",
             "amount": {"currency_code": "EUR", "value": "100.00"}},
        ],
    }  # fmt: skip
    [ev] = await paypal.verify(event("CHECKOUT.ORDER.APPROVED", order))
    assert ev.kind is GatewayEventKind.PAYMENT_AUTHORIZED
    assert (ev.payment_id, ev.gateway_payment_id) == ("pay_abc", "5O190127TN364715T")
    assert (ev.amount, ev.currency) == (10000, "EUR")


async def test_approved_order_without_purchase_units_is_malformed(paypal: PayPal) -> None:
    with pytest.raises(MalformedPayload):
        await paypal.verify(event("CHECKOUT.ORDER.APPROVED", {"id": "O1", "purchase_units": []}))


@pytest.mark.parametrize("event_type", ["PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED"])
async def test_refunds_and_reversals(paypal: PayPal, event_type: str) -> None:
    refund = {
        "id": "1Y107995YT783435V",
        "amount": {"currency_code": "USD", "value": "5.00"},
        "status": "COMPLETED",
        "custom_id": "pay_abc",
        "seller_payable_breakdown": {
            "total_refunded_amount": {"currency_code": "USD", "value": "7.50"}
        },
        "links": [
            {"rel": "self", "href": "https://api.paypal.com/v2/payments/refunds/1Y107995YT783435V"},
            {"rel": "up", "href": "https://api.paypal.com/v2/payments/captures/42311647XV020574X"},
        ],
    }
    [ev] = await paypal.verify(event(event_type, refund))
    assert ev.kind is GatewayEventKind.REFUND_SUCCEEDED
    assert (ev.gateway_refund_id, ev.gateway_payment_id) == (
        "1Y107995YT783435V",
        "42311647XV020574X",
    )
    assert (ev.amount, ev.amount_refunded, ev.payment_id) == (500, 750, "pay_abc")


def dispute(**overrides: Any) -> dict[str, Any]:
    return {
        "dispute_id": "PP-D-21692",
        "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
        "status": "RESOLVED",
        "dispute_amount": {"currency_code": "USD", "value": "19.99"},
        "disputed_transactions": [
            {"seller_transaction_id": "42311647XV020574X", "custom": "pay_abc"}
        ],
        **overrides,
    }


@pytest.mark.parametrize(
    ("event_type", "outcome", "kind"),
    [
        ("CUSTOMER.DISPUTE.CREATED", None, GatewayEventKind.DISPUTE_OPENED),
        ("CUSTOMER.DISPUTE.RESOLVED", "RESOLVED_SELLER_FAVOUR", GatewayEventKind.DISPUTE_WON),
        ("CUSTOMER.DISPUTE.RESOLVED", "CANCELED_BY_BUYER", GatewayEventKind.DISPUTE_WON),
        ("CUSTOMER.DISPUTE.RESOLVED", "RESOLVED_BUYER_FAVOUR", GatewayEventKind.DISPUTE_LOST),
        ("CUSTOMER.DISPUTE.RESOLVED", "ACCEPTED", GatewayEventKind.DISPUTE_LOST),
    ],
)
async def test_disputes(
    paypal: PayPal, event_type: str, outcome: str | None, kind: GatewayEventKind
) -> None:
    resource = dispute(dispute_outcome={"outcome_code": outcome} if outcome else None)
    [ev] = await paypal.verify(event(event_type, resource))
    assert ev.kind is kind
    assert (ev.gateway_dispute_id, ev.gateway_payment_id) == ("PP-D-21692", "42311647XV020574X")
    assert (ev.payment_id, ev.amount) == ("pay_abc", 1999)


async def test_a_dispute_resolved_with_an_unknown_outcome_is_not_used(paypal: PayPal) -> None:
    resource = dispute(dispute_outcome={"outcome_code": "SOMETHING_NEW"})
    assert await paypal.verify(event("CUSTOMER.DISPUTE.RESOLVED", resource)) == []


@pytest.mark.parametrize(
    "event_type",
    ["PAYMENT.AUTHORIZATION.CREATED", "BILLING.SUBSCRIPTION.CREATED", "CUSTOMER.DISPUTE.UPDATED"],
)
async def test_unused_event_types_verify_to_nothing(paypal: PayPal, event_type: str) -> None:
    assert await paypal.verify(event(event_type, {"id": "X"})) == []


async def test_verified_event_without_an_id_is_malformed(paypal: PayPal) -> None:
    with pytest.raises(MalformedPayload):
        await paypal.verify(json.dumps({"event_type": "PAYMENT.CAPTURE.COMPLETED"}).encode())
