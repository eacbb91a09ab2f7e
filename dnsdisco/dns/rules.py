"""`answer(query, snapshot) -> Answer`: every response rule of DESIGN.md section 3, no I/O.

The reply is a dnslib DNSRecord; `depends` lists the names whose change can alter it, so
the packed-reply cache can drop exactly the entries an etcd change touches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from dnslib import (AAAA, CLASS, CNAME, DNSHeader, DNSLabel, DNSRecord, EDNS0, MX, NS, OPCODE, PTR,
                    QTYPE, RCODE, RR, SOA, SRV, TXT, A)

from dnsdisco.dns.constants import BADVERS, MAX_CHAIN, MAX_ROTATIONS, UDP_PAYLOAD, WEIGHTED_TURNS
from dnsdisco.dns.names import from_labels, is_subdomain, zone_of_labels
from dnsdisco.dns.records import Record
from dnsdisco.dns.serial import serial_of
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig


T_A, T_AAAA, T_CNAME, T_TXT = QTYPE.A, QTYPE.AAAA, QTYPE.CNAME, QTYPE.TXT
T_MX, T_SRV, T_PTR, T_SOA, T_NS = QTYPE.MX, QTYPE.SRV, QTYPE.PTR, QTYPE.SOA, QTYPE.NS
T_ANY, T_AXFR, T_IXFR, T_OPT = QTYPE.ANY, QTYPE.AXFR, QTYPE.IXFR, QTYPE.OPT
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")
_REVERSE_SUFFIXES = (".in-addr.arpa", ".ip6.arpa")


@dataclass
class Answer:
    reply: DNSRecord
    # names it was computed from. The SOA serial is not a dependency: the cache writes the
    # current one into every cached SOA it hands out.
    depends: frozenset = frozenset()
    cacheable: bool = True
    in_zone: bool = True
    name: str = ""                     # the lower-case query name
    # (target, qtype) when a CNAME chain left our zones: the caller may finish it through the
    # forwarder (stub resolvers never chase a CNAME themselves)
    chase: tuple | None = None
    # (owner lower case with its dot, type) -> ((weight, priority) per record, in answer order): the A/AAAA
    # RRsets whose rotation follows the instances' weights
    weights: dict | None = None


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
    if query.header.opcode == OPCODE.QUERY:
        header.cd = query.header.cd      # CD means nothing outside QUERY (RFC 6840 5.9)
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
    name = from_labels(q.qname.label)
    if name is None:
        return _absent_name(query, snap, forwarding)
    zone = snap.zone_of(name)
    if zone is None and q.qclass == CLASS.IN and q.qtype == T_PTR and _is_reverse(name):
        owned = _reverse_outside_zones(query, snap, name, forwarding)
        if owned is not None:
            return owned
    if zone is None or q.qclass != CLASS.IN:
        reply = error_reply(query, RCODE.REFUSED, forwarding=forwarding)
        # not cached: a REFUSED for a name outside our zones must not reach a client that may forward
        return Answer(reply, depends=frozenset(), in_zone=zone is not None, name=name,
                      cacheable=zone is not None)
    if q.qtype in (T_AXFR, T_IXFR):
        # transfers are net.transfer's; one that reaches the rules is not allowed (RFC 5936 4.2)
        return Answer(error_reply(query, RCODE.REFUSED, forwarding=forwarding), cacheable=False, name=name)
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
    for rr in rrset_rules(lookup.answer):
        reply.add_answer(rr)
    if lookup.negative:
        reply.add_auth(_soa_rr(snap, lookup.negative, negative=True))
    for rr in lookup.authority:
        reply.add_auth(rr)
    answered = {(str(rr.rname).lower(), rr.rtype) for rr in reply.rr}
    for rr in rrset_rules(lookup.additional):
        if (str(rr.rname).lower(), rr.rtype) not in answered:     # already in the answer
            reply.add_ar(rr)
    _add_opt(reply, edns)
    depends = frozenset(lookup.consulted)
    return Answer(reply, depends=depends, name=name, chase=lookup.chase, weights=lookup.weights or None)


def rrset_rules(rrs: list[RR]) -> list[RR]:
    """RFC 2181 section 5 on a section: an RRset never holds the same record twice, and its
    records share one TTL, the smallest of them."""
    lowest: dict[tuple, int] = {}
    seen = set()
    out = []
    for rr in rrs:
        ident = (str(rr.rname).lower(), rr.rtype)
        lowest[ident] = min(rr.ttl, lowest.get(ident, rr.ttl))
        record = (ident, rr.rclass, str(rr.rdata))
        if record not in seen:
            seen.add(record)
            out.append(rr)
    for rr in out:
        rr.ttl = lowest[(str(rr.rname).lower(), rr.rtype)]
    return out


def _is_reverse(name: str) -> bool:
    return any(is_subdomain(name, rz) for rz in REVERSE_ZONES)


def _absent_name(query: DNSRecord, snap: Snapshot, forwarding: bool) -> Answer:
    """A name with a label no stored name can hold: like any absent name, NXDOMAIN in our
    zones and REFUSED outside them (the zone is found label by label)."""
    q = query.q
    zone_name = zone_of_labels(q.qname.label, [z.name for z in snap.zones])
    if zone_name is None or q.qclass != CLASS.IN:
        return Answer(error_reply(query, RCODE.REFUSED, forwarding=forwarding), cacheable=False,
                      in_zone=zone_name is not None)
    zone = next(z for z in snap.zones if z.name == zone_name)
    reply = _reply_for(query, aa=True, ra=forwarding)
    reply.header.rcode = RCODE.NXDOMAIN
    reply.add_auth(_soa_rr(snap, zone, negative=True))
    edns = edns_of(query)
    _add_opt(reply, edns if isinstance(edns, Edns) else Edns(False))
    return Answer(reply)


def _reverse_outside_zones(query: DNSRecord, snap: Snapshot, name: str, forwarding: bool) -> Answer | None:
    """A PTR question for a reverse name outside every zone we serve: answered from the
    snapshot when it holds the address (or a record at that reverse key), else None (the
    caller refuses or forwards it: the name is someone else's, never our NXDOMAIN)."""
    defaults = ZoneConfig("arpa", ttl=snap.zones[0].ttl if snap.zones else ZoneConfig.ttl)
    lookup = _Lookup(snap, defaults)
    rrs = lookup._ptr(query.q.qname, name, lookup.records(name), defaults)
    if not rrs:
        return None
    reply = _reply_for(query, aa=True, ra=forwarding)
    for rr in rrset_rules(rrs):
        reply.add_answer(rr)
    edns = edns_of(query)
    _add_opt(reply, edns if isinstance(edns, Edns) else Edns(False))
    return Answer(reply, depends=frozenset(lookup.consulted), name=name)


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


def answer_orders(count: int, shares=None) -> list[tuple[int, ...]]:
    """The orders an RRset of `count` records is sent in, one per turn, cycled by the caches.

    Even (no `shares`, or every record alike): each record first in turn, at most
    MAX_ROTATIONS orders. Weighted (`shares` = (weight, priority) per record, as A/AAAA
    answers of instances carry): the first place goes to the records of the lowest priority in
    proportion to their weights (smooth weighted round robin over up to WEIGHTED_TURNS turns,
    so a record of twice the weight is first twice as often), the others follow in rotation."""
    even = list(range(count))
    if count <= 1:
        return [tuple(even)]
    if shares is None or len(set(shares)) <= 1 or len({w for w, _p in shares}) <= 1:
        return [tuple(even[t:] + even[:t]) for t in range(min(count, MAX_ROTATIONS))]
    lowest = min(p for _w, p in shares)
    weights = [w if p == lowest else 0 for w, p in shares]
    total = sum(weights)
    if total == 0:                        # the lowest priority's records all weigh 0: even among them
        weights = [1 if p == lowest else 0 for _w, p in shares]
        total = sum(weights)
    divisor = 0
    for w in weights:
        divisor = math.gcd(divisor, w)
    turns = min(WEIGHTED_TURNS, total // divisor)
    current = [0] * count
    orders = []
    for _turn in range(turns):
        for i in even:
            current[i] += weights[i]
        first = max(even, key=lambda i: (current[i], -i))
        current[first] -= total
        orders.append(tuple(even[first:] + even[:first]))
    return orders


def default_ns_name(zone: ZoneConfig) -> str | None:
    """`ns.dns.<zone>` when it has addresses of its own (--ns-address, else the specific
    --listen addresses), so the default NS is never lame; None otherwise."""
    return f"ns.dns.{zone.name}" if zone.ns_addresses else None


def _own_addresses(owner, zone: ZoneConfig, qtype: int) -> list[RR]:
    """The A or AAAA records of the default NS name, from the zone's configured addresses."""
    family = ":" if qtype == T_AAAA else "."
    return [RR(owner, qtype, rdata=A(addr) if qtype == T_A else AAAA(addr), ttl=zone.ttl)
            for addr in zone.ns_addresses if family in addr]


def alias_of(name: str, recs, zone: ZoneConfig) -> Record | None:
    """The record that makes `name` a CNAME, or None. A CNAME owns its name alone (RFC 1034
    3.6.2, RFC 2181 10.1): only when every record answering the name is a bare name host (no
    port, mail flag or text) and the name is not a zone apex; the first by key is the target.
    Anywhere else a name host is only an SRV/MX target."""
    if not recs or name == zone.name or name.endswith(_REVERSE_SUFFIXES):
        return None               # under in-addr.arpa / ip6.arpa a name host is a PTR target
    for r in recs:
        if r.host_kind != "name" or r.port or r.mail or r.text:
            return None
    return recs[0]             # records_for gives the name's own value, then instances by id


def address_rrset(recs, kind: str, zone: ZoneConfig) -> tuple[list[str], int | None, list[tuple[int, int]]]:
    """The distinct addresses of `kind` ("ipv4" or "ipv6") among `recs` in record order, the
    RRset's TTL (the lowest, RFC 2181 5.2), and each address's (weight, priority): instances
    that share an address add their weights, and the lowest priority counts."""
    hosts: list[str] = []
    shares: list[tuple[int, int]] = []
    index: dict[str, int] = {}
    ttl = None
    for r in recs:
        if r.host_kind != kind:
            continue
        rec_ttl = zone.ttl if r.ttl is None else r.ttl
        if ttl is None or rec_ttl < ttl:
            ttl = rec_ttl
        at = index.get(r.host)
        if at is None:
            index[r.host] = len(hosts)
            hosts.append(r.host)
            shares.append((r.weight, r.priority))
        else:
            weight, priority = shares[at]
            shares[at] = (weight + r.weight, min(priority, r.priority))
    return hosts, ttl, shares


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
        self.chase: tuple | None = None           # (target, qtype) of a chain that left our zones
        self.weights: dict = {}                   # see Answer.weights

    # -------------------------------------------------------------- helpers

    def records(self, name: str) -> tuple[Record, ...]:
        self.consulted.add(name)
        return self.snap.records_for(name)

    def static(self, name: str, qtype: int, owner=None) -> list[RR]:
        """Zone-file records of `qtype` at `name`, under the owner spelled as asked."""
        return [RR(owner or rr.rname, rr.rtype, rclass=rr.rclass, ttl=rr.ttl, rdata=rr.rdata)
                for rr in self.snap.static_for(name) if qtype == T_ANY or rr.rtype == qtype]

    def _addresses(self, owner, recs, qtype: int, zone: ZoneConfig, *, answer: bool = False) -> list[RR]:
        """The A or AAAA RRset of `recs`; for the answer section, the instances' weights are
        kept so the caches rotate it by weight."""
        hosts, ttl, shares = address_rrset(recs, "ipv4" if qtype == T_A else "ipv6", zone)
        if answer and len(hosts) > 1:
            self.weights[(str(owner).lower(), qtype)] = tuple(shares)
        return [RR(owner, qtype, rdata=A(host) if qtype == T_A else AAAA(host), ttl=ttl) for host in hosts]

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

    def cname_of(self, name: str, recs, zone: ZoneConfig) -> Record | None:
        return alias_of(name, recs, zone)

    # -------------------------------------------------------------- the walk

    def run(self, qlabel: DNSLabel, name: str, qtype: int) -> int:
        owner = qlabel
        zone = self.zone
        seen = {name}
        for _hop in range(MAX_CHAIN + 1):
            recs = self.records(name)
            if not recs and name.startswith("_"):
                base = self.service_base(name)
                if base is not None:
                    # an RFC 2782 name: SRV from the service's instances, NODATA for the rest
                    if qtype in (T_SRV, T_ANY):
                        self.answer.extend(self._srv(owner, self.records(base), zone))
                        return RCODE.NOERROR
                    self.negative = zone
                    return RCODE.NOERROR
            data = self.data(owner, name, qtype, recs, zone)
            if data:
                self.answer.extend(data)
                return RCODE.NOERROR
            alias = self.cname_of(name, recs, zone) if qtype != T_CNAME else None
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
            if next_zone is None:
                if qtype not in (T_CNAME, T_ANY):
                    self.chase = (target, qtype)     # the caller may finish it upstream
                return RCODE.NOERROR
            if target in seen:
                return RCODE.NOERROR      # a loop: stop with what we have
            seen.add(target)
            owner, name, zone = target + ".", target, next_zone
        return RCODE.NOERROR

    def _negative(self, name: str, zone: ZoneConfig) -> int:
        self.negative = zone
        return RCODE.NOERROR if self.exists(name, zone) else RCODE.NXDOMAIN

    def exists(self, name: str, zone: ZoneConfig) -> bool:
        """Whether `name` exists (NODATA) or not (NXDOMAIN): stored or static data at or below
        it, the apex, the default NS name and its parents, and the RFC 2782 names of services."""
        if self.snap.exists(name) or name == zone.name:
            return True
        ns_name = default_ns_name(zone)
        if ns_name is not None and (name == ns_name or ns_name.endswith("." + name)):
            return True
        if name.startswith("_"):
            self.consulted.add(name.partition(".")[2])
            return self.service_base(name) is not None or self.srv_service(name) is not None
        return False

    def service_base(self, name: str) -> str | None:
        """For `_service._proto.N`: N, when N has SRV records and nothing is stored at or
        below the asked name itself (a stored key wins)."""
        first, _, rest = name.partition(".")
        second, _, base = rest.partition(".")
        if not (first.startswith("_") and second.startswith("_") and base) or self.snap.exists(name):
            return None
        return base if self._has_srv(base) else None

    def srv_service(self, name: str) -> str | None:
        """For `_proto.N` (one underscore label): N, when N has SRV records."""
        first, _, base = name.partition(".")
        if not (first.startswith("_") and base):
            return None
        return base if self._has_srv(base) else None

    def _has_srv(self, base: str) -> bool:
        return any(r.port > 0 and r.host for r in self.records(base))

    def data(self, owner, name: str, qtype: int, recs, zone: ZoneConfig) -> list[RR]:
        """The RRs of `qtype` at `name` (no aliasing)."""
        static = self.static(name, qtype, owner) if qtype != T_ANY else []
        if qtype in (T_A, T_AAAA):
            if not recs and name == default_ns_name(zone):
                return _own_addresses(owner, zone, qtype) + static
            return self._addresses(owner, recs, qtype, zone, answer=True) + static
        if qtype == T_TXT:
            out = [RR(owner, T_TXT, rdata=TXT(_txt_chunks(r.text)), ttl=_ttl(r, zone)) for r in recs if r.text]
            return out + static
        if qtype == T_CNAME:
            alias = self.cname_of(name, recs, zone)
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
        # only a record stored at this very reverse name: one a label below belongs to a
        # longer reverse name (`5.0.77.10...` is not an instance of `0.77.10...`)
        out = [RR(owner, T_PTR, rdata=PTR(r.host + "."), ttl=_ttl(r, zone)) for r in recs
               if r.host_kind == "name" and r.name == name]
        self.consulted.add(name)
        if out:
            return out             # a record stored at the reverse key is the operator's word
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
            if zone.soa_mname == default_ns_name(zone):
                for qtype in (T_A, T_AAAA):
                    self.additional.extend(_own_addresses(zone.soa_mname + ".", zone, qtype))
        return out

    def _any(self, owner, name: str, recs, zone: ZoneConfig) -> list[RR]:
        """RFC 8482: one RRset is enough, preferring addresses."""
        for qtype in (T_A, T_AAAA, T_TXT, T_SRV, T_MX, T_PTR):
            rrs = self.data(owner, name, qtype, recs, zone)
            if rrs:
                return rrs
        if name == zone.name:
            return [_soa_rr(self.snap, zone, negative=False)]
        alias = self.cname_of(name, recs, zone)
        if alias is not None:
            return [RR(owner, T_CNAME, rdata=CNAME(alias.host + "."), ttl=_ttl(alias, zone))]
        static = self.snap.static_for(name)
        return [static[0]] if static else []


def _txt_chunks(text: str) -> list[bytes]:
    """TXT character-strings are at most 255 octets each."""
    raw = text.encode("utf-8")
    return [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
