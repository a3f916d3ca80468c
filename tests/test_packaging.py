"""The distribution: a wheel built from this tree installs into a clean venv and gives a working `footfall`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"footfall": "footfall", "agent": "footfall.agent", "collector": "footfall.collector",
           "protocol": "footfall.protocol", "firmware-adapters": "footfall.firmware_adapters"}


def _packages_in_tree() -> set[str]:
    found = set()
    for folder, name in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]))
    return found


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert _packages_in_tree() <= listed, "add the missing packages to [tool.setuptools] packages"


def test_wheel_installs_into_a_clean_venv_and_runs(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = wheels.glob("footfall-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in _packages_in_tree():
        assert package.replace(".", "/") + "/__init__.py" in names, package
    for data in ("footfall/protocol/SPEC.md", "footfall/agent/CONFIG.md",
                 "footfall/firmware_adapters/generic-json-counter/profile.toml",
                 "footfall/collector/migrations/0001_tenancy.sql"):
        assert data in names, data

    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    subprocess.run(
        [str(target / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", f"{wheel}[collector]"],
        check=True, capture_output=True, timeout=600,
    )
    footfall = str(target / "bin" / "footfall")
    version = subprocess.run([footfall, "--version"], capture_output=True, text=True, check=True, timeout=60)
    assert version.stdout.startswith("footfall ")
    for group in ("agent", "collector", "fleet"):
        helped = subprocess.run([footfall, group, "--help"], capture_output=True, text=True, timeout=60, check=False)
        assert helped.returncode == 0, helped.stderr
    config = tmp_path / "agent.toml"
    config.write_text('[[sources]]\nname = "door"\ntransport = "http_push"\nadapter = "generic-json-counter"\n'
                      'path = "/push/door"\n')
    checked = subprocess.run([footfall, "agent", "config", "check", str(config)], capture_output=True, text=True,
                             timeout=60, check=False, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
