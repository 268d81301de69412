"""The gateway abstraction: one family of services per payment gateway.

Services talk to gateways only through these interfaces, resolved by name from the registry
(:mod:`payrail.gateways.registry`); they never import a concrete gateway package. A gateway
package (``payrail.gateways.stripe``, ...) implements a :class:`GatewayFamily` whose factory
methods build the members of the family for one configured account:

* :class:`PaymentsClient` - create an intent/order, confirm/capture, cancel;
* :class:`RefundsClient` - refund all or part of a captured payment;
* :class:`StatusSync` - ask the gateway what really happened to a payment (janitor);
* :class:`WebhookVerifier` - verify a webhook's signature over the raw bytes and normalize it;
* :class:`ReportFetcher` - balance transactions / settlements / payouts for reconciliation.

Every member speaks payrail's vocabulary: money in integer minor units plus ISO currency, and
:class:`~payrail.gateways.events.GatewayEvent` for anything the gateway says happened.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import importlib
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from payrail.gateways.events import GatewayEvent, GatewayEventKind


class GatewayAccountConfig(BaseModel):
    """Credentials and endpoints of one account at one gateway.

    Secrets are ``SecretStr`` so they never print in logs, reprs or errors.
    ``webhook_secrets`` holds every currently valid secret: during a rotation both the old
    and the new secret verify.
    """

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    api_base: str | None = None
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    merchant_account: str | None = None
    options: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = 10.0


# ---------------------------------------------------------------------------------- errors


class GatewayError(Exception):
    """Base of everything a gateway client raises. Messages never contain secrets."""


class GatewayDeclined(GatewayError):
    """The gateway answered and said no (card declined, invalid request): a definite outcome."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached or kept failing (5xx, 429) after retries.

    The request may or may not have taken effect: callers must treat the outcome as unknown
    and resolve it with :class:`StatusSync`, never as a failure.
    """


class GatewayTimeout(GatewayUnavailable):
    """The call timed out: the outcome is unknown (the gateway may have acted on it)."""


class NotSupported(GatewayError):
    """The gateway does not offer this member at all (a webhook-only signing scheme has no
    payments, refunds, status or report API). Raised when the member is built, so it is a
    definite configuration error - never an "outcome unknown" to retry or sync later."""


class WebhookRejected(GatewayError):
    """A webhook that must not be trusted. ``reason`` is a stable label for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class SignatureInvalid(WebhookRejected):
    def __init__(self, detail: str = "signature does not match") -> None:
        super().__init__("invalid_signature", detail)


class SignatureMissing(WebhookRejected):
    def __init__(self, detail: str = "signature header is missing") -> None:
        super().__init__("missing_signature", detail)


class TimestampOutOfTolerance(WebhookRejected):
    def __init__(self, detail: str = "timestamp outside the tolerance window") -> None:
        super().__init__("stale_timestamp", detail)


class MalformedPayload(WebhookRejected):
    def __init__(self, detail: str = "payload is not valid JSON of the expected shape") -> None:
        super().__init__("malformed_payload", detail)


# ---------------------------------------------------------------------------------- payments


class GatewayPaymentStatus(StrEnum):
    """What the gateway says about a payment, in payrail's words."""

    REQUIRES_ACTION = "requires_action"  # waiting for the customer (pay page, 3DS, redirect)
    REQUIRES_CAPTURE = "requires_capture"  # customer approved/authorized; merchant must capture
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


#: The event a status sync reports for a payment the gateway holds in each status.
SYNC_EVENT_KINDS: Mapping[GatewayPaymentStatus, GatewayEventKind] = {
    GatewayPaymentStatus.REQUIRES_ACTION: GatewayEventKind.PAYMENT_REQUIRES_ACTION,
    GatewayPaymentStatus.REQUIRES_CAPTURE: GatewayEventKind.PAYMENT_AUTHORIZED,
    GatewayPaymentStatus.PROCESSING: GatewayEventKind.PAYMENT_PROCESSING,
    GatewayPaymentStatus.SUCCEEDED: GatewayEventKind.PAYMENT_SUCCEEDED,
    GatewayPaymentStatus.FAILED: GatewayEventKind.PAYMENT_FAILED,
    GatewayPaymentStatus.CANCELED: GatewayEventKind.PAYMENT_CANCELED,
}


