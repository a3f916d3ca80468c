"""`format = "escpos"`: one printed receipt (the bytes between `ESC @` and `GS V`) becomes a transaction.

The receipt's bytes are read as the printer reads them (`printed_text`): every ESC/POS command
is recognised with its parameters and taken out, the text in between is decoded in the code
page in force (the template's `codepage`, switched by `ESC t n` as the printer would), and what
is left is plain readable text: lines ended by `\\n`, tabs expanded, no control characters.
Then the per-POS template (regular expressions, each with a group named `value`) finds the
total, the time, the receipt number, the item count, the currency, and the markers of refunds
and voids:

```toml
[escpos]
codepage = "cp437"                   # until the receipt selects another with ESC t n
currency = "EUR"                     # the currency when the receipt states none
currency_pattern = '(?mi)^\\s*TOTAL\\b\\s*(?P<value>[A-Z]{3}|€|£)'   # where the receipt states it
symbols = { "€" = "EUR", "£" = "GBP" }                              # symbols it may state it by
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
total as printed, as a decimal without its sign: a refund is told by its marker, or by a
negative total; the profile's `decimals = "currency"` scales it by the currency's minor unit),
`currency` (as the receipt states it, else the template's), `time`, `kind` (sale, refund or
void), `items`, and `raw`: the receipt's printed text, kept with the transaction for audit.
A receipt with no total is refused. Every key can be overridden per source (`adapter_options`),
since every POS prints its own way.

Commands the parser does not know are skipped as ESC/GS/FS plus one byte (the printer's own
rule for most of them) and counted: the intake adds them to the source's `garbage`, and
`footfall agent probe` shows them, so a POS that uses an exotic command shows up instead of
leaving stray characters in the text.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.formats.named import NamedValues, unknown_keys
from footfall.protocol.currencies import is_currency
from footfall.protocol.records import currency_problem

ESC, GS, FS, DLE = 0x1B, 0x1D, 0x1C, 0x10
_LEADS = {ESC: "ESC", GS: "GS", FS: "FS", DLE: "DLE"}
_PATTERNS = ("total", "time", "receipt", "items", "refund", "void", "currency_pattern")
_VALUE_PATTERNS = ("total", "time", "receipt", "items", "currency_pattern")
_TAB = 8

# ESC n: parameter bytes after the command byte (Epson ESC/POS command reference). Commands
# whose length depends on their parameters are handled in `_command`.
_ESC_FIXED = {
    0x0C: 0,  # ESC FF  print the page (page mode)
    0x20: 1,  # ESC SP n  character right spacing
    0x21: 1,  # ESC ! n  print mode (font, bold, double height/width, underline)
    0x24: 2,  # ESC $ nL nH  absolute print position
    0x25: 1,  # ESC % n  user-defined character set on/off
    0x2D: 1,  # ESC - n  underline
    0x32: 0,  # ESC 2  default line spacing
    0x33: 1,  # ESC 3 n  line spacing
    0x3C: 0,  # ESC <  return home
    0x3D: 1,  # ESC = n  select peripheral device
    0x3F: 1,  # ESC ? n  cancel a user-defined character
    0x40: 0,  # ESC @  initialise
    0x45: 1,  # ESC E n  emphasised (bold)
    0x47: 1,  # ESC G n  double-strike
    0x4A: 1,  # ESC J n  print and feed n dots
    0x4B: 1,  # ESC K n  print and reverse feed n dots
    0x4C: 0,  # ESC L  page mode
    0x4D: 1,  # ESC M n  character font
    0x52: 1,  # ESC R n  international character set
    0x53: 0,  # ESC S  standard mode
    0x54: 1,  # ESC T n  print direction (page mode)
    0x55: 1,  # ESC U n  unidirectional printing
    0x56: 1,  # ESC V n  90-degree rotation
    0x57: 8,  # ESC W xL xH yL yH dxL dxH dyL dyH  print area (page mode)
    0x5C: 2,  # ESC \ nL nH  relative print position
    0x61: 1,  # ESC a n  justification
    0x63: 2,  # ESC c 3 n / ESC c 4 n / ESC c 5 n  paper sensors, panel buttons
    0x64: 1,  # ESC d n  print and feed n lines
    0x65: 1,  # ESC e n  print and reverse feed n lines
    0x69: 0,  # ESC i  partial cut
    0x6D: 0,  # ESC m  partial cut
    0x70: 3,  # ESC p m t1 t2  cash drawer kick pulse
    0x72: 1,  # ESC r n  print colour
    0x74: 1,  # ESC t n  code page
    0x75: 1,  # ESC u n  transmit peripheral status
    0x76: 0,  # ESC v  transmit paper sensor status
    0x7B: 1,  # ESC { n  upside-down printing
}
# GS n, as above.
_GS_FIXED = {
    0x21: 1,  # GS ! n  character size
    0x24: 2,  # GS $ nL nH  absolute vertical position (page mode)
    0x2F: 1,  # GS / m  print the downloaded bit image
    0x3A: 0,  # GS :  start or end a macro definition
    0x42: 1,  # GS B n  white/black reverse
    0x48: 1,  # GS H n  barcode text (HRI) position
    0x49: 1,  # GS I n  transmit printer ID
    0x4C: 2,  # GS L nL nH  left margin
    0x50: 2,  # GS P x y  motion units
    0x54: 1,  # GS T n  print position to the line's start
    0x57: 2,  # GS W nL nH  print area width
    0x5C: 2,  # GS \ nL nH  relative vertical position (page mode)
    0x5E: 3,  # GS ^ r t m  run a macro
    0x61: 1,  # GS a n  automatic status back
    0x62: 1,  # GS b n  smoothing
    0x63: 0,  # GS c  print the counter
    0x66: 1,  # GS f n  barcode text (HRI) font
    0x67: 4,  # GS g 0 m nL nH / GS g 2 m nL nH  maintenance counters
    0x68: 1,  # GS h n  barcode height
    0x72: 1,  # GS r n  transmit status
    0x77: 1,  # GS w n  barcode module width
    0x7A: 3,  # GS z 0 t1 t2  online recovery wait
}
# FS n (Kanji mode and NV images), as above.
_FS_FIXED = {
    0x21: 1,  # FS ! n  Kanji print mode
    0x26: 0,  # FS &  Kanji mode on
    0x2D: 1,  # FS - n  Kanji underline
    0x2E: 0,  # FS .  Kanji mode off
    0x32: 74,  # FS 2 c1 c2 d1...d72  define a user-defined Kanji character
    0x43: 1,  # FS C n  Kanji code system
    0x53: 2,  # FS S n1 n2  Kanji spacing
    0x57: 1,  # FS W n  Kanji quadruple size
    0x70: 2,  # FS p n m  print an NV bit image
}
# ESC t n: the printer's code page tables, as Python codecs (others keep the current one).
CODE_PAGES = {
    0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865", 16: "cp1252", 17: "cp866", 18: "cp852", 19: "cp858",
}


@dataclass(frozen=True, slots=True)
class EscposOptions:
    """`[escpos]`, compiled."""

    codepage: str
    currency: str
    decimal: str
    time_format: str
    patterns: Mapping[str, re.Pattern[str] | None]
    symbols: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Printed:
    """A receipt as the printer printed it: its text, and the commands the parser did not know."""

    text: str
    unknown: list[str] = field(default_factory=list)


class EscposExtractor(NamedValues):
    """ESC/POS receipts; one transaction per receipt."""

    name = "escpos"

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> EscposOptions:
        """Read `[escpos]`: the code page, currency and the receipt template."""
        unknown_keys(table, {"codepage", "currency", "decimal", "time_format", "symbols", *_PATTERNS}, where, add)
        codepage = str(table.get("codepage", "cp437"))
        try:
            codecs.lookup(codepage)
        except LookupError:
            add(f"{where}.codepage", f"unknown code page {codepage!r}; e.g. cp437, cp850, cp858, cp1252")
            codepage = "cp437"
        decimal = table.get("decimal", ".")
        if decimal not in (".", ","):
            add(f"{where}.decimal", 'must be "." or ","')
            decimal = "."
        currency = str(table.get("currency", ""))
        if currency and currency_problem(currency) is not None:
            add(f"{where}.currency", f"must be an ISO 4217 code such as EUR, got {currency!r}")
        symbols = table.get("symbols", {})
        if not isinstance(symbols, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, str) and currency_problem(v) is None for k, v in symbols.items()
        ):
            add(f"{where}.symbols", 'must map what the receipt prints to ISO 4217 codes, e.g. { "€" = "EUR" }')
            symbols = {}
        patterns: dict[str, re.Pattern[str] | None] = {}
        for key in _PATTERNS:
            text = table.get(key)
            if text is None or text == "":
                patterns[key] = None
                continue
            try:
                pattern = re.compile(str(text))
            except re.error as exc:
                add(f"{where}.{key}", f"not a valid regular expression: {exc}")
                continue
            if key in _VALUE_PATTERNS and "value" not in pattern.groupindex:
                add(f"{where}.{key}", "needs a group named value, e.g. (?P<value>...)")
            patterns[key] = pattern
        if patterns.get("total") is None:
            add(f"{where}.total", "required: the pattern of the TOTAL line")
        return EscposOptions(
            codepage, currency, decimal, str(table.get("time_format", "")), patterns, dict(symbols)
        )

    def items(self, options: EscposOptions, payload: bytes) -> list[tuple[str, Any]]:
        """One receipt -> one item."""
        printed = printed_text(payload, options.codepage)
        text = printed.text
        item: dict[str, Any] = {"raw": text, "currency": _currency(options, text)}
        if printed.unknown:
            item["unknown_commands"] = len(printed.unknown)
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

    def garbage(self, item: Any) -> int:
        """Printer commands of this receipt the parser did not know (skipped as ESC/GS/FS plus one byte)."""
        return int(item.get("unknown_commands", 0)) if isinstance(item, dict) else 0


def _currency(options: EscposOptions, text: str) -> str:
    """The currency the receipt states (a symbol of `symbols`, or an ISO 4217 code), else the template's.

    A word that is no currency (the DUE of "TOTAL DUE") is not a statement: the default applies.
    """
    stated = _find(options.patterns.get("currency_pattern"), text)
    if stated and stated in options.symbols:
        return options.symbols[stated]
    if stated and is_currency(stated.upper()):
        return stated.upper()
    return options.currency


def _find(pattern: re.Pattern[str] | None, text: str, *, whole: bool = False) -> str | None:
    if pattern is None:
        return None
    match = pattern.search(text)
    if match is None:
        return None
    if whole:
        return match.group(0)
    value = match.group("value")
    return value.strip() if value is not None else None


class _Text:
    """The printed text as it builds up: runs of bytes decoded in the code page in force, lines, tabs."""

    def __init__(self, codepage: str) -> None:
        self.codepage = codepage
        self.lines: list[str] = []
        self.line = ""
        self.run = bytearray()

    def flush(self) -> None:
        if self.run:
            decoded = bytes(self.run).decode(self.codepage, errors="replace")
            # A byte the code page maps to a control character (C0, DEL, C1) prints nothing.
            self.line += "".join(ch for ch in decoded if not ("\x7f" <= ch <= "\x9f"))
            self.run.clear()

    def tab(self) -> None:
        self.flush()
        self.line += " " * (_TAB - len(self.line) % _TAB)

    def newline(self) -> None:
        self.flush()
        self.lines.append(self.line)
        self.line = ""

    def feed(self, lines: int) -> None:
        """Print the pending line (if any) and feed `lines` lines, as ESC d n does."""
        self.flush()
        pending = bool(self.line)
        if pending:
            self.newline()
        for _ in range(lines - 1 if pending else lines):
            self.newline()

    def select(self, codepage: str) -> None:
        self.flush()
        self.codepage = codepage

    def text(self) -> str:
        self.flush()
        return "\n".join([*self.lines, self.line])


def printed_text(data: bytes, codepage: str = "cp437") -> Printed:
    """What the printer prints from `data`: text without its commands, in the code pages it selects."""
    out = _Text(codepage)
    unknown: list[str] = []
    i, size = 0, len(data)
    while i < size:
        byte = data[i]
        if byte >= 0x20 and byte != 0x7F:
            out.run.append(byte)
            i += 1
        elif byte in (ESC, GS, FS, DLE):
            i = _command(data, i, out, unknown)
        elif byte in (0x0A, 0x0C):  # LF, FF: print the line
            out.newline()
            i += 1
        elif byte == 0x09:  # HT: to the next tab stop
            out.tab()
            i += 1
        else:  # CR (the LF after it ends the line), CAN, NUL padding and other controls print nothing
            i += 1
    return Printed(out.text(), unknown)


def _u16(data: bytes, at: int) -> int:
    """A little-endian nL nH pair (0 when the frame ends early)."""
    part = data[at : at + 2]
    return part[0] + (part[1] << 8) if len(part) == 2 else 0


def _command(data: bytes, i: int, out: _Text, unknown: list[str]) -> int:
    """Skip the command at `i` with its parameters; returns the index after it."""
    lead = data[i]
    if i + 1 >= len(data):
        return i + 1
    code = data[i + 1]
    if lead == ESC:
        fixed = _ESC_FIXED.get(code)
        if code == 0x74 and i + 2 < len(data):  # ESC t n
            out.select(CODE_PAGES.get(data[i + 2], out.codepage))
        elif code == 0x64 and i + 2 < len(data):  # ESC d n
            out.feed(data[i + 2])
        elif code in (0x4A, 0x4B, 0x65, 0x0C):  # feeds by dots, reverse feeds, page print: the line is printed
            out.feed(0)
        if fixed is not None:
            return i + 2 + fixed
        if code == 0x2A:  # ESC * m nL nH d1...dk: bit image, k = n (8-dot) or 3n (24-dot) bytes
            m, n = data[i + 2] if i + 2 < len(data) else 0, _u16(data, i + 3)
            return i + 5 + (n * 3 if m in (32, 33) else n)
        if code == 0x44:  # ESC D n1...nk NUL: tab positions
            end = data.find(b"\x00", i + 2, i + 2 + 33)
            return end + 1 if end >= 0 else i + 2
        if code == 0x26:  # ESC & y c1 c2 [x d1...d(y*x)]...: user-defined characters
            return _user_characters(data, i)
        if code == 0x28:  # ESC ( fn pL pH d...
            return i + 5 + _u16(data, i + 3)
    elif lead == GS:
        fixed = _GS_FIXED.get(code)
        if fixed is not None:
            return i + 2 + fixed
        if code == 0x56:  # GS V m [n]: cut; m = 65, 66, 97, 98, 103, 104 take a feed amount n
            m = data[i + 2] if i + 2 < len(data) else 0
            return i + 3 + (1 if m in (65, 66, 97, 98, 103, 104) else 0)
        if code == 0x28:  # GS ( fn pL pH d...: 2D codes, graphics, settings
            return i + 5 + _u16(data, i + 3)
        if code == 0x6B:  # GS k m ...: barcode
            m = data[i + 2] if i + 2 < len(data) else 0
            if m <= 6:  # GS k m d1...dk NUL
                end = data.find(b"\x00", i + 3)
                return end + 1 if end >= 0 else len(data)
            return i + 4 + (data[i + 3] if i + 3 < len(data) else 0)  # GS k m n d1...dn
        if code == 0x76 and data[i + 2 : i + 3] == b"0":  # GS v 0 m xL xH yL yH d1...dk: raster image
            return i + 8 + _u16(data, i + 4) * _u16(data, i + 6)
        if code == 0x2A:  # GS * x y d1...d(x*y*8): download a bit image
            x, y = (data[i + 2], data[i + 3]) if i + 3 < len(data) else (0, 0)
            return i + 4 + x * y * 8
        if code == 0x38 and data[i + 2 : i + 3] in (b"L", b"D"):  # GS 8 L p1 p2 p3 p4 ...: large graphics
            length = int.from_bytes(data[i + 3 : i + 7], "little")
            return i + 7 + length
    elif lead == FS:
        fixed = _FS_FIXED.get(code)
        if fixed is not None:
            return i + 2 + fixed
        if code == 0x28:  # FS ( fn pL pH d...
            return i + 5 + _u16(data, i + 3)
        if code == 0x71:  # FS q n [xL xH yL yH d1...dk]1...n: define NV bit images
            return _nv_images(data, i)
    else:  # DLE: real-time commands
        if code in (0x04, 0x05):  # DLE EOT n, DLE ENQ n (DLE EOT 7/8 take one more)
            n = data[i + 2] if i + 2 < len(data) else 0
            return i + 3 + (1 if code == 0x04 and n in (7, 8) else 0)
        if code == 0x14:  # DLE DC4 fn ...: pulse, power off, clear buffers
            fn = data[i + 2] if i + 2 < len(data) else 0
            return i + 3 + {1: 2, 2: 2, 3: 2, 7: 1, 8: 7}.get(fn, 0)
    unknown.append(f"{_LEADS[lead]} 0x{code:02X}")
    return i + 2


def _user_characters(data: bytes, i: int) -> int:
    """ESC & y c1 c2, then for each character c1..c2 its width x and y*x bytes."""
    if i + 4 >= len(data):
        return len(data)
    y, first, last = data[i + 2], data[i + 3], data[i + 4]
    at = i + 5
    for _ in range(max(0, last - first + 1)):
        if at >= len(data):
            break
        at += 1 + y * data[at]
    return at


def _nv_images(data: bytes, i: int) -> int:
    """FS q n, then n images of xL xH yL yH and (x * y * 8) bytes each."""
    if i + 2 >= len(data):
        return len(data)
    at = i + 3
    for _ in range(data[i + 2]):
        at += 4 + _u16(data, at) * _u16(data, at + 2) * 8
    return at
