"""`answer(query, snapshot) -> Answer`: every response rule of DESIGN.md section 3, no I/O.

The reply is a dnslib DNSRecord; `depends` lists the names whose change can alter it, so
the packed-reply cache can drop exactly the entries an etcd change touches.
"""
from __future__ import annotations

from dataclasses import dataclass

from dnslib import (AAAA, CLASS, CNAME, DNSHeader, DNSLabel, DNSRecord, EDNS0, MX, NS, OPCODE, PTR,
                    QTYPE, RCODE, RR, SOA, SRV, TXT, A)

from .names import is_subdomain
from .records import Record
from .serial import serial_of
from .snapshot import Snapshot, ZoneConfig

UDP_PAYLOAD = 1232          # our EDNS buffer size (DNS flag day 2020)
MAX_CHAIN = 8               # CNAME hops followed inside our zones
BADVERS = 16

T_A, T_AAAA, T_CNAME, T_TXT = QTYPE.A, QTYPE.AAAA, QTYPE.CNAME, QTYPE.TXT
T_MX, T_SRV, T_PTR, T_SOA, T_NS = QTYPE.MX, QTYPE.SRV, QTYPE.PTR, QTYPE.SOA, QTYPE.NS
T_ANY, T_AXFR, T_IXFR, T_OPT = QTYPE.ANY, QTYPE.AXFR, QTYPE.IXFR, QTYPE.OPT
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")


@dataclass
class Answer:
    reply: DNSRecord
    # names it was computed from. The SOA serial is not a dependency: the cache writes the
    # current one into every cached SOA it hands out.
    depends: frozenset = frozenset()
    cacheable: bool = True
    in_zone: bool = True
    name: str = ""                     # the lower-case query name


@dataclass(frozen=True)
class Edns:
    present: bool
    udp_size: int = 512
    do: bool = False
    version: int = 0


def edns_of(query: DNSRecord) -> Edns | str:
    """The query's EDNS state, or an error rcode name ("FORMERR")."""
    opts = [rr for rr in query.ar if rr.rtype == T_OPT]
    if not opts:
        return Edns(False)
    if len(opts) > 1:
        return "FORMERR"
    opt = opts[0]
    if len(opt.rname.label) != 0:
        return "FORMERR"
    return Edns(True, max(512, opt.rclass), bool(opt.ttl & 0x8000), (opt.ttl >> 16) & 0xFF)


def lower_name(label: DNSLabel) -> str:
    """The lower-case presentation name of a dnslib label, without the trailing dot."""
    return b".".join(label.label).decode("latin-1").lower()


def _reply_for(query: DNSRecord, *, aa: bool, ra: bool, with_question: bool = True) -> DNSRecord:
    header = DNSHeader(id=query.header.id, qr=1, aa=int(aa), ra=int(ra), rd=query.header.rd,
                       opcode=query.header.opcode)
    header.cd = query.header.cd
    reply = DNSRecord(header, q=query.q if with_question and query.questions else None)
    if not with_question:
        reply.questions = []
    return reply


def _add_opt(reply: DNSRecord, edns: Edns, ext_rcode: int = 0) -> None:
    if edns.present:
        reply.add_ar(EDNS0(udp_len=UDP_PAYLOAD, flags="do" if edns.do else "", ext_rcode=ext_rcode))


def error_reply(query: DNSRecord, rcode: int, *, forwarding: bool = False) -> DNSRecord:
    """A reply carrying only an rcode (FORMERR, NOTIMP, REFUSED, SERVFAIL, BADVERS)."""
    reply = _reply_for(query, aa=False, ra=forwarding, with_question=len(query.questions) == 1)
    edns = edns_of(query)
    if isinstance(edns, str):
        edns = Edns(False)
    if rcode >= 16:
        reply.header.rcode = rcode & 0xF
        _add_opt(reply, edns if edns.present else Edns(True), ext_rcode=rcode >> 4)
    else:
        reply.header.rcode = rcode
        _add_opt(reply, edns)
    return reply


