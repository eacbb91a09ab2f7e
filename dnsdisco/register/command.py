"""`dnsdisco register`: turn the validated config into a running Registrar, and own the
process side of it: signals, the wrapped command, the exit status.

Signals go through a self-pipe (signal.set_wakeup_fd): the handlers only record, the main
thread reacts, and the registrar thread is stopped from ordinary code, never from a handler.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import signal
import subprocess

from dnsdisco.dns.names import BadName, key_for, normalize
from dnsdisco.etcd.children import cannot_run, dying_with_us
from dnsdisco.etcd.settings import DEFAULT_ENDPOINT
from dnsdisco.ops.logs import fail

log = logging.getLogger("dnsdisco.register")


class UsageError(ValueError):
    """A bad argument; the message names it."""


def plan(cfg, name: str) -> dict:
    """Everything the registration needs, validated; raises UsageError naming the bad input.

    The name and the value are judged by the code `serve` runs on what it reads from etcd
    (snapshot.judge), so what is accepted here is always served."""
    from dnsdisco.register import record
    from dnsdisco.dns.names import hostname_problem
    from dnsdisco.dns.records import BadValue
    from dnsdisco.dns.snapshot import judge
    try:
        service = normalize(name)
    except BadName as exc:
        raise UsageError(f"NAME: {exc}") from None
    if not service or "." not in service:
        raise UsageError(f"NAME {name!r}: give a full service name such as hello.svc.local")
    problem = hostname_problem(service)
    if problem:
        raise UsageError(f"NAME {name!r} {problem}")
    if cfg.port is None:
        raise UsageError("--port is required (the service's port; 0 to publish only the address)")
    address = cfg.address or record.primary_address()
    if not address:
        raise UsageError("no non-loopback address found on this host; give --address IP")
    instance = cfg.id or record.default_id(cfg.port)
    dns_ttl = record.default_dns_ttl(cfg.ttl) if cfg.dns_ttl is None else cfg.dns_ttl
    if dns_ttl > cfg.ttl:
        raise UsageError(f"--dns-ttl {dns_ttl} is longer than the lease (--ttl {cfg.ttl}): caches would keep "
                         "a dead instance longer than etcd does")
    key = key_for(cfg.prefix, service) + "/" + instance
    value = record.record_value(address, cfg.port, priority=cfg.priority, weight=cfg.weight,
                                   text=cfg.text or None, ttl=dns_ttl)
    try:
        judge(cfg.prefix, key, value)
    except BadValue as exc:
        raise UsageError(f"serve would skip this record: {exc}") from None
    return {
        "name": service,
        "id": instance,
        "key": key,
        "value": value,
        "ttl": cfg.ttl,
        "dns_ttl": dns_ttl,
        "check": make_check(cfg),
        "endpoints": list(cfg.etcd) or [DEFAULT_ENDPOINT],
    }


def check_timeout(cfg) -> float:
    """--check-timeout, else the interval held to 0.5..10 s (one probe may take that long)."""
    if cfg.check_timeout is not None:
        return cfg.check_timeout
    return max(0.5, min(cfg.check_interval, 10.0))


def make_check(cfg):
    """The configured health checks as one callable (all must pass), or None."""
    from dnsdisco.register.checks import AllChecks, CommandCheck, GrpcCheck, HttpCheck, TcpCheck
    timeout = check_timeout(cfg)
    found = [HttpCheck(url, timeout) for url in _many(cfg.check_http)]
    found += [TcpCheck(target, timeout) for target in cfg.check_tcp]
    found += [GrpcCheck(target, timeout) for target in cfg.check_grpc]
    if cfg.check_cmd:
        found.append(CommandCheck(cfg.check_cmd, timeout))
    return None if not found else found[0] if len(found) == 1 else AllChecks(found)


def _many(value) -> list:
    if not value:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def kv_timeout(etcd_timeout: float, ttl: int) -> float:
    """One etcd call may not outlast a third of the lease: a stuck call must not cost the lease."""
    return max(0.5, min(float(etcd_timeout), ttl / 3.0))


class _SignalPipe:
    """Signals recorded by handlers and read by the main thread without races."""

    def __init__(self, signals):
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self._previous_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        self._previous = {}
        for sig in signals:
            self._previous[sig] = signal.signal(sig, lambda *_: None)  # the wakeup fd carries it

    def wait(self, timeout: float | None) -> list[int]:
        ready, _, _ = select.select([self.read_fd], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self.read_fd, 512)
        except BlockingIOError:
            return []
        return list(data)

    def close(self) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self.read_fd)
        os.close(self.write_fd)


def run_register(cfg, args) -> int:
    try:
        spec = plan(cfg, args.name)
    except UsageError as exc:
        return fail("register", str(exc), 2)
    wrapped = list(getattr(args, "wrapped", None) or [])

    from dnsdisco.etcd.settings import StartupError, check_access, connect
    from dnsdisco.ops import logs
    from dnsdisco.register.registrar import Registrar
    kv = None
    try:
        # scrub_env: the wrapped command and health checks must not inherit the password
        kv = connect(cfg, log=log, endpoints=spec["endpoints"],
                     timeout=kv_timeout(cfg.etcd_timeout, spec["ttl"]), scrub_env=True,
                     on_secret=logs.add_secret)
        check_access(kv, spec["key"], write=True, log=log, timeout=1.0)  # etcd down: do not hold up CMD
    except StartupError as exc:
        if kv is not None:
            kv.close()
        return fail("register", str(exc), 1)
    registrar = Registrar(kv, spec["key"], spec["value"], spec["ttl"], check=spec["check"],
                          check_interval=cfg.check_interval, rise=cfg.check_rise, fall=cfg.check_fall)
    log.info("registering %s as %s.%s at %s via %s", spec["key"], spec["id"], spec["name"],
             spec["value"].decode(), ",".join(spec["endpoints"]))
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    signals = _SignalPipe(forwarded + (signal.SIGUSR1,) + ((signal.SIGCHLD,) if wrapped else ()))
    try:
        if wrapped:
            return _run_wrapped(wrapped, registrar, signals)
        return _run_alone(registrar, signals)
    finally:
        signals.close()
        kv.close()


def _run_alone(registrar, signals: _SignalPipe) -> int:
    registrar.start()
    while True:
        for sig in signals.wait(None):
            if sig in (signal.SIGTERM, signal.SIGINT):
                log.info("%s: deregistering", signal.Signals(sig).name)
                registrar.stop(timeout=10.0)
                return 0
            if sig == signal.SIGHUP:
                log.info("SIGHUP ignored (nothing to reload)")
            if sig == signal.SIGUSR1:
                _drain(registrar)


def _drain(registrar, pid: int | None = None) -> None:
    log.info("SIGUSR1: draining; %s keeps running until SIGTERM", f"pid {pid}" if pid else "this process")
    registrar.drain()


def _run_wrapped(command: list[str], registrar, signals: _SignalPipe) -> int:
    found = shutil.which(command[0])
    if found is None:
        missing = not (os.sep in command[0] and os.path.exists(command[0]))
        exc = (FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)) if missing
               else PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
        return fail("register", *cannot_run(command[0], exc))
    try:
        # the command ends with us: SIGKILLed, we could no longer deregister it or pass signals on
        child = subprocess.Popen(dying_with_us(command))
    except OSError as exc:
        return fail("register", *cannot_run(command[0], exc))
    log.info("started %s (pid %d)", " ".join(command), child.pid)
    registrar.start()
    try:
        while child.poll() is None:
            for sig in signals.wait(1.0):
                if sig == signal.SIGCHLD:
                    continue
                if sig == signal.SIGUSR1:   # ours, not the child's: its default would kill it
                    _drain(registrar, child.pid)
                    continue
                if sig in (signal.SIGTERM, signal.SIGINT):
                    log.info("%s: deregistering and passing it on to pid %d", signal.Signals(sig).name, child.pid)
                    registrar.stop(timeout=0)  # the loop revokes while the child shuts down
                try:
                    child.send_signal(sig)
                except ProcessLookupError:
                    pass
    finally:
        registrar.stop(timeout=10.0)
    code = child.returncode
    log.info("%s exited with %s", command[0], code if code >= 0 else signal.Signals(-code).name)
    return code if code >= 0 else 128 - code
