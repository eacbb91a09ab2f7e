"""Reference DNS servers for differential tests: Knot DNS (`knotd`) and BIND 9 (`named`).

Each serves hand-written RFC 1035 zone files on a free loopback port (or port 53 inside a
network namespace), runs as the current user with its run and storage directories in a
temporary directory, and is always stopped. Tests ask it and dnsdisco the same questions and
compare `signature()`s.

    with KnotServer(tmp_path, {"svc.local": ZONE_TEXT}) as knot:
        reply = ask(knot.port, "hello.svc.local", "A")
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from tests.support.netns import free_port

KNOT_CONF = """\
server:
    rundir: "{wd}"
    listen: {listen}@{port}
log:
  - target: stderr
    any: warning
database:
    storage: "{wd}/db"
template:
  - id: default
    storage: "{wd}/zones"
    semantic-checks: on
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
zone:
{zones}
"""

NAMED_CONF = """\
options {{
    directory "{wd}";
    pid-file "{wd}/named.pid";
    listen-on port {port} {{ {listen}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-transfer {{ none; }};
    minimal-responses no-auth;
    // any octet may appear in a label (RFC 2181 section 11): no host-name policy on owners
    check-names primary ignore;
}};
controls {{ }};
{zones}
"""


def _zone_file_name(zone: str) -> str:
    # a file name from the zone's text form; escapes become underscores
    return (zone.rstrip(".") or "root").replace("\\", "_").replace("/", "_") + ".zone"


class _RefServer:
    """Shared life cycle: write files, start, wait (bounded) until the first zone's SOA answers, stop."""

    tool = ""
    package = ""

    def __init__(self, workdir: str | os.PathLike, zones: Mapping[str, str], *, listen: str = "127.0.0.1",
                 port: int | None = None, popen: Callable[..., subprocess.Popen] | None = None,
                 wait: Callable[[], None] | None = None):
        self.wd = Path(workdir)
        self.zones = dict(zones)
        self.listen = listen
        self.port = port or free_port(listen)
        self._popen = popen or subprocess.Popen
        self._wait = wait
        self.proc: subprocess.Popen | None = None
        self.log_path = self.wd / f"{self.tool}.log"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if shutil.which(cls.tool) is None:
            return False, f"'{cls.tool}' is not installed (Debian package {cls.package})"
        return True, ""

    def command(self) -> list[str]:
        raise NotImplementedError

    def write_files(self) -> None:
        raise NotImplementedError

    def start(self):
        self.wd.mkdir(parents=True, exist_ok=True)
        self.write_files()
        self._log = open(self.log_path, "w+")
        self.proc = self._popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        first = next(iter(self.zones))
        try:
            if self._wait is not None:
                self._wait()
            else:
                deadline = time.monotonic() + 20
                while True:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"{self.tool} exited with {self.proc.returncode}")
                    try:
                        if ask(self.port, first, "SOA", host=self.listen, timeout=0.5).rcode() == 0:
                            break
                    except Exception:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.tool} did not answer SOA {first} within 20 s")
                    time.sleep(0.05)
        except BaseException as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n--- {self.tool} log ---\n{self.log()}") from None
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    self.proc.kill()
                self.proc.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class KnotServer(_RefServer):
    tool = "knotd"
    package = "knot"

    def write_files(self) -> None:
        (self.wd / "zones").mkdir(exist_ok=True)
        (self.wd / "db").mkdir(exist_ok=True)
        entries = []
        for zone, text in self.zones.items():
            fname = _zone_file_name(zone)
            (self.wd / "zones" / fname).write_text(text)
            entries.append(f'  - domain: "{zone}"\n    file: "{fname}"')
        (self.wd / "knot.conf").write_text(KNOT_CONF.format(wd=self.wd, listen=self.listen, port=self.port,
                                                            zones="\n".join(entries)))

    def command(self) -> list[str]:
        return ["knotd", "-c", str(self.wd / "knot.conf")]


class BindServer(_RefServer):
    tool = "named"
    package = "bind9"

    def write_files(self) -> None:
        entries = []
        for zone, text in self.zones.items():
            fname = _zone_file_name(zone)
            (self.wd / fname).write_text(text)
            entries.append(f'zone "{zone}" {{ type primary; file "{self.wd / fname}"; }};')
        (self.wd / "named.conf").write_text(NAMED_CONF.format(wd=self.wd, listen=self.listen, port=self.port,
                                                              zones="\n".join(entries)))

    def command(self) -> list[str]:
        cmd = ["named", "-g", "-c", str(self.wd / "named.conf")]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        return cmd


# ---------------------------------------------------------------- asking and comparing

