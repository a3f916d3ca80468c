"""`footfall agent init`: the flags form and the interactive form (through a pseudo-terminal), each device
probed by a real HTTP POST before the commented agent.toml is written."""

from __future__ import annotations

import json
import os
import pwd
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from footfall.agent.config.load import load_config
from footfall.agent.decode.profile_load import load_profiles

from tests.fixtures.collector import CollectorProcess, free_port

COUNT = {"line": "main", "start": "2026-03-08T10:00:00Z", "end": "2026-03-08T10:01:00Z", "in": 3, "out": 2}
SALE = {"id": "T-9", "at": "2026-03-08T10:00:30Z", "amount": 1250, "currency": "EUR"}


def post_when_listening(port: int, path: str, body: Any, *, within: float = 30.0) -> tuple[int, dict[str, str]]:
    """POST `body` as JSON once something listens on the port: (status, headers)."""
    deadline = time.monotonic() + within
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    while True:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                return exc.code, dict(exc.headers)
        except urllib.error.URLError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"nothing listened on {port}{path} within {within}s")
        time.sleep(0.05)


def init(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "footfall", "agent", "init", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def test_the_flags_form_probes_each_device_and_writes_a_commented_config(tmp_path: Path) -> None:
    port = free_port()
    output = tmp_path / "etc" / "agent.toml"
    proc = init("-o", str(output), "--collector", "https://collector.example.com", "--state-dir",
                str(tmp_path / "state"), "--listen", f"127.0.0.1:{port}", "--probe-timeout", "30s",
                "--device", "name=entrance,adapter=generic-json-counter",
                "--device", "name=till,adapter=generic-json-pos,path=/pos/till,token=s3cret")
    status, headers = post_when_listening(port, "/push/entrance", COUNT)
    assert status == 503 and headers["Retry-After"] == "30", "nothing was stored: the device must send it again"
    status, _ = post_when_listening(port, "/pos/till", SALE)
    assert status == 401, "the probe checks the source's token like the agent will"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/pos/till", data=json.dumps(SALE).encode(),
                                     method="POST", headers={"Authorization": "Bearer s3cret"})
    with pytest.raises(urllib.error.HTTPError) as answered:
        urllib.request.urlopen(request, timeout=10)
    assert answered.value.code == 503
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "2 device(s): entrance (generic-json-counter), till (generic-json-pos)" in out
    assert "count entrance/main 10:00-10:01 UTC: 3 in, 2 out" in out
    assert "sale T-9 at 10:00 UTC: 12.50 EUR" in out

    text = output.read_text()
    config = load_config(output, adapters=load_profiles)
    assert [(s.name, s.adapter, s.options.path, s.options.token) for s in config.sources] == [
        ("entrance", "generic-json-counter", "/push/entrance", ""), ("till", "generic-json-pos", "/pos/till", "s3cret")
    ]
    assert config.collector.url == "https://collector.example.com"
    assert config.agent.state_dir == tmp_path / "state"
    assert "# probed " in text and "1 reading(s) from 127.0.0.1" in text
    assert '# interval = "60s"' in text and '# max_size = "1GiB"' in text, "defaults shown, commented out"
    assert output.stat().st_mode & 0o777 == 0o600, "it holds the till's token"

    again = init("-o", str(output), "-y")
    _, err = again.communicate(timeout=60)
    assert again.returncode == 1 and "exists; pass --force" in err


def test_a_silent_device_is_written_with_a_warning_and_a_wrong_adapter_writes_nothing(tmp_path: Path) -> None:
    port = free_port()
    output = tmp_path / "agent.toml"
    silent = init("-o", str(output), "--listen", f"127.0.0.1:{port}", "--probe-timeout", "300ms",
                  "--state-dir", str(tmp_path / "state"), "--device", "name=door,adapter=generic-json-counter")
    out, err = silent.communicate(timeout=60)
    assert silent.returncode == 0, out + err
    assert "WARNING: door: no message within 300 ms; written without a probe" in err
    assert "# NOT probed: no message" in output.read_text()

    wrong = tmp_path / "wrong.toml"
    proc = init("-o", str(wrong), "--listen", f"127.0.0.1:{port}", "--probe-timeout", "30s",
                "--device", "name=door,adapter=generic-json-pos,path=/push/door")
    assert post_when_listening(port, "/push/door", COUNT)[0] == 503
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "does not match adapter generic-json-pos" in err, out + err
    assert not wrong.exists()

    bad = init("-o", str(wrong), "--device", "name=door,adapter=no-such-thing", "--no-probe")
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 1 and "no adapter 'no-such-thing'" in err


def test_the_flags_form_enrolls_with_a_token(
    tmp_path: Path, pg_dsn: str, collector_process: Callable[..., CollectorProcess]
) -> None:
    from tests.e2e.test_pipeline import bootstrap

    collector = collector_process("--database-url", pg_dsn)
    _, token, _ = bootstrap(pg_dsn)
    # As on a packaged gateway: the state directory belongs to the service user, root runs init.
    state = tmp_path / "state"
    state.mkdir()
    service = pwd.getpwnam("nobody")
    if os.geteuid() == 0:
        os.chown(state, service.pw_uid, service.pw_gid)
    owner = state.stat().st_uid
    output = tmp_path / "agent.toml"
    proc = init("-o", str(output), "--collector", collector.url, "--state-dir", str(tmp_path / "state"),
                "--token", token, "--no-probe", "--device", "name=door,adapter=generic-json-counter")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "enrolled as agt_" in out
    assert json.loads((state / "identity.json").read_text())["site"] == "store-1"
    key = (state / "agent.key").stat()
    assert (key.st_uid, key.st_mode & 0o777) == (owner, 0o600), "the service user can read its key; nobody else"
    config = output.stat()
    if os.geteuid() == 0:
        # Root wrote it for the service user: readable by that user's group, never by others.
        assert (config.st_uid, config.st_gid, config.st_mode & 0o777) == (0, service.pw_gid, 0o640)
    else:
        assert config.st_mode & 0o777 == 0o600


