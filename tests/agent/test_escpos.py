"""The ESC/POS parser: each command is skipped with its parameters, the printed text is all that is left.

The golden cases (firmware-adapters/escpos-receipt/cases) run whole receipts; these pin the
command table one command at a time, the code page switch, and the count of unknown commands.
"""

from __future__ import annotations

import re
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest
from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.extract import DecodeContext, extract
from footfall.agent.decode.formats.escpos import EscposExtractor, printed_text
from footfall.agent.decode.profile_load import load_profiles
from footfall.protocol.records import Transaction, validate

from tests.fixtures.adapter_cases import ROOT, load_case

PARIS = DecodeContext("till-1", zone=ZoneInfo("Europe/Paris"))
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ESC, GS, FS, DLE = b"\x1b", b"\x1d", b"\x1c", b"\x10"


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (ESC + b"@", "initialise"),
        (ESC + b"!\x00", "print mode 0"),
        (ESC + b"t\x00", "code page 0"),
        (ESC + b"R\x00", "character set 0"),
        (ESC + b"E\x00", "bold off"),
        (ESC + b"a\x00", "align left"),
        (ESC + b"-\x00", "underline off"),
        (ESC + b"M\x00", "font A"),
        (ESC + b"2", "default line spacing"),
        (ESC + b"3\x00", "line spacing 0"),
        (ESC + b"p\x00\x00\x00", "drawer kick, all zero"),
        (ESC + b"p\x00\x19\xfa", "drawer kick, pin 2"),
        (ESC + b"$\x00\x00", "absolute position 0"),
        (ESC + b"D\x08\x10\x00", "tab stops"),
        (ESC + b"*\x00\x02\x00\x00\x00", "8-dot bit image, 2 columns"),
        (ESC + b"*\x21\x01\x00\x00\x00\x00", "24-dot bit image, 1 column"),
        (ESC + b"c5\x00", "panel buttons"),
        (GS + b"!\x00", "character size 0"),
        (GS + b"B\x00", "reverse off"),
        (GS + b"V\x00", "full cut"),
        (GS + b"V\x01", "partial cut"),
        (GS + b"VA\x00", "feed and cut, 0"),
        (GS + b"L\x00\x00", "left margin 0"),
        (GS + b"k\x04*12*\x00", "CODE39, NUL-terminated"),
        (GS + b"kI\x06{B1004", "CODE128 with its length"),
        (GS + b"(k\x03\x001E0", "QR error correction"),
        (GS + b"(k\x06\x001P0a\x00b", "QR data with a NUL in it"),
        (GS + b"v0\x00\x02\x00\x02\x00\x00\x1bTO", "raster image holding NUL, ESC and text"),
        (GS + b"8L\x04\x00\x00\x000p4\x00", "large graphics"),
        (FS + b"p\x01\x00", "print NV image 1"),
        (FS + b".", "Kanji mode off"),
        (DLE + b"\x04\x01", "real-time status request"),
        (DLE + b"\x14\x01\x00\x01", "real-time drawer pulse"),
    ],
)
def test_each_command_is_skipped_with_its_parameters(command: bytes, name: str) -> None:
    printed = printed_text(b"AB" + command + b"CD\n")
    assert (printed.text, printed.unknown) == ("ABCD\n", []), name


def test_a_receipt_with_zero_parameter_commands_is_readable_text_that_validates() -> None:
    # What a busy till sent for three days: every receipt ended in GS V 0 and set ESC ! 0, ESC t 0.
    case = load_case(ROOT / "escpos-receipt" / "cases" / "printer-commands-with-zero-parameters")
    profile = load_profiles()["escpos-receipt"]
    (txn,) = extract(profile, EscposExtractor(), case.frames[0].payload, PARIS)
    assert isinstance(txn, Transaction)
    assert b"\x00" in case.frames[0].payload
    assert not CONTROL.search(txn.raw), txn.raw
    assert txn.raw.startswith("CAFÉ DU COIN\n12 rue des Lilas, Lyon\nReceipt #1004\n")
    assert (txn.amount_minor, txn.currency, txn.items) == (500, "EUR", 3)
    validate(replace(txn, seq=1))


def test_feeds_and_tabs_print_as_lines_and_spaces() -> None:
    data = b"Tea\tx 1\t2.00" + ESC + b"d\x02" + b"next" + ESC + b"d\x00" + b"same" + ESC + b"J\x10" + b"z\r\n"
    assert printed_text(data).text == "Tea     x 1     2.00\n\nnext\nsame\nz\n"


