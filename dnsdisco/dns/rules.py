"""`answer(snap, qname, qtype, qclass) -> Answer`: every answer rule of DESIGN.md section 3,
no I/O, one function per rule.

The rules give RRsets in a light form, `(owner, type, ttl, rdata)` tuples with names kept as
names (lower case, no trailing dot) so that dns.encoder, the one writer of replies, can
compress them. rdata by type: A/AAAA the address text; CNAME/NS/PTR a name; MX
(preference, name); SRV (priority, weight, port, target); TXT a tuple of character-strings
(bytes); SOA (mname, rname, serial, refresh, retry, expire, minimum); any other type the
record's data as `Raw` bytes (zone-file and upstream records only). `depends` lists the names
whose change can alter the answer, so the reply cache drops exactly the entries an etcd change
touches.

The questions most first answers are made for (A, AAAA or SRV of a name whose records are
all plain IPv4 ones, as registrars write them) are answered by `_plain` from the records'
packed values, without a Record or the walk of `_Lookup`: the same rules where nothing else
can apply, and the walk wherever anything else is held (PLAIN_WAY = False, in tests only,
sends every question through the walk so that the two can be compared).

Over 500 lines: every rule of DESIGN.md section 3 lives here, one function (or `_Lookup`
method) each, so that the table in docs/architecture.md can name one place per rule.
"""
from __future__ import annotations

import math
import socket

from dnsdisco.dns.constants import (BADVERS, C_IN, FORMERR, MAX_CHAIN, MAX_ROTATIONS, NOERROR, NOTIMP, NXDOMAIN,
                                    REFUSED, T_A, T_AAAA, T_ANY, T_AXFR, T_CNAME, T_IXFR, T_MX, T_NS, T_PTR, T_SOA,
                                    T_SRV, T_TXT, WEIGHTED_TURNS)
from dnsdisco.dns.names import is_subdomain, read_wire_name, zone_of_labels
from dnsdisco.dns.records import Record
from dnsdisco.dns.serial import serial_of
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.wire import wire_to_name

REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")
_REVERSE_SUFFIXES = (".in-addr.arpa", ".ip6.arpa")
_NAME_TYPES = frozenset((T_CNAME, T_NS, T_PTR))


class Raw(bytes):
    """The data of a record of a type the rules do not build (from a zone file or upstream),
    as it goes on the wire; `source` keeps the parsed form for presentation."""
    source = None


class Answer:
    """The rules' answer to one question: rcode, AA, the three sections as light RRs, and
    what the caches need to know about it. What most answers leave as it is is set on the
    class, so an answer sets only its own (every first answer makes one)."""

    rcode = NOERROR
    aa = True
    answer: tuple | list = ()     # a list where a rule may still add to it (a CNAME chain)
    authority: tuple | list = ()
    additional: tuple | list = ()
    # the names it was computed from (one name, or a collection of them). The SOA serial is
    # not a dependency: the cache writes the current one into every cached SOA it hands out.
    depends: str | tuple | set | frozenset = ()
    cacheable = True
    in_zone = True
    name = ""                 # the lower-case query name
    # (target, qtype) when a CNAME chain left our zones: the caller may finish it through the
    # forwarder (stub resolvers never chase a CNAME themselves)
    chase: tuple | None = None
    # (owner, type) -> ((weight, priority) per record, in answer order): the A/AAAA RRsets
    # whose rotation follows the instances' weights
    weights: dict | None = None

    def __init__(self, rcode: int = NOERROR, aa: bool = True, answer=None, authority=None, additional=None,
                 depends=(), cacheable: bool = True, in_zone: bool = True, name: str = "",
                 chase=None, weights=None):
        self.rcode = rcode
        self.aa = aa
        self.answer = [] if answer is None else answer
        if authority is not None:
            self.authority = authority
        if additional is not None:
            self.additional = additional
        self.depends = depends
        self.cacheable = cacheable
        self.in_zone = in_zone
        self.name = name
        self.chase = chase
        self.weights = weights


def message_rcode(opcode: int, qdcount: int, edns) -> int | None:
    """The rcode a query gets for its message alone, before its question is read: an opcode
    other than QUERY NOTIMP, QDCOUNT other than 1 FORMERR, a malformed OPT FORMERR, an EDNS
    version above 0 BADVERS (RFC 1035 4.1.1, RFC 6891 6.1.3); None for a query to answer.
    `edns` is wire.edns_of's result."""
    if opcode != 0:
        return NOTIMP
    if qdcount != 1 or isinstance(edns, str):
        return FORMERR
    if edns.version > 0:
        return BADVERS
    return None


