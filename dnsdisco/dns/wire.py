"""The DNS message on the wire, without I/O: the fast header/question reader, the size
limits, FORMERR replies, and packing a dnslib reply within a size limit by whole RRsets.
"""
from __future__ import annotations

import copy
import struct

from dnslib import DNSRecord, RCODE

from dnsdisco.dns.names import skip_wire_name
from dnsdisco.dns.constants import T_OPT, TCP_LIMIT, UDP_PAYLOAD  # noqa: F401  (TCP_LIMIT: the responder's)
from dnsdisco.dns.rules import answer_orders

DROP = "drop"          # the packet is not a query we answer (a response, or no header)
SLOW = None            # fast parse declined: use dnslib
_HEADER = struct.Struct("!HHHHHH")
_TYPECLASS = struct.Struct("!HH")


def parse_fast(data: bytes):
    """(id, qname wire bytes, qtype, qclass, edns?, udp size, DO) for a plain query, DROP, or SLOW."""
    if len(data) < 12:
        return DROP
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & 0x8000:
        return DROP
    if flags & 0x7800 or qd != 1 or an or ns or ar > 1:
        return SLOW
    pos = 12
    end = len(data)
    while True:
        if pos >= end:
            return SLOW
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length > 63:
            return SLOW
        pos += length + 1
    if pos - 12 > 255 or pos + 4 > end:
        return SLOW
    qtype, qclass = _TYPECLASS.unpack_from(data, pos)
    qname = bytes(data[12:pos])
    pos += 4
    if ar == 0:
        return (qid, qname, qtype, qclass, False, 512, False) if pos == end else SLOW
    # exactly one additional record: it must be a well-formed OPT at the root
    if pos + 11 > end or data[pos] != 0:
        return SLOW
    rtype, udp = _TYPECLASS.unpack_from(data, pos + 1)
    version, dflags = data[pos + 6], data[pos + 7]
    rdlen = (data[pos + 9] << 8) | data[pos + 10]
    if rtype != T_OPT or version != 0 or pos + 11 + rdlen != end:
        return SLOW
    option = pos + 11
    while option < end:                  # each option's header and data inside the OPT's data
        option += 4 + ((data[option + 2] << 8) | data[option + 3]) if option + 4 <= end else end + 1
    if option != end:
        return SLOW                      # malformed options: FORMERR on the slow path
    return qid, qname, qtype, qclass, True, udp, bool(dflags & 0x80)


def udp_limit(edns: bool, udp_size: int) -> int:
    """The largest UDP reply a client may be sent (RFC 6891, 512 without EDNS)."""
    if not edns:
        return 512
    return min(max(udp_size, 512), UDP_PAYLOAD)


