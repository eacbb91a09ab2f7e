"""A zone exactly as served, as RRsets: what AXFR sends, what IXFR diffs, what
`status --format zone` prints. Pure: snapshot in, RRsets out.

There is no second copy of the answer rules here. Every owner name the zone can answer
is asked every type through `rules.answer`, and the answer records owned by that name are
kept (a CNAME's chased target records belong to the target's own name). What a secondary
loads is therefore what a query to dnsdisco returns. Transfers are written by dnslib, so
the rules' light records become dnslib RRs here (`to_dnslib`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from dnslib import AAAA, CNAME, MX, NS, PTR, QTYPE, RD, RR, SOA, SRV, TXT, A, DNSLabel

from dnsdisco.dns.constants import T_A, T_AAAA, T_MX, T_PTR, T_SRV, T_TXT
from dnsdisco.dns.names import is_subdomain, parent, reverse_name
from dnsdisco.dns.rules import answer, soa_serial
from dnsdisco.dns.wire import encode_name
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig

T_SOA, T_NS, T_CNAME = QTYPE.SOA, QTYPE.NS, QTYPE.CNAME
# every type the rules can give a name from etcd data; static zone-file types are added per name
RULE_TYPES = (QTYPE.SOA, QTYPE.NS, QTYPE.A, QTYPE.AAAA, QTYPE.CNAME, QTYPE.TXT, QTYPE.SRV, QTYPE.MX,
              QTYPE.PTR)
PAUSE_EVERY = 10


@dataclass(frozen=True)
class RRset:
    """One owner name's records of one type, with the one TTL they share (RFC 2181 5.2)."""
    name: str                  # lower case, no trailing dot
    rtype: int
    ttl: int
    rrs: tuple                 # dnslib RR objects, in a fixed order

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.rtype)

    @property
    def texts(self) -> tuple[str, ...]:
        """The rdata in presentation form, sorted: what makes two RRsets equal."""
        return tuple(sorted(rdata_text(rr) for rr in self.rrs))

    def same(self, other: "RRset | None") -> bool:
        return other is not None and self.ttl == other.ttl and self.texts == other.texts

    def size(self) -> int:
        """About the octets it takes in memory and on the wire (for the journal's bound)."""
        return sum(len(self.name) + 12 + len(rdata_text(rr)) for rr in self.rrs)


def canonical_key(name: str) -> tuple:
    """RFC 4034 6.1 canonical order: by labels from the right."""
    return tuple(reversed(name.split("."))) if name else ()


def candidate_names(snap: Snapshot, zone: ZoneConfig) -> set[str]:
    """Every name of the zone that may hold records: the apex, each etcd record's name and
    its parent (a service answers with its instances), zone-file owners, reverse names of
    the automatic PTRs, and the in-zone targets the NS records name. Asking a name that
    holds nothing costs a query and adds nothing."""
    zname = zone.name
    names = {zname, zone.soa_mname}
    for name, _rec in snap.named_records():
        if is_subdomain(name, zname):
            names.add(name)
            if name != zname:
                names.add(parent(name))
    names.update(zone.static)
    if zname.endswith("arpa"):
        for address, _owners in snap.ptr_items():     # the PTR index is keyed by address
            rname = reverse_name(address)
            if is_subdomain(rname, zname):
                names.add(rname)
    return {n for n in names if is_subdomain(n, zname) and snap.zone_of(n) is zone}


def types_to_ask(snap: Snapshot, zone: ZoneConfig, name: str) -> list[int]:
    """The types worth asking `name`: a superset of what the rules can give it, read from the
    fields of the records that answer it, so a zone of thousands of names costs a few queries
    per name instead of nine (most would be NODATA). Names no etcd record answers (the apex,
    NS names, zone-file owners, automatic PTR names) are asked every type."""
    static = [rr.rtype for rr in zone.static.get(name, ())]
    recs = snap.records_for(name, zone)
    if not recs and not static and name not in (zone.name, zone.soa_mname) and not snap.ptr_names(name):
        return []     # no record answers it: absent or an empty non-terminal (a new or deleted name)
    if not recs or name == zone.name:
        types = list(RULE_TYPES)
    else:
        types = []
        kinds = {r.host_kind for r in recs}
        if "ipv4" in kinds:
            types.append(QTYPE.A)
        if "ipv6" in kinds:
            types.append(QTYPE.AAAA)
        if "name" in kinds:
            types += [QTYPE.CNAME, QTYPE.PTR]
        if any(r.text for r in recs):
            types.append(QTYPE.TXT)
        if any(r.port > 0 and r.host for r in recs):
            types.append(QTYPE.SRV)
        if any(r.mail and r.host for r in recs):
            types.append(QTYPE.MX)
        if QTYPE.PTR not in types and snap.ptr_names(name):
            types.append(QTYPE.PTR)
    for rtype in static:
        if rtype not in types:
            types.append(rtype)
    return types


