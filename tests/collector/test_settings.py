"""collector.toml and flags: defaults, overrides, and every problem reported at once with its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from footfall.collector.settings import CollectorSettings, SettingsError, load_settings


def test_defaults_then_file_then_flags(tmp_path: Path) -> None:
    assert load_settings() == CollectorSettings()
    config = tmp_path / "collector.toml"
    config.write_text('listen = "0.0.0.0:9000"\ndata_dir = "state"\ntimestamp_window = "2m"\nmax_body = "1MiB"\n')
    settings = load_settings(config, listen="127.0.0.1:9001", database_url=None)
    assert (settings.host, settings.port) == ("127.0.0.1", 9001)
    assert settings.data_dir == tmp_path / "state"  # relative to the file
    assert (settings.timestamp_window, settings.max_body) == (120.0, 1024 * 1024)


def test_every_problem_is_reported_with_its_key(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text('listen = "nowhere"\npool_sise = 5\npool_size = 0\nlog_level = "verbose"\nretry_after = "-1s"\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert "5 problems" in message
    for expected in ("listen: must be host:port", "pool_sise: unknown key", "did you mean 'pool_size'",
                     "pool_size: must be a whole number from 1 to 1000", "log_level: must be one of debug, info",
                     "retry_after:"):
        assert expected in message


def test_flags_are_named_as_flags() -> None:
    with pytest.raises(SettingsError, match="--listen: must be host:port"):
        load_settings(listen="8700")


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="file not found"):
        load_settings(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("listen = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(broken)
