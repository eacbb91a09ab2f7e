"""Direct wire answers for the common questions, packed without dnslib objects.

A cache miss through dnslib costs about 300 µs; these answers cost a few microseconds, so
the first pass over 100,000 names, and every name an etcd change touches, stays cheap.
Only the plain cases are handled here: A, AAAA, SRV and TXT of names below a zone apex
whose records hold addresses, and the NODATA/NXDOMAIN answers of such queries. Anything
else (apex, aliases, static zone data, targetstrip, name targets, oversize replies) returns
None and takes resolver.answer, the reference implementation; tests check both agree.
"""
from __future__ import annotations

import functools
import socket
import struct

from .resolver import UDP_PAYLOAD, soa_serial
from .snapshot import Snapshot

T_A, T_AAAA, T_TXT, T_SRV, T_SOA = 1, 28, 16, 33, 6
MAX_ROTATIONS = 8
_RR = struct.Struct("!HHIH")          # type, class, ttl, rdlength
_SRV = struct.Struct("!HHH")
_SOA_TAIL = struct.Struct("!IIIII")
_OPT_DO = b"\x00" + _RR.pack(41, UDP_PAYLOAD, 0x8000, 0)
_OPT = b"\x00" + _RR.pack(41, UDP_PAYLOAD, 0, 0)
_QNAME_PTR = b"\xc0\x0c"
_HEAD = struct.Struct("!HHHHH")       # a header without its id: flags and the four counts
_TYPECLASS = struct.Struct("!HH")


def wire_to_name(wire: bytes) -> str | None:
    """Lower-case presentation name of an uncompressed wire name, None if a label has a dot."""
    if 46 not in wire:                   # no "." octet anywhere: write dots over the lengths
        out = bytearray(wire[1:-1])
        pos = wire[0]
        end = len(out)
        while pos < end:
            step = out[pos] + 1
            out[pos] = 46
            pos += step
        return out.decode("latin-1")
    labels = []
    pos = 0
    while wire[pos]:
        label = wire[pos + 1:pos + 1 + wire[pos]]
        if b"." in label:
            return None
        labels.append(label.decode("latin-1"))
        pos += wire[pos] + 1
    return ".".join(labels)


def encode_name(name: str) -> bytes:
    """A presentation name (no trailing dot) as uncompressed wire labels."""
    return b"".join(bytes([len(p)]) + p.encode("latin-1") for p in name.split(".") if p) + b"\x00"


@functools.lru_cache(maxsize=1024)
def _encode_under(name: str, zone: str, zone_ptr: bytes) -> bytes:
    """`name` with its zone suffix replaced by a pointer to the zone in the question."""
    if name == zone:
        return zone_ptr
    if name.endswith("." + zone):
        head = name[: -len(zone) - 1]
        return b"".join(bytes([len(p)]) + p.encode("latin-1") for p in head.split(".")) + zone_ptr
    return encode_name(name)


def fast_answer(snap: Snapshot, qname: bytes, qtype: int, qclass: int, edns: bool, do: bool,
                limit: int, forwarding: bool, flags: int = 0):
    """(variants, depends, serial offsets or None) for a plain question, or None.

    Variants are replies without the 2-octet id (the cache writes each query's id in front);
    offsets count from the same start. `flags` are header bits to set (the query's RD/CD)."""
    if qclass != 1 or qtype not in (T_A, T_AAAA, T_SRV, T_TXT):
        return None
    name = wire_to_name(qname)
    if name is None:
        return None
    zone = snap.zone_of(name)
    if zone is None or name == zone.name or name in zone.static:
        return None
    recs = snap.records_for(name, zone)
    has_address = has_alias = False
    for r in recs:
        kind = r.host_kind
        if kind == "ipv4" or kind == "ipv6":
            has_address = True
        elif kind == "name":
            has_alias = True
    if has_alias and not has_address:
        return None                                   # an alias: CNAME rules in the resolver
    flags |= 0x8400 | (0x0080 if forwarding else 0)
    rrset: list[tuple] = []                           # the answer: (rtype, ttl, rdata or record)
    if qtype == T_A or qtype == T_AAAA:
        if has_address:
            kind, family = ("ipv4", socket.AF_INET) if qtype == T_A else ("ipv6", socket.AF_INET6)
            seen = set()
            ttl = None
            for r in recs:
                if r.host_kind == kind and r.host not in seen:
                    seen.add(r.host)
                    rec_ttl = zone.ttl if r.ttl is None else r.ttl
                    if ttl is None or rec_ttl < ttl:
                        ttl = rec_ttl
                    rrset.append(socket.inet_pton(family, r.host))
            if rrset:
                variants = _rotated(qname, qtype, ttl, rrset, edns, do, flags, limit)
                return None if variants is None else (variants, frozenset((name,)), None)
    elif qtype == T_TXT:
        items = [r for r in recs if r.text]
        if items:
            ttl = min(_ttl(r, zone) for r in items)
            variants = _rotated(qname, T_TXT, ttl, [_txt(r.text) for r in items], edns, do, flags, limit)
            return None if variants is None else (variants, frozenset((name,)), None)
    else:
        for r in recs:
            if r.port <= 0 or not r.host:
                continue
            if r.host_kind == "name" or r.targetstrip:
                return None
            if r.name != name and not r.name.endswith("." + name):
                return None
            rrset.append(r)
        if rrset:
            ttl = min(_ttl(r, zone) for r in rrset)
            # RFC 2782: the target is never compressed (glue owners point at it); each record's
            # SRV data and glue are built once for all the answer orders
            rrset = [(T_SRV, ttl, _SRV.pack(r.priority, r.weight, r.port) + encode_name(r.name), _glue(r, zone))
                     for r in rrset]

    zone_ptr = _pointer(qname, zone.name)
    if rrset:
        negative = None
    else:
        flags |= 0 if snap.exists(name) else 3
        negative = zone
    variants, offsets = [], []
    for turn in range(min(len(rrset), MAX_ROTATIONS) or 1):
        packed, soa_at = _pack(snap, qname, qtype, rrset, turn, negative, zone, zone_ptr, flags, edns, do)
        if len(packed) > limit:
            return None                               # truncation rules live in wire.pack_reply
        variants.append(packed[2:])
        offsets.append(tuple(at - 2 for at in soa_at))
    return variants, frozenset((name,)), (offsets if negative is not None else None)


