"""ISO 4217: the active currency codes and how many decimals each one's minor unit has (pure data).

Records carry money as an integer amount of the currency's minor unit with its code (SPEC.md
section 2). The agent reads this table where a device states its currency in words (a printed
receipt: is "EUR" a currency, or the "DUE" of "TOTAL DUE"?) and where an amount is written in the
major unit (12.50 EUR is 1250 cents, 1250 JPY is 1250 yen, 1.250 KWD is 1250 fils); the
collector reads it to write minor units as major ones in CSV (61.67 for 6167 EUR cents). One
table, so that what an agent scales and what the collector unscales always agree.

Most currencies have 2 decimals, and so does a code this table does not know; codes without a
minor unit in ISO 4217 (gold XAU, SDR XDR, test XTS, ...) count their amounts in whole units,
and are not taken for a currency stated on a receipt. A table of ~180 codes that changes once in
a few years does not earn a dependency (babel's locale data is tens of megabytes on a gateway).
"""

from __future__ import annotations

from decimal import Decimal

_DIGITS_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_DIGITS_3 = "BHD IQD JOD KWD LYD OMR TND"
_DIGITS_4 = "CLF UYW"
_DIGITS_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF "
    "CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ "
    "GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK "
    "MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB "
    "SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD "
    "USN UYU UZS VED VES WST XCD YER ZAR ZMW ZWG ZWL"
)
# ISO 4217 says N.A.: precious metals, SDR, test and "no currency" codes have no minor unit.
_DIGITS_NONE = "XAG XAU XBA XBB XBC XBD XDR XPD XPT XSU XTS XUA XXX"
_NO_MINOR_UNIT = frozenset(_DIGITS_NONE.split())
MINOR_UNIT_DIGITS: dict[str, int] = {
    code: digits
    for digits, codes in ((0, _DIGITS_0), (2, _DIGITS_2), (3, _DIGITS_3), (4, _DIGITS_4))
    for code in codes.split()
}


def is_currency(code: str) -> bool:
    """Whether `code` is an active ISO 4217 currency code (upper case)."""
    return code in MINOR_UNIT_DIGITS


def minor_unit_digits(code: str) -> int:
    """How many decimals the currency's minor unit has: 2 for EUR, 0 for JPY and XAU, 3 for KWD (2 when unknown)."""
    code = code.upper()
    if code in _NO_MINOR_UNIT:
        return 0
    return MINOR_UNIT_DIGITS.get(code, 2)


def to_major(minor: int | float, currency: str) -> Decimal:
    """An amount in minor units as major units, exactly, with at least the currency's decimals.

    6167 EUR -> 61.67, 6167.0 -> 61.67, 6167.25 -> 61.6725, 6167 JPY -> 6167, 6167 KWD -> 6.167.
    """
    places = minor_unit_digits(currency)
    value = Decimal(repr(minor)).scaleb(-places).normalize()
    if value.as_tuple().exponent > -places:  # type: ignore[operator]
        value = value.quantize(Decimal(1).scaleb(-places))
    return value
