"""The one writer of replies: the rules' light RRsets (dns.rules) to DNS messages.

Every reply leaves through here: first answers, the bytes the caches keep, negative
answers, CNAME chains finished upstream, and the error replies (FORMERR, NOTIMP, REFUSED,
SERVFAIL, BADVERS). It writes

- the header and the question as asked (lower case: the responder writes the client's
  spelling over it, and answer owners point at it);
- names compressed where RFC 1035 4.1.4 and RFC 3597 4 allow it (owners, and the names in
  CNAME, NS, PTR, MX and SOA data); SRV targets never (RFC 2782), though a later owner, such
  as the glue's, may point at one;
- an OPT record with our UDP size when the query had one (DO echoed, RFC 6891);
- within the size limit by whole RRsets: the additional section goes first without TC, then
  the authority section and whole answer RRsets from the end, with TC (RFC 2181 9);
- one reply per answer order (rules.answer_orders: even rotation, or by the instances'
  weights), and where each SOA serial sits, so the cache can write a new revision's serial
  in place.

The orders are cheap to write because an RRset that rotates is written once: its records
point only at names before it, never at each other, so each record's bytes are the same in
every order and keep their length; a later name that points into the RRset (the glue owner at
an SRV target) is patched for each order. Truncation cuts the same suffix in every order.
"""
from __future__ import annotations

import socket
import struct

from dnsdisco.dns.constants import T_A, T_AAAA, T_CNAME, T_MX, T_NS, T_OPT, T_PTR, T_SOA, T_SRV, T_TXT, UDP_PAYLOAD
from dnsdisco.dns.rules import answer_orders
from dnsdisco.dns.wire import edns_of, labels_wire, name_labels, wire_to_name

_RR = struct.Struct("!HHIH")          # type, class, ttl, rdlength
_HEAD = struct.Struct("!HHHHH")       # a header without its id: flags and the four counts
_TYPECLASS = struct.Struct("!HH")
_SRV = struct.Struct("!HHH")
_SOA_NUMBERS = struct.Struct("!IIIII")
_PREFERENCE = struct.Struct("!H")
_LENGTH = [bytes((n,)) for n in range(256)]
_POINTER = 0x4000                     # names at or past this offset cannot be pointed at
_inet_pton = socket.inet_pton
_V4, _V6 = socket.AF_INET, socket.AF_INET6
_COMPRESSED = frozenset((T_CNAME, T_NS, T_PTR))


def opt_record(do: bool, ext_rcode: int = 0) -> bytes:
    """Our OPT record: root owner, our UDP size, the extended rcode's high bits, DO echoed."""
    return b"\x00" + _RR.pack(T_OPT, UDP_PAYLOAD, (ext_rcode << 24) | (0x8000 if do else 0), 0)


_OPT, _OPT_DO = opt_record(False), opt_record(True)


def reply_flags(qflags: int, rcode: int, *, aa: bool, ra: bool) -> int:
    """The reply's second header word from the query's: QR, the opcode and RD echoed, CD
    echoed only for QUERY (RFC 6840 5.9), AA for our zones, RA when forwarding is on."""
    flags = 0x8000 | (qflags & 0x7900) | (rcode & 0xF)
    if aa:
        flags |= 0x0400
    if ra:
        flags |= 0x0080
    if not qflags & 0x7800:
        flags |= qflags & 0x0010
    return flags


def error_reply(qflags: int, question: bytes | None, rcode: int, *, edns: bool, do: bool = False,
                ra: bool = False) -> bytes:
    """A reply carrying only an rcode, without its id: `question` (wire name, type and class,
    or None) echoed; an rcode past 15 (BADVERS) puts its high bits in an OPT record, which
    it therefore always carries."""
    if rcode >= 16:
        edns = True
    opt = opt_record(do, rcode >> 4) if edns else b""
    return (_HEAD.pack(reply_flags(qflags, rcode, aa=False, ra=ra), 1 if question else 0, 0, 0, 1 if edns else 0)
            + (question or b"") + opt)