def refused(*, cacheable: bool = False, in_zone: bool = True, name: str = "") -> Answer:
    return Answer(REFUSED, aa=False, cacheable=cacheable, in_zone=in_zone, name=name)


def answer(snap: Snapshot, qname: bytes, qtype: int, qclass: int = C_IN, forwarding: bool = False) -> Answer:
    """Answer one question from the snapshot. `qname` is the question's name in wire form
    (uncompressed; letter case does not matter)."""
    name = wire_to_name(qname)
    if name is None:
        return _absent_name(snap, qname, qclass)
    zone = snap.zone_of(name)
    if zone is None:
        if qclass == C_IN and qtype == T_PTR and _is_reverse(name):
            owned = _reverse_outside_zones(snap, name)
            if owned is not None:
                return owned
        # not cached: a REFUSED for a name outside our zones must not reach a client that may forward
        return refused(in_zone=False, name=name)
    if qclass != C_IN:
        return refused(name=name, cacheable=True)
    if qtype == T_AXFR or qtype == T_IXFR:
        # transfers are net.transfer's; one that reaches the rules is not allowed (RFC 5936 4.2)
        return refused(name=name)
    if forwarding and zone.name in REVERSE_ZONES and not snap.exists(name, zone):
        # we serve in-addr.arpa / ip6.arpa only for our own addresses; every other reverse
        # name belongs to someone else and goes upstream. Not cached: the REFUSED a client
        # outside --allow gets must not be handed to a client that may forward.
        return refused(in_zone=False, name=name)
    if (qtype == T_A or qtype == T_AAAA or qtype == T_SRV) and not zone.static and PLAIN_WAY:
        plain = _plain(snap, zone, name, qtype)
        if plain is not None:
            return plain
    ans = _Lookup(snap, zone, name)
    ans.rcode = ans.run(name, qtype)
    if not ans.distinct and len(ans.answer) > 1:
        ans.answer = rrset_rules(ans.answer)
    additional = ans.additional
    if additional and not (ans.distinct and ans.answer[0][1] == T_SRV):   # else: instances' addresses, one each
        answered = {(rr[0], rr[1]) for rr in ans.answer}
        ans.additional = [rr for rr in rrset_rules(additional) if (rr[0], rr[1]) not in answered]
    if ans.negative is not None:
        ans.authority = [soa_rr(snap, ans.negative, True)]
    if ans.consulted is not None:
        ans.depends = ans.consulted
    return ans


# False in tests only: every question then takes the walk of _Lookup, the answers _plain
# gives must equal (tests/unit/dns/test_plain_way.py)
PLAIN_WAY = True
_ntoa = socket.inet_ntoa
_new_answer = object.__new__


def _answered(rcode: int, answer: tuple | list, name: str, authority: tuple = ()) -> Answer:
    """An Answer of `rcode`, `answer` and `authority`, depending on `name` alone, the rest
    the class's: Answer() without its keyword handling, since every first answer of _plain
    makes one. Its sections are tuples where it can (nothing is added to them: no CNAME to
    chase), which the collector need not keep looking at once their records are made."""
    ans = _new_answer(Answer)
    ans.rcode = rcode
    ans.answer = answer
    ans.depends = name
    ans.name = name
    if authority:
        ans.authority = authority
    return ans


