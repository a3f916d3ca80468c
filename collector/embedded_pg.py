"""A private PostgreSQL cluster under the collector's data directory, for `serve` without `--database-url`.

Layout under `data_dir`: `postgres/` is the cluster (PGDATA, mode 0700), its unix socket and
`postgres/server.log`. The server listens on that socket only (`listen_addresses = ''`) with
trust authentication: only the cluster's owner and root can reach a socket inside a 0700
directory, so no password is needed and none can leak.

PostgreSQL refuses to run as root. Started as root, this module runs `initdb`, `pg_ctl` and
the server as the `postgres` user and gives it the cluster directory; every folder above it
must be traversable by that user. A root's first command is often a clone into `/root` (mode
0700) followed by `./scripts/demo`: then the cluster is made where `postgres` can reach it,
`/var/lib/footfall/postgres/<data dir's name>-<hash of its path>`, and `postgres` in the data
directory is a symbolic link to it, so every later start (and a person looking) finds it; a log
line says where and why. Nothing in the data directory's own permissions changes. A cluster
already made inside the unreachable folder is not moved: the error says which folder to open.

Idempotent on purpose:
- initdb runs once, into a temporary folder renamed into place, so an interrupted initdb never
  leaves a half-made cluster behind;
- the server is started detached (its own session), so a collector killed with SIGKILL leaves
  it running; the next `start()` finds it (postmaster.pid, `pg_ctl status`, and the process's
  working directory being this cluster) and reuses it;
- a stale postmaster.pid (after a reboot, or naming a pid now used by another program) is
  removed once no process is left working in the cluster directory, then the server starts.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from footfall.logs import event

from .errors import ClusterError

log = logging.getLogger("footfall.collector.embedded_pg")

SUPERUSER = "footfall"
DATABASE = "footfall"
# The socket is `.s.PGSQL.<port>` inside the cluster folder; the number only names the file.
SOCKET_PORT = 5432
# Linux's limit for a unix socket path (sun_path is 108 bytes with the trailing NUL).
_MAX_SOCKET_PATH = 107
_RUN_AS = "postgres"
# Where root's clusters go when `postgres` cannot reach the data directory.
CLUSTERS_ROOT = Path("/var/lib/footfall/postgres")


@dataclass(frozen=True, slots=True)
class _Runner:
    """How to run PostgreSQL's programs: directly, or through runuser as the unprivileged owner."""

    prefix: tuple[str, ...]
    uid: int
    gid: int
    groups: frozenset[int]

    @classmethod
    def for_current_user(cls) -> _Runner:
        if os.geteuid() != 0:
            return cls((), os.geteuid(), os.getegid(), frozenset(os.getgroups()))
        try:
            entry = pwd.getpwnam(_RUN_AS)
        except KeyError:
            raise ClusterError(
                f"PostgreSQL refuses to run as root and there is no {_RUN_AS!r} user to run it as: "
                "install the postgresql package (it creates that user) or run the collector as a normal user"
            ) from None
        groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return cls(("runuser", "-u", _RUN_AS, "--"), entry.pw_uid, entry.pw_gid, groups)


def find_bindir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The server binaries: `explicit`, else $FOOTFALL_PG_BINDIR, the newest /usr/lib/postgresql/*/bin, pg_config."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get("FOOTFALL_PG_BINDIR"):
        candidates.append(Path(os.environ["FOOTFALL_PG_BINDIR"]))
    else:
        versions = sorted(
            glob.glob("/usr/lib/postgresql/*/bin"),
            key=lambda p: [int(x) for x in re.findall(r"\d+", p)],
            reverse=True,
        )
        candidates += [Path(p) for p in versions]
        pg_config = shutil.which("pg_config")
        if pg_config:
            done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=10)
            if done.returncode == 0:
                candidates.append(Path(done.stdout.strip()))
        initdb = shutil.which("initdb")
        if initdb:
            candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise ClusterError(
        "no PostgreSQL server binaries found (looked for initdb and pg_ctl in "
        f"{', '.join(map(str, candidates)) or '/usr/lib/postgresql/*/bin and PATH'}): install the postgresql "
        "package, set FOOTFALL_PG_BINDIR, or pass --database-url to use an existing server"
    )


