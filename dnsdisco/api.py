"""The Python API: a service registers itself, a client finds instances by SRV.

    with dnsdisco.Registration("hello.svc.local", port=8080):
        serve()

    dnsdisco.resolve_srv("hello.svc.local")  # [("10.0.0.7", 8080), ...]

`Registration` uses the same settings and checks as `dnsdisco register` (settings not
passed in code come from DNSDISCO_* in the environment, then defaults) and runs the
keepalive in a plain background thread, one per (etcd settings, lease TTL) shared by all the
process's registrations: no gevent needed. `resolve_srv` asks the resolver
configured in /etc/resolv.conf with one UDP query (TCP if truncated); no etcd involved.
"""
from __future__ import annotations

import logging
import random
import socket
import struct
from typing import Callable, Iterable, Sequence

from dnsdisco.dns.names import format_hostport
from dnsdisco.net.upstreams import RESOLV_CONF, read_resolv_conf

log = logging.getLogger("dnsdisco.register")


# ---------------------------------------------------------------- registration

class Registration:
    """Keep this process registered as an instance of `name` while the block runs.

    name: service name (hello.svc.local); port: the service port (published in SRV);
    address: IP to publish (default: the host's primary non-loopback address);
    ttl: lease TTL in seconds (≥ 2), the longest a crashed instance stays in etcd;
    dns_ttl: the DNS TTL written in the record, how long caches keep it (≤ ttl; default
    half of ttl, at least 1);
    etcd: endpoint URL or list (default DNSDISCO_ETCD, else http://127.0.0.1:2379);
    id: instance id, the last key label (default <hostname>-<port>);
    priority, weight, text: SRV priority and weight, TXT text;
    check: a callable returning bool (or (bool, detail)), called every check_interval
    seconds in a thread; check_http / check_cmd / check_tcp ("HOST:PORT") / check_grpc
    ("HOST:PORT[/SERVICE]"): the CLI's checks; check_timeout: seconds one probe may take;
    check_rise / check_fall: passes / failures in a row that change the state (default 1 / 2).
    The record exists only while every given check passes.
    wait: seconds start() waits for the first write; if etcd is not reachable by then it
    logs a warning and keeps trying in the background (`registered` tells).

    Registrations of one process with the same etcd settings and lease TTL share one etcd
    client, one lease and one keepalive thread; each is one key under that lease.
    `drain()` removes the record while the process keeps running; `stop()` ends it.
    """

    def __init__(self, name: str, port: int, address: str | None = None, *, ttl: int = 10,
                 dns_ttl: int | None = None,
                 etcd: str | Sequence[str] | None = None, id: str | None = None,
                 priority: int | None = None, weight: int | None = None, text: str | None = None,
                 prefix: str | None = None, check: Callable[[], object] | None = None,
                 check_http: str | None = None, check_cmd: str | None = None,
                 check_tcp: str | Sequence[str] | None = None, check_grpc: str | Sequence[str] | None = None,
                 check_interval: float | None = None, check_timeout: float | None = None,
                 check_rise: int | None = None, check_fall: int | None = None,
                 etcd_timeout: float | None = None, wait: float = 5.0):
        from dnsdisco import config
        from dnsdisco.register.command import plan
        flags = {"port": port, "address": address, "ttl": ttl, "dns_ttl": dns_ttl, "id": id, "priority": priority,
                 "weight": weight, "text": text, "prefix": prefix, "check_http": check_http,
                 "check_cmd": check_cmd, "check_tcp": check_tcp, "check_grpc": check_grpc,
                 "check_interval": check_interval, "check_timeout": check_timeout, "check_rise": check_rise,
                 "check_fall": check_fall, "etcd_timeout": etcd_timeout,
                 "etcd": [etcd] if isinstance(etcd, str) else etcd}
        cfg = config.load("register", {k: v for k, v in flags.items() if v is not None})
        self.config = cfg
        self._plan = plan(cfg, name)   # raises ValueError naming a bad argument
        if check is not None:
            from dnsdisco.register.checks import AllChecks
            own = _as_check(check)
            self._plan["check"] = own if self._plan["check"] is None else AllChecks([self._plan["check"], own])
        self.wait = wait
        self._group = None
        self._registrar = None

    @property
    def key(self) -> str:
        """The etcd key of this instance."""
        return self._plan["key"]

    @property
    def id(self) -> str:
        return self._plan["id"]

    @property
    def name(self) -> str:
        """This instance's own DNS name, `<id>.<service>`."""
        return f"{self._plan['id']}.{self._plan['name']}"

    @property
    def dns_ttl(self) -> int:
        """The DNS TTL written in the record."""
        return self._plan["dns_ttl"]

    @property
    def registered(self) -> bool:
        """True while the record is known to be in etcd."""
        return self._registrar is not None and self._registrar.registered.is_set()

    def _signature(self) -> tuple:
        """What must match for two registrations to share an etcd client and a lease."""
        from dnsdisco.etcd.settings import kv_settings
        from dnsdisco.register.command import kv_timeout
        settings = kv_settings(self.config, endpoints=self._plan["endpoints"],
                               timeout=kv_timeout(self.config.etcd_timeout, self._plan["ttl"]))
        return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in settings.items()))

    def start(self) -> "Registration":
        if self._registrar is not None:
            return self
        from dnsdisco.etcd.settings import check_access, connect
        from dnsdisco.ops import logs
        from dnsdisco.register.command import kv_timeout
        from dnsdisco.register.registrar import Registrar, release_group, shared_group
        # TLS files, user and password from DNSDISCO_* as for `dnsdisco register`; a setting
        # that cannot work raises etcd.settings.StartupError naming it
        group = shared_group(self._signature(), self._plan["ttl"], lambda: connect(
            self.config, log=log, endpoints=self._plan["endpoints"],
            timeout=kv_timeout(self.config.etcd_timeout, self._plan["ttl"]), on_secret=logs.add_secret))
        try:
            with group.setup_lock:
                check_access(group.kv, self._plan["key"], write=True, log=log, timeout=1.0)
            registrar = Registrar(None, self._plan["key"], self._plan["value"], group=group,
                                  check=self._plan["check"], check_interval=self.config.check_interval,
                                  rise=self.config.check_rise, fall=self.config.check_fall).start()
        except Exception:
            release_group(group)
            raise
        self._group, self._registrar = group, registrar
        if self.wait and self._plan["check"] is None and not registrar.registered.wait(self.wait):
            log.warning("%s not registered after %gs (etcd %s unreachable?); still trying",
                        self.key, self.wait, ",".join(self._plan["endpoints"]))
        return self

    def drain(self, timeout: float | None = 5.0) -> bool:
        """Remove the record but keep this registration (and the process) running: clients
        stop getting this instance once their cached answer expires (dns_ttl), while requests
        already on their way are served. Returns whether the removal was confirmed within
        `timeout`. `stop()` (or leaving the block) ends it as usual."""
        if self._registrar is None:
            return True
        return self._registrar.drain(timeout)

    def stop(self) -> None:
        """Delete the record (it disappears at once) and leave the shared lease; the last
        registration of the group revokes the lease and ends its thread."""
        from dnsdisco.register.registrar import release_group
        registrar, group = self._registrar, self._group
        self._registrar = self._group = None
        timeout = max(5.0, self.config.etcd_timeout * 2)
        if registrar is not None:
            registrar.stop(timeout=timeout)
        if group is not None:
            release_group(group, timeout)

    close = stop

    def __enter__(self) -> "Registration":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _as_check(fn: Callable[[], object]) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        result = fn()
        if isinstance(result, tuple):
            return bool(result[0]), str(result[1])
        return bool(result), f"{getattr(fn, '__name__', 'check')}() returned {result!r}"
    return check