def _glue(rec, zone) -> bytes:
    """The address record of an SRV target after its owner name: the record's own TTL."""
    rtype, family = (T_A, socket.AF_INET) if rec.host_kind == "ipv4" else (T_AAAA, socket.AF_INET6)
    data = socket.inet_pton(family, rec.host)
    return _RR.pack(rtype, 1, _ttl(rec, zone), len(data)) + data


def _ttl(rec, zone) -> int:
    return zone.ttl if rec.ttl is None else rec.ttl


def _txt(text: str) -> bytes:
    raw = text.encode("utf-8")
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return b"".join(bytes([len(c)]) + c for c in chunks)


@functools.lru_cache(maxsize=256)
def _encoded_length(zone: str) -> int:
    return len(encode_name(zone))


def _pointer(qname: bytes, zone: str) -> bytes:
    """A compression pointer to `zone` inside the question name at offset 12."""
    offset = 12 + len(qname) - _encoded_length(zone)
    return bytes([0xC0 | (offset >> 8), offset & 0xFF])


def _rotated(qname: bytes, qtype: int, ttl: int, rdatas: list, edns: bool, do: bool, flags: int,
             limit: int):
    """The answer orders of one RRset without glue (id left out), from records packed once;
    None if it does not fit in `limit`."""
    head = _HEAD.pack(flags, 1, len(rdatas), 0, 1 if edns else 0) + qname + _TYPECLASS.pack(qtype, 1)
    chunks = [_QNAME_PTR + _RR.pack(qtype, 1, ttl, len(data)) + data for data in rdatas]
    tail = (_OPT_DO if do else _OPT) if edns else b""
    if 2 + len(head) + sum(map(len, chunks)) + len(tail) > limit:
        return None
    if len(chunks) == 1:
        return [head + chunks[0] + tail]
    return [head + b"".join(chunks[turn:] + chunks[:turn]) + tail
            for turn in range(min(len(chunks), MAX_ROTATIONS))]


def _pack(snap, qname: bytes, qtype: int, rrset, turn: int, negative, zone, zone_ptr: bytes, flags: int,
          edns: bool, do: bool):
    out = bytearray(12)
    out += qname
    out += struct.pack("!HH", qtype, 1)
    answers = 0
    glue = []
    if rrset:
        shift = turn % len(rrset)
        for rtype, ttl, rdata, rr_glue in rrset[shift:] + rrset[:shift]:
            if rr_glue is not None:
                glue.append((rr_glue, len(out) + 2 + 10 + 6))    # where the SRV target starts
            out += _QNAME_PTR
            out += _RR.pack(rtype, 1, ttl, len(rdata))
            out += rdata
            answers += 1
    authority = 0
    soa_at = ()
    if negative is not None:
        mname = _encode_under(zone.soa_mname, zone.name, zone_ptr)
        rname = _encode_under(zone.soa_rname, zone.name, zone_ptr)
        tail = _SOA_TAIL.pack(soa_serial(snap), zone.refresh, zone.retry, zone.expire, zone.neg_ttl)
        out += zone_ptr
        out += _RR.pack(T_SOA, 1, zone.neg_ttl, len(mname) + len(rname) + len(tail))
        soa_at = (len(out) + len(mname) + len(rname),)
        out += mname + rname + tail
        authority = 1
    additional = 0
    for rr_glue, target_at in glue:
        out += bytes([0xC0 | (target_at >> 8), target_at & 0xFF])
        out += rr_glue
        additional += 1
    if edns:
        out += _OPT_DO if do else _OPT
        additional += 1
    struct.pack_into("!HHHHHH", out, 0, 0, flags, 1, answers, authority, additional)
    return bytes(out), soa_at