def test_the_code_page_follows_esc_t() -> None:
    euro_cp858, euro_cp1252 = "€".encode("cp858"), "€".encode("cp1252")
    data = b"a" + euro_cp858 + ESC + b"t\x13" + euro_cp858 + ESC + b"t\x10" + euro_cp1252 + ESC + b"t\x63" + b"\x80"
    # cp437 first (0xD5 is a box drawing), then PC858, WPC1252, and an unknown table keeps the current one.
    assert printed_text(data).text == "a╒€€€"


def test_unknown_commands_are_skipped_as_two_bytes_and_counted() -> None:
    printed = printed_text(b"A" + ESC + b"\x07B" + GS + b"\x99C" + FS + b"zD\n")
    assert printed.text == "ABCD\n"
    assert printed.unknown == ["ESC 0x07", "GS 0x99", "FS 0x7A"]


def test_a_command_cut_off_at_the_end_of_the_frame_is_dropped() -> None:
    assert printed_text(b"TOTAL 1.00\n" + GS + b"v0\x00\x10\x00\x10").text == "TOTAL 1.00\n"
    assert printed_text(b"x" + ESC).text == "x"


def test_stray_control_bytes_print_nothing() -> None:
    assert printed_text(b"a\x00b\x07c\x18d\x7fe").text == "abcde"


def test_unknown_commands_reach_the_sources_garbage_count() -> None:
    profile = load_profiles()["escpos-receipt"]
    receipt = ESC + b"@" + b"Receipt #5\n" + ESC + b"\x07" + b"TOTAL EUR 1.00\n" + GS + b"V\x00"
    items = EscposExtractor().items(profile.options, receipt)
    assert EscposExtractor().garbage(items[0][1]) == 1


@pytest.mark.parametrize(
    ("total_line", "currency", "minor"),
    [
        ("TOTAL    £2.50", "GBP", 250),
        ("TOTAL    €2.50", "EUR", 250),
        ("TOTAL    USD 2.50", "USD", 250),
        ("TOTAL    JPY 1,250", "JPY", 1250),
        ("TOTAL    BHD 1.250", "BHD", 1250),
        ("TOTAL    2.50", "GBP", 250),  # no currency stated: the default
        ("TOTAL DUE 2.50", "GBP", 250),  # DUE is no currency
    ],
)
def test_the_currency_the_receipt_states(total_line: str, currency: str, minor: int) -> None:
    profile = load_profiles()["escpos-receipt"]
    options = replace(profile.options, currency="GBP")
    text = f"Receipt #9\n08/03/2026 11:05\n{total_line}\n"
    receipt = ESC + b"@" + ESC + b"t\x13" + text.encode("cp858") + GS + b"V\x00"
    (txn,) = extract(replace(profile, options=options), EscposExtractor(), receipt, PARIS)
    assert isinstance(txn, Transaction)
    assert (txn.currency, txn.amount_minor) == (currency, minor)


def test_a_fraction_of_a_minor_unit_is_refused() -> None:
    profile = load_profiles()["escpos-receipt"]
    receipt = ESC + b"@" + b"Receipt #9\n08/03/2026 11:05\nTOTAL  JPY 12.5\n" + GS + b"V\x00"
    with pytest.raises(DecodeError, match=r"more decimals than JPY has \(0\)"):
        extract(profile, EscposExtractor(), receipt, PARIS)


def test_template_errors_name_the_key() -> None:
    problems: list[str] = []
    EscposExtractor().parse_options(
        {"total": "(?P<value>x)", "currency": "euro", "symbols": {"€": "euro"}, "currency_pattern": "(x"},
        "escpos",
        lambda key, message: problems.append(f"{key}: {message}"),
    )
    assert any(p.startswith("escpos.currency: must be an ISO 4217 code") for p in problems), problems
    assert any(p.startswith("escpos.symbols: must map") for p in problems), problems
    assert any(p.startswith("escpos.currency_pattern: not a valid regular expression") for p in problems), problems


def test_the_probe_says_what_it_skipped() -> None:
    from footfall.agent.probe import Adapter, decode

    profile = load_profiles()["escpos-receipt"]
    said: list[str] = []
    receipt = ESC + b"@" + b"Receipt #5\n08/03/2026 11:05\n" + ESC + b"\x07" + b"TOTAL EUR 1.00\n" + GS + b"V\x00"
    assert decode(Adapter(profile, EscposExtractor(), ZoneInfo("Europe/Paris")), receipt, said.append)
    assert any("skipped 1 part(s) it does not know" in line for line in said), said
    assert any('"amount_minor": 100' in line for line in said), said
