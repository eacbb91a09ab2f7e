"""Keep one service instance registered in etcd exactly while it is alive and healthy.

The record is bound to a lease. A keepalive loop refreshes the lease about every ttl/3;
when the lease is gone (revoked, expired during a pause or a network gap, lost with
etcd's data) a new one is granted and the record written again. While etcd cannot be
reached the loop retries with bounded backoff and logs the loss and the recovery once.
An optional health check gates the record: present only while the check passes.
On stop the lease is revoked, so the record disappears at once rather than after the TTL.

Plain threads only: works with or without gevent monkey-patching. The etcd client is
injected (anything with grant/refresh/put/delete/revoke, and optionally get), so the
loop is testable against a real etcd and against a recording fake alike.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Callable

MIN_TTL = 2  # etcd's minimum lease TTL is about 2 s

log = logging.getLogger("dnsdisco.register")


# ---------------------------------------------------------------- pure helpers

def record_value(host: str, port: int | None = None, *, priority: int | None = None,
                 weight: int | None = None, text: str | None = None) -> bytes:
    """The JSON value of DESIGN.md section 2 with only the fields that are set."""
    value: dict = {"host": host}
    if port:
        value["port"] = int(port)
    if priority is not None:
        value["priority"] = int(priority)
    if weight is not None:
        value["weight"] = int(weight)
    if text:
        value["text"] = text
    return json.dumps(value, separators=(",", ":")).encode()


_NOT_LABEL = re.compile(r"[^a-z0-9-]+")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def sanitize_label(text: str) -> str:
    """Any text → one DNS label (lower case letters, digits, inner dashes, ≤ 63)."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-")
    label = re.sub(r"-{2,}", "-", label)[:63].strip("-")
    return label or "instance"


def default_id(port: int, hostname: str | None = None) -> str:
    """A stable instance id from the host name and the port: `web1-8080`."""
    host = (hostname if hostname is not None else socket.gethostname()).split(".")[0]
    return sanitize_label(f"{host}-{port}")


def check_id(instance_id: str) -> str:
    """Validate an explicit --id: one DNS label (it becomes `<id>.<name>`)."""
    label = instance_id.strip().lower()
    if not _LABEL.match(label):
        raise ValueError(f"instance id {instance_id!r} is not a DNS label (letters, digits, '-', "
                         "'_', at most 63 characters, no dots)")
    return label


def check_host(host: str) -> str:
    """An IPv4/IPv6 address (A/AAAA) or a host name (CNAME target)."""
    from .names import BadName, normalize
    text = host.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        name = normalize(text)
    except BadName as exc:
        raise ValueError(str(exc)) from None
    if not name or not re.fullmatch(r"[a-z0-9_.-]+", name):
        raise ValueError(f"{host!r} is neither an IP address nor a host name")
    return name


def check_url(text: str) -> str:
    """An http:// or https:// URL for --check-http."""
    from urllib.parse import urlsplit
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text.strip()


def lease_ttl(text) -> int:
    try:
        ttl = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number of seconds") from None
    if ttl < MIN_TTL:
        raise ValueError(f"{ttl} is below {MIN_TTL} seconds, etcd's minimum lease TTL")
    if ttl > 2**31 - 1:
        raise ValueError(f"{ttl} is too large")
    return ttl


def primary_address() -> str | None:
    """The address this host would use to reach the outside, else None.

    Connecting a UDP socket only picks a route; nothing is sent.
    """
    for family, target in ((socket.AF_INET, ("192.0.2.1", 9)), (socket.AF_INET6, ("2001:db8::1", 9))):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(target)
                addr = ipaddress.ip_address(s.getsockname()[0])
        except (OSError, ValueError):
            continue
        if not (addr.is_loopback or addr.is_unspecified or addr.is_link_local):
            return str(addr)
    try:
        _, _, addrs = socket.gethostbyname_ex(socket.gethostname())
    except OSError:
        addrs = []
    for text in addrs:
        addr = ipaddress.ip_address(text)
        if not (addr.is_loopback or addr.is_unspecified or addr.is_link_local):
            return text
    return None


class Backoff:
    """Retry delays doubling from `first` up to `cap`, with jitter-free bounds for tests."""

    def __init__(self, first: float = 0.2, cap: float = 5.0):
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


# ---------------------------------------------------------------- health checks

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

    def __str__(self) -> str:
        return " and ".join(str(c) for c in self.checks)


# ---------------------------------------------------------------- the loop

