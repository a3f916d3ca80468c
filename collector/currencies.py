"""ISO 4217 minor units: how many decimals a currency's amounts have, to write minor units as major ones.

Agents send amounts in minor units (cents, yen, fils) with the currency's code; the JSON answers
keep minor units, and the CSV writes major units (61.67 for 6167 EUR cents) beside a `currency`
column, for spreadsheets and BI tools. Most currencies have 2 decimals, and so does a code this
table does not know; the exceptions are listed here (ISO 4217). Codes without a minor unit in
ISO 4217 (gold XAU, SDR XDR, test XTS, ...) count their amounts in whole units.
"""

from __future__ import annotations

from decimal import Decimal

_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF",
         "XOF", "XPF"),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
    # ISO 4217 says N.A.: no minor unit, amounts are whole units.
    **dict.fromkeys(("XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"), 0),
}

def exponent(currency: str) -> int:
    """The number of decimals of `currency`'s major unit (2 for EUR, 0 for JPY, 3 for KWD)."""
    return _EXPONENTS.get(currency, 2)


def to_major(minor: int | float, currency: str) -> Decimal:
    """An amount in minor units as major units, exactly, with at least the currency's decimals.

    6167 EUR -> 61.67, 6167.0 -> 61.67, 6167.25 -> 61.6725, 6167 JPY -> 6167, 6167 KWD -> 6.167.
    """
    places = exponent(currency)
    value = Decimal(repr(minor)).scaleb(-places).normalize()
    if value.as_tuple().exponent > -places:  # type: ignore[operator]
        value = value.quantize(Decimal(1).scaleb(-places))
    return value
