"""Reading DNS messages, without I/O: the fast header/question reader, the EDNS state of a
query (read fast, or from a dnslib parse), the size limits, and names between wire and text.
Writing replies is dns.encoder's.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from dnsdisco.dns.constants import BADKEY, C_ANY, NOTAUTH, T_OPT, T_TSIG, UDP_PAYLOAD
from dnsdisco.dns.names import from_labels, read_wire_name, skip_wire_name

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
    try:
        length = data[12]
        while length:
            if length > 63:
                return SLOW
            pos += length + 1
            length = data[pos]
    except IndexError:                   # the name runs past the message
        return SLOW
    pos += 1
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


@dataclass(frozen=True)
class Edns:
    present: bool
    udp_size: int = 512
    do: bool = False
    version: int = 0


def edns_of(query) -> Edns | str:
    """The EDNS state of a query dnslib parsed, or an error rcode name ("FORMERR")."""
    opts = [rr for rr in query.ar if rr.rtype == T_OPT]
    if not opts:
        return Edns(False)
    if len(opts) > 1:
        return "FORMERR"
    opt = opts[0]
    if len(opt.rname.label) != 0:
        return "FORMERR"
    return Edns(True, max(512, opt.rclass), bool(opt.ttl & 0x8000), (opt.ttl >> 16) & 0xFF)


def wire_to_name(wire: bytes) -> str | None:
    """The lower-case presentation name of an uncompressed wire name, as the snapshot holds
    names; None when a label holds an octet no stored name can hold (names.from_labels: a
    dot, a backslash, non-ASCII)."""
    if 46 not in wire and 92 not in wire and wire.isascii():   # write dots over the lengths
        if len(wire) == 1:
            return ""
        out = bytearray(wire[1:-1])
        pos = wire[0]
        end = len(out)
        while pos < end:
            step = out[pos] + 1
            out[pos] = 46
            pos += step
        return out.decode("ascii").lower()
    return from_labels(read_wire_name(wire, 0)[0])


def plain_query_name(data: bytes) -> str | None:
    """The question's name of a query whose header the caller has read (one question and
    nothing after it), as wire_to_name writes it, read off the message in one walk that
    writes a dot over each length octet; the letters as spelled (the caller asks in lower
    case). None, for the usual reader to decide, when the question is not class IN, its name
    does not end in the root right before the type and class (a label of 0 or over 63
    octets, a compression pointer, a length running past it), is over 255 octets, or holds a
    label wire_to_name would not write as it is (a dot, a backslash, non-ASCII)."""
    if len(data) < 18 or data[-2] or data[-1] != 1 or data[-5] or not 0 < data[12] < 64:
        return None
    text = bytearray(data[13:-5])        # the name after its first length octet, less the root
    end = len(text)
    if end > 253 or 46 in text or 92 in text or not text.isascii():
        return None
    pos = data[12]
    while pos < end:                     # a dot over every length octet after the first
        length = text[pos]
        text[pos] = 46
        pos += _LABEL_STEP[length]       # a length of 0 or over 63 steps past the end
    return text.decode() if pos == end else None


_LABEL_STEP = tuple(length + 1 if 0 < length < 64 else 1024 for length in range(256))
_LENGTH = [bytes((n,)) for n in range(256)]


def labels_wire(labels) -> bytes:
    """Wire labels (bytes, without the root) as an uncompressed wire name."""
    return b"".join([_LENGTH[len(label)] + label for label in labels]) + b"\x00"


def name_labels(name: str) -> list[bytes]:
    """The wire labels of a presentation name (no trailing dot; empty labels left out); a
    name outside ASCII in IDNA form, as records.wire_problem checked when it was stored."""
    if name.isascii():
        return [part for part in name.encode("ascii").split(b".") if part]
    from dnslib import DNSLabel
    return list(DNSLabel(name).label)


def encode_name(name: str) -> bytes:
    """A presentation name (no trailing dot) as uncompressed wire labels."""
    return labels_wire(name_labels(name))


def udp_limit(edns: bool, udp_size: int) -> int:
    """The largest UDP reply a client may be sent (RFC 6891, 512 without EDNS)."""
    if not edns:
        return 512
    return min(max(udp_size, 512), UDP_PAYLOAD)


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


def slip_reply(reply: bytes, query: bytes, question_end: int) -> bytes:
    """The truncated stand-in for `reply` that response rate limiting sends (slip): its header
    with TC set and no records, and the question copied from the query (the client's
    spelling), so the client retries over TCP."""
    flags = reply[2] | 0x02
    return (reply[:2] + bytes([flags, reply[3]]) + b"\x00\x01\x00\x00\x00\x00\x00\x00"
            + query[12:question_end])


def badkey_reply(data: bytes) -> bytes | None:
    """NOTAUTH with a TSIG error of BADKEY (RFC 8945 5.2) for a signed query, or None when the
    message carries no TSIG record. What a responder with no keys sends: never an unsigned
    normal answer to a signed query. The TSIG record is the query's own key name, algorithm,
    time and fudge with an empty MAC, the original id and the error; the question is echoed
    when it holds no compression pointer."""
    try:
        qid, flags = struct.unpack_from("!HH", data)
        start = None if flags & 0x8000 else tsig_start(data)
        if start is None:
            return None
        owner_end = skip_wire_name(data, start)
        owner = data[start:owner_end]
        rdata = owner_end + 10                 # past type, class, TTL and rdlength
        algorithm_end = skip_wire_name(data, rdata)
        algorithm = data[rdata:algorithm_end]
        time_fudge = data[algorithm_end:algorithm_end + 8]
        mac_size = struct.unpack_from("!H", data, algorithm_end + 8)[0]
        original_id = data[algorithm_end + 10 + mac_size:algorithm_end + 12 + mac_size]
        if owner[-1:] != b"\x00" or algorithm[-1:] != b"\x00" or len(original_id) != 2:
            return None                  # compressed names in a TSIG are not allowed (RFC 8945 4.2)
    except (struct.error, ValueError, IndexError):
        return None
    question = plain_question(data) or b""
    tsig_rdata = algorithm + time_fudge + b"\x00\x00" + original_id + struct.pack("!HH", BADKEY, 0)
    tsig = owner + struct.pack("!HHIH", T_TSIG, C_ANY, 0, len(tsig_rdata)) + tsig_rdata
    reply_flags = 0x8000 | (flags & 0x7900) | NOTAUTH
    return struct.pack("!HHHHHH", qid, reply_flags, 1 if question else 0, 0, 0, 1) + question + tsig



def tsig_start(data: bytes) -> int | None:
    """The offset of the TSIG record when it is the message's last record, else None
    (also for bytes that do not parse)."""
    try:
        qd, an, ns, ar = struct.unpack_from("!HHHH", data, 4)
        if ar == 0:
            return None
        pos = 12
        for _ in range(qd):
            pos = skip_wire_name(data, pos) + 4
        start = None
        for _ in range(an + ns + ar):
            start = pos
            pos = skip_wire_name(data, pos)
            rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
            pos += 10 + rdlen
        if pos > len(data) or start is None:
            return None
        at = skip_wire_name(data, start)
        return start if struct.unpack_from("!H", data, at)[0] == T_TSIG else None
    except (IndexError, struct.error, ValueError):
        return None


def plain_question(data: bytes) -> bytes | None:
    """The question of a one-question message (name, type and class) as it can be echoed in a
    reply of our own: only when its name holds no compression pointer (it would point into
    the query) and the message holds all of it; None otherwise."""
    if len(data) < 12 or struct.unpack_from("!H", data, 4)[0] != 1:
        return None
    pos = 12
    while pos < len(data) and 0 < data[pos] < 64:
        pos += data[pos] + 1
    if pos < len(data) and data[pos] == 0 and pos + 5 <= len(data):
        return data[12:pos + 5]
    return None