def packed(snap: Snapshot, name: str, qtype: int, forwarding: bool = False) -> tuple | None:
    """What _plain answers A, AAAA or SRV (class IN) of `name` from, when the encoder can write
    that reply straight from the packed octets (encoder.packed_reply), so a first answer makes
    no Answer and no record tuple: (ttl, values, labels, soa, rcode), the name's packed values
    (Snapshot.plain_records), for SRV the instances' labels (else None), for a negative answer
    (AAAA of IPv4 records; a name without records, as _plain answers it) the SOA (else None),
    and the reply's rcode. None for every other answer, which `answer` gives: the name's own
    record among an SRV's, addresses shared by instances (their weights add up), SRV without
    a port, NODATA at the apex, and all _plain leaves to the walk."""
    if not name or not PLAIN_WAY:
        return None
    zone = snap.zone_of(name)
    if zone is None or zone.static or (forwarding and zone.name in REVERSE_ZONES):
        return None
    named = qtype == T_SRV
    held = snap.plain_records(name, zone, named)
    if held is None:
        return None
    values, labels = held
    if not values:
        rcode = _negative_rcode(snap, zone, name)
        return None if rcode is None else (zone.ttl, values, None, soa_rr(snap, zone, True), rcode)
    if qtype == T_A:
        count = len(values) // 6
        if count == 2:
            if values[:4] == values[6:10]:
                return None
        elif count > 2 and len({values[at:at + 4] for at in range(0, len(values), 6)}) != count:
            return None
        return zone.ttl, values, None, None, NOERROR
    if qtype == T_AAAA:             # at the apex the SOA's owner is the question's name: encode writes that
        return None if name == zone.name else (zone.ttl, values, None, soa_rr(snap, zone, True), NOERROR)
    if len(values) != 6 * len(labels) or not any(values[at + 4] or values[at + 5] for at in range(0, len(values), 6)):
        return None
    return zone.ttl, values, labels, None, NOERROR


def _negative_rcode(snap: Snapshot, zone: ZoneConfig, name: str) -> int | None:
    """The rcode of a name without records of its own, for _plain and `packed`: NODATA when
    it has names below it, NXDOMAIN otherwise; None for the names the walk answers
    (negative_answer): RFC 2782 names, the apex, and the default NS name or a name above it."""
    if name[:1] == "_" or name == zone.name:
        return None
    if zone.ns_addresses:
        ns_name = default_ns_name(zone)
        if name == ns_name or ns_name.endswith("." + name):
            return None
    return NOERROR if snap.exists(name, zone) else NXDOMAIN


def _plain(snap: Snapshot, zone: ZoneConfig, name: str, qtype: int) -> Answer | None:
    """A, AAAA or SRV at a name whose records are all plain IPv4 ones (Snapshot.plain_records)
    in a zone without a zone file: the answer _Lookup's walk gives, reached without making a
    Record or walking a rule that cannot apply (no alias, TXT, weight, TTL or target of its
    own can be held). None for any other name, which then takes the walk. The same rules:
    addresses once each in record order, weights added up for a shared address
    (address_rrset); SRV from every record with a port, its name as target and its address
    as glue (_Lookup.srv); NODATA for a name that exists, NXDOMAIN otherwise, with the SOA."""
    if not name:
        return None
    held = snap.plain_records(name, zone, qtype == T_SRV)
    if held is None:
        return None
    values = held[0]
    if not values:
        rcode = _negative_rcode(snap, zone, name)
        return None if rcode is None else _answered(rcode, (), name, (soa_rr(snap, zone, True),))
    ttl = zone.ttl
    if qtype == T_A:
        if len(values) == 6:
            return _answered(NOERROR, ((name, T_A, ttl, _ntoa(values[:4])),), name)
        if len(values) == 12 and values[:4] != values[6:10]:     # the usual service: two instances
            return _answered(NOERROR, ((name, T_A, ttl, _ntoa(values[:4])), (name, T_A, ttl, _ntoa(values[6:10]))),
                             name)
        hosts = [_ntoa(values[at:at + 4]) for at in range(0, len(values), 6)]
        if len(set(hosts)) == len(hosts):
            # each address once and every weight alike: the even orders (answer_orders), so
            # no weights to keep
            return _answered(NOERROR, tuple([(name, T_A, ttl, host) for host in hosts]), name)
        distinct: list[str] = []
        shares: list[tuple[int, int]] = []
        for host in hosts:
            if host in distinct:                 # instances that share an address add their weights
                i = distinct.index(host)
                shares[i] = (shares[i][0] + _PLAIN_SHARE[0], _PLAIN_SHARE[1])
            else:
                distinct.append(host)
                shares.append(_PLAIN_SHARE)
        ans = _answered(NOERROR, tuple([(name, T_A, ttl, host) for host in distinct]), name)
        if len(distinct) > 1:
            ans.weights = {(name, T_A): tuple(shares)}
        return ans
    if qtype == T_SRV:
        labels = held[1]
        srv = []
        glue = []
        at = 0
        if len(values) > 6 * len(labels):      # the name's own record comes first
            labels.insert(0, None)
        for label in labels:
            port = values[at + 4] << 8 | values[at + 5]
            if port:                             # a record without a port is no service
                target = name if label is None else label + "." + name
                srv.append((name, T_SRV, ttl, (_PLAIN_PRIORITY, _PLAIN_WEIGHT, port, target)))
                glue.append((target, T_A, ttl, _ntoa(values[at:at + 4])))
            at += 6
        if srv:
            ans = _answered(NOERROR, tuple(srv), name)
            ans.additional = tuple(glue)
            return ans
    # AAAA of IPv4 records, SRV of records without a port: NODATA
    return _answered(NOERROR, (), name, (soa_rr(snap, zone, True),))