# ---------------------------------------------------------------- SRV lookup

class ResolveError(OSError):
    """No configured nameserver gave a usable answer; the message says what each said."""


def nameservers(path: str = RESOLV_CONF) -> list[tuple[str, int]]:
    """The `nameserver` addresses of resolv.conf (read as `--forward resolv.conf:PATH` reads
    them); glibc's default 127.0.0.1 when the file is missing or lists none."""
    try:
        return read_resolv_conf(path)
    except ValueError:
        return [("127.0.0.1", 53)]


def order_srv(records: Iterable[tuple[int, int, object]], rng: random.Random | None = None) -> list:
    """RFC 2782 order: ascending priority; within a priority a weighted random shuffle.

    `records` are (priority, weight, item); returns the items.
    """
    rng = rng or random
    by_priority: dict[int, list[tuple[int, object]]] = {}
    for priority, weight, item in records:
        by_priority.setdefault(priority, []).append((max(0, weight), item))
    out = []
    for priority in sorted(by_priority):
        group = by_priority[priority]
        # zero-weight entries first, so they have a small chance when others exist (RFC 2782)
        group.sort(key=lambda pair: pair[0] != 0)
        while group:
            total = sum(w for w, _ in group)
            pick = rng.uniform(0, total) if total else 0
            running = 0
            for i, (weight, item) in enumerate(group):
                running += weight
                if running >= pick:
                    out.append(item)
                    del group[i]
                    break
    return out