def name_rrsets(snap: Snapshot, zone: ZoneConfig, name: str) -> list[RRset]:
    """The RRsets `name` answers with, type by type, as `rules.answer` gives them."""
    types = types_to_ask(snap, zone, name)
    found: dict[int, list] = {}
    wire = encode_name(name)
    for qtype in types:
        ans = answer(snap, wire, qtype)
        if ans.rcode != 0:
            continue
        # only the asked type at the asked name: an alias answers every type with its CNAME
        # (kept from the CNAME question) and the chased target records belong to the target
        rrs = [to_dnslib(rr) for rr in ans.answer if rr[1] == qtype and rr[0] == name]
        if rrs:
            found[qtype] = rrs
    out = []
    for rtype, rrs in found.items():
        unique, seen = [], set()
        for rr in rrs:
            text = rdata_text(rr)
            if text not in seen:
                seen.add(text)
                unique.append(rr)
        unique.sort(key=rdata_text)
        ttl = min(rr.ttl for rr in unique)
        for rr in unique:
            rr.ttl = ttl
        out.append(RRset(name, rtype, ttl, tuple(unique)))
    return out


def zone_rrsets(snap: Snapshot, zone_name: str, names: Iterable[str] | None = None,
                pause: Callable[[], None] | None = None) -> list[RRset]:
    """The zone as served, SOA first, then every RRset in canonical name order and type
    number. With `names`, only those owners (for the journal), without the SOA. `pause`, when
    given, is called every PAUSE_EVERY names (serve passes gevent.sleep, so a large zone does
    not hold up the queries of other clients)."""
    zone = next((z for z in snap.zones if z.name == zone_name), None)
    if zone is None:
        raise KeyError(f"{zone_name} is not a served zone")
    if names is None:
        wanted = candidate_names(snap, zone)
    else:
        wanted = {n for n in names if is_subdomain(n, zone.name) and snap.zone_of(n) is zone}
    soa = None
    out = []
    for count, name in enumerate(sorted(wanted, key=canonical_key), 1):
        if pause is not None and not count % PAUSE_EVERY:
            pause()
        for rrset in name_rrsets(snap, zone, name):
            if rrset.rtype == T_SOA:
                soa = rrset
            else:
                out.append(rrset)
    out.sort(key=lambda s: (canonical_key(s.name), s.rtype))
    if names is None and soa is not None:
        out.insert(0, soa)
    return out


def serial_of(snap: Snapshot) -> int:
    return soa_serial(snap)


def soa_record(snap: Snapshot, zone_name: str):
    """The zone's SOA record as its apex answers it (a dnslib RR)."""
    ans = answer(snap, encode_name(zone_name), T_SOA)
    return next(to_dnslib(rr) for rr in ans.answer if rr[1] == T_SOA)


def to_dnslib(rr: tuple) -> RR:
    """A light record of the rules (rules.py's module docstring) as a dnslib RR, which the
    transfers write and `rdata_text` prints."""
    owner, rtype, ttl, data = rr
    if rtype == T_A:
        rdata = A(data)
    elif rtype == T_AAAA:
        rdata = AAAA(data)
    elif rtype == T_SRV:
        rdata = SRV(data[0], data[1], data[2], data[3] + ".")
    elif rtype == T_TXT:
        rdata = TXT(list(data))
    elif rtype == T_MX:
        rdata = MX(data[1] + ".", data[0])
    elif rtype == T_SOA:
        rdata = SOA(data[0] + ".", data[1] + ".", tuple(data[2:7]))
    elif rtype in _NAMED:
        rdata = _NAMED[rtype](data + ".")
    else:
        rdata = data.source if getattr(data, "source", None) is not None else RD(bytes(data))
    return RR(owner + ".", rtype, ttl=ttl, rdata=rdata)


_NAMED = {T_CNAME: CNAME, T_NS: NS, T_PTR: PTR}


# ---------------------------------------------------------------- master file

def _escaped(data: bytes, specials: str, lowest: int) -> str:
    """RFC 1035 5.1 escapes: `specials` as \\X, octets below `lowest` or past 0x7E as \\DDD."""
    out = []
    for octet in data:
        char = chr(octet)
        if char in specials:
            out.append("\\" + char)
        elif lowest <= octet <= 0x7E:
            out.append(char)
        else:
            out.append(f"\\{octet:03d}")
    return "".join(out)


def _escape_label(label: bytes) -> str:
    return _escaped(label, '.\\"();@$', 0x21)     # a space would end the owner field


def name_text(label) -> str:
    """An absolute name in presentation form (RFC 1035 5.1 escapes)."""
    if isinstance(label, str):
        label = DNSLabel(label)
    return ".".join(_escape_label(part) for part in label.label) + "."


def _txt_text(data: bytes) -> str:
    return '"' + _escaped(data, '"\\', 0x20) + '"'      # inside quotes a space is text


def rdata_text(rr) -> str:
    """An RR's data in presentation form; TXT and names escaped where dnslib does not."""
    rdata = rr.rdata
    if isinstance(rdata, TXT):
        return " ".join(_txt_text(part) for part in rdata.data)
    return str(rdata)


def master_file(zone_name: str, rrsets: list[RRset], comment: str = "") -> str:
    """An RFC 1035 master file: absolute names, one record per line, SOA first."""
    lines = []
    if comment:
        lines.extend("; " + line for line in comment.splitlines())
    lines.append(f"$ORIGIN {name_text(zone_name)}")
    for rrset in rrsets:
        owner = name_text(rrset.name)
        kind = QTYPE.get(rrset.rtype)
        kind = kind if isinstance(kind, str) and not kind.startswith("TYPE") else f"TYPE{rrset.rtype}"
        for rr in rrset.rrs:
            lines.append(f"{owner}\t{rrset.ttl}\tIN\t{kind}\t{rdata_text(rr)}")
    return "\n".join(lines) + "\n"