def rrset_rules(rrs: list) -> list:
    """RFC 2181 section 5 on a section: an RRset never holds the same record twice, and its
    records share one TTL, the smallest of them."""
    if len(rrs) < 2:
        return rrs
    lowest: dict[tuple, int] = {}
    seen = set()
    out = []
    uneven = False
    for rr in rrs:
        ident = (rr[0], rr[1])
        ttl = lowest.get(ident)
        if ttl is None:
            lowest[ident] = rr[2]
        elif rr[2] != ttl:
            uneven = True
            if rr[2] < ttl:
                lowest[ident] = rr[2]
        record = (rr[0], rr[1], rr[3])
        if record not in seen:
            seen.add(record)
            out.append(rr)
    if uneven:
        out = [rr if rr[2] == lowest[(rr[0], rr[1])] else (rr[0], rr[1], lowest[(rr[0], rr[1])], rr[3])
               for rr in out]
    return out


def _is_reverse(name: str) -> bool:
    return any(is_subdomain(name, rz) for rz in REVERSE_ZONES)


def _absent_name(snap: Snapshot, qname: bytes, qclass: int) -> Answer:
    """A name with a label no stored name can hold: like any absent name, NXDOMAIN in our
    zones and REFUSED outside them (the zone is found label by label)."""
    zone_name = zone_of_labels(read_wire_name(qname, 0)[0], [z.name for z in snap.zones])
    if zone_name is None or qclass != C_IN:
        return refused(in_zone=zone_name is not None)
    zone = next(z for z in snap.zones if z.name == zone_name)
    return Answer(NXDOMAIN, authority=[soa_rr(snap, zone, negative=True)])


def _reverse_outside_zones(snap: Snapshot, name: str) -> Answer | None:
    """A PTR question for a reverse name outside every zone we serve: answered from the
    snapshot when it holds the address (or a record at that reverse key), else None (the
    caller refuses or forwards it: the name is someone else's, never our NXDOMAIN)."""
    defaults = ZoneConfig("arpa", ttl=snap.zones[0].ttl if snap.zones else ZoneConfig.ttl)
    lookup = _Lookup(snap, defaults)
    rrs = lookup.ptr(name, lookup.records(name), defaults)
    if not rrs:
        return None
    return Answer(answer=rrset_rules(rrs), depends=lookup.consulted or (), name=name)


def ttl_of(rec: Record, zone: ZoneConfig) -> int:
    """A record's TTL: its own `ttl`, else the zone default (0 only when set to 0)."""
    return zone.ttl if rec.ttl is None else rec.ttl


def soa_serial(snap: Snapshot) -> int:
    """The SOA serial: the etcd revision mod 2^32 (serial.py; the reply cache patches it into
    cached SOAs)."""
    return serial_of(snap.revision)


_SOAS: dict = {}      # (zone's id, revision, negative) -> (zone, record): made once per revision
_LAST_NEGATIVE = [None, None, None]   # the last negative one: zone, revision, record


def soa_rr(snap: Snapshot, zone: ZoneConfig, negative: bool) -> tuple:
    """The zone's SOA: at the apex with its own TTL, in a negative answer with the negative
    TTL (RFC 2308 3: the lower of the SOA's TTL and its minimum)."""
    if negative and _LAST_NEGATIVE[0] is zone and _LAST_NEGATIVE[1] == snap.revision:
        return _LAST_NEGATIVE[2]
    made = _SOAS.get((id(zone), snap.revision, negative))
    if made is not None and made[0] is zone:
        if negative:
            _LAST_NEGATIVE[:] = [zone, snap.revision, made[1]]
        return made[1]
    if len(_SOAS) > 64:
        _SOAS.clear()
    rr = _soa_rr(snap, zone, negative)
    _SOAS[(id(zone), snap.revision, negative)] = (zone, rr)
    if negative:
        _LAST_NEGATIVE[:] = [zone, snap.revision, rr]
    return rr


