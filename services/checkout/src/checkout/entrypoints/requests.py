"""Request bodies of the HTTP API, and the problems bad ones turn into.

Amounts are JSON integers in minor units of the currency (``1999`` USD is 19.99 USD, ``1999``
JPY is 1999 yen, ``1999`` KWD is 1.999 KWD). A fractional number (``19.99``), a number written
as a float (``1999.0``), a string, zero or a negative amount is an ``invalid-amount`` problem
whose detail names the currency's exponent; an unknown ISO 4217 code is ``invalid-currency``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError

from payrail.money import CurrencyError, exponent, normalize_currency
from payrail.web.problems import Problem

#: the largest amount accepted (minor units); far above any real payment, well inside bigint
MAX_AMOUNT = 10**15

Text = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class PaymentRequest(BaseModel):
    """Body of ``POST /v1/payments``."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT)]
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    user_id: Text
    sku: Text
    gateway: Text
    description: Annotated[str, StringConstraints(max_length=1000)] | None = None
    metadata: dict[Text, Annotated[str, StringConstraints(max_length=500)]] = Field(
        default_factory=dict, max_length=50
    )


class RefundRequest(BaseModel):
    """Body of ``POST /v1/payments/{id}/refunds``; no ``amount`` refunds all that is left."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT)] | None = None
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Problem(
            400, "Malformed JSON", "the request body is not JSON", type_="malformed-json"
        ) from None


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def _amount_problem(currency: object) -> Problem:
    try:
        code = normalize_currency(str(currency))
    except CurrencyError:
        return Problem(
            422,
            "Invalid amount",
            "amount is a positive integer number of minor units of the currency",
            type_="invalid-amount",
        )
    digits = exponent(code)
    return Problem(
        422,
        "Invalid amount",
        f"amount is a positive integer number of minor units: {code} has {digits} decimal"
        f" places, so {10**digits} means 1 {code}",
        type_="invalid-amount",
        currency=code,
        currency_exponent=digits,
    )


def parse_payment(raw: bytes) -> PaymentRequest:
    data = _loads(raw)
    try:
        body = PaymentRequest.model_validate(data)
    except ValidationError as exc:
        fields = {e["loc"][0] for e in exc.errors() if e["loc"]}
        if "amount" in fields and isinstance(data, dict):
            raise _amount_problem(data.get("currency")) from None
        raise Problem(
            422,
            "Invalid request",
            "the request does not match the schema",
            type_="invalid-request",
            errors=_errors(exc),
        ) from None
    try:
        currency = normalize_currency(body.currency)
    except CurrencyError as exc:
        raise Problem(422, "Invalid currency", str(exc), type_="invalid-currency") from None
    return body.model_copy(update={"currency": currency})


def parse_refund(raw: bytes) -> RefundRequest:
    data = _loads(raw) if raw.strip() else {}
    try:
        return RefundRequest.model_validate(data)
    except ValidationError as exc:
        fields = {e["loc"][0] for e in exc.errors() if e["loc"]}
        if "amount" in fields:
            raise Problem(
                422,
                "Invalid amount",
                "a refund amount is a positive integer number of minor units of the payment's"
                " currency (omit it to refund everything refundable)",
                type_="invalid-amount",
            ) from None
        raise Problem(
            422,
            "Invalid request",
            "the request does not match the schema",
            type_="invalid-request",
            errors=_errors(exc),
        ) from None
