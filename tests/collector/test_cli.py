"""The admin commands and `footfall fleet agents list`, run as a user would, against real PostgreSQL and HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import typer
from footfall.collector.cli import app as collector_cli
from footfall.collector.fleet_cli import app as fleet_cli
from typer.testing import CliRunner

from tests.collector.test_serve import enroll
from tests.fixtures.collector import CollectorProcess


def run(app: typer.Typer, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_admin_commands_create_list_and_revoke(pg_dsn: str) -> None:
    db = ("--database-url", pg_dsn)
    assert run(collector_cli, "orgs", "create", "Acme Retail", *db)[:2] == (0, "acme-retail\n")
    assert run(collector_cli, "sites", "create", "--org", "acme-retail", "--id", "paris-01", "--timezone",
               "Europe/Paris", "--name", "Paris Rivoli", *db)[:2] == (0, "paris-01\n")
    code, token, note = run(collector_cli, "tokens", "create", "--site", "paris-01", "--expires", "2h", "--uses", "3",
                            *db)
    assert code == 0 and token.startswith("ffe_") and token.count("\n") == 1
    assert "shown only now" in note and "3 use(s)" in note
    code, key, _ = run(collector_cli, "keys", "create", "--org", "acme-retail", "--role", "analyst", *db)
    assert code == 0 and key.startswith("ffk_")

    code, table, _ = run(collector_cli, "sites", "list", *db)
    assert code == 0 and table.splitlines()[1].split() == ["acme-retail", "paris-01", "Paris", "Rivoli", "Europe/Paris"]
    tokens = json.loads(run(collector_cli, "tokens", "list", "--json", *db)[1])
    assert [(t["site_id"], t["uses_left"], t["revoked"]) for t in tokens] == [("paris-01", 3, False)]
    assert token.strip() not in json.dumps(tokens)
    assert run(collector_cli, "tokens", "revoke", str(tokens[0]["id"]), *db)[0] == 0
    assert json.loads(run(collector_cli, "tokens", "list", "--json", *db)[1])[0]["revoked"] is True
    keys = json.loads(run(collector_cli, "keys", "list", "--org", "acme-retail", "--json", *db)[1])
    assert [(k["role"], k["prefix"]) for k in keys] == [("analyst", key.strip()[:12])]
    assert run(collector_cli, "keys", "revoke", str(keys[0]["id"]), *db)[0] == 0


def test_admin_commands_fail_with_a_message(pg_dsn: str, pg_empty_dsn: str) -> None:
    code, _, err = run(collector_cli, "sites", "create", "--org", "nobody", "--id", "x", "--timezone", "UTC",
                       "--database-url", pg_dsn)
    assert code == 1 and "no organization 'nobody'" in err
    code, _, err = run(collector_cli, "tokens", "create", "--site", "x", "--expires", "soon", "--database-url", pg_dsn)
    assert code == 1 and "--expires" in err
    code, _, err = run(collector_cli, "keys", "create", "--org", "x", "--role", "root", "--database-url", pg_dsn)
    assert code == 1 and "role must be one of analyst, fleet_admin" in err
    code, _, err = run(collector_cli, "orgs", "list", "--database-url", pg_empty_dsn)
    assert code == 1 and "footfall collector migrate" in err
    code, out, _ = run(collector_cli, "migrate", "--database-url", pg_empty_dsn)
    assert code == 0 and "applied 0001_tenancy" in out
    assert run(collector_cli, "orgs", "list", "--database-url", pg_empty_dsn)[0] == 0
    code, _, err = run(collector_cli, "orgs", "list", "--database-url", "host=/nonexistent dbname=x")
    assert code == 1 and "cannot reach the database" in err


def test_fleet_agents_list(pg_dsn: str, collector_process: Callable[..., CollectorProcess]) -> None:
    db = ("--database-url", pg_dsn)
    org = run(collector_cli, "orgs", "create", "Acme", *db)[1].strip()
    run(collector_cli, "sites", "create", "--org", org, "--id", "lyon", "--timezone", "Europe/Paris", *db)
    token = run(collector_cli, "tokens", "create", "--site", "lyon", "--uses", "2", *db)[1].strip()
    admin_key = run(collector_cli, "keys", "create", "--org", org, "--role", "fleet_admin", *db)[1].strip()
    analyst_key = run(collector_cli, "keys", "create", "--org", org, "--role", "analyst", *db)[1].strip()
    collector = collector_process(*db)
    agents = sorted([enroll(collector.url, token).id, enroll(collector.url, token).id])

    code, table, _ = run(fleet_cli, "agents", "list", "--collector", collector.url, "--key", admin_key)
    assert code == 0, table
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "SITE", "STATE", "VERSION", "LAST", "SEEN", "BACKLOG", "OLDEST", "SKEW", "DOWN",
                                "REJECTED", "CONFIG"]
    # Enrolled but never heard from: offline.
    assert [line.split()[:4] for line in lines[1:]] == [[a, "lyon", "offline", "0.1.0"] for a in agents]
    assert all("never" in line for line in lines[1:])

    code, out, _ = run(fleet_cli, "agents", "list", "--collector", collector.url, "--key", admin_key, "--json")
    assert code == 0 and sorted(a["id"] for a in json.loads(out)) == agents
    code, _, err = run(fleet_cli, "agents", "list", "--collector", collector.url, "--key", analyst_key)
    assert code == 4 and "403" in err and "fleet_admin" in err
    code, _, err = run(fleet_cli, "agents", "list", "--collector", collector.url, "--config-file", "/nonexistent")
    assert code == 2 and "no fleet config file at /nonexistent" in err
    code, _, err = run(fleet_cli, "agents", "list", "--collector", collector.url)
    assert code == 2 and "FOOTFALL_KEY" in err
    collector.stop()
    code, _, err = run(fleet_cli, "agents", "list", "--collector", collector.url, "--key", admin_key)
    assert code == 3 and "cannot reach the collector" in err


def test_the_cli_modules_import_without_the_database_stack() -> None:
    # `footfall agent ...` runs on gateways without psycopg; footfall/cli.py imports these two modules.
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = sys.modules['psycopg_pool'] = None\n"
        "import footfall.collector.cli, footfall.collector.fleet_cli\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