def _soa_rr(snap: Snapshot, zone: ZoneConfig, negative: bool) -> tuple:
    if negative:
        ttl = zone.neg_ttl
    else:
        ttl = zone.soa_ttl if zone.soa_ttl is not None else zone.ttl
    return (zone.name, T_SOA, ttl, (zone.soa_mname, zone.soa_rname, serial_of(snap.revision), zone.refresh,
                                    zone.retry, zone.expire, zone.neg_ttl))


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


# records.Record's layout: name, host, host_kind, port, then (key, priority, weight, text,
# ttl, mail, targetstrip, group) as a fifth item only when one of them is not its default.
# address_rrset reads the items directly, since its properties run Python code per field.
_EXTRA_AT = 4
_PLAIN = Record("", "x")
_PLAIN_SHARE = (_PLAIN.weight, _PLAIN.priority)
_PLAIN_PRIORITY, _PLAIN_WEIGHT = _PLAIN.priority, _PLAIN.weight
PLAIN_SRV = (_PLAIN_PRIORITY, _PLAIN_WEIGHT)     # an SRV record's priority and weight from a plain value


def address_rrset(recs, kind: str, zone: ZoneConfig) -> tuple[list[str], int | None, list[tuple[int, int]]]:
    """The distinct addresses of `kind` ("ipv4" or "ipv6") among `recs` in record order, the
    RRset's TTL (the lowest, RFC 2181 5.2), and each address's (weight, priority): instances
    that share an address add their weights, and the lowest priority counts."""
    hosts: list[str] = []
    shares: list[tuple[int, int]] = []
    # where each address is: the list itself for a few records (no dict to make and collect),
    # a dict for many (up to --max-records-per-name)
    index = hosts if len(recs) <= 16 else {}
    ttl = None
    for r in recs:
        if r[2] != kind:                         # r.host_kind
            continue
        if len(r) > _EXTRA_AT:                   # a record with a field off its default
            extra = r[_EXTRA_AT]
            rec_ttl = zone.ttl if extra[4] is None else extra[4]
            share = (extra[2], extra[1])         # (weight, priority)
        else:
            rec_ttl = zone.ttl
            share = _PLAIN_SHARE
        if ttl is None or rec_ttl < ttl:
            ttl = rec_ttl
        host = r[1]
        if host not in index:
            if index is not hosts:
                index[host] = len(hosts)
            hosts.append(host)
            shares.append(share)
        else:
            at = hosts.index(host) if index is hosts else index[host]
            weight, priority = shares[at]
            shares[at] = (weight + share[0], min(priority, share[1]))
    return hosts, ttl, shares


def _strip(name: str, count: int) -> str:
    if count <= 0:
        return name
    parts = name.split(".")
    return ".".join(parts[min(count, len(parts) - 1):])


def _own_addresses(owner: str, zone: ZoneConfig, qtype: int) -> list:
    """The A or AAAA records of the default NS name, from the zone's configured addresses."""
    family = ":" if qtype == T_AAAA else "."
    return [(owner, qtype, zone.ttl, addr) for addr in zone.ns_addresses if family in addr]


def from_dnslib(rr, owner: str | None = None) -> tuple:
    """A record parsed by dnslib (a zone file's, or an upstream answer's) in the light form,
    under `owner` (the name as asked) or its own owner in lower case."""
    rtype = rr.rtype
    rdata = rr.rdata
    if owner is None:
        owner = lower_name(rr.rname)
    if rtype == T_A or rtype == T_AAAA:
        data = str(rdata)
    elif rtype in _NAME_TYPES:
        data = lower_name(rdata.label)
    elif rtype == T_MX:
        data = (rdata.preference, lower_name(rdata.label))
    elif rtype == T_SRV:
        data = (rdata.priority, rdata.weight, rdata.port, lower_name(rdata.target))
    elif rtype == T_TXT:
        data = tuple(bytes(part) for part in rdata.data)
    elif rtype == T_SOA:
        data = (lower_name(rdata.mname), lower_name(rdata.rname), *rdata.times)
    else:
        data = _raw(rdata)
    return (owner, rtype, rr.ttl, data)


def _raw(rdata) -> Raw:
    from dnslib import DNSBuffer

    class Plain(DNSBuffer):
        """Names in the data written whole: the encoder places it anywhere in a reply."""
        def encode_name(self, name):
            self.encode_name_nocompress(name)

    buffer = Plain()
    rdata.pack(buffer)
    raw = Raw(buffer.data)
    raw.source = rdata
    return raw


