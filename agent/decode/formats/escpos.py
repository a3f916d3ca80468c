"""`format = "escpos"`: one printed receipt (the bytes between `ESC @` and `GS V`) becomes a transaction.

The receipt's text is decoded in its code page and its printer commands are taken out; then
the per-POS template (regular expressions, each with a group named `value`) finds the total,
the time, the receipt number, the item count, and the markers of refunds and voids:

```toml
[escpos]
codepage = "cp437"
currency = "EUR"
decimal = "."                        # the decimal mark the POS prints ("," in much of Europe)
total = '(?m)^\\s*TOTAL\\s+\\D*(?P<value>-?[\\d.,]+)'
time = '(?P<value>\\d{2}/\\d{2}/\\d{4} \\d{2}:\\d{2})'
time_format = "%d/%m/%Y %H:%M"       # strptime; the time is local (profile [time] naive = "site")
receipt = '(?i)receipt\\s*#?\\s*(?P<value>\\w[\\w-]*)'
items = '(?i)(?P<value>\\d+)\\s+items?'
refund = '(?i)\\bREFUND\\b'
void = '(?i)\\bVOID\\b'
```

The item it yields: `txn_id` (the receipt number, or `sha-` and a hash of the receipt text when
the POS prints none, so a reprint of the same receipt is the same transaction), `amount` (the
total as printed, without its sign: a refund is told by its marker, or by a negative total),
`currency`, `time`, `kind` (sale, refund or void), `items`, and `raw`: the whole receipt,
decoded losslessly, kept with the transaction for audit. A receipt with no total is refused.
Every key can be overridden per source (`adapter_options`), since every POS prints its own way.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from footfall.agent.decode.extract import DecodeError
from footfall.agent.decode.formats.named import NamedValues, unknown_keys

# Printer commands and how many parameter bytes follow them (ESC/POS): enough to strip what
# receipts use (init, styles, alignment, feeds, code page, cut). An unknown ESC or GS command
# loses its next byte only.
_ESC_PARAMS = {b"@": 0, b"!": 1, b"E": 1, b"-": 1, b"a": 1, b"d": 1, b"t": 1, b"M": 1, b"G": 1, b"J": 1, b"p": 3}
_GS_PARAMS = {b"!": 1, b"B": 1, b"H": 1, b"h": 1, b"w": 1, b"f": 1, b"L": 2, b"W": 2}
_PATTERNS = ("total", "time", "receipt", "items", "refund", "void")


@dataclass(frozen=True, slots=True)
class EscposOptions:
    """`[escpos]`, compiled."""

    codepage: str
    currency: str
    decimal: str
    time_format: str
    patterns: Mapping[str, re.Pattern[str] | None]


class EscposExtractor(NamedValues):
    """ESC/POS receipts; one transaction per receipt."""

    name = "escpos"

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> EscposOptions:
        """Read `[escpos]`: the code page, currency and the receipt template."""
        unknown_keys(table, {"codepage", "currency", "decimal", "time_format", *_PATTERNS}, where, add)
        codepage = str(table.get("codepage", "cp437"))
        try:
            codecs.lookup(codepage)
        except LookupError:
            add(f"{where}.codepage", f"unknown code page {codepage!r}; e.g. cp437, cp850, cp1252")
            codepage = "cp437"
        decimal = table.get("decimal", ".")
        if decimal not in (".", ","):
            add(f"{where}.decimal", 'must be "." or ","')
            decimal = "."
        patterns: dict[str, re.Pattern[str] | None] = {}
        for key in _PATTERNS:
            text = table.get(key)
            if text is None:
                patterns[key] = None
                continue
            try:
                pattern = re.compile(str(text))
            except re.error as exc:
                add(f"{where}.{key}", f"not a valid regular expression: {exc}")
                continue
            if key in ("total", "time", "receipt", "items") and "value" not in pattern.groupindex:
                add(f"{where}.{key}", "needs a group named value, e.g. (?P<value>...)")
            patterns[key] = pattern
        if patterns.get("total") is None:
            add(f"{where}.total", "required: the pattern of the TOTAL line")
        return EscposOptions(
            codepage, str(table.get("currency", "")), decimal, str(table.get("time_format", "")), patterns
        )

    def items(self, options: EscposOptions, payload: bytes) -> list[tuple[str, Any]]:
        """One receipt -> one item."""
        raw = payload.decode(options.codepage, errors="replace")
        text = strip_commands(payload).decode(options.codepage, errors="replace")
        item: dict[str, Any] = {"raw": raw, "currency": options.currency}
        total = _find(options.patterns.get("total"), text)
        if total is None:
            raise DecodeError("receipt: no TOTAL line matches the template's total pattern")
        amount = total.replace(" ", "")
        thousands = "," if options.decimal == "." else "."
        amount = amount.replace(thousands, "").replace(options.decimal, ".")
        negative = amount.startswith("-") or amount.endswith("-")
        item["amount"] = amount.strip("-")
        kind = "sale"
        if _find(options.patterns.get("void"), text, whole=True) is not None:
            kind = "void"
        elif negative or _find(options.patterns.get("refund"), text, whole=True) is not None:
            kind = "refund"
        item["kind"] = kind
        receipt = _find(options.patterns.get("receipt"), text)
        item["txn_id"] = receipt or "sha-" + hashlib.sha256(text.encode()).hexdigest()[:20]
        count = _find(options.patterns.get("items"), text)
        if count is not None:
            item["items"] = int(count) if count.isdigit() else count
        when = _find(options.patterns.get("time"), text)
        if when is not None and options.time_format:
            try:
                item["time"] = datetime.strptime(when, options.time_format).isoformat()
            except ValueError:
                raise DecodeError(f"receipt time {when!r} does not match time_format {options.time_format!r}") from None
        elif when is not None:
            item["time"] = when
        return [("receipt", item)]


def _find(pattern: re.Pattern[str] | None, text: str, *, whole: bool = False) -> str | None:
    if pattern is None:
        return None
    match = pattern.search(text)
    if match is None:
        return None
    return match.group(0) if whole else match.group("value").strip()


def strip_commands(data: bytes) -> bytes:
    """The printable text of a receipt: ESC and GS commands and other control bytes removed, newlines kept."""
    out = bytearray()
    i = 0
    while i < len(data):
        byte = data[i : i + 1]
        if byte in (b"\x1b", b"\x1d"):
            command = data[i + 1 : i + 2]
            table = _ESC_PARAMS if byte == b"\x1b" else _GS_PARAMS
            if byte == b"\x1d" and command == b"V":
                i += 3 + (1 if data[i + 2 : i + 3] in (b"A", b"B") else 0)
                continue
            i += 2 + table.get(command, 0)
            continue
        if byte == b"\n" or byte[0] >= 0x20:
            out += byte
        i += 1
    return bytes(out)