def answer(query: DNSRecord, snap: Snapshot, *, forwarding: bool = False) -> Answer:
    """Answer one parsed query from the snapshot."""
    if query.header.opcode != OPCODE.QUERY:
        return Answer(error_reply(query, RCODE.NOTIMP, forwarding=forwarding), cacheable=False)
    if len(query.questions) != 1:
        return Answer(error_reply(query, RCODE.FORMERR, forwarding=forwarding), cacheable=False)
    edns = edns_of(query)
    if isinstance(edns, str):
        return Answer(error_reply(query, RCODE.FORMERR, forwarding=forwarding), cacheable=False)
    if edns.version > 0:
        return Answer(error_reply(query, BADVERS, forwarding=forwarding), cacheable=False)
    q = query.q
    name = lower_name(q.qname)
    zone = snap.zone_of(name)
    if zone is None or q.qclass != CLASS.IN:
        reply = error_reply(query, RCODE.REFUSED, forwarding=forwarding)
        return Answer(reply, depends=frozenset(), in_zone=zone is not None, name=name)
    if q.qtype in (T_AXFR, T_IXFR):
        return Answer(error_reply(query, RCODE.NOTIMP, forwarding=forwarding), cacheable=False, name=name)
    if forwarding and zone.name in REVERSE_ZONES and not snap.exists(name):
        # we serve in-addr.arpa / ip6.arpa only for our own addresses; every other reverse
        # name belongs to someone else and goes upstream. Not cached: the REFUSED a client
        # outside --allow gets must not be handed to a client that may forward.
        reply = error_reply(query, RCODE.REFUSED, forwarding=forwarding)
        return Answer(reply, cacheable=False, in_zone=False, name=name)

    reply = _reply_for(query, aa=True, ra=forwarding)
    lookup = _Lookup(snap, zone)
    rcode = lookup.run(q.qname, name, q.qtype)
    reply.header.rcode = rcode
    for rr in _uniform_ttls(lookup.answer):
        reply.add_answer(rr)
    if lookup.negative:
        reply.add_auth(_soa_rr(snap, lookup.negative, negative=True))
    for rr in lookup.authority:
        reply.add_auth(rr)
    seen = set()
    for rr in lookup.additional:
        ident = (str(rr.rname).lower(), rr.rtype, str(rr.rdata))
        if ident not in seen:
            seen.add(ident)
            reply.add_ar(rr)
    _add_opt(reply, edns)
    depends = frozenset(lookup.consulted)
    return Answer(reply, depends=depends, name=name)


def _uniform_ttls(rrs: list[RR]) -> list[RR]:
    """One TTL per RRset, the smallest of its records (RFC 2181 5.2)."""
    lowest: dict[tuple, int] = {}
    for rr in rrs:
        ident = (str(rr.rname).lower(), rr.rtype)
        lowest[ident] = min(rr.ttl, lowest.get(ident, rr.ttl))
    for rr in rrs:
        rr.ttl = lowest[(str(rr.rname).lower(), rr.rtype)]
    return rrs


def _ttl(rec: Record, zone: ZoneConfig) -> int:
    return zone.ttl if rec.ttl is None else rec.ttl


def soa_serial(snap: Snapshot) -> int:
    """The SOA serial: the etcd revision mod 2^32 (serial.py; the reply cache patches it into
    cached SOAs)."""
    return serial_of(snap.revision)


def _soa_rr(snap: Snapshot, zone: ZoneConfig, *, negative: bool) -> RR:
    serial = soa_serial(snap)
    ttl = zone.neg_ttl if negative else (zone.soa_ttl if zone.soa_ttl is not None else zone.ttl)
    if negative:
        ttl = min(ttl, zone.neg_ttl)
    soa = SOA(zone.soa_mname + ".", zone.soa_rname + ".",
              (serial, zone.refresh, zone.retry, zone.expire, zone.neg_ttl))
    return RR(zone.name + ".", T_SOA, rdata=soa, ttl=ttl)


def _strip(name: str, count: int) -> str:
    if count <= 0:
        return name
    parts = name.split(".")
    return ".".join(parts[min(count, len(parts) - 1):])


