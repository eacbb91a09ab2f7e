"""The health checks of `dnsdisco register` and the Python API, and the thresholds that
turn their results into "registered or not".

Each check is a callable returning (ok, detail): HTTP GET, a shell command, a TCP connect,
grpc.health.v1 Check, or all of several. `Thresholds` counts passes and failures in a row
(rise/fall), so one flaky probe neither removes a healthy instance nor adds a sick one.
The registrar (registrar.py) calls them from its own thread; nothing here touches etcd.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request

from dnsdisco.dns.names import format_hostport, parse_hostport


# ---------------------------------------------------------------- option parsers

def check_hostport(text: str) -> tuple[str, int]:
    """HOST:PORT of --check-tcp (and the address part of --check-grpc)."""
    host, port = parse_hostport(str(text))
    if port == 0:
        raise ValueError(f"{text!r}: port 0 cannot be probed")
    return host, port


def check_grpc_target(text: str) -> str:
    """HOST:PORT[/SERVICE] of --check-grpc, checked; kept as text."""
    target, _, _service = str(text).strip().partition("/")
    check_hostport(target)
    return str(text).strip()


def check_url(text: str) -> str:
    """An http:// or https:// URL for --check-http."""
    from urllib.parse import urlsplit
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text.strip()



# ---------------------------------------------------------------- checks

class HttpCheck:
    """Passes when GET url answers 2xx or 3xx within the timeout."""

    def __init__(self, url: str, timeout: float = 2.0):
        self.url, self.timeout = url, timeout

    def __call__(self) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as resp:
                return resp.status < 400, f"GET {self.url}: HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return False, f"GET {self.url}: HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return False, f"GET {self.url}: {reason}"

    def __str__(self) -> str:
        return f"GET {self.url}"


class CommandCheck:
    """Passes when the shell command exits 0 within the timeout (then its group is killed)."""

    def __init__(self, command: str, timeout: float = 5.0):
        self.command, self.timeout = command, timeout

    def __call__(self) -> tuple[bool, str]:
        try:
            proc = subprocess.Popen(self.command, shell=True, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as exc:
            return False, f"{self.command!r}: {exc}"
        try:
            code = proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            return False, f"{self.command!r}: no exit within {self.timeout:g}s"
        return code == 0, f"{self.command!r}: exit status {code}"

    def __str__(self) -> str:
        return f"command {self.command!r}"


class TcpCheck:
    """Passes when a TCP connection to host:port opens within the timeout (then it is closed)."""

    def __init__(self, target: str | tuple[str, int], timeout: float = 2.0):
        self.host, self.port = check_hostport(target) if isinstance(target, str) else target
        self.timeout = timeout

    def __call__(self) -> tuple[bool, str]:
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout):
                return True, f"{self}: connected"
        except socket.timeout:
            return False, f"{self}: no connection within {self.timeout:g}s"
        except OSError as exc:
            return False, f"{self}: {exc.strerror or exc}"

    def __str__(self) -> str:
        return f"TCP {format_hostport(self.host, self.port)}"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def health_request(service: str) -> bytes:
    """grpc.health.v1.HealthCheckRequest{service} in protobuf wire form (field 1, a string)."""
    raw = service.encode()
    return (b"\x0a" + _varint(len(raw)) + raw) if raw else b""


def health_status(data: bytes) -> int:
    """The `status` (field 1, an enum) of a grpc.health.v1.HealthCheckResponse; 0 (UNKNOWN)
    when absent. Fields other than 1 are skipped as the protobuf rules say."""
    i, status = 0, 0
    while i < len(data):
        tag, i = _read_varint(data, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            if field == 1:
                status = value
        elif wire == 2:
            length, i = _read_varint(data, i)
            i += length
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    return status


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated protobuf varint")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


class GrpcCheck:
    """Passes when the standard grpc.health.v1 Health/Check of SERVICE ('' = the server as a
    whole) answers SERVING within the timeout. The messages are one field each, so they are
    written by hand: no generated code and no extra package for the product."""

    METHOD = "/grpc.health.v1.Health/Check"

    def __init__(self, target: str, timeout: float = 2.0):
        address, _, self.service = check_grpc_target(target).partition("/")
        self.host, self.port = check_hostport(address)
        self.timeout = timeout
        self._channel = None
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return format_hostport(self.host, self.port)

    def __call__(self) -> tuple[bool, str]:
        import grpc   # imported when a gRPC check is used: `import dnsdisco` stays light
        with self._lock:
            if self._channel is None:   # one channel, reused: a probe is one call, not a handshake
                self._channel = grpc.insecure_channel(self.address)
            check = self._channel.unary_unary(self.METHOD)   # bytes in, bytes out
        try:
            status = health_status(check(health_request(self.service), timeout=self.timeout))
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            return False, f"{self}: {getattr(code, 'name', 'error')} {exc.details() if hasattr(exc, 'details') else exc}"
        except ValueError as exc:
            return False, f"{self}: unreadable answer ({exc})"
        name = SERVING_STATUS.get(status, str(status))
        return status == 1, f"{self}: {name}"

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None

    def __str__(self) -> str:
        return f"gRPC health {self.address}" + (f"/{self.service}" if self.service else "")


class AllChecks:
    """Several checks that must all pass."""

    def __init__(self, checks: list):
        self.checks = checks

    def __call__(self) -> tuple[bool, str]:
        for check in self.checks:
            ok, detail = check()
            if not ok:
                return False, detail
        return True, "; ".join(str(c) for c in self.checks) + ": pass"

    def close(self) -> None:
        for check in self.checks:
            close = getattr(check, "close", None)
            if close is not None:
                close()

    def __str__(self) -> str:
        return " and ".join(str(c) for c in self.checks)


class Thresholds:
    """Rise/fall counting: the state turns healthy after `rise` passes in a row and unhealthy
    after `fall` failures in a row, so one flaky probe does not remove an instance. Starts
    unhealthy: nothing is registered before a check has passed. Pure: fed results, says
    when the state changes."""

    def __init__(self, rise: int = 1, fall: int = 2):
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall are at least 1")
        self.rise, self.fall = int(rise), int(fall)
        self.healthy = False
        self.passes = self.fails = 0

    def feed(self, ok: bool) -> bool:
        """Count one result; True when it changed the state."""
        if ok:
            self.passes, self.fails = self.passes + 1, 0
            if not self.healthy and self.passes >= self.rise:
                self.healthy = True
                return True
        else:
            self.passes, self.fails = 0, self.fails + 1
            if self.healthy and self.fails >= self.fall:
                self.healthy = False
                return True
        return False
