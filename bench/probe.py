"""A fast UDP DNS client for polling one server, and correctness checks before load.

Queries are packed by hand once and reused with a new id; replies are checked on the raw
bytes (header rcode/ancount, or the expected address bytes), so polling costs about one
round trip and no parsing.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
import time

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}
NOERROR, NXDOMAIN = 0, 3


def pack_query(qname: str, qtype: str | int, qid: int = 0, rd: bool = False) -> bytes:
    """A plain DNS query (no EDNS) for qname/qtype."""
    t = QTYPES[qtype] if isinstance(qtype, str) else qtype
    flags = 0x0100 if rd else 0
    out = bytearray(struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0))
    for label in qname.rstrip(".").split("."):
        b = label.encode()
        out.append(len(b))
        out += b
    out.append(0)
    out += struct.pack("!HH", t, 1)
    return bytes(out)


def header(reply: bytes) -> tuple[int, int, int]:
    """(id, rcode, ancount) of a reply."""
    qid, flags, _qd, an = struct.unpack_from("!HHHH", reply)
    return qid, flags & 0xF, an


def address_bytes(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


class Prober:
    """One connected UDP socket to 127.0.0.1:port."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((host, port))
        self._id = 0
        self._packed: dict[tuple[str, str], bytearray] = {}

    def close(self):
        self.sock.close()

    def ask(self, qname: str, qtype: str = "A", timeout: float = 0.5) -> bytes | None:
        """Send one query and return the reply with the matching id, or None on timeout."""
        key = (qname, qtype)
        q = self._packed.get(key)
        if q is None:
            q = self._packed[key] = bytearray(pack_query(qname, qtype))
        self._id = (self._id + 1) & 0xFFFF
        struct.pack_into("!H", q, 0, self._id)
        deadline = time.monotonic() + timeout
        try:
            self.sock.send(q)
        except OSError:
            return None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except (socket.timeout, ConnectionRefusedError, OSError):
                return None
            if len(data) >= 12 and struct.unpack_from("!H", data)[0] == self._id:
                return data

    def ask_header(self, qname: str, qtype: str = "A", timeout: float = 0.5) -> tuple[int | None, int]:
        data = self.ask(qname, qtype, timeout)
        if data is None:
            return None, 0
        _, rcode, an = header(data)
        return rcode, an


# --- conditions a poll waits for -----------------------------------------------------------

def has_address(addr: str):
    """Reply is NOERROR and contains the address (as rdata bytes)."""
    packed = address_bytes(addr)

    def check(reply: bytes) -> bool:
        _, rcode, an = header(reply)
        return rcode == NOERROR and an > 0 and packed in reply[12:]
    return check


def lacks_address(addr: str):
    """Reply no longer contains the address (NXDOMAIN, NODATA or other addresses)."""
    packed = address_bytes(addr)

    def check(reply: bytes) -> bool:
        _, rcode, _ = header(reply)
        return rcode in (NOERROR, NXDOMAIN) and packed not in reply[12:]
    return check


def is_nxdomain(reply: bytes) -> bool:
    return header(reply)[1] == NXDOMAIN


# --- correctness checks before load --------------------------------------------------------

def validate(port: int, ds) -> list[str]:
    """Ask a handful of questions covered by the query mix; return the problems found (empty = ok)."""
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    from . import dataset as d
    problems: list[str] = []

    def q(name, rtype):
        msg = dns.message.make_query(name, rtype)
        try:
            return dns.query.udp(msg, "127.0.0.1", port=port, timeout=2)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            problems.append(f"{name} {rtype}: no reply ({exc.__class__.__name__})")
            return None

    def answers(r, rtype):
        return {rd.to_text() for rrset in r.answer if rrset.rdtype == dns.rdatatype.from_text(rtype)
                for rd in rrset}

    svc = d.instances_of(1)
    v6 = d.instances_of(0)
    cases = [
        (svc[0].service_name, "A", "NOERROR", {i.host for i in svc}),
        (svc[0].name, "A", "NOERROR", {svc[0].host}),
        (svc[0].service_name, "SRV", "NOERROR", {f"10 100 {i.port} {i.name}." for i in svc}),
        (svc[0].name, "AAAA", "NOERROR", set()),
        (f"nx1.{d.ZONE}", "A", "NXDOMAIN", set()),
        (d.random_case(svc[1].name, __import__("random").Random(1)), "A", "NOERROR", {svc[1].host}),
        (v6[0].service_name, "AAAA", "NOERROR", {v6[2].host}),
        (ds.last_name(), "A", "NOERROR", None),
    ]
    for name, rtype, want_rcode, want in cases:
        r = q(name, rtype)
        if r is None:
            continue
        got_rcode = dns.rcode.to_text(r.rcode())
        if got_rcode != want_rcode:
            problems.append(f"{name} {rtype}: rcode {got_rcode}, want {want_rcode}")
            continue
        got = answers(r, rtype)
        if want is not None and got != want:
            problems.append(f"{name} {rtype}: answer {sorted(got)}, want {sorted(want)}")
        elif want is None and not got:
            problems.append(f"{name} {rtype}: empty answer")
        if r.question and r.question[0].name.to_text().rstrip(".") != name.rstrip("."):
            problems.append(f"{name} {rtype}: question not echoed in the client's case")
        if want_rcode == "NXDOMAIN" or (want == set()):
            if not any(rr.rdtype == dns.rdatatype.SOA for rr in r.authority):
                problems.append(f"{name} {rtype}: negative answer without SOA (note, not fatal)")
    return problems


def fatal(problems: list[str]) -> list[str]:
    """Problems that mean the server answers wrongly (not mere notes)."""
    return [p for p in problems if "(note, not fatal)" not in p]
