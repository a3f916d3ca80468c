"""footfall/units.py: durations and sizes as config files, CLI flags and API callers write them, bounded."""

from __future__ import annotations

import math

import pytest

from footfall.units import MAX_DURATION_S, MAX_SIZE, parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("30s", 30.0), ("15m", 900.0), ("24h", 86400.0), ("7d", 604800.0), (" 1.5 h ", 5400.0),
    ("90", 90.0), (45, 45.0), (2.5, 2.5), ("36500d", float(MAX_DURATION_S)),
])
def test_durations_are_read(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value", [
    "99999999999d", "9" * 400, 10**400, 1e300, math.nan, math.inf, -math.inf, "36501d", MAX_DURATION_S + 1,
    "١٥m", "15 m m", "1e3s", "nan", "inf", -1, True, "",
])
def test_durations_out_of_range_or_malformed_are_a_value_error(value: str | float) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert len(str(caught.value)) < 200  # a huge input is not echoed whole


@pytest.mark.parametrize(("text", "size"), [("512MB", 512 * 1000**2), ("64KiB", 65536), ("2gb", 2 * 1000**3),
                                            (10, 10), ("7", 7)])
def test_sizes_are_read(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("value", ["9" * 400, "9" * 20 + "GiB", MAX_SIZE + 1, "١MB", "1 TB", -1, False])
def test_sizes_out_of_range_or_malformed_are_a_value_error(value: str | int) -> None:
    with pytest.raises(ValueError):
        parse_size(value)