def formerr_for(data: bytes) -> bytes | None:
    """FORMERR echoing the header of a query dnslib could not parse; None for a response."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack_from("!HH", data)
    if flags & 0x8000:
        return None
    flags = 0x8000 | (flags & 0x7900) | RCODE.FORMERR   # QR, opcode and RD kept
    return struct.pack("!HHHHHH", qid, flags, 0, 0, 0, 0)


def edns_problem(data: bytes) -> str | None:
    """Why a query's EDNS is malformed (RFC 6891 6.1.1: FORMERR, with an OPT), or None when
    it is fine or the message is too broken to say (dnslib's parse decides those)."""
    try:
        qd, an, ns, ar = struct.unpack_from("!HHHH", data, 4)
        pos = 12
        for _ in range(qd):
            pos = skip_wire_name(data, pos) + 4
        seen = 0
        for index in range(an + ns + ar):
            start = pos
            pos = skip_wire_name(data, pos)
            rtype, _rclass, _ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
            rdata = pos + 10
            pos = rdata + rdlen
            if pos > len(data):
                return None
            if rtype != T_OPT:
                continue
            if index < an + ns:
                return "an OPT record outside the additional section"
            seen += 1
            if seen > 1:
                return "more than one OPT record"
            if data[start] != 0:
                return "an OPT record whose owner is not the root"
            option = rdata
            while option < pos:
                if option + 4 > pos:
                    return "an EDNS option header cut short"
                option += 4 + struct.unpack_from("!H", data, option + 2)[0]
                if option > pos:
                    return "an EDNS option that runs past the OPT record's data"
    except (ValueError, IndexError, struct.error):
        return None
    return None


def formerr_with_opt(data: bytes, ra: bool) -> bytes:
    """FORMERR for a query whose EDNS is malformed: the header and question echoed, and an
    OPT record, since the client spoke EDNS (RFC 6891 7)."""
    qid, flags, qd = struct.unpack_from("!HHH", data)
    flags = 0x8000 | (flags & 0x7900) | (0x0080 if ra else 0) | RCODE.FORMERR
    question = b""
    if qd == 1:
        pos = 12
        while pos < len(data) and 0 < data[pos] < 64:      # echoed only when it holds no pointer
            pos += data[pos] + 1
        if pos < len(data) and data[pos] == 0 and pos + 5 <= len(data):
            question = data[12:pos + 5]
    return (struct.pack("!HHHHHH", qid, flags, 1 if question else 0, 0, 0, 1) + question
            + b"\x00" + struct.pack("!HHIH", T_OPT, UDP_PAYLOAD, 0, 0))



def _rrsets(rrs):
    """Split a section into runs of (owner, type) — the unit that is kept or cut whole."""
    runs, current, ident = [], [], None
    for rr in rrs:
        key = (str(rr.rname).lower(), rr.rtype)
        if current and key != ident:
            runs.append(current)
            current = []
        current.append(rr)
        ident = key
    if current:
        runs.append(current)
    return runs


def pack_reply(reply: DNSRecord, limit: int) -> bytes:
    """Pack within `limit` octets: drop additional data first (no TC, RFC 2181 9), then whole
    RRsets from the end of the answer and authority, setting TC."""
    data = reply.pack()
    if len(data) <= limit:
        return data
    opt = [rr for rr in reply.ar if rr.rtype == T_OPT]
    if len(opt) != len(reply.ar):
        reply.ar = opt
        data = reply.pack()
        if len(data) <= limit:
            return data
    reply.header.tc = 1
    reply.auth = []
    runs = _rrsets(reply.rr)
    while runs:
        reply.rr = [rr for run in runs for rr in run]
        data = reply.pack()
        if len(data) <= limit:
            return data
        runs.pop()
    reply.rr = []
    return reply.pack()


def rotations(reply: DNSRecord, weights: dict | None = None) -> list[DNSRecord]:
    """The reply once per answer order: each multi-record RRset in the orders the rules give
    it (`resolver.answer_orders`: even, or by the instances' `weights`)."""
    runs = _rrsets(reply.rr)
    orders = []
    for run in runs:
        shares = weights.get((str(run[0].rname).lower(), run[0].rtype)) if weights else None
        orders.append(answer_orders(len(run), shares if shares is not None and len(shares) == len(run) else None))
    count = max((len(o) for o in orders), default=1)
    if count <= 1:
        return [reply]
    out = []
    for turn in range(count):
        rrs = [run[i] for run, run_orders in zip(runs, orders) for i in run_orders[turn % len(run_orders)]]
        out.append(DNSRecord(copy.copy(reply.header), questions=list(reply.questions), rr=rrs,
                             auth=list(reply.auth), ar=list(reply.ar)))
    return out


def soa_serial_offsets(data: bytes) -> tuple[int, ...]:
    """Where the serial of each SOA record sits in a packed reply."""
    qd, an, ns, ar = struct.unpack_from("!HHHH", data, 4)
    pos = 12
    for _ in range(qd):
        pos = skip_wire_name(data, pos) + 4
    out = []
    for _ in range(an + ns + ar):
        pos = skip_wire_name(data, pos)
        rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
        pos += 10
        if rtype == 6:  # SOA: mname, rname, then the serial
            out.append(skip_wire_name(data, skip_wire_name(data, pos)))
        pos += rdlen
    return tuple(out)


def slip_reply(reply: bytes, query: bytes, question_end: int) -> bytes:
    """The truncated stand-in for `reply` that response rate limiting sends (slip): its header
    with TC set and no records, and the question copied from the query (the client's
    spelling), so the client retries over TCP."""
    flags = reply[2] | 0x02
    return (reply[:2] + bytes([flags, reply[3]]) + b"\x00\x01\x00\x00\x00\x00\x00\x00"
            + query[12:question_end])