@dataclass(frozen=True, slots=True)
class CreatePayment:
    """A request to open a payment at the gateway.

    ``payment_id`` is payrail's id; it goes into the gateway's metadata / custom id / notes /
    merchant reference so webhooks can be routed back, and ``idempotency_key`` (derived from it)
    makes every retry of the call safe.
    """

    payment_id: str
    idempotency_key: str
    amount: int
    currency: str
    description: str | None = None
    user_id: str | None = None
    sku: str | None = None
    return_url: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def gateway_metadata(self) -> dict[str, str]:
        """What every gateway stores with the payment: the caller's metadata plus
        ``payrail_payment_id``, ``user_id`` and ``sku`` (payrail's keys win, so a caller cannot
        re-route webhooks by passing its own ``payrail_payment_id``)."""
        tags = {**self.metadata, "payrail_payment_id": self.payment_id}
        if self.user_id is not None:
            tags["user_id"] = self.user_id
        if self.sku is not None:
            tags["sku"] = self.sku
        return tags


@dataclass(frozen=True, slots=True)
class GatewayPayment:
    """The gateway's side of a payment, as created or as last seen."""

    gateway_payment_id: str
    status: GatewayPaymentStatus
    amount: int
    currency: str
    client_secret: str | None = None  # Stripe-style client-side confirmation
    redirect_url: str | None = None  # PayPal approve link, Adyen/Razorpay hosted page
    amount_refunded: int = 0
    raw: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateRefund:
    refund_id: str
    idempotency_key: str
    payment_id: str
    gateway_payment_id: str
    amount: int
    currency: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayRefund:
    gateway_refund_id: str
    status: str  # "pending" | "succeeded" | "failed"
    amount: int
    currency: str
    raw: Mapping[str, object] = field(default_factory=dict)


class PaymentsClient(abc.ABC):
    @abc.abstractmethod
    async def create(self, request: CreatePayment) -> GatewayPayment:
        """Open the payment (intent/order/session). Safe to retry with the same key."""

    @abc.abstractmethod
    async def capture(self, gateway_payment_id: str, *, idempotency_key: str) -> GatewayPayment:
        """Confirm/capture where the gateway needs an explicit step (PayPal, Razorpay)."""

    @abc.abstractmethod
    async def cancel(self, gateway_payment_id: str, *, idempotency_key: str) -> GatewayPayment:
        """Cancel a payment that has not been captured."""


class RefundsClient(abc.ABC):
    @abc.abstractmethod
    async def refund(self, request: CreateRefund) -> GatewayRefund:
        """Refund ``request.amount`` of a captured payment. Safe to retry with the same key."""


class StatusSync(abc.ABC):
    """Asks the gateway what happened, for payments whose webhooks never came."""

    @abc.abstractmethod
    async def sync(self, *, payment_id: str, gateway_payment_id: str | None) -> list[GatewayEvent]:
        """Events describing the payment's current state at the gateway.

        With ``gateway_payment_id`` unknown (the create call's outcome was unknown) the gateway is
        searched by payrail's payment id / idempotency key where it supports that. Event ids are
        deterministic for a given gateway state so repeated syncs dedupe downstream.
        """


class WebhookVerifier(abc.ABC):
    """Verifies a webhook over its exact raw bytes and turns it into payrail events."""

    @abc.abstractmethod
    async def verify(self, headers: Mapping[str, str], body: bytes) -> list[GatewayEvent]:
        """Verify and normalize. Raises :class:`WebhookRejected` for anything untrusted.

        Returns an empty list for verified events payrail does not use. Header names are
        matched case-insensitively (callers pass a case-insensitive mapping or lower-case keys).
        """

    def acknowledgement(self, events: list[GatewayEvent]) -> tuple[str, str]:
        """Body and media type the gateway expects on success (Adyen wants ``[accepted]``)."""
        return '{"received": true}', "application/json"


