"""One ISO 4217 table for both sides: what an agent scales to minor units, the collector writes back exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from footfall.protocol.currencies import MINOR_UNIT_DIGITS, is_currency, minor_unit_digits, to_major


@pytest.mark.parametrize(
    ("code", "digits"), [("EUR", 2), ("eur", 2), ("JPY", 0), ("KWD", 3), ("CLF", 4), ("XAU", 0), ("QQQ", 2)]
)
def test_minor_unit_digits(code: str, digits: int) -> None:
    assert minor_unit_digits(code) == digits


def test_codes_without_a_minor_unit_are_not_taken_for_a_receipts_currency() -> None:
    assert is_currency("EUR") and is_currency("JPY")
    assert not is_currency("XAU"), "gold has no minor unit and is no shop's currency"
    assert not is_currency("DUE") and not is_currency("eur")


@pytest.mark.parametrize("code", [*sorted(MINOR_UNIT_DIGITS), "XAU", "XTS", "QQQ"])
def test_what_the_agent_scales_the_collector_writes_back(code: str) -> None:
    # The agent: a receipt's amount in the major unit, with the currency's decimals, becomes minor units.
    digits = minor_unit_digits(code)
    major = Decimal("1234.5678").quantize(Decimal(1).scaleb(-digits))
    minor = major.scaleb(digits)
    assert minor == minor.to_integral_value()
    # The collector: those minor units as major units again, exactly.
    assert to_major(int(minor), code) == major


def test_to_major_keeps_the_currencys_decimals() -> None:
    assert str(to_major(6167, "EUR")) == "61.67"
    assert str(to_major(6100, "EUR")) == "61.00"
    assert str(to_major(6167.25, "EUR")) == "61.6725"
    assert str(to_major(6167, "JPY")) == "6167"
    assert str(to_major(6167, "KWD")) == "6.167"
    assert str(to_major(6167, "XAU")) == "6167"
