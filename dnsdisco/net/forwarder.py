"""Forwarding of names outside our zones to upstream resolvers, with a TTL-bounded cache.

dnsdisco is often the only nameserver in a resolv.conf, so every other name must still
resolve. The forwarder sends the client's query (fresh random id, hop-by-hop EDNS options
removed) to the upstreams over UDP, retries over TCP when the reply is truncated, fails
over between upstreams with a per-try timeout, and answers SERVFAIL when all fail.

The wire handling below is pure (bytes in, bytes out) and walks the message directly:
a cache hit costs a dict lookup and a few byte patches, no dnslib parse.

Self-loops: an upstream list that points at our own listen address makes every forwarded
query loop until it times out. This module cannot know where the server listens; the
caller checks with `self_loops(upstreams, listens)` before serving.
"""
from __future__ import annotations

import ipaddress
import logging
import random
import struct
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable, NamedTuple

import gevent
from gevent import socket as gsocket
from gevent.event import AsyncResult

from dnsdisco.dns.constants import DO_BIT, T_OPT, T_SOA, UDP_PAYLOAD
from dnsdisco.dns.names import skip_wire_name

DEFAULT_PORT = 53
MAX_CACHE_TTL = 86400          # cap on positive answers (as Unbound's cache-max-ttl)
MAX_NEGATIVE_TTL = 3600        # cap on NXDOMAIN/NODATA (RFC 2308 section 5)
HOP_BY_HOP_OPTIONS = frozenset({10, 11, 12})   # COOKIE, TCP keepalive, padding: never relayed

QR, OPCODE_MASK, AA, TC, RD, RA, AD, CD = 0x8000, 0x7800, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, REFUSED = 0, 1, 2, 3, 5

_HEADER = struct.Struct(">HHHHHH")
_rng = random.SystemRandom()


# ---------------------------------------------------------------- upstream lists (pure)

def parse_upstream(item: str) -> list[tuple[str, int]]:
    """One `--forward` item: `1.2.3.4`, `1.2.3.4:5353`, `[::1]:53` or `resolv.conf:PATH`."""
    text = str(item).strip()
    if text.startswith("resolv.conf:"):
        path = text[len("resolv.conf:"):]
        if not path:
            raise ValueError(f"{text!r}: give a path, e.g. resolv.conf:/etc/resolv.conf")
        return read_resolv_conf(path)
    if not text:
        raise ValueError("empty upstream")
    host, port_text = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not text[end + 1:].startswith(":")):
            raise ValueError(f"{text!r}: write an IPv6 upstream as [ADDRESS]:PORT")
        host, port_text = text[1:end], (text[end + 2:] if text[end + 1:] else None)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port = DEFAULT_PORT
    if port_text is not None:
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"{text!r}: {port_text!r} is not a port number") from None
        if not 1 <= port <= 65535:
            raise ValueError(f"{text!r}: port {port} is outside 1..65535")
    if not _is_ip(host):
        raise ValueError(f"{text!r}: an upstream is an IP address (optionally :PORT, [IPv6]:PORT) "
                         f"or resolv.conf:PATH; names are not resolved, to avoid asking ourselves")
    return [(host, port)]


def parse_upstreams(items: list[str]) -> list[tuple[str, int]]:
    """All `--forward` items (commas allowed inside an item), in order, without duplicates."""
    result: list[tuple[str, int]] = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                for upstream in parse_upstream(part):
                    if upstream not in result:
                        result.append(upstream)
    return result


def read_resolv_conf(path: str) -> list[tuple[str, int]]:
    """The `nameserver` addresses of a resolv.conf file, port 53."""
    where = f"resolv.conf:{path}"
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise ValueError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{where}: is a directory, not a resolv.conf file") from None
    except PermissionError:
        raise ValueError(f"{where}: permission denied") from None
    except OSError as exc:
        raise ValueError(f"{where}: cannot read: {exc.strerror or exc}") from None
    found: list[tuple[str, int]] = []
    skipped: list[str] = []
    for line in lines:
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            if _is_ip(words[1]):
                if (words[1], DEFAULT_PORT) not in found:
                    found.append((words[1], DEFAULT_PORT))
            else:
                skipped.append(words[1])
    if not found:
        extra = f" (not IP addresses: {', '.join(skipped)})" if skipped else ""
        raise ValueError(f"{where}: no 'nameserver ADDRESS' lines{extra}")
    return found