def ask(port: int, name: str | dns.name.Name, rdtype: str = "A", *, host: str = "127.0.0.1", tcp: bool = False,
        edns: int | None = 0, payload: int = 1232, timeout: float = 3.0, want_dnssec: bool = False,
        rd: bool = False) -> dns.message.Message:
    """One query with dnspython; `name` may be a dns.name.Name made from raw labels."""
    q = dns.message.make_query(name, rdtype, use_edns=edns if edns is not None else False, payload=payload,
                               want_dnssec=want_dnssec)
    if not rd:
        q.flags &= ~dns.flags.RD
    return send(q, port, host=host, tcp=tcp, timeout=timeout)


def send(q: dns.message.Message | bytes, port: int, *, host: str = "127.0.0.1", tcp: bool = False,
         timeout: float = 3.0) -> dns.message.Message:
    """Send a query (message or raw wire bytes) and parse the reply (raw_exchange's retries)."""
    wire = q if isinstance(q, bytes) else q.to_wire()
    return _raw_tcp(wire, host, port, timeout) if tcp else _raw_udp(wire, host, port, timeout)


def raw_exchange(wire: bytes, port: int, *, host: str = "127.0.0.1", tcp: bool = False,
                 timeout: float = 3.0, tries: int = 3) -> bytes | None:
    """Send raw bytes, return the raw reply, or None when `tries` attempts of `timeout` seconds each
    got nothing (the machine is shared: a lost UDP reply or a slow accept is asked again)."""
    for _ in range(tries):
        try:
            data = _exchange_once(wire, port, host, tcp, timeout)
        except OSError:
            data = None
        if data is not None:
            return data
    return None


def _exchange_once(wire: bytes, port: int, host: str, tcp: bool, timeout: float) -> bytes | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if tcp:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack("!H", len(wire)) + wire)
            head = _recv_exact(s, 2)
            if head is None:
                return None
            return _recv_exact(s, struct.unpack("!H", head)[0])
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(wire, (host, port))
        try:
            while True:
                data = s.recv(65535)
                if data[:2] == wire[:2]:
                    return data
        except (socket.timeout, TimeoutError):
            return None


def _recv_exact(s, n: int) -> bytes | None:
    out = b""
    while len(out) < n:
        try:
            chunk = s.recv(n - len(out))
        except OSError:
            return None
        if not chunk:
            return None
        out += chunk
    return out


def _raw_udp(wire: bytes, host: str, port: int, timeout: float) -> dns.message.Message:
    data = raw_exchange(wire, port, host=host, timeout=timeout)
    if data is None:
        raise TimeoutError(f"no UDP reply from {host}:{port} in 3 tries of {timeout}s")
    return dns.message.from_wire(data, ignore_trailing=False, keyring=None)


def _raw_tcp(wire: bytes, host: str, port: int, timeout: float) -> dns.message.Message:
    data = raw_exchange(wire, port, host=host, tcp=True, timeout=timeout)
    if data is None:
        raise TimeoutError(f"no TCP reply from {host}:{port} in 3 tries of {timeout}s")
    return dns.message.from_wire(data)


def _rdata_key(rrset, rd) -> str:
    if rrset.rdtype == dns.rdatatype.SOA:
        # the serial is the etcd revision on one side and a hand-written number on the other;
        # refresh, retry and expire are transfer settings of each server, not answer rules
        return f"{rd.mname.to_text().lower()} {rd.rname.to_text().lower()} minimum {rd.minimum}"
    return rd.to_text().lower()


def rrs(section) -> frozenset:
    """A section as a set of (owner, type, rdata) with owners and names in lower case; order and TTL ignored."""
    return frozenset((rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), _rdata_key(rrset, rd))
                     for rrset in section for rd in rrset)


def signature(msg: dns.message.Message) -> dict:
    """What must agree between two authoritative servers for the same zone data."""
    return {
        "rcode": dns.rcode.to_text(msg.rcode()),
        "AA": bool(msg.flags & dns.flags.AA),
        "TC": bool(msg.flags & dns.flags.TC),
        "OPT": msg.edns >= 0,
        "answer": sorted(rrs(msg.answer)),
        "authority types": sorted({dns.rdatatype.to_text(r.rdtype) for r in msg.authority}),
    }


def diff(ours: dict, theirs: dict) -> list[str]:
    return [f"{k}: dnsdisco {ours[k]!r} vs reference {theirs[k]!r}" for k in ours if ours[k] != theirs[k]]


def zone_text(origin: str, body: str, *, ttl: int = 30, ns: Sequence[str] = ("ns.dns",),
              soa_timers: str = "7200 1800 86400 5") -> str:
    """A zone file: $ORIGIN, $TTL, the SOA dnsdisco writes (mname ns.dns.<zone>, rname hostmaster.<zone>),
    the NS names given (relative to the origin unless they end in '.'), then `body` as written."""
    lines = [f"$ORIGIN {origin.rstrip('.')}.", f"$TTL {ttl}",
             f"@ SOA ns.dns hostmaster 1 {soa_timers}"]
    lines += [f"@ NS {n}" for n in ns]
    return "\n".join(lines) + "\n" + body.strip("\n") + "\n"
