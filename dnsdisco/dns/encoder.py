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

`encode` writes the commonest replies a short way that gives the same bytes with less work,
because every name's first answer passes here: the addresses of the asked name
(`_addresses`), the asked service's instances with their addresses as glue (`_services`), one
RRset alone (`_one_rrset`), and a negative answer's SOA, made once per zone, serial and place
(`_soa_chunk`). Anything else, or a short way's reply over the limit, takes the general way
(`_general`), whose bytes each short way's must be (tests/unit/dns/test_plain_way.py).
`packed_reply` writes the same replies for rules.packed's octets, without an Answer, through the
same order and SOA functions.
The module is over 500 lines for that reason: the general writer and its short ways belong
together, so that a change to how a record is written is made in one file.
"""
from __future__ import annotations

import functools
import socket
import struct

from dnsdisco.dns.constants import (MAX_ROTATIONS, T_A, T_AAAA, T_CNAME, T_MX, T_NS, T_OPT, T_PTR, T_SOA, T_SRV, T_TXT,
                                    UDP_PAYLOAD)
from dnsdisco.dns.rules import PLAIN_SRV, answer_orders
from dnsdisco.dns.wire import edns_of, labels_wire, name_labels, plain_question, wire_to_name

_RR = struct.Struct("!HHIH")          # type, class, ttl, rdlength
_OWNED = struct.Struct("!HHHIH")      # the same after an owner that is a pointer
_OWNED_SRV = struct.Struct("!HHHIHHHH")   # and an SRV's priority, weight and port
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
# the orders depend only on the count and the shares, which most services repeat
_orders = functools.lru_cache(maxsize=4096)(answer_orders)
# False in tests only: every reply is then written the general way, which the short ways
# must equal byte for byte (tests/unit/dns/test_plain_way.py)
SHORT_WAYS = True


def opt_record(do: bool, ext_rcode: int = 0) -> bytes:
    """Our OPT record: root owner, our UDP size, the extended rcode's high bits, DO echoed."""
    return b"\x00" + _RR.pack(T_OPT, UDP_PAYLOAD, (ext_rcode << 24) | (0x8000 if do else 0), 0)


_OPT, _OPT_DO = opt_record(False), opt_record(True)