class ReportLineType(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    DISPUTE = "dispute"
    DISPUTE_REVERSAL = "dispute_reversal"
    FEE = "fee"
    ADJUSTMENT = "adjustment"
    PAYOUT = "payout"
    PAYOUT_FAILURE = "payout_failure"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One line of a gateway's balance / settlement report, in minor units.

    ``gross - fee == net`` for every line; ``fee`` includes taxes on the fee (Razorpay's ``fee``
    already includes its ``tax``; ``tax`` is kept apart only for display).
    """

    gateway: str
    line_id: str
    type: ReportLineType
    gross: int
    fee: int
    net: int
    currency: str
    created_at: datetime
    available_on: datetime | None = None
    gateway_payment_id: str | None = None
    payment_id: str | None = None
    payout_id: str | None = None
    reporting_category: str | None = None
    tax: int = 0
    raw: Mapping[str, object] = field(default_factory=dict)


class ReportFetcher(abc.ABC):
    @abc.abstractmethod
    def lines(self, *, since: datetime, until: datetime) -> AsyncIterator[ReportLine]:
        """Balance/settlement lines created in ``[since, until)``, paged lazily."""


class GatewayFamily(abc.ABC):
    """Abstract factory: builds the related services of one gateway for one account."""

    #: registry name, e.g. ``"stripe"``; also the ``<gateway>`` of webhook routes and ce_ids.
    name: str

    @abc.abstractmethod
    def payments(self, config: GatewayAccountConfig) -> PaymentsClient: ...

    @abc.abstractmethod
    def refunds(self, config: GatewayAccountConfig) -> RefundsClient: ...

    @abc.abstractmethod
    def status_sync(self, config: GatewayAccountConfig) -> StatusSync: ...

    @abc.abstractmethod
    def webhook_verifier(
        self, config: GatewayAccountConfig, *, account: str
    ) -> WebhookVerifier: ...

    @abc.abstractmethod
    def report_fetcher(self, config: GatewayAccountConfig) -> ReportFetcher: ...

    async def aclose(self) -> None:  # noqa: B027 - optional: most families keep nothing open
        """Close the connections the family keeps for the running event loop (a family that
        keeps none has nothing to do)."""


def account_fingerprint(config: GatewayAccountConfig) -> str:
    """A stable digest of an account's whole config (secrets included, but not kept)."""
    secrets = "|".join(
        s.get_secret_value() if s else "" for s in (config.api_key, config.api_secret)
    )
    return hashlib.sha256(config.model_dump_json().encode() + b"\0" + secrets.encode()).hexdigest()


class ConventionalFamily(GatewayFamily):
    """A family whose members follow the package layout, imported on first use.

    For a gateway package ``package`` and class-name ``prefix`` (``"Stripe"``) the members are
    ``<package>.payments``: ``<prefix>Api(config)`` - the account's connection, built once per
    account config and shared by its clients (one pool, one OAuth token) -,
    ``<prefix>PaymentsClient(api)``, ``<prefix>RefundsClient(api)``, ``<prefix>StatusSync(api)``;
    ``<package>.webhooks``: ``<prefix>WebhookVerifier(config, account=...)``;
    ``<package>.reports``: ``<prefix>ReportFetcher(config)``.

    Importing lazily keeps resolving a family cheap (no gateway SDK is loaded until a member is
    built) and lets each member module evolve on its own. Connections are kept per event loop
    (async HTTP pools belong to the loop that opened them); built outside a running loop, a
    connection is not kept.
    """

    package: str
    prefix: str

    def __init__(self) -> None:
        self._apis: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, object]] = (
            weakref.WeakKeyDictionary()
        )

    def member(self, module: str, suffix: str) -> Any:
        """The class ``<prefix><suffix>`` of ``<package>.<module>``."""
        return getattr(importlib.import_module(f"{self.package}.{module}"), self.prefix + suffix)

    def api(self, config: GatewayAccountConfig) -> object:
        """The account's shared connection object, built on first use."""
        build = self.member("payments", "Api")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return build(config)
        apis = self._apis.setdefault(loop, {})
        key = account_fingerprint(config)
        if key not in apis:
            apis[key] = build(config)
        return apis[key]

    async def aclose(self) -> None:
        for api in self._apis.pop(asyncio.get_running_loop(), {}).values():
            close = getattr(api, "aclose", None)
            if close is not None:
                await close()

    def payments(self, config: GatewayAccountConfig) -> PaymentsClient:
        client: PaymentsClient = self.member("payments", "PaymentsClient")(self.api(config))
        return client

    def refunds(self, config: GatewayAccountConfig) -> RefundsClient:
        client: RefundsClient = self.member("payments", "RefundsClient")(self.api(config))
        return client

    def status_sync(self, config: GatewayAccountConfig) -> StatusSync:
        sync: StatusSync = self.member("payments", "StatusSync")(self.api(config))
        return sync

    def webhook_verifier(self, config: GatewayAccountConfig, *, account: str) -> WebhookVerifier:
        verifier: WebhookVerifier = self.member("webhooks", "WebhookVerifier")(
            config, account=account
        )
        return verifier

    def report_fetcher(self, config: GatewayAccountConfig) -> ReportFetcher:
        fetcher: ReportFetcher = self.member("reports", "ReportFetcher")(config)
        return fetcher
