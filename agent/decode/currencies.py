"""ISO 4217: the active currency codes and how many decimals each one's minor unit has.

Used where a device states its currency in words (a printed receipt: is "EUR" a currency, or
the "DUE" of "TOTAL DUE"?) and where an amount is written in the major unit (`decimals =
"currency"`: 12.50 EUR is 1250 cents, 1250 JPY is 1250 yen, 1.250 KWD is 1250 fils). A table
of ~180 codes that changes once in a few years does not earn a dependency (babel's locale data
is tens of megabytes on a store gateway); a code missing here is still accepted where a profile
names its currency itself, and gets 2 decimals.
"""

from __future__ import annotations

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
MINOR_UNIT_DIGITS: dict[str, int] = {
    code: digits
    for digits, codes in ((0, _DIGITS_0), (2, _DIGITS_2), (3, _DIGITS_3), (4, _DIGITS_4))
    for code in codes.split()
}


def is_currency(code: str) -> bool:
    """Whether `code` is an active ISO 4217 currency code (upper case)."""
    return code in MINOR_UNIT_DIGITS


def minor_unit_digits(code: str) -> int:
    """How many decimals the currency's minor unit has: 2 for EUR, 0 for JPY, 3 for KWD (2 when unknown)."""
    return MINOR_UNIT_DIGITS.get(code.upper(), 2)
