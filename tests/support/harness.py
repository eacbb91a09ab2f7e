"""Run a real `dnsdisco serve` process for end-to-end tests and query it like a client would.

`ServeProcess` starts `python -m dnsdisco serve` from this checkout on free loopback ports,
waits (bounded) until it answers the zone's SOA, and always stops it.
"""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from tests.support.netns import free_port  # one helper for a free UDP+TCP port, used here and by the tests

ROOT = Path(__file__).resolve().parents[2]


def child_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSDISCO_")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def dnsdisco_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dnsdisco", *args]


def query(port: int, name: str, rdtype: str = "A", *, tcp: bool = False, host: str = "127.0.0.1",
          payload: int | None = None, timeout: float = 2.0) -> dns.message.Message:
    """One query with dnspython (an independent DNS library)."""
    msg = dns.message.make_query(name, rdtype, use_edns=payload is not None,
                                 payload=payload or 512)
    if tcp:
        return dns.query.tcp(msg, host, port=port, timeout=timeout)
    return dns.query.udp(msg, host, port=port, timeout=timeout, ignore_trailing=False)


def addresses(msg: dns.message.Message, rdtype: str = "A") -> list[str]:
    want = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for rrset in msg.answer if rrset.rdtype == want for rd in rrset)


def read_exact(sock, n: int) -> bytes:
    """Exactly n bytes from a stream socket (plain or gevent); EOFError if it closes first."""
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def read_message(sock) -> bytes:
    """One DNS message from a TCP stream: a 2-byte length, then that many bytes."""
    (size,) = struct.unpack("!H", read_exact(sock, 2))
    return read_exact(sock, size)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the server may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


class ServeProcess:
    """A `dnsdisco serve` child on a free port; use as a context manager."""

    def __init__(self, etcd: str | None, *extra: str, zone: str = "svc.local", env: dict | None = None,
                 port: int | None = None, wait: bool = True):
        self.port = port or free_port()
        self.zone = zone
        self.args = ["serve", "--listen", f"127.0.0.1:{self.port}"]
        if etcd:
            self.args += ["--etcd", etcd]
        self.args += list(extra)
        self.env = child_env(env)
        self.wait = wait
        self.log_file = tempfile.NamedTemporaryFile(prefix="dnsdisco-serve-", suffix=".log", delete=False)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServeProcess":
        self.proc = subprocess.Popen(dnsdisco_cmd(*self.args), env=self.env, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, cwd=str(ROOT))
        if self.wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def answered():
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsdisco serve exited with {self.proc.returncode}:\n{self.log()}")
            reply = query(self.port, self.zone, "SOA", timeout=0.5)
            return reply.rcode() == 0
        try:
            wait_for(answered, timeout, 0.05, "dnsdisco serve to answer SOA")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- serve log ---\n{self.log()}") from None

    def log(self) -> str:
        self.log_file.flush()
        return Path(self.log_file.name).read_text(errors="replace")

    def query(self, name: str, rdtype: str = "A", **kw) -> dns.message.Message:
        return query(self.port, name, rdtype, **kw)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        try:
            os.unlink(self.log_file.name)
        except OSError:
            pass


class QueryLoop(threading.Thread):
    """Queries every name in `expected` in turn until stopped (at most max_queries or
    max_seconds); a reply other than the expected one is a failure."""

    def __init__(self, serve: ServeProcess, expected: dict, max_queries=20000, max_seconds=60.0):
        super().__init__(daemon=True)
        self.serve, self.expected = serve, expected
        self.max_queries, self.max_seconds = max_queries, max_seconds
        self.count = 0
        self.failures: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        names = list(self.expected)
        while not self._stop_event.is_set() and self.count < self.max_queries and time.monotonic() < deadline:
            label = names[self.count % len(names)]
            want = self.expected[label]
            try:
                reply = self.serve.query(f"{label}.svc.local", timeout=1.0)
                got = addresses(reply) if reply.rcode() == 0 else None
                if reply.rcode() not in (0, 3) or got != want:
                    self.failures.append(f"{label}: rcode {reply.rcode()} {got} != {want}")
            except Exception as exc:  # a timeout is a failure too
                self.failures.append(f"{label}: {type(exc).__name__} {exc}")
            self.count += 1
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