def error_for(query, rcode: int, *, forwarding: bool = False) -> bytes:
    """The error reply (with id) to a query dnslib parsed (transfers, TSIG, the rare query
    the fast reader declines)."""
    header = query.header
    qflags = (header.opcode << 11) | (header.rd << 8) | (header.cd << 4)
    question = None
    if len(query.questions) == 1:
        q = query.q
        question = labels_wire(q.qname.label) + _TYPECLASS.pack(q.qtype, q.qclass)
    edns = edns_of(query)
    present = not isinstance(edns, str) and edns.present
    return struct.pack("!H", header.id) + error_reply(qflags, question, rcode, edns=present,
                                                      do=present and edns.do, ra=forwarding)


def formerr_for(data: bytes) -> bytes | None:
    """FORMERR echoing the header of a query dnslib could not parse; None for a response."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack_from("!HH", data)
    if flags & 0x8000:
        return None
    return data[:2] + error_reply(flags & 0x7900, None, 1, edns=False)


def formerr_with_opt(data: bytes, ra: bool) -> bytes:
    """FORMERR for a query whose EDNS is malformed: the header and question echoed, and an
    OPT record, since the client spoke EDNS (RFC 6891 7)."""
    qid, flags, qd = struct.unpack_from("!HHH", data)
    question = None
    if qd == 1:
        pos = 12
        while pos < len(data) and 0 < data[pos] < 64:      # echoed only when it holds no pointer
            pos += data[pos] + 1
        if pos < len(data) and data[pos] == 0 and pos + 5 <= len(data):
            question = data[12:pos + 5]
    return data[:2] + error_reply(flags & 0x7900, question, 1, edns=True, ra=ra)


def _question_names(qname: bytes) -> dict:
    """The compression table's first entries: every suffix of the question name (at offset 12)
    that spells a name the rules can write."""
    table = {}
    text = wire_to_name(qname)
    pos = 0
    if text is not None:
        while qname[pos]:
            table[text[pos:]] = 12 + pos    # a name's text and its wire form share label offsets
            pos += qname[pos] + 1
        return table
    while qname[pos]:
        suffix = wire_to_name(qname[pos:])
        if suffix is not None:
            table[suffix] = 12 + pos
        pos += qname[pos] + 1
    return table


def _put_name(name: str, buf: bytearray, table: dict, base, fixups: list, compress: bool) -> None:
    """Append `name` to `buf`: labels until a suffix the table holds (a pointer). Each suffix
    written becomes a pointer target: at `base` + its offset in `buf` when `base` is an int
    (the record's place), or, in an RRset that rotates, `base` is (list, chunk index) and the
    suffix waits there as (chunk, offset) until the RRset is whole; a pointer to such a
    suffix goes in `fixups`, to be patched in each order."""
    if not name:
        buf.append(0)
        return
    if not name.isascii():             # IDNA: written whole, never pointed at
        buf += labels_wire(name_labels(name))
        return
    start = 0
    while True:
        suffix = name[start:] if start else name
        if compress:
            hit = table.get(suffix)
            if hit is not None:
                if type(hit) is int:
                    buf.append(0xC0 | (hit >> 8))
                    buf.append(hit & 0xFF)
                else:
                    fixups.append((len(buf), hit))
                    buf += b"\xc0\x00"
                return
        if type(base) is int:
            place = base + len(buf)
            if place < _POINTER and suffix not in table:
                table[suffix] = place
        else:
            base[0].append((suffix, (base[1], len(buf))))
        dot = name.find(".", start)
        label = (name[start:dot] if dot >= 0 else name[start:]).encode("ascii")
        buf += _LENGTH[len(label)]
        buf += label
        if dot < 0:
            buf.append(0)
            return
        start = dot + 1


def _chunk(rr: tuple, table: dict, base, fixups: list) -> tuple[bytearray, int]:
    """One record's bytes (names compressed against `table`; `base` as for _put_name) and,
    for an SOA, where its serial sits in them (else -1)."""
    owner, rtype, ttl, rdata = rr
    buf = bytearray()
    _put_name(owner, buf, table, base, fixups, True)
    buf += _RR.pack(rtype, 1, ttl, 0)
    start = len(buf)
    serial_at = -1
    if rtype == T_A:
        buf += _inet_pton(_V4, rdata)
    elif rtype == T_AAAA:
        buf += _inet_pton(_V6, rdata)
    elif rtype == T_SRV:
        buf += _SRV.pack(rdata[0], rdata[1], rdata[2])
        _put_name(rdata[3], buf, table, base, fixups, False)      # RFC 2782: never compressed
    elif rtype in _COMPRESSED:
        _put_name(rdata, buf, table, base, fixups, True)
    elif rtype == T_TXT:
        for part in rdata:
            buf += _LENGTH[len(part)]
            buf += part
    elif rtype == T_MX:
        buf += _PREFERENCE.pack(rdata[0])
        _put_name(rdata[1], buf, table, base, fixups, True)
    elif rtype == T_SOA:
        _put_name(rdata[0], buf, table, base, fixups, True)
        _put_name(rdata[1], buf, table, base, fixups, True)
        serial_at = len(buf)
        buf += _SOA_NUMBERS.pack(*rdata[2:7])
    else:
        buf += rdata                                              # rules.Raw: written as it is
    size = len(buf) - start
    buf[start - 2] = size >> 8
    buf[start - 1] = size & 0xFF
    return buf, serial_at


def encode(ans, qname: bytes, qtype: int, qclass: int, flags: int, edns: bool, do: bool,
           limit: int) -> tuple[list[bytes], list[tuple[int, ...]] | None]:
    """The reply to a question in every answer order, without the 2-octet id (the caches write
    each query's id in front), within `limit` octets; and where each reply's SOA serials sit
    (counted from the same start; None when it holds no SOA). `ans` is a rules.Answer;
    `flags` the second header word (reply_flags), `qname` the question's wire name in lower
    case."""
    question = qname + _TYPECLASS.pack(qtype, qclass)
    table = _question_names(qname)
    sections = (ans.answer, ans.authority, ans.additional)
    chunks: list = []            # each record's bytes
    fixes: list = []             # per chunk: None, or [(offset in chunk, (target chunk, offset in it))]
    serials: list = []           # (chunk, offset of its serial)
    sets: list = []              # the answer's RRsets: [first chunk, end chunk, orders]
    at = 12 + len(question)      # where the next chunk starts (in the answer orders as written)
    weights = ans.weights
    rotating = False
    answers = ans.answer
    count = len(answers)
    index = 0
    while index < count:         # the answer section, RRset by RRset
        owner, rtype = answers[index][0], answers[index][1]
        end = index + 1
        while end < count and answers[end][1] == rtype and answers[end][0] == owner:
            end += 1
        if end - index == 1:
            at = _write(answers[index], table, chunks, fixes, serials, at, None)
        else:
            rotating = True
            shares = weights.get((owner, rtype)) if weights else None
            orders = answer_orders(end - index, shares if shares is not None and len(shares) == end - index else None)
            first = len(chunks)
            held: list = []
            for i in range(index, end):
                at = _write(answers[i], table, chunks, fixes, serials, at, held)
            if at < _POINTER:    # names inside it: pointed at through a patch, once it is whole
                for suffix, place in held:
                    if suffix not in table:
                        table[suffix] = place
            sets.append((first, len(chunks), orders))
        index = end
    ends = [len(chunks)]
    for records in sections[1:]:
        for rr in records:
            at = _write(rr, table, chunks, fixes, serials, at, None)
        ends.append(len(chunks))
    opt = (_OPT_DO if do else _OPT) if edns else b""

    # the size limit: additional first (no TC), then authority and answer RRsets (TC)
    an_end, ns_end, ar_end = ends
    size = at + len(opt)
    if size > limit:
        size -= sum(len(chunks[i]) for i in range(ns_end, ar_end))
        ar_end = ns_end
        if size > limit:
            flags |= 0x0200
            size -= sum(len(chunks[i]) for i in range(an_end, ns_end))
            ns_end = ar_end = an_end
            while size > limit and an_end:
                # the last RRset of the answer: a rotating one, or a single record
                if sets and sets[-1][1] == an_end:
                    first = sets.pop()[0]
                else:
                    first = an_end - 1
                size -= sum(len(chunks[i]) for i in range(first, an_end))
                an_end = ns_end = ar_end = first
    head = _HEAD.pack(flags, 1, an_end, ns_end - an_end, ar_end - ns_end + (1 if edns else 0)) + question
    kept = [i for i in range(ar_end)]
    serial_places = [(c, off) for c, off in serials if c < ar_end]
    sets = [s for s in sets if s[1] <= an_end]

    if not rotating or not sets:
        body = b"".join([head, *chunks[:ar_end], opt]) if ar_end else head + opt
        for i in range(ar_end):
            if fixes[i]:
                return _ordered(head, chunks, fixes, kept, opt, serial_places, [kept])
        offsets = [tuple(_offsets_in_order(head, chunks, kept, serial_places))] if serial_places else None
        return [body], offsets
    variants = max(len(orders) for _f, _e, orders in sets)
    sequences = []
    for turn in range(variants):
        sequence = list(kept)
        for first, end, orders in sets:
            order = orders[turn % len(orders)]
            sequence[first:end] = [first + i for i in order]
        sequences.append(sequence)
    return _ordered(head, chunks, fixes, kept, opt, serial_places, sequences)


def _write(rr: tuple, table: dict, chunks: list, fixes: list, serials: list, at: int, held: list | None) -> int:
    """Write one record at `at`; its names become pointer targets now (`held` None) or once
    the rotating RRset it belongs to is whole (`held` collects them, by chunk and offset)."""
    index = len(chunks)
    fixups: list = []
    buf, serial_at = _chunk(rr, table, at if held is None else (held, index), fixups)
    chunks.append(bytes(buf))
    fixes.append(fixups or None)
    if serial_at >= 0:
        serials.append((index, serial_at))
    return at + len(buf)


def _offsets_in_order(head: bytes, chunks: list, sequence: list, serial_places: list) -> list[int]:
    start = {}
    pos = len(head) + 2
    for i in sequence:
        start[i] = pos
        pos += len(chunks[i])
    return [start[c] + off - 2 for c, off in serial_places]


def _ordered(head: bytes, chunks: list, fixes: list, kept: list, opt: bytes, serial_places: list,
             sequences: list) -> tuple[list[bytes], list | None]:
    """The reply once per sequence of chunks, pointers into moved records patched."""
    patched = [i for i in kept if fixes[i]]
    variants = []
    offsets = [] if serial_places else None
    for sequence in sequences:
        if patched or serial_places:
            start = {}
            pos = len(head) + 2
            for i in sequence:
                start[i] = pos
                pos += len(chunks[i])
        parts = [chunks[i] for i in sequence]
        for i in patched:
            buf = bytearray(chunks[i])
            for offset, (target, target_offset) in fixes[i]:
                place = start[target] + target_offset
                buf[offset] = 0xC0 | (place >> 8)
                buf[offset + 1] = place & 0xFF
            parts[sequence.index(i)] = bytes(buf)
        variants.append(b"".join([head, *parts, opt]))
        if serial_places:
            offsets.append(tuple(start[c] + off - 2 for c, off in serial_places))
    return variants, offsets