class Registrar:
    """Holds `key` = `value` in etcd under a lease while running (and healthy).

    `start()` runs the loop in a daemon thread; `stop()` revokes the lease and joins it.
    `run()` runs it in the calling thread until `stop()` is called from elsewhere.
    `registered` is set while the record is known to be written.
    """

    def __init__(self, kv, key: str, value: bytes, ttl: int, *,
                 check: Callable[[], tuple[bool, str]] | None = None, check_interval: float = 5.0,
                 backoff_cap: float = 5.0, logger: logging.Logger | None = None):
        if ttl < MIN_TTL:
            raise ValueError(f"lease TTL {ttl} is below etcd's minimum of {MIN_TTL} seconds")
        self.kv, self.key, self.value, self.ttl = kv, key, value, int(ttl)
        self.check, self.check_interval = check, float(check_interval)
        self.log = logger or log
        self.registered = threading.Event()
        self.lease: int | None = None
        self.grants = 0                    # leases granted, for tests and logs
        self._refresh_every = self.ttl / 3.0
        self._backoff = Backoff(0.2, min(backoff_cap, max(self._refresh_every, 0.5)))
        self._written: bool | None = False  # None: unknown after a failed call
        self._announced = False
        self._next_refresh = 0.0
        self._healthy = check is None
        self._outage_since: float | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._checker: threading.Thread | None = None

    # ---- control

    def start(self) -> "Registrar":
        self._thread = threading.Thread(target=self.run, name="dnsdisco-registrar", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop; the loop revokes the lease on its way out."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def healthy(self) -> bool:
        return self._healthy

    # ---- loop

    def run(self) -> None:
        if self.check is not None:
            self._checker = threading.Thread(target=self._check_loop, name="dnsdisco-health", daemon=True)
            self._checker.start()
        try:
            while not self._stopping.is_set():
                try:
                    self._step()
                except Exception as exc:  # any etcd failure: retry, never die
                    if self._written:
                        self._written = None   # a failed call may or may not have applied
                    self._next_refresh = 0.0   # first thing after recovery: is the lease alive?
                    self._lost(exc)
                    delay = self._backoff.next()
                else:
                    self._recovered()
                    self._backoff.reset()
                    delay = max(0.0, self._next_refresh - time.monotonic())
                self._wake.wait(delay)
                self._wake.clear()
        finally:
            self._deregister()
            if self._checker is not None:
                self._checker.join(1.0)

    def _step(self) -> None:
        now = time.monotonic()
        if self.lease is None:
            self._grant()
        elif now >= self._next_refresh:
            remaining = self.kv.refresh(self.lease)
            if remaining <= 0:
                self.log.warning("lease %x of %s is gone (expired or revoked); granting a new one",
                                 self.lease, self.key)
                self.lease = None
                self._written = False
                self.registered.clear()
                self._grant()
            else:
                self._next_refresh = time.monotonic() + self._refresh_every
                if self._written and self._healthy and not self._still_there():
                    self.log.warning("%s was removed behind our back; writing it again", self.key)
                    self._written = False
                    self.registered.clear()
        if self._healthy and self._written is not True:
            try:
                self.kv.put(self.key, self.value, lease=self.lease)
            except Exception as exc:
                if "lease not found" not in str(exc):
                    raise
                self._grant()  # the lease vanished between refresh and put
                self.kv.put(self.key, self.value, lease=self.lease)
            self._written = True
            self.registered.set()
            self.log.info("%s %s = %s (lease %x, ttl %ds)", "registered again" if self._announced else "registered",
                          self.key, self.value.decode(), self.lease, self.ttl)
            self._announced = True
        elif not self._healthy and self._written is not False:
            self.kv.delete(self.key)
            self._written = False
            self.registered.clear()
            self.log.info("removed %s while the health check fails", self.key)

    def _grant(self) -> None:
        self.lease = self.kv.grant(self.ttl)
        self.grants += 1
        self._written = False
        self._next_refresh = time.monotonic() + self._refresh_every

    def _still_there(self) -> bool:
        get = getattr(self.kv, "get", None)
        if get is None:
            return True
        return get(self.key) == self.value

    def _lost(self, exc: Exception) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            kind = "" if "Etcd" in type(exc).__name__ else f"{type(exc).__name__}: "
            self.log.warning("etcd unavailable, %s not refreshed; retrying: %s%s", self.key, kind, exc)
        else:
            self.log.debug("still unavailable: %s", exc)

    def _recovered(self) -> None:
        if self._outage_since is not None:
            self.log.info("etcd reachable again after %.1fs; %s is %s", time.monotonic() - self._outage_since,
                          self.key, "registered" if self._written else "not registered (unhealthy)")
            self._outage_since = None

    def _deregister(self) -> None:
        self.registered.clear()
        if self.lease is None:
            return
        try:
            self.kv.revoke(self.lease)
            self.log.info("deregistered %s (lease %x revoked)", self.key, self.lease)
        except Exception as exc:
            self.log.warning("could not revoke lease %x (%s); %s expires within %ds",
                             self.lease, exc, self.key, self.ttl)
        self.lease = None

    # ---- health

    def _check_loop(self) -> None:
        first = True
        while not self._stopping.is_set():
            try:
                ok, detail = self.check()
            except Exception as exc:  # a broken check is a failing check
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            if ok != self._healthy or first:
                if ok:
                    self.log.info("health check passes (%s)", detail)
                else:
                    self.log.warning("health check fails (%s)%s", detail,
                                     "" if first else f"; removing {self.key}")
                self._healthy = ok
                self._wake.set()
            first = False
            self._stopping.wait(self.check_interval)