class Terminal:
    """A child process on a pseudo-terminal (its controlling terminal), driven like a person at a keyboard."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = os.openpty()
        # The pty becomes the child's controlling terminal, so hidden prompts (getpass) use it too.
        become_tty = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                      "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
        self.proc = subprocess.Popen([sys.executable, "-c", become_tty, *args], stdin=slave, stdout=slave,
                                     stderr=slave, start_new_session=True, env={**os.environ, "TERM": "dumb"})
        os.close(slave)
        self.screen = ""
        self._seen = 0

    def expect(self, pattern: str, within: float = 30.0) -> str:
        """Wait until `pattern` (a regex) appears after what was already matched; the text up to it."""
        deadline = time.monotonic() + within
        while True:
            match = re.search(pattern, self.screen[self._seen:])
            if match:
                text = self.screen[self._seen:self._seen + match.end()]
                self._seen += match.end()
                return text
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {pattern!r} within {within}s; the screen shows:\n{self.screen[self._seen:]}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    pytest.fail(f"the program exited ({self.proc.returncode}) before {pattern!r}:\n{self.screen}")
                self.screen += chunk.decode(errors="replace").replace("\r\n", "\n")

    def type(self, line: str) -> None:
        """Type a line and press Enter."""
        os.write(self.master, line.encode() + b"\r")

    def close(self) -> int:
        """Wait for the exit (reading what is left), close the terminal; the exit status."""
        deadline = time.monotonic() + 30
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.screen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    break
        code = self.proc.wait(timeout=30)
        os.close(self.master)
        return code


@pytest.fixture
def terminal() -> Iterator[Callable[[list[str]], Terminal]]:
    started: list[Terminal] = []

    def start(args: list[str]) -> Terminal:
        started.append(Terminal(args))
        return started[-1]

    yield start
    for term in started:
        if term.proc.poll() is None:
            term.proc.send_signal(signal.SIGKILL)
            term.proc.wait(timeout=30)


def test_the_wizard_in_a_terminal(tmp_path: Path, terminal: Callable[[list[str]], Terminal]) -> None:
    port = free_port()
    output = tmp_path / "agent.toml"
    term = terminal(["-m", "footfall", "agent", "init", "-o", str(output), "--probe-timeout", "30s"])
    term.expect(r"Collector URL.*: ")
    term.type("https://collector.example.com")
    term.expect(r"State directory.*: ")
    term.type(str(tmp_path / "state"))
    term.expect(r"Address devices POST to.*: ")
    term.type(f"127.0.0.1:{port}")
    listing = term.expect(r"Device 1: adapter number or name.*: ")
    # The catalogue is numbered alphabetically; pick the counter by its number, as a technician would.
    found = re.search(r"(\d+)\. generic-json-counter\s+Any people counter", listing)
    assert found, listing
    term.type("420")
    term.expect(r"no adapter '420'.*\n.*Device 1: adapter.*: ")
    term.type(found.group(1))
    term.expect(r"Device name.*: ")
    term.type("entrance")
    term.expect(r"Transport \(http_push, serial, .*\) \[http_push\]: ")
    term.type("")
    term.expect(r"path: .*\[/push/entrance\]: ")
    term.type("")
    term.expect(r"token: .*: ")
    term.type("")
    term.expect(r"waiting up to 30 s for entrance to POST to http://127\.0\.0\.1:\d+/push/entrance \(Enter skips\)")
    assert post_when_listening(port, "/push/entrance", COUNT)[0] == 503
    term.expect(r"entrance: got 1 reading\(s\) from 127\.0\.0\.1\n\s+count entrance/main 10:00-10:01 UTC: 3 in")
    term.expect(r"Device 2: adapter number or name.*: ")
    term.type("generic-json-pos")
    term.expect(r"Device name.*: ")
    term.type("till")
    term.expect(r"Transport \(http_push, serial, .*\) \[http_push\]: ")
    term.type("")
    term.expect(r"path: .*: ")
    term.type("")
    term.expect(r"token: .*: ")
    term.type("")
    term.expect(r"waiting up to 30 s for till .*\(Enter skips\)")
    term.type("")
    term.expect(r"WARNING: till: no message within 30 s; written without a probe")
    term.expect(r"Device 3: adapter number or name.*: ")
    term.type("")
    term.expect(r"Enrollment token.*: ")
    term.type("")
    term.expect(r"wrote .*agent\.toml: 2 device\(s\): entrance \(generic-json-counter\), till \(generic-json-pos\)")
    assert term.close() == 0, term.screen
    config = load_config(output, adapters=load_profiles)
    assert [(s.name, s.adapter) for s in config.sources] == [("entrance", "generic-json-counter"),
                                                             ("till", "generic-json-pos")]
    text = output.read_text()
    assert "# entrance: Any people counter" in text and "# NOT probed" in text