def timescaledb_available(bindir: Path | None = None) -> bool:
    """Whether this PostgreSQL installation ships the timescaledb extension."""
    bindir = bindir or find_bindir()
    pg_config = bindir / "pg_config"
    if not pg_config.is_file():
        return False
    done = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, check=False, timeout=10)
    return done.returncode == 0 and Path(done.stdout.strip(), "extension", "timescaledb.control").is_file()


class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir/postgres`, reachable only through its unix socket.

    `start()` creates the cluster on first use, starts or reuses the server and creates the
    `footfall` database; `dsn` then connects to it. `stop()` is a fast shutdown. As a context
    manager it stops on exit only a server that its own `start()` started.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        bindir: str | os.PathLike[str] | None = None,
        durable: bool = True,
        timeout: float = 60.0,
        clusters_root: str | os.PathLike[str] = CLUSTERS_ROOT,
    ) -> None:
        """`durable=False` turns fsync off: for throwaway test clusters only. `timeout` bounds each start and stop.

        `clusters_root`: where the cluster goes when run as root and `postgres` cannot reach `data_dir`.
        """
        # Resolved: the running server is recognised by its working directory, which the kernel reports resolved.
        self.data_dir = Path(data_dir).resolve()
        self.link = self.data_dir / "postgres"
        # A cluster made elsewhere (see the module docstring) is found through its link.
        self.pgdata = self.link.resolve() if self.link.is_symlink() else self.link
        self.durable = durable
        self.timeout = timeout
        self.clusters_root = Path(clusters_root)
        self._bindir_arg = bindir
        self._started = False

    @property
    def logfile(self) -> Path:
        """The server's log, in the cluster folder."""
        return self.pgdata / "server.log"

    @property
    def socket_dir(self) -> Path:
        """The folder holding the server's unix socket (the cluster folder itself)."""
        return self.pgdata

    def dsn_for(self, dbname: str) -> str:
        """A libpq connection string for one database of this cluster."""
        return make_conninfo(host=str(self.socket_dir), port=str(SOCKET_PORT), user=SUPERUSER, dbname=dbname)

    @property
    def dsn(self) -> str:
        """The connection string of the `footfall` database."""
        return self.dsn_for(DATABASE)

    def start(self) -> bool:
        """Make sure the server runs and the `footfall` database exists; True when this call started the server."""
        bindir = find_bindir(self._bindir_arg)
        runner = _Runner.for_current_user()
        self._check_paths(runner)
        if not (self.pgdata / "PG_VERSION").is_file():
            self._initdb(bindir, runner)
        self._write_settings(bindir, runner)
        started = False
        if self._running_pid(bindir, runner) is None:
            self._start_server(bindir, runner)
            started = True
        else:
            event(log, "embedded_pg_reused", pgdata=str(self.pgdata))
        self._wait_ready()
        self._create_database()
        self._started = self._started or started
        return started

    def stop(self) -> None:
        """Fast shutdown (open sessions are rolled back); a no-op when the server is not running."""
        bindir = find_bindir(self._bindir_arg)
        runner = _Runner.for_current_user()
        if not (self.pgdata / "PG_VERSION").is_file() or self._running_pid(bindir, runner) is None:
            self._started = False
            return
        done = self._run(
            runner, [bindir / "pg_ctl", "stop", "-D", self.pgdata, "-m", "fast", "-w", "-t", str(int(self.timeout))]
        )
        if done.returncode != 0:
            raise ClusterError(f"pg_ctl stop failed for {self.pgdata}: {done.stderr.strip() or done.stdout.strip()}")
        self._started = False
        event(log, "embedded_pg_stopped", pgdata=str(self.pgdata))

    def is_running(self) -> bool:
        """Whether a server is running on this cluster."""
        if not (self.pgdata / "PG_VERSION").is_file():
            return False
        return self._running_pid(find_bindir(self._bindir_arg), _Runner.for_current_user()) is not None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self.stop()

    # -- steps -------------------------------------------------------------------------

    def _check_paths(self, runner: _Runner) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        blocked = _first_blocked(self.pgdata.parent, runner)
        if blocked is not None and os.geteuid() == 0 and not (self.pgdata / "PG_VERSION").is_file():
            self._relocate(runner, blocked)
            blocked = _first_blocked(self.pgdata.parent, runner)
        if blocked is not None:
            raise ClusterError(
                f"PostgreSQL runs as uid {runner.uid}, which cannot enter {blocked} on the way to {self.pgdata}: "
                f"allow it (chmod o+x {blocked}) or choose a --data-dir outside it"
            )
        socket = self.socket_dir / f".s.PGSQL.{SOCKET_PORT}"
        if len(str(socket)) > _MAX_SOCKET_PATH:
            raise ClusterError(
                f"the data directory {self.data_dir} is too deep: its socket path would be {len(str(socket))} "
                f"characters and unix sockets allow {_MAX_SOCKET_PATH}; choose a shorter --data-dir"
            )

    def _relocate(self, runner: _Runner, blocked: Path) -> None:
        """Make the cluster's home under `clusters_root`, reachable by `postgres`, linked from the data directory."""
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        home = self.clusters_root / f"{self.data_dir.name[:40]}-{digest}"
        self.clusters_root.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.link.is_symlink() or self.link.is_dir():
            # A link to a cluster that is gone, or the debris of an attempt that failed here: never data.
            if self.link.is_symlink():
                self.link.unlink()
            else:
                shutil.rmtree(self.link)
        tmp = self.link.with_name(self.link.name + ".link")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(home)
        os.replace(tmp, self.link)
        self.pgdata = home
        event(
            log, "embedded_pg_relocated", logging.WARNING, data_dir=str(self.data_dir), pgdata=str(home),
            reason=f"the postgres user (uid {runner.uid}) cannot enter {blocked}",
            note=f"{self.link} links to it; remove both to start afresh",
        )

    def _initdb(self, bindir: Path, runner: _Runner) -> None:
        scratch = self.pgdata.with_name(self.pgdata.name + ".initdb")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        os.chown(scratch, runner.uid, runner.gid)
        event(log, "embedded_pg_initdb", pgdata=str(self.pgdata))
        done = self._run(
            runner,
            [bindir / "initdb", "-D", scratch, "-U", SUPERUSER, "--encoding=UTF8", "--no-locale",
             "--auth-local=trust", "--auth-host=reject"],
        )
        if done.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise ClusterError(f"initdb failed in {scratch}: {done.stderr.strip() or done.stdout.strip()}")
        with (scratch / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# footfall's settings, rewritten at every start by the collector\n"
                "include_if_exists = 'footfall.conf'\n"
            )
        if self.pgdata.exists():
            # A folder without PG_VERSION is the debris of an older interrupted attempt, never data.
            shutil.rmtree(self.pgdata)
        scratch.rename(self.pgdata)

    def _write_settings(self, bindir: Path, runner: _Runner) -> None:
        lines = [
            "listen_addresses = ''",
            f"port = {SOCKET_PORT}",
            f"unix_socket_directories = '{_quote_conf(str(self.socket_dir))}'",
            "unix_socket_permissions = 0700",
        ]
        if not self.durable:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        if timescaledb_available(bindir):
            lines += ["shared_preload_libraries = 'timescaledb'", "timescaledb.telemetry_level = off"]
        path = self.pgdata / "footfall.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.chown(path, runner.uid, runner.gid)

    def _running_pid(self, bindir: Path, runner: _Runner) -> int | None:
        """The postmaster's pid when a server runs on this cluster; clears a stale postmaster.pid."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text(encoding="utf-8").split("\n", 1)[0])
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:
            raise ClusterError(
                f"{pidfile} is unreadable ({exc}); if no server runs on this cluster, delete it"
            ) from None
        status = self._run(runner, [bindir / "pg_ctl", "status", "-D", self.pgdata])
        if status.returncode == 0 and _works_in(pid, self.pgdata):
            return pid
        # The pid is dead or is some other program. Backends orphaned by a killed postmaster
        # still work in the cluster folder and exit on their own; the pid file must stay until
        # they are gone, because PostgreSQL uses it to refuse to start over them.
        deadline = time.monotonic() + self.timeout
        while _processes_in(self.pgdata):
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"processes {sorted(_processes_in(self.pgdata))} still work in {self.pgdata} although its "
                    "postmaster is gone; stop them, then start again"
                )
            time.sleep(0.1)
        pidfile.unlink(missing_ok=True)
        event(log, "embedded_pg_stale_pidfile", pgdata=str(self.pgdata), pid=pid)
        return None

    def _start_server(self, bindir: Path, runner: _Runner) -> None:
        event(log, "embedded_pg_starting", pgdata=str(self.pgdata))
        done = self._run(
            runner,
            [bindir / "pg_ctl", "start", "-D", self.pgdata, "-l", self.logfile, "-w", "-t", str(int(self.timeout))],
            detach=True,
        )
        if done.returncode != 0:
            raise ClusterError(
                f"PostgreSQL did not start in {self.pgdata}: {done.stderr.strip() or done.stdout.strip()}\n"
                f"last lines of {self.logfile}:\n{_tail(self.logfile)}"
            )

    def _wait_ready(self) -> None:
        """Poll until the server accepts connections (a reused one may still be recovering)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with psycopg.connect(self.dsn_for("postgres"), connect_timeout=5, autocommit=True):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"PostgreSQL in {self.pgdata} does not accept connections after {self.timeout:.0f} s: {exc}\n"
                        f"last lines of {self.logfile}:\n{_tail(self.logfile)}"
                    ) from None
                time.sleep(0.1)

    def _create_database(self) -> None:
        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if exists:
                return
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            except psycopg.errors.DuplicateDatabase:
                # Another process sharing this cluster created it between our check and now: same result.
                return
        event(log, "embedded_pg_database_created", database=DATABASE)

    def _run(
        self, runner: _Runner, argv: list[str | Path], *, detach: bool = False
    ) -> subprocess.CompletedProcess[str]:
        cmd = [*runner.prefix, *map(str, argv)]
        try:
            return subprocess.run(
                cmd,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                text=True,
                # Never the data directory itself: as root, it may be a folder `postgres` cannot enter.
                cwd=self.pgdata if self.pgdata.is_dir() else self.pgdata.parent,
                timeout=self.timeout + 10,
                check=False,
                # Detached, the server survives a SIGKILLed collector (and is reused) and does not
                # get the terminal's Ctrl-C before the collector has finished with it.
                start_new_session=detach,
            )
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{' '.join(cmd)} did not finish in {self.timeout + 10:.0f} s") from None


def _first_blocked(folder: Path, runner: _Runner) -> Path | None:
    """The first of `folder` and its parents that `runner` cannot enter, from the top; None when all can be."""
    for candidate in reversed([folder, *folder.parents]):
        if not _traversable(candidate, runner):
            return candidate
    return None


def _traversable(folder: Path, runner: _Runner) -> bool:
    try:
        st = folder.stat()
    except OSError:
        return False
    if runner.uid == 0:
        return True
    if st.st_uid == runner.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in runner.groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _works_in(pid: int, folder: Path) -> bool:
    """Whether process `pid` exists and its working directory is `folder` (PostgreSQL's processes chdir to PGDATA)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == folder
    except OSError:
        return False


def _processes_in(folder: Path) -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and _works_in(int(p), folder)}


def _quote_conf(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "''")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read it: {exc})"
