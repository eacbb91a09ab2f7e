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


def wire_to_name(wire: bytes) -> str | None:
    """Lower-case presentation name of an uncompressed wire name, None if a label has a dot."""
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
                limit: int, forwarding: bool):
    """(variants, depends, serial offsets or None) for a plain question, or None."""
    if qclass != 1 or qtype not in (T_A, T_AAAA, T_SRV, T_TXT):
        return None
    name = wire_to_name(qname)
    if name is None:
        return None
    zone = snap.zone_of(name)
    if zone is None or name == zone.name or name in zone.static:
        return None
    recs = snap.records_for(name)
    if recs and not any(r.is_address for r in recs) and any(r.host_kind == "name" for r in recs):
        return None                                   # an alias: CNAME rules in the resolver
    rrsets: list[list[tuple]] = []                    # answer: [(rtype, ttl, rdata-builder)]
    if qtype in (T_A, T_AAAA):
        kind, family = ("ipv4", socket.AF_INET) if qtype == T_A else ("ipv6", socket.AF_INET6)
        seen = set()
        items = []
        for r in recs:
            if r.host_kind == kind and r.host not in seen:
                seen.add(r.host)
                items.append((r, socket.inet_pton(family, r.host)))
        if items:
            ttl = min(_ttl(r, zone) for r, _ in items)
            rrsets.append([(qtype, ttl, data, None) for _r, data in items])
    elif qtype == T_TXT:
        items = [r for r in recs if r.text]
        if items:
            ttl = min(_ttl(r, zone) for r in items)
            rrsets.append([(T_TXT, ttl, _txt(r.text), None) for r in items])
    else:
        items = []
        for r in recs:
            if r.port <= 0 or not r.host:
                continue
            if r.host_kind == "name" or r.targetstrip:
                return None
            if r.name != name and not r.name.endswith("." + name):
                return None
            items.append(r)
        if items:
            ttl = min(_ttl(r, zone) for r in items)
            rrsets.append([(T_SRV, ttl, r, r) for r in items])

    zone_ptr = _pointer(qname, zone.name)
    if rrsets:
        rcode = 0
        negative = None
    else:
        rcode = 0 if snap.exists(name) else 3
        negative = zone
    depends = frozenset((name,))
    count = min(max((len(s) for s in rrsets), default=1), MAX_ROTATIONS)
    variants, offsets = [], []
    for turn in range(count):
        packed, soa_at = _pack(snap, qname, name, qtype, rrsets, turn, negative, zone, zone_ptr, rcode,
                               edns, do, forwarding)
        if len(packed) > limit:
            return None                               # truncation rules live in wire.pack_reply
        variants.append(packed)
        offsets.append(soa_at)
    return variants, depends, (offsets if negative is not None else None)


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


def _pack(snap, qname: bytes, name: str, qtype: int, rrsets, turn: int, negative, zone, zone_ptr: bytes,
          rcode: int, edns: bool, do: bool, forwarding: bool):
    flags = 0x8400 | (0x0080 if forwarding else 0) | rcode
    out = bytearray(12)
    out += qname
    out += struct.pack("!HH", qtype, 1)
    answers = 0
    glue = []
    for rrset in rrsets:
        shift = turn % len(rrset)
        for rtype, ttl, data, rec in rrset[shift:] + rrset[:shift]:
            if rtype == T_SRV:
                # RFC 2782: the target is never compressed (glue owners may point at it)
                target = encode_name(rec.name)
                rdata = _SRV.pack(rec.priority, rec.weight, rec.port) + target
                target_at = len(out) + 2 + 10 + 6
                glue.append((rec, target_at))
            else:
                rdata = data
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
    for rec, target_at in glue:
        rtype, family = (T_A, socket.AF_INET) if rec.host_kind == "ipv4" else (T_AAAA, socket.AF_INET6)
        data = socket.inet_pton(family, rec.host)
        out += bytes([0xC0 | (target_at >> 8), target_at & 0xFF])
        out += _RR.pack(rtype, 1, _ttl(rec, zone), len(data))   # glue keeps the record's own TTL
        out += data
        additional += 1
    if edns:
        out += _OPT_DO if do else _OPT
        additional += 1
    struct.pack_into("!HHHHHH", out, 0, 0, flags, 1, answers, authority, additional)
    return bytes(out), soa_at