def lower_name(label) -> str:
    """The lower-case presentation name of a dnslib label, without the trailing dot."""
    return b".".join(label.label).decode("latin-1").lower()


def _txt_chunks(text: str) -> tuple:
    """TXT character-strings are at most 255 octets each."""
    raw = text.encode("utf-8")
    return tuple(raw[i:i + 255] for i in range(0, len(raw), 255)) or (b"",)


class _Lookup(Answer):
    """One question's walk through the snapshot: the Answer it becomes, built as it goes, and
    what the walk needs on the way (one object, since every first answer makes one)."""

    # the names read: the first alone (most questions read one), then a set
    consulted: str | set | None = None
    negative: ZoneConfig | None = None   # zone whose SOA goes in authority
    distinct = False                     # the answer is one RRset that holds RFC 2181 5 already

    def __init__(self, snap: Snapshot, zone: ZoneConfig, name: str = ""):
        self.snap = snap
        self.zone = zone
        self.name = name
        self.answer: list = []
        # additional stays the class's empty tuple until a rule adds to it (glue): most
        # answers have none, and every first answer makes a _Lookup

    # -------------------------------------------------------------- helpers

    def records(self, name: str, zone: ZoneConfig | None = None) -> tuple[Record, ...]:
        self.consult(name)
        return self.snap.records_for(name, zone)

    def glue_list(self) -> list:
        """The additional section as a list to add to (made on the first addition)."""
        held = self.additional
        if type(held) is not list:
            held = self.additional = list(held)
        return held

    def consult(self, name: str) -> None:
        held = self.consulted
        if held is None:
            self.consulted = name
        elif type(held) is str:
            if held != name:
                self.consulted = {held, name}
        else:
            held.add(name)

    def static(self, name: str, qtype: int, zone: ZoneConfig, owner: str | None = None) -> list:
        """Zone-file records of `qtype` at `name` (of `zone`), in the light form."""
        found = zone.static.get(name) if zone.static else None
        if not found:
            return []
        return [from_dnslib(rr, owner or name) for rr in found if qtype == T_ANY or rr.rtype == qtype]

    def addresses(self, owner: str, recs, qtype: int, zone: ZoneConfig, answer: bool = False) -> list:
        """The A or AAAA RRset of `recs`; for the answer section, the instances' weights are
        kept so the encoder rotates it by weight, and an RRset that is the whole answer is
        marked as holding RFC 2181 5 already (address_rrset keeps each address once)."""
        hosts, ttl, shares = address_rrset(recs, "ipv4" if qtype == T_A else "ipv6", zone)
        if not hosts:
            return []
        if answer:
            if len(hosts) > 1:
                if self.weights is None:
                    self.weights = {}
                self.weights[(owner, qtype)] = tuple(shares)
            self.distinct = not self.answer and not self.additional
        if len(hosts) == 1:                  # the usual instance: no comprehension to run
            return [(owner, qtype, ttl, hosts[0])]
        return [(owner, qtype, ttl, host) for host in hosts]

    def glue(self, target: str) -> None:
        """A/AAAA of an in-zone target into the additional section."""
        zone = self.snap.zone_of(target)
        if zone is None:
            return
        recs = self.records(target, zone)
        own = [r for r in recs if r.name == target] or list(recs)
        for qtype in (T_A, T_AAAA):
            self.glue_list().extend(self.addresses(target, own, qtype, zone))
            self.glue_list().extend(self.static(target, qtype, zone))

    # -------------------------------------------------------------- the walk

    def run(self, name: str, qtype: int) -> int:
        """Fill the sections for `name`: its data of `qtype`, else its alias followed inside
        our zones (at most MAX_CHAIN hops, loops stopped), else a negative answer."""
        zone = self.zone
        seen = None                              # the names of a CNAME chain, once there is one
        for _hop in range(MAX_CHAIN + 1):
            if self.consulted is None:               # self.records, inline: every question passes here
                self.consulted = name
            else:
                self.consult(name)
            recs = self.snap.records_for(name, zone)
            if not recs and name[:1] == "_":
                base = self.service_base(name)
                if base is not None:
                    # an RFC 2782 name: SRV from the service's instances, NODATA for the rest
                    if qtype == T_SRV or qtype == T_ANY:
                        self.answer.extend(self.srv(name, self.records(base), zone))
                        return NOERROR
                    self.negative = zone
                    return NOERROR
            data = self.data(name, qtype, recs, zone)
            if data:
                if self.answer:
                    self.answer.extend(data)
                else:
                    self.answer = data
                return NOERROR
            if qtype == T_CNAME:
                return self.negative_answer(name, zone)
            # alias_of says yes only when every record is a bare name host: most hold addresses
            alias = alias_of(name, recs, zone) if recs and recs[0].host_kind == "name" else None
            if alias is not None:
                target = alias.host
                self.answer.append((name, T_CNAME, ttl_of(alias, zone), target))
            else:
                static_alias = self.static(name, T_CNAME, zone) if zone.static else None
                if not static_alias:
                    return self.negative_answer(name, zone)
                self.answer.append(static_alias[0])
                target = static_alias[0][3]
            next_zone = self.snap.zone_of(target)
            if next_zone is None:
                if qtype != T_ANY:
                    self.chase = (target, qtype)     # the caller may finish it upstream
                return NOERROR
            if seen is None:
                seen = {name}
            if target in seen:
                return NOERROR      # a loop: stop with what we have
            seen.add(target)
            name, zone = target, next_zone
        return NOERROR

    def negative_answer(self, name: str, zone: ZoneConfig) -> int:
        """No data of the type: NODATA when the name exists, else NXDOMAIN; the zone's SOA
        goes in the authority section either way (RFC 2308). A name exists with stored or
        static data at or below it, as the apex, as the default NS name or one of its parents,
        and as an RFC 2782 name of a service."""
        self.negative = zone
        if self.snap.exists(name, zone):
            return NOERROR
        if zone.ns_addresses:
            ns_name = default_ns_name(zone)
            if name == ns_name or ns_name.endswith("." + name):
                return NOERROR
        if name[:1] == "_":
            self.consult(name.partition(".")[2])
            if self.service_base(name) is not None or self.srv_service(name) is not None:
                return NOERROR
        return NXDOMAIN

    def service_base(self, name: str) -> str | None:
        """For `_service._proto.N`: N, when N has SRV records and nothing is stored at or
        below the asked name itself (a stored key wins)."""
        first, _, rest = name.partition(".")
        second, _, base = rest.partition(".")
        if not (first.startswith("_") and second.startswith("_") and base) or self.snap.exists(name):
            return None
        return base if self.has_srv(base) else None

    def srv_service(self, name: str) -> str | None:
        """For `_proto.N` (one underscore label): N, when N has SRV records."""
        first, _, base = name.partition(".")
        if not (first.startswith("_") and base):
            return None
        return base if self.has_srv(base) else None

    def has_srv(self, base: str) -> bool:
        return any(r.port > 0 and r.host for r in self.records(base))

    def data(self, name: str, qtype: int, recs, zone: ZoneConfig) -> list:
        """The RRs of `qtype` at `name` (no aliasing)."""
        if qtype == T_A or qtype == T_AAAA:
            static = self.static(name, qtype, zone) if zone.static else None
            if not recs:
                if zone.ns_addresses and name == default_ns_name(zone):
                    return _own_addresses(name, zone, qtype) + (static or [])
                return static or []
            rrs = self.addresses(name, recs, qtype, zone, True)
            if static:
                self.distinct = False         # a zone file's address may repeat one from etcd
                return rrs + static
            return rrs
        if qtype == T_ANY:
            return self.any(name, recs, zone)
        static = self.static(name, qtype, zone) if zone.static else []
        if qtype == T_SRV:
            return self.srv(name, recs, zone) + static
        if qtype == T_TXT:
            return [(name, T_TXT, ttl_of(r, zone), _txt_chunks(r.text)) for r in recs if r.text] + static
        if qtype == T_CNAME:
            alias = alias_of(name, recs, zone)
            if alias is not None:
                return [(name, T_CNAME, ttl_of(alias, zone), alias.host)]
            return static
        if qtype == T_MX:
            return self.mx(name, recs, zone) + static
        if qtype == T_PTR:
            return self.ptr(name, recs, zone) + static
        if qtype == T_SOA:
            return [soa_rr(self.snap, zone, negative=False)] if name == zone.name else []
        if qtype == T_NS:
            return self.ns(name, zone) + static if name == zone.name else static
        return static

    def address_target(self, r: Record, target: str, zone: ZoneConfig) -> str:
        """`target` as the SRV/MX/NS target of an address record, its address as glue."""
        self.glue_list().append((target, T_A if r.host_kind == "ipv4" else T_AAAA, ttl_of(r, zone), r.host))
        return target

    def srv(self, owner: str, recs, zone: ZoneConfig) -> list:
        """One SRV per record with a port: priority, weight, port, and as target the
        instance's name (its address as glue; `targetstrip` labels removed) or its host name
        (RFC 2782)."""
        out = []
        named = []
        glue = self.glue_list()
        for r in recs:
            if r.port <= 0 or not r.host:
                continue
            ttl = zone.ttl if r.ttl is None else r.ttl        # ttl_of, inline: once per instance
            kind = r.host_kind
            if kind == "name":
                target = r.host
                named.append(target)
            else:
                target = _strip(r.name, r.targetstrip) if r.targetstrip else r.name
                glue.append((target, T_A if kind == "ipv4" else T_AAAA, ttl, r.host))
            out.append((owner, T_SRV, ttl, (r.priority, r.weight, r.port, target)))
        for target in named:
            self.glue(target)
        if out and not named and not self.answer and len(glue) == len(out):
            # only instances' own names as targets, and their addresses as the only glue: no
            # record can repeat (RFC 2181 5 holds already)
            self.distinct = not any(r.targetstrip for r in recs)
        return out

    def mx(self, owner: str, recs, zone: ZoneConfig) -> list:
        """One MX per record with `mail`, `priority` as preference."""
        out = []
        for r in recs:
            if not r.mail or not r.host:
                continue
            if r.host_kind == "name":
                exchange = r.host
                self.glue(exchange)
            else:
                exchange = self.address_target(r, _strip(r.name, r.targetstrip), zone)
            out.append((owner, T_MX, ttl_of(r, zone), (r.priority, exchange)))
        return out

    def ptr(self, name: str, recs, zone: ZoneConfig) -> list:
        """PTR under in-addr.arpa / ip6.arpa: a record stored at this very reverse name, else
        every name whose address reverses to it."""
        # PTR lives under in-addr.arpa / ip6.arpa only; elsewhere a name host is an alias
        if not name.endswith(_REVERSE_SUFFIXES) and name not in REVERSE_ZONES:
            return []
        # only a record stored at this very reverse name: one a label below belongs to a
        # longer reverse name (`5.0.77.10...` is not an instance of `0.77.10...`)
        out = [(name, T_PTR, ttl_of(r, zone), r.host) for r in recs if r.host_kind == "name" and r.name == name]
        self.consult(name)
        if out:
            return out             # a record stored at the reverse key is the operator's word
        for target in self.snap.ptr_names(name):
            forward = self.snap.zone_of(target)
            ttl = zone.ttl
            rec = self.snap.record_at(target)
            if rec is not None and forward is not None:
                ttl = ttl_of(rec, forward)
            out.append((name, T_PTR, ttl, target))
        return out

    def ns(self, name: str, zone: ZoneConfig) -> list:
        """The apex NS: `ns.dns.<zone>` records and zone-file NS, else the SOA's mname, with
        the server's own addresses as glue for the default name, so a zone is never lame."""
        ns_name = "ns.dns." + zone.name
        out = []
        for r in self.records(ns_name):
            if r.host_kind == "name":
                target = r.host
                self.glue(target)
            elif r.is_address:
                target = self.address_target(r, r.name, zone)
            else:
                continue
            out.append((name, T_NS, ttl_of(r, zone), target))
        static = self.static(name, T_NS, zone)
        for rr in static:
            self.glue(rr[3])
        if not out and not static:
            out.append((name, T_NS, zone.ttl, zone.soa_mname))
            if zone.soa_mname == default_ns_name(zone):
                for qtype in (T_A, T_AAAA):
                    self.glue_list().extend(_own_addresses(zone.soa_mname, zone, qtype))
        return out

    def any(self, name: str, recs, zone: ZoneConfig) -> list:
        """RFC 8482: one RRset is enough, preferring addresses."""
        for qtype in (T_A, T_AAAA, T_TXT, T_SRV, T_MX, T_PTR):
            rrs = self.data(name, qtype, recs, zone)
            if rrs:
                return rrs
        if name == zone.name:
            return [soa_rr(self.snap, zone, negative=False)]
        alias = alias_of(name, recs, zone)
        if alias is not None:
            return [(name, T_CNAME, ttl_of(alias, zone), alias.host)]
        static = self.static(name, T_ANY, zone)
        return static[:1]