def _parse_nameserver(ns) -> tuple[str, int]:
    if isinstance(ns, (tuple, list)):
        return str(ns[0]), int(ns[1])
    from dnsdisco.dns.names import parse_hostport
    return parse_hostport(str(ns), default_port=53)


def _exchange(packet: bytes, qid: int, server: tuple[str, int], timeout: float) -> bytes:
    host, port = server
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.send(packet)
        while True:  # ignore stray datagrams with another id
            data = s.recv(65535)
            if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid and data[2] & 0x80:
                break
    if data[2] & 0x02:  # TC: the same question over TCP gets everything
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack("!H", len(packet)) + packet)
            data = _recv_tcp(s)
    return data


def _recv_tcp(s: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise OSError("the server closed the TCP connection")
            buf += chunk
        return buf
    (length,) = struct.unpack("!H", exactly(2))
    return exactly(length)


def resolve_srv(name: str, *, nameserver: tuple[str, int] | str | None = None, timeout: float = 2.0,
                rng: random.Random | None = None) -> list[tuple[str, int]]:
    """Instances of `name` as [(host, port), ...] in RFC 2782 order.

    host is the address from the answer's additional section when present, else the SRV
    target name. No such name, or no SRV records: []. Raises ResolveError when no
    nameserver answers (timeout, SERVFAIL, REFUSED).
    """
    return lookup_srv(name, nameserver=nameserver, timeout=timeout, rng=rng)[0]


def lookup_srv(name: str, *, nameserver: tuple[str, int] | str | None = None, timeout: float = 2.0,
               rng: random.Random | None = None) -> tuple[list[tuple[str, int]], int]:
    """resolve_srv's instances and how long they may be used: the answer's TTL (the SRV
    RRset's, or the SOA minimum of a negative answer), so a caller that asks again only then
    sees a change as soon as a cache in front of it would, without asking every second."""
    from dnslib import QTYPE, RCODE, DNSRecord
    servers = [_parse_nameserver(nameserver)] if nameserver is not None else nameservers()
    qname = name.rstrip(".") + "."
    errors = []
    for server in servers:
        query = DNSRecord.question(qname, "SRV")
        packet = query.pack()
        try:
            data = _exchange(packet, query.header.id, server, timeout)
            reply = DNSRecord.parse(data)
        except Exception as exc:  # timeout, refused, unparsable reply
            errors.append(f"{format_hostport(*server)}: {exc or type(exc).__name__}")
            continue
        rcode = reply.header.rcode
        negative_ttl = min((rr.rdata.times[-1] if rr.rtype == QTYPE.SOA else rr.ttl for rr in reply.auth),
                           default=0)
        if rcode == RCODE.NXDOMAIN:
            return [], negative_ttl
        if rcode != RCODE.NOERROR:
            errors.append(f"{format_hostport(*server)}: {RCODE.get(rcode)}")
            continue
        addresses: dict[str, list[str]] = {}
        for rr in list(reply.rr) + list(reply.ar):
            if rr.rtype in (QTYPE.A, QTYPE.AAAA):
                addresses.setdefault(str(rr.rname).lower(), []).append(str(rr.rdata))
        srvs = []
        for rr in reply.rr:
            if rr.rtype != QTYPE.SRV:
                continue
            target = str(rr.rdata.target).lower()
            if target == ".":  # RFC 2782: the service is decidedly not available
                continue
            found = addresses.get(target)
            host = found[0] if found else target.rstrip(".")
            srvs.append((rr.rdata.priority, rr.rdata.weight, (host, rr.rdata.port)))
        ttl = min((rr.ttl for rr in reply.rr if rr.rtype == QTYPE.SRV), default=negative_ttl)
        return order_srv(srvs, rng), ttl
    raise ResolveError(f"SRV {name}: no nameserver answered: " + "; ".join(errors))
