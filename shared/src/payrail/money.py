"""Money as integer minor units plus an ISO 4217 currency code.

Floats never carry money in payrail: a price is ``Money(1999, "USD")``, never ``19.99``.
The exponent table matters because gateways disagree with naive "divide by 100" code:
JPY has no minor unit, KWD has three, and a wrong exponent silently moves money by 10x.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# ISO 4217 minor-unit exponents that differ from the default of 2.
# fmt: off
_EXPONENTS: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0, "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}

# Active ISO 4217 codes with a default exponent of 2 (a whitelist: an unknown code is an error,
# not a guess).
_TWO_DECIMAL = frozenset({
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD",
    "BDT", "BGN", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD", "EGP",
    "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR",
    "KPW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON",
    "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS",
    "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD",
    "TWD", "TZS", "UAH", "USD", "UYU", "UZS", "VES", "WST", "XCD", "YER", "ZAR", "ZMW",
    "ZWL",
})
# fmt: on


class CurrencyError(ValueError):
    """An unknown ISO 4217 code, or an amount that does not fit the currency's exponent."""


def normalize_currency(code: str) -> str:
    """Upper-case and validate an ISO 4217 code; raises CurrencyError when unknown."""
    upper = code.strip().upper()
    if upper not in _EXPONENTS and upper not in _TWO_DECIMAL:
        raise CurrencyError(f"unknown ISO 4217 currency code {code!r}")
    return upper


def exponent(currency: str) -> int:
    """Number of minor-unit digits of ``currency`` (JPY 0, USD 2, KWD 3)."""
    return _EXPONENTS.get(normalize_currency(currency), 2)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units of one currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise CurrencyError(
                f"amount must be an integer number of minor units, got {self.amount!r}"
            )
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def from_major(cls, value: str | Decimal, currency: str) -> Money:
        """Parse a decimal string in major units ("19.99"), rejecting more digits than allowed."""
        digits = exponent(currency)
        dec = Decimal(value)
        scaled = dec.scaleb(digits)
        if scaled != scaled.to_integral_value():
            raise CurrencyError(f"{value} has more than {digits} decimal places for {currency}")
        return cls(int(scaled), currency)

    def to_major(self) -> Decimal:
        """The amount in major units as an exact Decimal (display, gateway APIs that want it)."""
        return Decimal(self.amount).scaleb(-exponent(self.currency))

    def format(self) -> str:
        """Human-readable rendering, e.g. ``19.99 USD``."""
        digits = exponent(self.currency)
        return f"{self.to_major():.{digits}f} {self.currency}"

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)
