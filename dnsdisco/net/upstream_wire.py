"""The bytes of forwarded queries and upstream replies: walked, patched and cached (pure).

The forwarder relays the client's query and the upstream's reply as bytes: this module walks
a message once for what the forwarder needs (question, OPT record, each record's TTL offset),
strips hop-by-hop EDNS options, builds SERVFAIL and TC stubs, says how long a reply may be
cached (RFC 2308) and keeps the upstream cache, so a cache hit is a lookup and a few patched
octets, with no dnslib parse. No sockets here; forwarder.py does the I/O.
"""
from __future__ import annotations

import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, NamedTuple

from dnsdisco.dns.constants import DO_BIT, NOERROR, NXDOMAIN, T_OPT, T_SOA, UDP_PAYLOAD
from dnsdisco.dns.names import expand_wire_name, skip_wire_name

MAX_CACHE_TTL = 86400          # cap on positive answers (as Unbound's cache-max-ttl)
MAX_NEGATIVE_TTL = 3600        # cap on NXDOMAIN/NODATA (RFC 2308 section 5)
HOP_BY_HOP_OPTIONS = frozenset({10, 11, 12})   # COOKIE, TCP keepalive, padding: never relayed

QR, OPCODE_MASK, TC, RD, RA, CD = 0x8000, 0x7800, 0x0200, 0x0100, 0x0080, 0x0010

HEADER = struct.Struct(">HHHHHH")


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


def read_qname(buf: bytes, off: int) -> tuple[bytes, int]:
    """(lower-case wire name with pointers expanded, offset after the name in place)."""
    try:
        name, end = expand_wire_name(buf, off)
    except ValueError as exc:
        raise WireError(str(exc)) from None
    return name.lower(), end


def _skip_name(buf: bytes, off: int) -> int:
    try:
        return skip_wire_name(buf, off)
    except ValueError as exc:
        raise WireError(str(exc)) from None


def parse_message(buf: bytes, *, records: bool = True) -> Message:
    """Walk header, question and (if `records`) every RR; raises WireError when malformed."""
    if len(buf) < 12:
        raise WireError("shorter than a DNS header")
    mid, flags, qd, an, ns, ar = HEADER.unpack_from(buf, 0)
    msg = Message(mid, flags, (qd, an, ns, ar))
    off = 12
    if qd:
        if qd != 1:
            raise WireError(f"{qd} questions")
        msg.qname, off = read_qname(buf, off)
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
    head = HEADER.pack(qmsg.id, flags, 1 if question else 0, 0, 0, ar)
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


class UpstreamKey(NamedTuple):
    qname: bytes
    qtype: int
    qclass: int
    do: bool
    rd: bool
    cd: bool
    edns: bool          # a reply to a query without EDNS must carry no OPT record


def upstream_key(msg: Message) -> UpstreamKey:
    """What makes two forwarded queries the same for the upstream cache and for coalescing."""
    return UpstreamKey(msg.qname, msg.qtype, msg.qclass, msg.do, bool(msg.flags & RD),
                    bool(msg.flags & CD), msg.has_edns)


class _Stored(NamedTuple):
    data: bytes
    ttls: tuple[tuple[int, int], ...]   # (offset of a TTL field, its value when stored)
    stored: float
    expires: float


class UpstreamCache:
    """LRU of upstream replies; hands them out with TTLs lowered by the time spent here.

    Not dns/cache.ReplyCache: that one keeps our own packed answers until an etcd change
    drops them; this one keeps someone else's answers until their TTL runs out."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic):
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[UpstreamKey, _Stored] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: UpstreamKey, data: bytes, msg: Message, ttl: int) -> None:
        if self.size <= 0 or ttl <= 0:
            return
        now = self.clock()
        ttls = tuple((rr.ttl_offset, rr.ttl) for rr in msg.rrs)
        self._entries[key] = _Stored(data, ttls, now, now + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def get(self, key: UpstreamKey) -> bytearray | None:
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
