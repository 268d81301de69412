from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.money import CurrencyError, Money, exponent


@pytest.mark.parametrize(("currency", "digits"), [("USD", 2), ("jpy", 0), ("KWD", 3), ("EUR", 2)])
def test_exponent_follows_iso_4217(currency: str, digits: int) -> None:
    assert exponent(currency) == digits


def test_unknown_currency_is_an_error_not_a_guess() -> None:
    with pytest.raises(CurrencyError, match="unknown ISO 4217"):
        Money(100, "XYZ")


def test_floats_never_carry_money() -> None:
    with pytest.raises(CurrencyError, match="integer"):
        Money(19.99, "USD")  # type: ignore[arg-type]
    with pytest.raises(CurrencyError):
        Money(True, "USD")


@pytest.mark.parametrize(
    ("major", "currency", "minor"),
    [("19.99", "USD", 1999), ("500", "JPY", 500), ("1.234", "KWD", 1234), ("0.10", "EUR", 10)],
)
def test_from_major_is_exact_and_exponent_aware(major: str, currency: str, minor: int) -> None:
    assert Money.from_major(major, currency) == Money(minor, currency)


@pytest.mark.parametrize(("major", "currency"), [("19.999", "USD"), ("1.5", "JPY")])
def test_from_major_rejects_digits_the_currency_does_not_have(major: str, currency: str) -> None:
    with pytest.raises(CurrencyError, match="decimal places"):
        Money.from_major(major, currency)


def test_arithmetic_refuses_mixed_currencies() -> None:
    assert Money(100, "USD") + Money(50, "USD") == Money(150, "USD")
    with pytest.raises(CurrencyError):
        _ = Money(100, "USD") - Money(50, "EUR")


def test_format_uses_the_currency_exponent() -> None:
    assert Money(1999, "USD").format() == "19.99 USD"
    assert Money(1999, "JPY").format() == "1999 JPY"
    assert Money(1999, "KWD").format() == "1.999 KWD"


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(["USD", "JPY", "KWD"]))
def test_major_round_trip(minor: int, currency: str) -> None:
    money = Money(minor, currency)
    assert Money.from_major(money.to_major(), currency) == money
    assert isinstance(money.to_major(), Decimal)