def self_loops(upstreams: list[tuple[str, int]], listens: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Upstreams that are one of our own listen addresses (forwarding to them would loop)."""
    loops = []
    for host, port in upstreams:
        up = _ip(host)
        for lhost, lport in listens:
            if lport != port:
                continue
            listen = _ip(lhost) if lhost != "localhost" else ipaddress.ip_address("127.0.0.1")
            if listen is None or up is None:
                continue
            if listen == up or (listen.is_unspecified and listen.version == up.version and up.is_loopback):
                loops.append((host, port))
                break
    return loops


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _is_ip(text: str) -> bool:
    return _ip(text) is not None


def upstream_label(upstream: tuple[str, int]) -> str:
    host, port = upstream
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---------------------------------------------------------------- wire walking (pure)

class WireError(ValueError):
    """A message that cannot be walked (cut short, bad label, pointer loop)."""


class RR(NamedTuple):
    section: int        # 1 answer, 2 authority, 3 additional
    start: int
    rtype: int
    ttl_offset: int
    ttl: int
    rdata_offset: int
    rdlength: int
    end: int


@dataclass(slots=True)
class Message:
    """What the forwarder needs from a query or a reply, with byte offsets for patching."""
    id: int
    flags: int
    counts: tuple[int, int, int, int]
    qname: bytes = b""          # lower-case wire form, pointers expanded
    qtype: int = 0
    qclass: int = 0
    question_end: int = 12      # offset after the question (12 when QDCOUNT is 0)
    rrs: tuple[RR, ...] = ()
    opt: RR | None = None
    edns_size: int = 0          # 0 = no OPT record
    do: bool = False

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F

    @property
    def has_edns(self) -> bool:
        return self.opt is not None


def _read_name(buf: bytes, off: int) -> tuple[bytes, int]:
    """(lower-case wire name with pointers expanded, offset after the name in place)."""
    labels = []
    end = None
    jumps = 0
    total = 0
    while True:
        if off >= len(buf):
            raise WireError("name runs past the end of the message")
        length = buf[off]
        if length & 0xC0 == 0xC0:
            if off + 1 >= len(buf):
                raise WireError("compression pointer cut short")
            if end is None:
                end = off + 2
            jumps += 1
            if jumps > 64:
                raise WireError("compression pointer loop")
            off = ((length & 0x3F) << 8) | buf[off + 1]
            continue
        if length & 0xC0:
            raise WireError(f"unsupported label type {length:#x}")
        if length == 0:
            labels.append(b"\x00")
            return b"".join(labels).lower(), (end if end is not None else off + 1)
        if off + 1 + length > len(buf):
            raise WireError("label runs past the end of the message")
        total += length + 1
        if total > 255:
            raise WireError("name longer than 255 octets")
        labels.append(buf[off:off + 1 + length])
        off += 1 + length


def _skip_name(buf: bytes, off: int) -> int:
    try:
        return skip_wire_name(buf, off)
    except ValueError as exc:
        raise WireError(str(exc)) from None


def parse_message(buf: bytes, *, records: bool = True) -> Message:
    """Walk header, question and (if `records`) every RR; raises WireError when malformed."""
    if len(buf) < 12:
        raise WireError("shorter than a DNS header")
    mid, flags, qd, an, ns, ar = _HEADER.unpack_from(buf, 0)
    msg = Message(mid, flags, (qd, an, ns, ar))
    off = 12
    if qd:
        if qd != 1:
            raise WireError(f"{qd} questions")
        msg.qname, off = _read_name(buf, off)
        if off + 4 > len(buf):
            raise WireError("question cut short")
        msg.qtype, msg.qclass = struct.unpack_from(">HH", buf, off)
        off += 4
        msg.question_end = off
    if not records:
        # a query: only the OPT record matters; it sits in the additional section
        if an == 0 and ns == 0 and ar == 0:
            return msg
    rrs = []
    for section, count in ((1, an), (2, ns), (3, ar)):
        for _ in range(count):
            start = off
            off = _skip_name(buf, off)
            if off + 10 > len(buf):
                raise WireError("resource record cut short")
            rtype, _rclass, ttl, rdlength = struct.unpack_from(">HHIH", buf, off)
            rr = RR(section, start, rtype, off + 4, ttl, off + 10, rdlength, off + 10 + rdlength)
            if rr.end > len(buf):
                raise WireError("record data runs past the end of the message")
            off = rr.end
            if rtype == T_OPT and section == 3:
                if msg.opt is not None:
                    raise WireError("two OPT records")
                msg.opt = rr
                msg.edns_size = max(512, _rclass)
                msg.do = bool(ttl & DO_BIT)
            else:
                rrs.append(rr)
    msg.rrs = tuple(rrs)
    return msg


def strip_hop_by_hop(buf: bytes, msg: Message) -> bytes:
    """The message without EDNS options that belong to one hop only (cookies, keepalive, padding)."""
    opt = msg.opt
    if opt is None or opt.rdlength == 0:
        return buf
    kept = []
    off, end = opt.rdata_offset, opt.end
    changed = False
    while off + 4 <= end:
        code, length = struct.unpack_from(">HH", buf, off)
        if code in HOP_BY_HOP_OPTIONS:
            changed = True
        else:
            kept.append(buf[off:off + 4 + length])
        off += 4 + length
    if not changed:
        return buf
    rdata = b"".join(kept)
    return buf[:opt.rdata_offset - 2] + struct.pack(">H", len(rdata)) + rdata + buf[opt.end:]


def _opt_rr(do: bool) -> bytes:
    return b"\x00" + struct.pack(">HHIH", T_OPT, UDP_PAYLOAD, DO_BIT if do else 0, 0)


def build_reply(query: bytes, qmsg: Message, rcode: int, *, flags_from: int | None = None,
                tc: bool = False) -> bytes:
    """A reply with the query's id and question and no records: SERVFAIL, or a TC stub.

    `flags_from` (an upstream reply's flags) keeps AA/AD/rcode of the real answer in a TC stub.
    """
    if flags_from is None:
        flags = QR | (qmsg.flags & (OPCODE_MASK | RD | CD)) | RA | rcode
    else:
        flags = (flags_from & ~TC) | QR
    if tc:
        flags |= TC
    question = query[12:qmsg.question_end] if qmsg.counts[0] == 1 else b""
    ar = 1 if qmsg.has_edns else 0
    head = _HEADER.pack(qmsg.id, flags, 1 if question else 0, 0, 0, ar)
    return head + question + (_opt_rr(qmsg.do) if ar else b"")


# ---------------------------------------------------------------- caching rules (pure)

def cache_ttl(buf: bytes, msg: Message) -> int:
    """How long a reply may be cached: 0 = never (errors, truncation, TTL 0, no SOA on a negative).

    Positive: the smallest TTL of the answer and authority records. Negative (NXDOMAIN or
    NODATA): the smaller of the SOA's TTL and its minimum field (RFC 2308 section 5).
    """
    if msg.flags & TC:
        return 0
    rcode = msg.rcode
    answers = [rr for rr in msg.rrs if rr.section == 1]
    authority = [rr for rr in msg.rrs if rr.section == 2]
    if rcode == NOERROR and answers:
        return min(min(rr.ttl for rr in answers + authority), MAX_CACHE_TTL)
    if rcode in (NOERROR, NXDOMAIN):
        soas = [rr for rr in authority if rr.rtype == T_SOA and rr.rdlength >= 22]
        if not soas:
            return 0       # a referral or a negative answer without SOA: not cached
        soa_minimum = struct.unpack_from(">I", buf, soas[0].end - 4)[0]
        return min([rr.ttl for rr in answers] + [soas[0].ttl, soa_minimum, MAX_NEGATIVE_TTL])
    return 0


class CacheKey(NamedTuple):
    qname: bytes
    qtype: int
    qclass: int
    do: bool
    rd: bool
    cd: bool
    edns: bool          # a reply to a query without EDNS must carry no OPT record


def cache_key(msg: Message) -> CacheKey:
    return CacheKey(msg.qname, msg.qtype, msg.qclass, msg.do, bool(msg.flags & RD),
                    bool(msg.flags & CD), msg.has_edns)


class _Entry(NamedTuple):
    data: bytes
    ttls: tuple[tuple[int, int], ...]   # (offset of a TTL field, its value when stored)
    stored: float
    expires: float


class ReplyCache:
    """LRU of upstream replies; hands them out with TTLs lowered by the time spent here."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic):
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: CacheKey, data: bytes, msg: Message, ttl: int) -> None:
        if self.size <= 0 or ttl <= 0:
            return
        now = self.clock()
        ttls = tuple((rr.ttl_offset, rr.ttl) for rr in msg.rrs)
        self._entries[key] = _Entry(data, ttls, now, now + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def get(self, key: CacheKey) -> bytearray | None:
        """The cached reply (id and question not yet patched) or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self.clock()
        if now >= entry.expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        out = bytearray(entry.data)
        elapsed = int(now - entry.stored)
        if elapsed > 0:
            for offset, ttl in entry.ttls:
                struct.pack_into(">I", out, offset, max(0, ttl - elapsed))
        return out

    def clear(self) -> None:
        self._entries.clear()


def finish_reply(reply: bytes | bytearray, query: bytes, qmsg: Message, rmsg_question_end: int,
                 client_tcp: bool) -> bytes:
    """The upstream reply as the client should see it: its id, its question's letter case,
    and a TC stub when it does not fit the client's UDP allowance."""
    out = bytearray(reply)
    struct.pack_into(">H", out, 0, qmsg.id)
    out[3] |= RA            # we offer recursion to this client, whatever the upstream said
    out[2] &= ~0x04 & 0xFF  # relayed data is not ours: no AA (as BIND and Unbound do)
    client_question = query[12:qmsg.question_end]
    if rmsg_question_end - 12 == len(client_question):
        out[12:rmsg_question_end] = client_question
    if not client_tcp:
        limit = qmsg.edns_size if qmsg.has_edns else 512
        if len(out) > limit:
            return build_reply(query, qmsg, 0, flags_from=struct.unpack_from(">H", out, 2)[0], tc=True)
    return bytes(out)


# ---------------------------------------------------------------- the forwarder (I/O)

class UpstreamError(Exception):
    """One try at one upstream failed (timeout, refused, reset, malformed or spoofed reply)."""


@dataclass(slots=True)
class _Upstream:
    addr: tuple[str, int]
    label: str
    family: int
    fails: int = 0
    down_until: float = 0.0


class Forwarder:
    """Sends queries for names outside our zones to upstream resolvers (gevent sockets).

    `forward(query, client_tcp)` is safe to call from many greenlets at once; identical
    queries in flight share one upstream exchange. Metrics hooks, when given:
    `metrics.forwarded(upstream, ok)` after every try at an upstream (ok = a usable answer),
    `metrics.upstream_failure(upstream)` when a try fails at the transport level.
    `stats` counts cache hits/misses, coalesced queries, TCP retries, TC stubs and SERVFAILs.
    """

    def __init__(self, upstreams: list[tuple[str, int]], *, timeout: float = 1.5,
                 cache_size: int = 10000, metrics=None, log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if not upstreams:
            raise ValueError("forwarding needs at least one upstream")
        self.timeout = float(timeout)
        self.metrics = metrics
        self.log = log or logging.getLogger("dnsdisco.net.forwarder")
        self.clock = clock
        self.cache = ReplyCache(cache_size, clock)
        self.stats: Counter[str] = Counter()
        self._upstreams = [
            _Upstream((h, p), upstream_label((h, p)),
                      gsocket.AF_INET6 if ":" in h else gsocket.AF_INET)
            for h, p in upstreams]
        self._preferred = 0
        self._inflight: dict[CacheKey, AsyncResult] = {}

    @property
    def upstreams(self) -> list[tuple[str, int]]:
        return [u.addr for u in self._upstreams]

    # -- the entry point

    def forward(self, query: bytes, client_tcp: bool = False) -> bytes:
        """The reply to `query` from cache or upstream; SERVFAIL when no upstream answers.

        Raises WireError only for a message without a DNS header (the caller drops those).
        """
        try:
            qmsg = parse_message(query, records=False)
        except WireError:
            if len(query) < 12:
                raise
            qmsg = Message(*struct.unpack_from(">HH", query, 0), counts=(0, 0, 0, 0))
            return build_reply(query, qmsg, FORMERR)
        if qmsg.counts[0] != 1:
            return build_reply(query, qmsg, FORMERR)
        key = cache_key(qmsg)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats["cache_hits"] += 1
            out = finish_reply(cached, query, qmsg, qmsg.question_end, client_tcp)
            if len(out) < len(cached):
                self.stats["truncated_to_client"] += 1
            return out
        self.stats["cache_misses"] += 1

        waiting = self._inflight.get(key)
        if waiting is not None:
            self.stats["coalesced"] += 1
            try:
                result = waiting.get(timeout=self._longest_wait())
            except gevent.Timeout:
                result = None
        else:
            waiting = self._inflight[key] = AsyncResult()
            result = None
            try:
                result = self._resolve(query, qmsg, key)
            finally:
                self._inflight.pop(key, None)
                waiting.set(result)
        if result is None:
            self.stats["servfail"] += 1
            return build_reply(query, qmsg, SERVFAIL)
        reply, question_end = result
        out = finish_reply(reply, query, qmsg, question_end, client_tcp)
        if len(out) < len(reply):
            self.stats["truncated_to_client"] += 1
        return out

    def _longest_wait(self) -> float:
        return len(self._upstreams) * 2 * self.timeout + 1.0

    # -- one resolution: try upstreams in order of health

    def _order(self) -> list[_Upstream]:
        now = self.clock()
        n = len(self._upstreams)
        rotated = [self._upstreams[(self._preferred + i) % n] for i in range(n)]
        healthy = [u for u in rotated if u.down_until <= now]
        resting = sorted((u for u in rotated if u.down_until > now), key=lambda u: u.down_until)
        return healthy + resting

    def _resolve(self, query: bytes, qmsg: Message, key: CacheKey) -> tuple[bytes, int] | None:
        """(full reply bytes, its question end) or None when every upstream failed."""
        outgoing = strip_hop_by_hop(query, qmsg)     # same question, so qmsg still describes it
        fallback: tuple[bytes, int] | None = None
        for up in self._order():
            try:
                reply, rmsg = self._ask(up, outgoing, qmsg)
            except UpstreamError as exc:
                self._failed(up, str(exc))
                continue
            if rmsg.flags & TC:
                # could not get the whole answer over TCP either; keep the cut one as a last resort
                fallback = fallback or (reply, rmsg.question_end)
                self._report(up, False)
                continue
            if rmsg.rcode in (SERVFAIL, REFUSED):
                # the upstream is alive but cannot answer this name; another one may
                self._alive(up)
                self._report(up, False)
                continue
            self._alive(up)
            self._preferred = self._upstreams.index(up)
            self._report(up, True)
            stripped = strip_hop_by_hop(reply, rmsg)
            if stripped is not reply:
                reply, rmsg = stripped, parse_message(stripped)
            self.cache.put(key, reply, rmsg, cache_ttl(reply, rmsg))
            return reply, rmsg.question_end
        return fallback

    def _ask(self, up: _Upstream, outgoing: bytes, qmsg: Message) -> tuple[bytes, Message]:
        """One try: UDP, then TCP to the same upstream when the UDP reply is truncated."""
        qid = _rng.getrandbits(16)
        wire = struct.pack(">H", qid) + outgoing[2:]
        reply = self._udp(up, wire, qid, qmsg)
        rmsg = self._check(reply)
        if rmsg.flags & TC:
            self.stats["tcp_retries"] += 1
            qid = _rng.getrandbits(16)
            wire = struct.pack(">H", qid) + outgoing[2:]
            try:
                reply = self._tcp(up, wire, qid, qmsg)
                rmsg = self._check(reply)
            except UpstreamError as exc:
                self.log.debug("TCP retry to %s failed: %s", up.label, exc)
        return reply, rmsg

    @staticmethod
    def _check(reply: bytes) -> Message:
        try:
            return parse_message(reply)
        except WireError as exc:
            raise UpstreamError(f"malformed reply: {exc}") from None

    @staticmethod
    def _matches(data: bytes, qid: int, qmsg: Message) -> bool:
        """Anti-spoofing: our random id, a response, and the question we asked."""
        if len(data) < 12:
            return False
        rid, flags, qd = struct.unpack_from(">HHH", data, 0)
        if rid != qid or not flags & QR:
            return False
        if qd == 0:
            return flags & 0x000F != NOERROR      # FORMERR/NOTIMP/REFUSED may omit the question
        if qd != 1:
            return False
        try:
            qname, end = _read_name(data, 12)
        except WireError:
            return False
        if end + 4 > len(data):
            return False
        return (qname, *struct.unpack_from(">HH", data, end)) == (qmsg.qname, qmsg.qtype, qmsg.qclass)

    def _udp(self, up: _Upstream, wire: bytes, qid: int, qmsg: Message) -> bytes:
        deadline = time.monotonic() + self.timeout
        sock = gsocket.socket(up.family, gsocket.SOCK_DGRAM)
        try:
            sock.connect(up.addr)       # a fresh socket: random source port; only replies from the upstream
            sock.send(wire)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UpstreamError(f"no UDP reply within {self.timeout:g}s")
                sock.settimeout(remaining)
                data = sock.recv(65535)
                if self._matches(data, qid, qmsg):
                    return data
                self.stats["mismatched_replies"] += 1
        except gsocket.timeout:
            raise UpstreamError(f"no UDP reply within {self.timeout:g}s") from None
        except OSError as exc:
            raise UpstreamError(f"UDP: {exc.strerror or exc}") from None
        finally:
            sock.close()

    def _tcp(self, up: _Upstream, wire: bytes, qid: int, qmsg: Message) -> bytes:
        deadline = time.monotonic() + self.timeout
        try:
            sock = gsocket.create_connection(up.addr, timeout=self.timeout)
        except gsocket.timeout:
            raise UpstreamError(f"TCP connect timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise UpstreamError(f"TCP connect: {exc.strerror or exc}") from None
        try:
            sock.sendall(struct.pack(">H", len(wire)) + wire)
            while True:
                length = struct.unpack(">H", _recv_exact(sock, 2, deadline))[0]
                data = _recv_exact(sock, length, deadline)
                if self._matches(data, qid, qmsg):
                    return data
                self.stats["mismatched_replies"] += 1
        except gsocket.timeout:
            raise UpstreamError(f"no TCP reply within {self.timeout:g}s") from None
        except OSError as exc:
            raise UpstreamError(f"TCP: {exc.strerror or exc}") from None
        finally:
            sock.close()

    # -- health bookkeeping

    def _report(self, up: _Upstream, ok: bool) -> None:
        if self.metrics is not None:
            self.metrics.forwarded(up.label, ok)

    def _failed(self, up: _Upstream, why: str) -> None:
        up.fails += 1
        up.down_until = self.clock() + min(30.0, 2.0 ** min(up.fails - 1, 5))
        if up.fails == 1:
            self.log.warning("upstream %s failed (%s); trying the next one", up.label, why)
        if self.metrics is not None:
            self.metrics.forwarded(up.label, False)
            self.metrics.upstream_failure(up.label)

    def _alive(self, up: _Upstream) -> None:
        if up.fails:
            self.log.info("upstream %s answers again", up.label)
        up.fails = 0
        up.down_until = 0.0


def _recv_exact(sock, n: int, deadline: float) -> bytes:
    parts = []
    while n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise gsocket.timeout()
        sock.settimeout(remaining)
        chunk = sock.recv(n)
        if not chunk:
            raise UpstreamError("connection closed mid-reply")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)
