"""Network namespaces for end-to-end tests through resolv.conf (DESIGN.md section 7).

Inside a namespace made here, every unmodified client (getent, curl, python's socket,
nslookup) reads /etc/netns/<name>/resolv.conf, so tests can point it at a server on
127.0.0.1:53 without touching the host. Everything made is removed again, even when a
test fails: the processes started in the namespace, the namespace, and /etc/netns/<name>.

    ok, why = netns_available()
    if not ok: pytest.skip(why)
    with Netns("dd", resolv_conf="nameserver 127.0.0.1\\nsearch svc.local\\n") as ns:
        ns.popen(dnsmasq_command(port=53, workdir=tmp_path, records=["example.test,192.0.2.10"]))
        ns.wait_until(["dig", "+short", "@127.0.0.1", "example.test"])
        print(ns.run(["getent", "hosts", "example.test"]).stdout)
"""
from __future__ import annotations

import collections
import functools
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

NETNS_ETC = Path("/etc/netns")


def _ip(*args: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)


@functools.lru_cache(maxsize=1)
def netns_available() -> tuple[bool, str]:
    """(True, "") when this process can create a namespace and run in it with its own
    resolv.conf; otherwise (False, the reason), for pytest.skip."""
    if not sys.platform.startswith("linux"):
        return False, "network namespaces need Linux"
    if os.geteuid() != 0:
        return False, "creating network namespaces needs root (run the tests as root)"
    if shutil.which("ip") is None:
        return False, "the 'ip' command (iproute2) is not installed"
    try:
        with Netns("ddprobe", resolv_conf="nameserver 127.0.0.9\n") as ns:
            seen = ns.run(["cat", "/etc/resolv.conf"])
            if seen.returncode != 0 or "127.0.0.9" not in seen.stdout:
                return False, ("'ip netns exec' does not bind /etc/netns/<name>/resolv.conf over "
                               f"/etc/resolv.conf here: {seen.stderr.strip() or seen.stdout.strip()}")
    except NetnsError as exc:
        return False, str(exc)
    return True, ""


class NetnsError(RuntimeError):
    """A namespace could not be created or entered; the message says which step failed."""