def reply_flags(qflags: int, rcode: int, aa: bool, ra: bool) -> int:
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
    return (_HEAD.pack(reply_flags(qflags, rcode, False, ra), 1 if question else 0, 0, 0, 1 if edns else 0)
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
    flags = struct.unpack_from("!H", data, 2)[0]
    return data[:2] + error_reply(flags & 0x7900, plain_question(data), 1, edns=True, ra=ra)


def _question_names(qname: bytes, text: str | None) -> dict:
    """The compression table's first entries: the question's name at offset 12, and its other
    suffixes, that spell names the rules can write, once a name needs them (_complete).
    `text` is the name as the rules read it, if known. The key 0 holds the question's wire
    name; the key None its text, until the other suffixes are in."""
    if text:
        return {text: 12, 0: qname, None: text}
    table = {0: qname}
    pos = 0
    while qname[pos]:
        suffix = wire_to_name(qname[pos:])
        if suffix is not None:
            table[suffix] = 12 + pos
        pos += qname[pos] + 1
    return table


def _complete(table: dict) -> None:
    """Every suffix of the question's name into the table (see _question_names)."""
    del table[None]
    qname = table[0]
    text = wire_to_name(qname)
    pos = qname[0] + 1
    while qname[pos]:
        table.setdefault(text[pos:], 12 + pos)   # a name's text and its wire form share label offsets
        pos += qname[pos] + 1


def _put_name(name: str, buf: bytearray, table: dict, base, fixups: list, compress: bool) -> None:
    """Append `name` to `buf`: labels until a suffix the table holds (a pointer). Each suffix
    written becomes a pointer target: at `base` + its offset in `buf` when `base` is an int
    (the record's place), or, in an RRset that rotates, `base` is (list, chunk index) and the
    suffix waits there as (chunk, offset) until the RRset is whole; a pointer to such a
    suffix goes in `fixups`, to be patched in each order."""
    if not name:
        buf.append(0)
        return
    if None in table:
        _complete(table)
    if not name.isascii():             # IDNA: written whole, never pointed at
        buf += labels_wire(name_labels(name))
        return
    if not compress:                   # written whole; its suffixes still become targets
        parts = name.encode("ascii").split(b".")
        at = len(buf)
        buf += b"".join([_LENGTH[len(part)] + part for part in parts])
        buf.append(0)
        start = 0
        for part in parts:
            suffix = name[start:] if start else name
            if suffix in table:        # and so are its own suffixes
                break
            if type(base) is int:
                if base + at + start < _POINTER:
                    table[suffix] = base + at + start
            else:
                base[0].append((suffix, (base[1], at + start)))
            start += len(part) + 1
        return
    start = 0
    while True:
        suffix = name[start:] if start else name
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
            if place < _POINTER:
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


_SOA_CHUNKS: dict = {}   # id of an SOA record -> (the record, {place: (bytes, serial offset)})


def _soa_chunk(rr: tuple, place: int) -> tuple[bytes, int]:
    """An SOA record whose owner is at `place`, and where its serial sits in it. Its names
    point only at the owner (the apex), so its bytes depend on little and are made once per
    zone, serial and place (rules.soa_rr gives the same record object for a zone and serial,
    so it is known by its identity while it lives)."""
    held = _SOA_CHUNKS.get(id(rr))
    if held is None or held[0] is not rr:
        if len(_SOA_CHUNKS) >= 64:                # old revisions' records
            _SOA_CHUNKS.clear()
        held = _SOA_CHUNKS[id(rr)] = (rr, {})
    made = held[1].get(place)
    if made is None:
        made = held[1][place] = _soa_bytes(rr, place)
    return made


def _soa_bytes(rr: tuple, place: int) -> tuple[bytes, int]:
    owner, _rtype, ttl, rdata = rr
    names = _soa_names(rdata[0], rdata[1], owner, place)
    return (_OWNED.pack(0xC000 | place, T_SOA, 1, ttl, len(names) + 20) + names + _SOA_NUMBERS.pack(*rdata[2:7]),
            12 + len(names))


@functools.lru_cache(maxsize=1024)
def _soa_names(mname: str, rname: str, apex: str, place: int) -> bytes:
    """An SOA's two names, each pointing at the apex (at `place`) or a suffix of it where it
    can, and at nothing else."""
    table = {apex: place}
    pos = 0
    while True:
        dot = apex.find(".", pos)
        if dot < 0:
            break
        pos = dot + 1
        table[apex[pos:]] = place + pos
    out = bytearray()
    _put_name(mname, out, table, 0x10000, None, True)      # beyond any pointer: nothing registered
    _put_name(rname, out, table, 0x10000, None, True)
    return bytes(out)


class _Dropped(dict):
    """Takes what _one_rrset's records would hold for later records, of which there are none."""

    def append(self, item) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass


_DROPPED = _Dropped()


def _one_rrset(records: list, authority: bool, table: dict, question: bytes, flags: int, edns: bool, do: bool,
               limit: int, weights) -> tuple | None:
    """The usual reply, one RRset in the answer (or, for a negative answer, the authority
    section) and nothing else, written the short way; None for any other, or one over the
    limit: encode's general way then."""
    count = len(records)
    if not count or (authority and count > 1):      # only the answer section rotates
        return None
    owner, rtype = records[0][0], records[0][1]
    for rr in records:
        if rr[1] != rtype or rr[0] != owner:
            return None
    chunks: list = []
    serials: list = []
    at = start = 12 + len(question)
    # nothing follows the RRset: its names need not become pointer targets, and no record
    # points into a rotating one (so there is nothing to patch)
    held = _DROPPED if count > 1 else None
    for rr in records:
        at = _write(rr, table, chunks, _DROPPED, serials, at, held)
    opt = (_OPT_DO if do else _OPT) if edns else b""
    if at + len(opt) > limit:
        return None
    head = (_HEAD.pack(flags, 1, 0, count, 1 if edns else 0) if authority
            else _HEAD.pack(flags, 1, count, 0, 1 if edns else 0)) + question
    if count == 1:
        return [head + chunks[0] + opt], [(start + serials[0][1] - 2,)] if serials else None
    shares = weights.get((owner, rtype)) if weights else None
    orders = _orders(count, shares if shares is not None and len(shares) == count else None)
    return [b"".join([head, *[chunks[i] for i in order], opt]) for order in orders], None


def _addresses(records: list, rtype: int, question: bytes, flags: int, edns: bool, do: bool, limit: int,
               weights) -> tuple | None:
    """The commonest reply: addresses of the asked name and nothing else, each record a
    pointer to the question and its address. None for anything else: _one_rrset then."""
    count = len(records)
    owner = records[0][0]
    family = _V4 if rtype == T_A else _V6
    chunks = []
    for rr in records:
        if rr[1] != rtype or rr[0] != owner:
            return None
        data = _inet_pton(family, rr[3])
        chunks.append(_OWNED.pack(0xC00C, rtype, 1, rr[2], len(data)) + data)
    shares = weights.get((owner, rtype)) if weights and count > 1 else None
    if shares is not None and (len(shares) != count or shares.count(shares[0]) == count):   # even
        shares = None
    return _address_replies(chunks, question, flags, edns, do, limit, shares)


def _address_replies(chunks: list, question: bytes, flags: int, edns: bool, do: bool, limit: int,
                     shares) -> tuple | None:
    """The address replies, one per answer order, and no SOA serial offsets: the header,
    `question`, `chunks` (one record each) in the even orders or those of `shares`
    (rules.answer_orders), and the OPT when `edns`. None over the limit."""
    count = len(chunks)
    opt = (_OPT_DO if do else _OPT) if edns else b""
    head = _HEAD.pack(flags, 1, count, 0, 1 if edns else 0) + question
    # the records are alike in size (one type), and the 2 are the id, which the caches write
    if len(head) + 2 + count * len(chunks[0]) + len(opt) > limit:
        return None
    if count == 1:                       # an instance: one record, one order
        return [head + chunks[0] + opt], None
    if count == 2 and shares is None:    # a service of two instances: each first in turn
        first, second = chunks
        return [head + first + second + opt, head + second + first + opt], None
    return [b"".join([head, *[chunks[i] for i in order], opt]) for order in _orders(count, shares)], None


def _services(records: list, glue: list, owner: str, qname: bytes, question: bytes, flags: int, edns: bool,
              do: bool, limit: int) -> tuple | None:
    """The commonest SRV reply: the asked name's instances as targets (one label below it),
    each target's address as glue in the same order, nothing else. Each glue owner points at
    its target inside the SRV record, wherever the order puts that. None for anything else."""
    srv = []
    rests = []
    for rr, address in zip(records, glue):
        rdata = rr[3]
        target = rdata[3]
        label, _, rest = target.partition(".")
        if rr[1] != T_SRV or rr[0] != owner or rest != owner or address[0] != target or not label.isascii():
            return None
        label = label.encode("ascii")
        wire = _LENGTH[len(label)] + label + qname
        srv.append(_OWNED_SRV.pack(0xC00C, T_SRV, 1, rr[2], 6 + len(wire), rdata[0], rdata[1], rdata[2]) + wire)
        rtype = address[1]
        if rtype == T_A:
            data = _inet_pton(_V4, address[3])
        elif rtype == T_AAAA:
            data = _inet_pton(_V6, address[3])
        else:
            return None
        rests.append(_RR.pack(rtype, 1, address[2], len(data)) + data)
    return _service_orders(srv, rests, question, flags, edns, do, limit)


def _service_orders(srv: list, rests: list, question: bytes, flags: int, edns: bool, do: bool,
                    limit: int) -> tuple | None:
    """The service replies, one per answer order: the SRV records `srv` (each a pointer to
    the question, then its target in full) and, as glue in the same order, each target's
    address record without its owner (`rests`), which points at the target wherever the order
    put it. None over the limit."""
    count = len(srv)
    opt = (_OPT_DO if do else _OPT) if edns else b""
    at = 12 + len(question)
    end = at + sum(map(len, srv)) + sum(map(len, rests)) + 2 * count + len(opt)
    if end > limit or end > _POINTER:
        return None
    head = _HEAD.pack(flags, 1, count, 0, count + (1 if edns else 0)) + question
    pointer = _POINTER_TO
    target = at + 18          # where the first record's target is: pointer, type to rdlength, SRV fields
    if count == 1:
        return [b"".join((head, srv[0], pointer[target], rests[0], opt))], None
    if count == 2:            # a service of two instances: each first in turn
        first, second = srv
        after_first, after_second = target + len(first), target + len(second)
        return [b"".join((head, first, second, pointer[target], rests[0], pointer[after_first], rests[1], opt)),
                b"".join((head, second, first, pointer[after_second], rests[0], pointer[target], rests[1], opt))], None
    variants = []
    targets = [0] * count
    for shift in range(min(count, MAX_ROTATIONS)):     # the even orders (rules.answer_orders)
        order = srv[shift:] + srv[:shift]
        place = target
        for j in range(count):
            k = (shift + j) % count
            targets[k] = place
            place += len(srv[k])
        variants.append(b"".join([head, *order, *[pointer[targets[j]] + rests[j] for j in range(count)], opt]))
    return variants, None


def _write(rr: tuple, table: dict, chunks: list, fixes: dict, serials: list, at: int, held: list | None) -> int:
    """Append one record's bytes to `chunks`, written at `at` (names compressed against
    `table`), and return where the next one starts. Its names become pointer targets now
    (`held` None) or once the rotating RRset it belongs to is whole (`held` collects them, by
    chunk and offset). An SOA's serial offset goes in `serials`, patches in `fixes`."""
    owner, rtype, ttl, rdata = rr
    index = len(chunks)
    base = at if held is None else (held, index)
    fixups = None
    hit = table.get(owner)
    if hit is None and None in table:
        text = table[None]                # the zone of a negative answer: a suffix of the question
        if len(text) > len(owner) and text[-len(owner) - 1] == "." and text.endswith(owner):
            hit = table[owner] = 12 + len(text) - len(owner)
        else:
            _complete(table)
            hit = table.get(owner)
    if type(hit) is int:                 # the usual owner: a pointer (to the question)
        if rtype == T_SOA:
            chunk, serial_at = _soa_chunk(rr, hit)
            serials.append((index, serial_at))
            chunks.append(chunk)
            return at + len(chunk)
        if rtype == T_A or rtype == T_AAAA:
            data = _inet_pton(_V4 if rtype == T_A else _V6, rdata)
            chunk = _OWNED.pack(0xC000 | hit, rtype, 1, ttl, len(data)) + data
            chunks.append(chunk)
            return at + len(chunk)
        if rtype == T_TXT:
            data = _LENGTH[len(rdata[0])] + rdata[0] if len(rdata) == 1 \
                else b"".join([_LENGTH[len(part)] + part for part in rdata])
            chunk = _OWNED.pack(0xC000 | hit, T_TXT, 1, ttl, len(data)) + data
            chunks.append(chunk)
            return at + len(chunk)
        if rtype == T_SRV and hit == 12:
            # RFC 2782: the target is never compressed. The usual one is an instance of the
            # asked name, whose wire form the question holds; its suffixes are in the table.
            target = rdata[3]
            label, _, rest = target.partition(".")
            if rest == owner and label.isascii():
                wire = _LENGTH[len(label)] + label.encode("ascii") + table[0]
                chunk = _OWNED_SRV.pack(0xC00C, T_SRV, 1, ttl, 6 + len(wire), rdata[0], rdata[1], rdata[2]) + wire
                chunks.append(chunk)
                if held is not None:                     # 18: pointer, type to rdlength, SRV fields
                    held.append((target, (index, 18)))
                elif at + 18 < _POINTER:
                    table.setdefault(target, at + 18)
                return at + len(chunk)
        buf = bytearray(_OWNED.pack(0xC000 | hit, rtype, 1, ttl, 0))
    elif hit is not None:                # a name inside a rotating RRset (a glue owner at an SRV target)
        if rtype == T_A or rtype == T_AAAA:
            data = _inet_pton(_V4 if rtype == T_A else _V6, rdata)
            chunk = _OWNED.pack(0xC000, rtype, 1, ttl, len(data)) + data
            chunks.append(chunk)
            fixes[index] = [(0, hit)]
            return at + len(chunk)
        fixups = [(0, hit)]
        buf = bytearray(_OWNED.pack(0xC000, rtype, 1, ttl, 0))
    else:
        fixups = []
        buf = bytearray()
        _put_name(owner, buf, table, base, fixups, True)
        buf += _RR.pack(rtype, 1, ttl, 0)
    start = len(buf)
    if rtype == T_A:
        buf += _inet_pton(_V4, rdata)
    elif rtype == T_AAAA:
        buf += _inet_pton(_V6, rdata)
    elif rtype == T_SRV:
        buf += _SRV.pack(rdata[0], rdata[1], rdata[2])
        _put_name(rdata[3], buf, table, base, fixups, False)      # RFC 2782: never compressed
    elif rtype == T_TXT:
        for part in rdata:
            buf += _LENGTH[len(part)]
            buf += part
    else:
        if fixups is None:
            fixups = []
        if rtype in _COMPRESSED:
            _put_name(rdata, buf, table, base, fixups, True)
        elif rtype == T_MX:
            buf += _PREFERENCE.pack(rdata[0])
            _put_name(rdata[1], buf, table, base, fixups, True)
        elif rtype == T_SOA:
            _put_name(rdata[0], buf, table, base, fixups, True)
            _put_name(rdata[1], buf, table, base, fixups, True)
            serials.append((index, len(buf)))
            buf += _SOA_NUMBERS.pack(*rdata[2:7])
        else:
            buf += rdata                                          # rules.Raw: written as it is
    size = len(buf) - start
    buf[start - 2] = size >> 8
    buf[start - 1] = size & 0xFF
    chunks.append(bytes(buf))
    if fixups:
        fixes[index] = fixups
    return at + len(buf)


def _negative(soa: tuple, text: str, question: bytes, flags: int, edns: bool, do: bool,
              limit: int) -> tuple | None:
    """A negative answer's reply: the zone's SOA alone in the authority section, its owner
    pointing at the apex's place in the question. None when the apex is not a suffix of the
    question's name `text`, or over the limit."""
    apex = soa[0]
    cut = len(text) - len(apex) - 1        # where the dot before the apex is, if it is a suffix
    if cut < 0 or text[cut] != "." or not text.endswith(apex) or soa[1] != T_SOA:
        return None
    chunk, serial_at = _soa_chunk(soa, 13 + cut)
    reply = (_HEAD.pack(flags, 1, 0, 1, 1 if edns else 0) + question + chunk
             + ((_OPT_DO if do else _OPT) if edns else b""))
    if len(reply) + 2 > limit:             # the id, written by the caches, is the 2 more
        return None
    return [reply], [(12 + len(question) + serial_at - 2,)]


_IN_TAILS = {qtype: _TYPECLASS.pack(qtype, 1) for qtype in (T_A, T_AAAA, T_SRV)}   # after the question's name


def packed_reply(held: tuple, qtype: int, text: str, qname: bytes, flags: int, edns: bool, do: bool,
                 limit: int) -> tuple | None:
    """What `encode` writes for the answer rules._plain gives, written straight from the
    records' packed octets that rules.packed found (`held`), with no Answer or record tuple
    made: the addresses of the asked name, its instances with their addresses as glue, or a
    negative answer's SOA (NODATA, NXDOMAIN: the rcode is in the caller's `flags`). `text` is
    the question's name as the snapshot holds it, `qname` its wire form. The same bytes and
    serial offsets as encode's (tests/unit/dns/test_plain_way.py);
    None over the limit or for a label it cannot write as it is (a dot, not ASCII): the usual
    way then gives the reply, cut to the limit."""
    ttl, values, labels, soa, _rcode = held
    question = qname + _IN_TAILS[qtype]
    if soa is not None:
        return _negative(soa, text, question, flags, edns, do, limit)
    if labels is None:                  # A: a pointer to the question and the address, each
        owned = _OWNED.pack(0xC00C, T_A, 1, ttl, 4)
        size = len(values)
        if size == 12:                  # the usual service: two instances
            chunks = [owned + values[:4], owned + values[6:10]]
        elif size == 6:                 # an instance
            chunks = [owned + values[:4]]
        else:
            chunks = [owned + values[at:at + 4] for at in range(0, size, 6)]
        return _address_replies(chunks, question, flags, edns, do, limit, None)
    srv = []
    rests = []
    at = 0
    glue = _RR.pack(T_A, 1, ttl, 4)
    priority, weight = PLAIN_SRV
    for label in labels:                # the instances, one label below the name
        port = values[at + 4] << 8 | values[at + 5]
        if port:                        # a record without a port is no service
            if "." in label or not label.isascii():
                return None
            label = label.encode("ascii")
            wire = _LENGTH[len(label)] + label + qname
            srv.append(_OWNED_SRV.pack(0xC00C, T_SRV, 1, ttl, 6 + len(wire), priority, weight, port) + wire)
            rests.append(glue + values[at:at + 4])
        at += 6
    return _service_orders(srv, rests, question, flags, edns, do, limit)


def encode(ans, qname: bytes, qtype: int, qclass: int, flags: int, edns: bool, do: bool,
           limit: int) -> tuple[list[bytes], list[tuple[int, ...]] | None]:
    """The reply to a question in every answer order, without the 2-octet id (the caches write
    each query's id in front), within `limit` octets; and where each reply's SOA serials sit
    (counted from the same start; None when it holds no SOA). `ans` is a rules.Answer;
    `flags` the second header word (reply_flags), `qname` the question's wire name in lower
    case."""
    question = qname + _TYPECLASS.pack(qtype, qclass)
    answers = ans.answer
    text = ans.name
    if not SHORT_WAYS:
        return _general(ans, qname, question, flags, edns, do, limit)
    if answers:
        if answers[0][0] == text and not ans.authority:
            first = answers[0][1]
            if first == T_A or first == T_AAAA:
                if not ans.additional:
                    single = _addresses(answers, first, question, flags, edns, do, limit, ans.weights)
                    if single is not None:
                        return single
            elif first == T_SRV:
                glue = ans.additional
                if len(glue) == len(answers):
                    single = _services(answers, glue, text, qname, question, flags, edns, do, limit)
                    if single is not None:
                        return single
    elif text and not ans.additional:
        authority = ans.authority
        if len(authority) == 1:
            # a negative answer: the zone's SOA, its owner a suffix of the question's name
            single = _negative(authority[0], text, question, flags, edns, do, limit)
            if single is not None:
                return single
    table = _question_names(qname, text)
    if not ans.additional:
        if not ans.authority:
            single = _one_rrset(answers, False, table, question, flags, edns, do, limit, ans.weights)
        elif not answers:            # a negative answer: the SOA alone
            single = _one_rrset(ans.authority, True, table, question, flags, edns, do, limit, None)
        else:
            single = None
        if single is not None:
            return single
        # a short way that gave up (over the limit) has put the names it wrote in the table,
        # where the general way would point at them: it starts from a fresh one
        table = None
    return _general(ans, qname, question, flags, edns, do, limit, table)


def _general(ans, qname: bytes, question: bytes, flags: int, edns: bool, do: bool, limit: int,
             table: dict | None = None) -> tuple[list[bytes], list[tuple[int, ...]] | None]:
    """encode's general way: any answer, record by record."""
    if table is None:
        table = _question_names(qname, ans.name)
    answers = ans.answer
    chunks: list = []            # each record's bytes
    fixes: dict = {}             # chunk -> [(offset in it, (target chunk, offset in that))]
    serials: list = []           # (chunk, offset of its serial)
    sets: list = []              # the answer's rotating RRsets: (first chunk, end chunk, orders)
    at = 12 + len(question)      # where the next chunk starts (in the answer orders as written)
    count = len(answers)
    index = 0
    while index < count:         # the answer section, RRset by RRset
        rr = answers[index]
        end = index + 1
        if end < count:
            owner, rtype = rr[0], rr[1]
            while end < count and answers[end][1] == rtype and answers[end][0] == owner:
                end += 1
        if end - index == 1:
            at = _write(rr, table, chunks, fixes, serials, at, None)
        else:
            weights = ans.weights
            shares = weights.get((owner, rtype)) if weights else None
            orders = _orders(end - index, shares if shares is not None and len(shares) == end - index else None)
            first = len(chunks)
            held: list = []
            starts = []
            for i in range(index, end):
                starts.append(at)
                at = _write(answers[i], table, chunks, fixes, serials, at, held)
            # one order only, the records as written: they do not move. Weights that leave
            # one record first give one order too, which may move them
            moves = len(orders) > 1 or orders[0] != _rotations(end - index)[0]
            if at < _POINTER:    # names inside it: pointed at through a patch, once it is whole
                for suffix, place in held:
                    if suffix not in table:
                        table[suffix] = place if moves else starts[place[0] - first] + place[1]
            if moves:
                sets.append((first, len(chunks), orders))
        index = end
    an_end = len(chunks)
    for rr in ans.authority:
        at = _write(rr, table, chunks, fixes, serials, at, None)
    ns_end = len(chunks)
    for rr in ans.additional:
        at = _write(rr, table, chunks, fixes, serials, at, None)
    ar_end = len(chunks)
    opt = (_OPT_DO if do else _OPT) if edns else b""

    if at + len(opt) > limit:    # additional first (no TC), then authority and answer RRsets (TC)
        size = at + len(opt) - sum(map(len, chunks[ns_end:]))
        ar_end = ns_end
        if size > limit:
            flags |= 0x0200
            size -= sum(map(len, chunks[an_end:ns_end]))
            ns_end = ar_end = an_end
            while size > limit and an_end:
                # the last RRset of the answer: a rotating one, or the records of one owner and type
                last = chunks_first = an_end - 1
                if sets and sets[-1][1] == an_end:
                    chunks_first = sets.pop()[0]
                else:
                    owner, rtype = answers[last][0], answers[last][1]
                    while chunks_first and answers[chunks_first - 1][0] == owner and \
                            answers[chunks_first - 1][1] == rtype:
                        chunks_first -= 1
                size -= sum(map(len, chunks[chunks_first:an_end]))
                an_end = ns_end = ar_end = chunks_first
        del chunks[ar_end:]
        serials = [place for place in serials if place[0] < ar_end]
    head = _HEAD.pack(flags, 1, an_end, ns_end - an_end, ar_end - ns_end + (1 if edns else 0)) + question
    if not sets:                 # one order; and with no rotating RRset, nothing to patch
        if not serials:
            return [b"".join([head, *chunks, opt])], None
        start = [len(head) + 2]
        for chunk in chunks:
            start.append(start[-1] + len(chunk))
        return [b"".join([head, *chunks, opt])], [tuple(start[c] + off - 2 for c, off in serials)]
    return _ordered(head, chunks, fixes, opt, serials, sets)


def _ordered(head: bytes, chunks: list, fixes: dict, opt: bytes, serials: list,
             sets: list) -> tuple[list[bytes], list | None]:
    """The reply once per turn of the rotating RRsets' orders, pointers into moved records
    patched, and where the SOA serials sit in each."""
    count = len(chunks)
    patched = [(i, fixups) for i, fixups in fixes.items() if i < count]
    written = []                 # where each chunk starts as written (the first order's layout)
    pos = len(head) + 2
    for chunk in chunks:
        written.append(pos)
        pos += len(chunk)
    variants = []
    offsets = [] if serials else None
    for turn in range(max(len(orders) for _f, _e, orders in sets)):
        parts = chunks[:]
        start = written[:]
        slot = {}
        for first, _end, orders in sets:
            pos = written[first]
            for k, i in enumerate(orders[turn % len(orders)], first):
                chunk = chunks[first + i]
                parts[k] = chunk
                start[first + i] = pos
                pos += len(chunk)
                slot[first + i] = k
        for i, fixups in patched:
            parts[slot.get(i, i)] = _patch(chunks[i], fixups, start)
        if serials:
            offsets.append(tuple(start[c] + off - 2 for c, off in serials))
        variants.append(b"".join([head, *parts, opt]))
    return variants, offsets


@functools.lru_cache(maxsize=64)
def _rotations(count: int) -> list[tuple[int, ...]]:
    """The rotations of `count` records, by the record they start with."""
    even = list(range(count))
    return [tuple(even[s:] + even[:s]) for s in range(count)]


class _Pointers(dict):
    """Compression pointers by target offset, made when first asked for."""

    def __missing__(self, place: int) -> bytes:
        pointer = self[place] = bytes((0xC0 | (place >> 8), place & 0xFF))
        return pointer


_POINTER_TO = _Pointers()


def _patch(chunk: bytes, fixups: list, start) -> bytes:
    """`chunk` with each pointer into a moved record aimed at where that record now starts."""
    buf = bytearray(chunk)
    for offset, (target, target_offset) in fixups:
        place = start[target] + target_offset
        buf[offset] = 0xC0 | (place >> 8)
        buf[offset + 1] = place & 0xFF
    return bytes(buf)