class _Lookup:
    """One query's walk through the snapshot: answer, additional, and the names it read."""

    def __init__(self, snap: Snapshot, zone: ZoneConfig):
        self.snap = snap
        self.zone = zone
        self.answer: list[RR] = []
        self.authority: list[RR] = []
        self.additional: list[RR] = []
        self.consulted: set[str] = set()
        self.negative: ZoneConfig | None = None   # zone whose SOA goes in authority

    # -------------------------------------------------------------- helpers

    def records(self, name: str) -> tuple[Record, ...]:
        self.consulted.add(name)
        return self.snap.records_for(name)

    def static(self, name: str, qtype: int, owner=None) -> list[RR]:
        """Zone-file records of `qtype` at `name`, under the owner spelled as asked."""
        return [RR(owner or rr.rname, rr.rtype, rclass=rr.rclass, ttl=rr.ttl, rdata=rr.rdata)
                for rr in self.snap.static_for(name) if qtype == T_ANY or rr.rtype == qtype]

    def _addresses(self, owner, recs, qtype: int, zone: ZoneConfig) -> list[RR]:
        kind = "ipv4" if qtype == T_A else "ipv6"
        rrs = [r for r in recs if r.host_kind == kind]
        if not rrs:
            return []
        ttl = min(_ttl(r, zone) for r in rrs)
        seen, out = set(), []
        for r in rrs:
            if r.host in seen:
                continue
            seen.add(r.host)
            out.append(RR(owner, qtype, rdata=A(r.host) if qtype == T_A else AAAA(r.host), ttl=ttl))
        return out

    def _glue(self, target: str) -> None:
        """A/AAAA of an in-zone target into the additional section."""
        zone = self.snap.zone_of(target)
        if zone is None:
            return
        recs = self.records(target)
        own = [r for r in recs if r.name == target] or list(recs)
        for qtype in (T_A, T_AAAA):
            self.additional.extend(self._addresses(target + ".", own, qtype, zone))
            self.additional.extend(rr for rr in self.static(target, qtype))

    @staticmethod
    def cname_of(recs) -> Record | None:
        """A name whose records carry no address but a host name is an alias."""
        if any(r.is_address for r in recs):
            return None
        for r in recs:
            if r.host_kind == "name":
                return r
        return None

    # -------------------------------------------------------------- the walk

    def run(self, qlabel: DNSLabel, name: str, qtype: int) -> int:
        owner = qlabel
        zone = self.zone
        seen = {name}
        for _hop in range(MAX_CHAIN + 1):
            recs = self.records(name)
            data = self.data(owner, name, qtype, recs, zone)
            if data:
                self.answer.extend(data)
                return RCODE.NOERROR
            alias = self.cname_of(recs) if qtype != T_CNAME else None
            static_alias = [rr for rr in self.snap.static_for(name) if rr.rtype == T_CNAME]
            if alias is None and static_alias and qtype != T_CNAME:
                target = lower_name(static_alias[0].rdata.label)
                self.answer.append(RR(owner, T_CNAME, rdata=CNAME(target + "."), ttl=static_alias[0].ttl))
            elif alias is not None:
                target = alias.host
                self.answer.append(RR(owner, T_CNAME, rdata=CNAME(target + "."), ttl=_ttl(alias, zone)))
            else:
                return self._negative(name, zone)
            next_zone = self.snap.zone_of(target)
            if next_zone is None or target in seen:
                return RCODE.NOERROR      # leaves our zones or loops: stop with what we have
            seen.add(target)
            owner, name, zone = target + ".", target, next_zone
        return RCODE.NOERROR

    def _negative(self, name: str, zone: ZoneConfig) -> int:
        self.negative = zone
        if self.snap.exists(name) or name == zone.name:
            return RCODE.NOERROR
        return RCODE.NXDOMAIN

    def data(self, owner, name: str, qtype: int, recs, zone: ZoneConfig) -> list[RR]:
        """The RRs of `qtype` at `name` (no aliasing)."""
        static = self.static(name, qtype, owner) if qtype != T_ANY else []
        if qtype in (T_A, T_AAAA):
            return self._addresses(owner, recs, qtype, zone) + static
        if qtype == T_TXT:
            out = [RR(owner, T_TXT, rdata=TXT(_txt_chunks(r.text)), ttl=_ttl(r, zone)) for r in recs if r.text]
            return out + static
        if qtype == T_CNAME:
            alias = self.cname_of(recs)
            if alias is not None:
                return [RR(owner, T_CNAME, rdata=CNAME(alias.host + "."), ttl=_ttl(alias, zone))]
            return static
        if qtype == T_SRV:
            return self._srv(owner, recs, zone) + static
        if qtype == T_MX:
            return self._mx(owner, recs, zone) + static
        if qtype == T_PTR:
            return self._ptr(owner, name, recs, zone) + static
        if qtype == T_SOA:
            if name == zone.name:
                return [_soa_rr(self.snap, zone, negative=False)]
            return []
        if qtype == T_NS:
            return self._ns(owner, name, zone) + static if name == zone.name else static
        if qtype == T_ANY:
            return self._any(owner, name, recs, zone)
        return static

    def _address_target(self, r: Record, target: str, zone: ZoneConfig) -> str:
        """`target` as the SRV/MX/NS target of an address record, its address as glue."""
        kind = T_A if r.host_kind == "ipv4" else T_AAAA
        rdata = A(r.host) if kind == T_A else AAAA(r.host)
        self.additional.append(RR(target + ".", kind, rdata=rdata, ttl=_ttl(r, zone)))
        return target

    def _srv(self, owner, recs, zone: ZoneConfig) -> list[RR]:
        out = []
        glue = []
        for r in recs:
            if r.port <= 0 or not r.host:
                continue
            if r.host_kind == "name":
                target = r.host
                glue.append(target)
            else:
                target = self._address_target(r, _strip(r.name, r.targetstrip), zone)
            out.append(RR(owner, T_SRV, rdata=SRV(r.priority, r.weight, r.port, target + "."), ttl=_ttl(r, zone)))
        for target in glue:
            self._glue(target)
        return out

    def _mx(self, owner, recs, zone: ZoneConfig) -> list[RR]:
        out = []
        for r in recs:
            if not r.mail or not r.host:
                continue
            if r.host_kind == "name":
                exchange = r.host
                self._glue(exchange)
            else:
                exchange = self._address_target(r, _strip(r.name, r.targetstrip), zone)
            out.append(RR(owner, T_MX, rdata=MX(exchange + ".", r.priority), ttl=_ttl(r, zone)))
        return out

    def _ptr(self, owner, name: str, recs, zone: ZoneConfig) -> list[RR]:
        # PTR lives under in-addr.arpa / ip6.arpa only; elsewhere a name host is an alias
        if not any(is_subdomain(name, rz) for rz in REVERSE_ZONES):
            return []
        out = [RR(owner, T_PTR, rdata=PTR(r.host + "."), ttl=_ttl(r, zone)) for r in recs if r.host_kind == "name"]
        self.consulted.add(name)
        for target in self.snap.ptr_names(name):
            forward = self.snap.zone_of(target)
            ttl = zone.ttl
            rec = self.snap.record_at(target)
            if rec is not None and forward is not None:
                ttl = _ttl(rec, forward)
            out.append(RR(owner, T_PTR, rdata=PTR(target + "."), ttl=ttl))
        return out

    def _ns(self, owner, name: str, zone: ZoneConfig) -> list[RR]:
        ns_name = "ns.dns." + zone.name
        out = []
        for r in self.records(ns_name):
            if r.host_kind == "name":
                target = r.host
                self._glue(target)
            elif r.is_address:
                target = self._address_target(r, r.name, zone)
            else:
                continue
            out.append(RR(owner, T_NS, rdata=NS(target + "."), ttl=_ttl(r, zone)))
        static = self.static(name, T_NS)
        for rr in static:
            self._glue(lower_name(rr.rdata.label))
        if not out and not static:
            out.append(RR(owner, T_NS, rdata=NS(zone.soa_mname + "."), ttl=zone.ttl))
        return out

    def _any(self, owner, name: str, recs, zone: ZoneConfig) -> list[RR]:
        """RFC 8482: one RRset is enough, preferring addresses."""
        for qtype in (T_A, T_AAAA, T_TXT, T_SRV, T_MX, T_PTR):
            rrs = self.data(owner, name, qtype, recs, zone)
            if rrs:
                return rrs
        if name == zone.name:
            return [_soa_rr(self.snap, zone, negative=False)]
        alias = self.cname_of(recs)
        if alias is not None:
            return [RR(owner, T_CNAME, rdata=CNAME(alias.host + "."), ttl=_ttl(alias, zone))]
        static = self.snap.static_for(name)
        return [static[0]] if static else []


def _txt_chunks(text: str) -> list[bytes]:
    """TXT character-strings are at most 255 octets each."""
    raw = text.encode("utf-8")
    return [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
