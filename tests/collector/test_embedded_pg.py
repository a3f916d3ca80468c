"""EmbeddedPostgres: first start, restart, reuse after its owner is killed, stale pid files, clear refusals."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from footfall.collector.embedded_pg import EmbeddedPostgres
from footfall.collector.errors import ClusterError

from tests.fixtures.pg import make_temp_root


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A collector data directory; any server left running in it is stopped afterwards."""
    root = Path(make_temp_root("ff-embedded-"))
    try:
        yield root / "data"
    finally:
        EmbeddedPostgres(root / "data").stop()
        shutil.rmtree(root, ignore_errors=True)


def test_first_start_creates_the_cluster_and_database_then_restarts_keep_data(data_dir: Path) -> None:
    cluster = EmbeddedPostgres(data_dir, durable=False)
    assert cluster.start() is True
    assert (data_dir / "postgres" / "PG_VERSION").is_file()
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT current_database(), current_user").fetchone() == ("footfall", "footfall")
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    assert cluster.start() is False  # already running: reused, not restarted
    cluster.stop()
    assert not cluster.is_running()
    cluster.stop()  # stopping a stopped cluster is a no-op
    with EmbeddedPostgres(data_dir, durable=False) as again:
        assert again.is_running()
        with psycopg.connect(again.dsn) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    assert not again.is_running()  # the context manager stops what it started


def test_a_server_left_by_a_killed_owner_is_reused(data_dir: Path) -> None:
    # The owner starts the cluster, writes a row, and dies by SIGKILL without stopping anything.
    script = (
        "import os, signal, sys, psycopg\n"
        "from footfall.collector.embedded_pg import EmbeddedPostgres\n"
        "pg = EmbeddedPostgres(sys.argv[1], durable=False); pg.start()\n"
        "with psycopg.connect(pg.dsn, autocommit=True) as c: c.execute('CREATE TABLE survivor (x int)')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    owner = subprocess.run([sys.executable, "-c", script, str(data_dir)], capture_output=True, timeout=120, check=False)
    assert owner.returncode == -9, owner.stderr.decode()
    pid_before = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    cluster = EmbeddedPostgres(data_dir, durable=False)
    assert cluster.start() is False
    assert int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0]) == pid_before
    with psycopg.connect(cluster.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM survivor").fetchone() == (0,)
    cluster.stop()


@pytest.mark.parametrize("pid", ["dead", "someone_else"])
def test_a_stale_pid_file_is_cleared(data_dir: Path, pid: str) -> None:
    cluster = EmbeddedPostgres(data_dir, durable=False)
    cluster.start()
    pidfile = data_dir / "postgres" / "postmaster.pid"
    contents = pidfile.read_text().split("\n")
    cluster.stop()
    # After a reboot the pid in the file is dead, or belongs to some other program by now.
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            stale = 2**22 + 1 if pid == "dead" else other.pid
            pidfile.write_text("\n".join([str(stale), *contents[1:]]))
            assert cluster.start() is True
            assert other.poll() is None  # the other program was left alone
            with psycopg.connect(cluster.dsn) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            other.kill()
    cluster.stop()


def test_debris_of_an_interrupted_initdb_is_replaced(data_dir: Path) -> None:
    (data_dir / "postgres.initdb").mkdir(parents=True)
    (data_dir / "postgres.initdb" / "junk").write_text("half-made")
    (data_dir / "postgres").mkdir()
    cluster = EmbeddedPostgres(data_dir, durable=False)
    assert cluster.start() is True
    assert not (data_dir / "postgres.initdb").exists()
    cluster.stop()


def test_as_root_a_data_dir_postgres_cannot_enter_gets_its_cluster_where_it_can() -> None:
    # The newcomer's first command: root clones into /root (0700) and runs the demo there.
    assert os.geteuid() == 0, "the test suite runs as root here (the embedded cluster runs as postgres)"
    root = Path(make_temp_root("ff-home-"))
    clusters = Path(make_temp_root("ff-clusters-"))
    home = root / "root"
    home.mkdir(mode=0o700)
    data_dir = home / "footfall" / "demo-data" / "collector"
    try:
        cluster = EmbeddedPostgres(data_dir, durable=False, clusters_root=clusters)
        assert cluster.start() is True
        link = data_dir / "postgres"
        assert link.is_symlink() and link.resolve().parent == clusters.resolve()
        assert (link / "PG_VERSION").is_file() and cluster.pgdata == link.resolve()
        assert stat.S_IMODE(home.stat().st_mode) == 0o700, "the folder's own permissions are left alone"
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        cluster.stop()
        # A later start, by a fresh process knowing only the data directory, finds it through the link.
        again = EmbeddedPostgres(data_dir, durable=False, clusters_root=clusters)
        assert again.pgdata == link.resolve()
        assert again.start() is True
        with psycopg.connect(again.dsn) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (7,)
    finally:
        EmbeddedPostgres(data_dir, clusters_root=clusters).stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(clusters, ignore_errors=True)


def test_a_folder_postgres_cannot_enter_is_named_when_nowhere_else_will_do(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    # The place for relocated clusters is itself out of reach: the error names the folder and the fix.
    with pytest.raises(ClusterError, match=r"cannot enter .*chmod o\+x"):
        EmbeddedPostgres(locked / "data", clusters_root=locked / "clusters").start()


def test_a_data_dir_too_deep_for_a_socket_is_refused() -> None:
    root = Path(make_temp_root("ff-deep-"))
    try:
        with pytest.raises(ClusterError, match="too deep"):
            EmbeddedPostgres(root / ("x" * 100)).start()
    finally:
        shutil.rmtree(root, ignore_errors=True)