class Netns:
    """A uniquely named network namespace with lo up and its own /etc files."""

    def __init__(self, name_prefix: str = "dd", *, resolv_conf: str = "nameserver 127.0.0.1\n",
                 hosts: str | None = None):
        self.name = f"{name_prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        self.etc_dir = NETNS_ETC / self.name
        self._resolv_conf = resolv_conf
        self._hosts = hosts
        self._procs: list[subprocess.Popen] = []
        self._created = False
        self._made_etc_parent = False
        self._closed = False

    # -- life cycle

    def __enter__(self) -> "Netns":
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _create(self) -> None:
        # /etc/netns/<name> first: `ip netns exec` binds its files when a command starts
        self._made_etc_parent = not NETNS_ETC.exists()
        self.etc_dir.mkdir(parents=True, exist_ok=False)
        self.write_etc("resolv.conf", self._resolv_conf)
        if self._hosts is not None:
            self.write_etc("hosts", self._hosts)
        res = _ip("netns", "add", self.name)
        if res.returncode != 0:
            raise NetnsError(f"'ip netns add {self.name}' failed: {res.stderr.strip()}")
        self._created = True
        res = _ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        if res.returncode != 0:
            raise NetnsError(f"'ip netns exec {self.name} ip link set lo up' failed: {res.stderr.strip()}")

    def close(self) -> None:
        """Stop our processes, delete the namespace and its /etc files. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for proc in self._procs:
            _stop(proc)
        if self._created:
            for pid in self.pids():        # anything else still running in there
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while True:
                res = _ip("netns", "del", self.name)
                if res.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        shutil.rmtree(self.etc_dir, ignore_errors=True)
        if self._made_etc_parent:
            try:
                NETNS_ETC.rmdir()           # only when empty: other namespaces may use it
            except OSError:
                pass

    # -- files

    def write_etc(self, filename: str, text: str) -> Path:
        """Write /etc/netns/<name>/<filename>; commands started afterwards see it as /etc/<filename>."""
        path = self.etc_dir / filename
        with open(path, "w") as fh:         # in place, so an existing bind mount sees it too
            fh.write(text)
        return path

    # -- commands

    def command(self, argv: Sequence[str] | str) -> list[str]:
        if isinstance(argv, str):
            argv = shlex.split(argv)
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str] | str, *, timeout: float = 10, check: bool = False,
            input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run a command inside; text output captured; raises TimeoutExpired after `timeout`."""
        return subprocess.run(self.command(argv), capture_output=True, text=True, timeout=timeout,
                              check=check, input=input, env=env)

    def popen(self, argv: Sequence[str] | str, **kwargs) -> subprocess.Popen:
        """Start a long-running command inside; it is stopped on close()."""
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.command(argv), **kwargs)
        self._procs.append(proc)
        return proc

    def wait_until(self, argv: Sequence[str] | str, *, timeout: float = 10,
                   interval: float = 0.05) -> subprocess.CompletedProcess:
        """Re-run a command inside until it exits 0 (e.g. a server answers); TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                res = self.run(argv, timeout=max(0.5, min(5.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired as exc:
                res = subprocess.CompletedProcess(exc.cmd, -1, "", "timed out")
            if res.returncode == 0:
                return res
            if time.monotonic() > deadline:
                raise TimeoutError(f"in namespace {self.name}, {argv!r} did not succeed within "
                                   f"{timeout}s: {res.stderr.strip() or res.stdout.strip()}")
            time.sleep(interval)

    def pids(self) -> list[int]:
        res = _ip("netns", "pids", self.name)
        return [int(p) for p in res.stdout.split() if p.isdigit()] if res.returncode == 0 else []


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait(timeout=3)
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            stream.close()


# ---------------------------------------------------------------- a local upstream: dnsmasq

def dnsmasq_command(*, port: int, workdir: str | os.PathLike, listen: str = "127.0.0.1",
                    records: Sequence[str] = (), txt: Sequence[str] = (), ttl: int = 60,
                    auth_zone: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """A dnsmasq that answers only from its arguments (no /etc/dnsmasq.conf, hosts or upstreams).

    records: `--host-record` values ("example.test,192.0.2.10,2001:db8::10");
    txt: `--txt-record` values ("big.test,text"); auth_zone: serve that zone with an SOA so
    unknown names get NXDOMAIN and known names NODATA for other types (negative answers).
    """
    cmd = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
           f"--port={port}", f"--listen-address={listen}", "--bind-interfaces",
           f"--pid-file={os.path.join(workdir, f'dnsmasq-{port}.pid')}", f"--local-ttl={ttl}"]
    if os.geteuid() == 0:
        cmd.append("--user=root")
    cmd += [f"--host-record={r}" for r in records]
    cmd += [f"--txt-record={t}" for t in txt]
    if auth_zone:
        cmd += [f"--auth-zone={auth_zone}", f"--auth-server=ns.{auth_zone},{listen}",
                f"--auth-ttl={ttl}", f"--auth-soa=1,hostmaster.{auth_zone}"]
    return cmd + list(extra)


def _below_ephemeral() -> tuple[int, int]:
    """Ports under the kernel's range for outgoing connections: a server restarted on its
    port (etcd in the restart tests) must find it free, and a port in that range may have
    been handed meanwhile to a client's connection (a thousand registrars reconnecting)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(1024, low - 12000), low - 1


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free for both UDP and TCP on `host` right now, outside the range the
    kernel gives outgoing connections (_below_ephemeral)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    first, last = _below_ephemeral()
    for attempt in range(200):
        port = random.randint(first, last) if last > first and attempt < 150 else 0
        if port in _given:               # handed out already, maybe not bound yet (etcd's two ports)
            continue
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((host, port))
            except OSError:
                continue
            port = udp.getsockname()[1]
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                _given.append(port)
                return port
    raise RuntimeError(f"no free UDP+TCP port on {host}")


_given: collections.deque = collections.deque(maxlen=2000)     # the ports free_port returned last


def dns_answers(host: str, port: int, name: str = "example.test", timeout: float = 0.3) -> bool:
    """True when something on host:port answers a UDP query for `name` (any rcode)."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"
    query = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", 1, 1)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(query, (host, port))
            data = sock.recv(4096)
        except OSError:
            return False
    return len(data) >= 12 and data[:2] == b"\x42\x42"


def wait_dns(host: str, port: int, name: str = "example.test", timeout: float = 10,
             proc: subprocess.Popen | None = None) -> None:
    """Wait until a DNS server answers on host:port; TimeoutError (or the process's exit) otherwise."""
    deadline = time.monotonic() + timeout
    while not dns_answers(host, port, name):
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"DNS server exited with {proc.returncode} before answering: {err.strip()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no DNS answer on {host}:{port} within {timeout}s")
        time.sleep(0.05)
