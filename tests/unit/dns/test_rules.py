"""Table-driven tests of the response rules (DESIGN.md sections 2, 3 and 8).

Every case is (records in etcd as key -> JSON, query) -> expected reply, run through
`Responder.handle` (the rules, then the one encoder: the bytes a client gets) over UDP with
EDNS, over TCP, and first, cached and repeated. Replies are parsed with dnspython, a DNS
library independent of dnslib and of our encoder.
"""
from __future__ import annotations

import json
import socket
import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from dnsdisco.dns import rules as resolver, zonefile
from dnsdisco.dns.constants import UDP_PAYLOAD
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.responder import Responder
from tests.support.rule_cases import CASES, NXDOMAIN, REFUSED, REV, hello, soa

PREFIX = "/skydns"
CLIENT = ("127.0.0.1", 5353)


def make_snapshot(records: dict, zones=("svc.local",), revision: int = REV, zone_text: str | None = None):
    zcs = []
    for z in zones:
        zc = ZoneConfig(z) if isinstance(z, str) else z
        if zone_text is not None and zc.name == "svc.local":
            zc = zonefile.parse_zone_text(zc, zone_text)
        zcs.append(zc)
    items = [(k, v if isinstance(v, bytes) else json.dumps(v).encode()) for k, v in records.items()]
    return Snapshot.build(PREFIX, zcs, revision, items)


def make_query(name, qtype="A", *, edns=None, payload=1232, rdclass="IN", want_dnssec=False, qid=4242):
    if edns is None:
        q = dns.message.make_query(name, qtype, rdclass=rdclass, use_edns=False)
    else:
        q = dns.message.make_query(name, qtype, rdclass=rdclass, use_edns=edns, payload=payload,
                                   want_dnssec=want_dnssec)
    q.id = qid
    return q


def via_resolver(snap, wire_query: bytes) -> dns.message.Message:
    """The reply to a first query over TCP (no size limit), from a fresh responder."""
    return via_wire(snap, wire_query, "tcp")


def via_wire(snap, wire_query: bytes, transport="tcp") -> dns.message.Message:
    out = Responder(snap).handle(wire_query, transport, CLIENT)
    assert out is not None
    return dns.message.from_wire(bytes(out))


def lines(section) -> list[str]:
    """A section as sorted presentation lines, owner names in lower case."""
    out = []
    for rrset in section:
        for line in rrset.to_text().splitlines():
            owner, rest = line.split(" ", 1)
            out.append(owner.lower() + " " + rest)
    return sorted(out)


def _case_params():
    for case in CASES:
        cid, records, (qname, qtype), rcode, ans, auth, add, *rest = case
        zones = rest[0] if rest else ("svc.local",)
        yield pytest.param(records, qname, qtype, rcode, ans, auth, add, zones, id=cid)


@pytest.mark.parametrize("records,qname,qtype,rcode,ans,auth,add,zones", list(_case_params()))
@pytest.mark.parametrize("path", ["wire-udp-edns", "wire-tcp"])
def test_rules(path, records, qname, qtype, rcode, ans, auth, add, zones):
    snap = make_snapshot(records, zones)
    query = make_query(qname, qtype, edns=0 if path == "wire-udp-edns" else None)
    wire_q = query.to_wire()
    msg = via_wire(snap, wire_q, "udp" if path == "wire-udp-edns" else "tcp")
    assert dns.rcode.to_text(msg.rcode()) == rcode
    assert msg.id == query.id
    assert msg.question == query.question
    assert lines(msg.answer) == sorted(ans)
    assert lines(msg.authority) == sorted(auth)
    assert lines(msg.additional) == sorted(add)
    assert not msg.flags & dns.flags.RA
    assert not msg.flags & dns.flags.TC
    assert bool(msg.flags & dns.flags.AA) == (rcode != REFUSED)
    assert bool(msg.flags & dns.flags.RD) == bool(query.flags & dns.flags.RD)
    if path == "wire-udp-edns":
        assert msg.edns == 0 and msg.payload == UDP_PAYLOAD
    else:
        assert msg.edns == -1


# ----------------------------------------------------------------- rules outside the table

def _answer(snap, q: dns.message.Message, forwarding: bool = False):
    """The rules' Answer to the query's question (the responder's input to the encoder)."""
    question = q.question[0]
    return resolver.answer(snap, question.name.canonicalize().to_wire(), question.rdtype, question.rdclass,
                           forwarding=forwarding)


@pytest.mark.parametrize("spelling", ["HELLO.SVC.LOCAL", "Hello.Svc.Local.", "hElLo.svc.LOCAL"])
def test_letter_case_echoed_and_matched(spelling):
    snap = make_snapshot(hello(1))
    for msg in (via_resolver(snap, make_query(spelling).to_wire()), via_wire(snap, make_query(spelling).to_wire(), "udp")):
        assert msg.question[0].name.to_text() == spelling.rstrip(".") + "."
        assert msg.answer[0].name.to_text() == spelling.rstrip(".") + "."
        assert [r.to_text() for r in msg.answer[0]] == ["10.0.0.1"]


def test_bad_values_do_not_hide_others():
    records = {**hello(2), "/skydns/local/svc/hello/bad1": b"{oops", "/skydns/local/svc/hello/bad2": {"host": "10.0.0.300"},
               "/skydns/local/svc/hello/bad3": {"host": "10.0.0.3", "port": 70000},
               "/skydns/local/svc/hello/x.y": {"host": "10.0.0.4"}}
    snap = make_snapshot(records)
    assert sorted(k for k, _ in snap.rejected) == sorted(k for k in records if "bad" in k or "x.y" in k)
    for key, message in snap.rejected:
        assert key in message
    msg = via_wire(snap, make_query("hello.svc.local").to_wire())
    assert lines(msg.answer) == ["hello.svc.local. 30 IN A 10.0.0.1", "hello.svc.local. 30 IN A 10.0.0.2"]


def test_soa_serial_follows_revision():
    for revision in (1, 99, 123456):
        snap = make_snapshot(hello(1), revision=revision)
        msg = via_resolver(snap, make_query("svc.local", "SOA").to_wire())
        assert msg.answer[0][0].serial == revision
        msg = via_resolver(snap, make_query("nope.svc.local").to_wire())
        assert msg.authority[0][0].serial == revision and msg.authority[0][0].minimum == 5


def test_long_cname_chain_ends():
    records = {f"/skydns/local/svc/c{i}": {"host": f"c{i + 1}.svc.local"} for i in range(30)}
    msg = via_resolver(make_snapshot(records), make_query("c0.svc.local").to_wire())
    assert msg.rcode() == dns.rcode.NOERROR
    assert 1 <= len(msg.answer) <= resolver.MAX_CHAIN + 1
    assert all(rrset.rdtype == dns.rdatatype.CNAME for rrset in msg.answer)


@pytest.mark.parametrize("mutate,rcode", [
    (lambda q: q.set_opcode(dns.opcode.NOTIFY), dns.rcode.NOTIMP),
    (lambda q: (q.set_opcode(dns.opcode.UPDATE), q.find_rrset(q.question, q.question[0].name, dns.rdataclass.IN,
                                                              dns.rdatatype.SOA, create=True), q.question.pop(0)),
     dns.rcode.NOTIMP),
    (lambda q: q.question.clear(), dns.rcode.FORMERR),
    (lambda q: q.use_edns(1), dns.rcode.BADVERS),
])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_error_rcodes_from_the_message(mutate, rcode, transport):
    q = make_query("hello.svc.local")
    mutate(q)
    responder = Responder(make_snapshot(hello(1)))
    for _ in range(2):                    # never cached: the second is answered the same way
        msg = dns.message.from_wire(responder.handle(q.to_wire(), transport, CLIENT))
        assert msg.rcode() == rcode and msg.id == q.id and not msg.answer
    assert not len(responder.cache)


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
def test_transfers_refused_by_the_rules(qtype):
    """A transfer request net.transfer did not take (no --transfer-allow) is refused."""
    ans = _answer(make_snapshot(hello(1)), make_query("svc.local", qtype))
    assert ans.rcode == dns.rcode.REFUSED and not ans.cacheable


def test_in_zone_flag_and_depends():
    snap = make_snapshot({"/skydns/local/svc/web": {"host": "hello.svc.local"}, **hello(1)})
    outside = _answer(snap, make_query("www.example.com"))
    assert outside.in_zone is False and outside.rcode == dns.rcode.REFUSED
    chaos = _answer(snap, make_query("hello.svc.local", "TXT", rdclass="CH"))
    assert chaos.rcode == dns.rcode.REFUSED
    web = _answer(snap, make_query("web.svc.local"))
    assert {"web.svc.local", "hello.svc.local"} <= web.depends


def test_ra_set_only_when_forwarding():
    snap = make_snapshot(hello(1))
    forwarding = Responder(snap, forwarder=object())     # in-zone names never reach the forwarder
    assert forwarding.handle(make_query("hello.svc.local").to_wire(), "udp", CLIENT)[3] & 0x80
    assert not Responder(snap).handle(make_query("hello.svc.local").to_wire(), "udp", CLIENT)[3] & 0x80


def test_ttl_never_zero_unless_set():
    records = {f"/skydns/local/svc/s/i{i}": {"host": f"10.0.0.{i}", "port": 80, "text": "t", "mail": True,
                                             **({"ttl": i * 10} if i % 2 else {})} for i in range(1, 5)}
    snap = make_snapshot(records)
    for qtype in ("A", "SRV", "TXT", "MX"):
        msg = via_resolver(snap, make_query("s.svc.local", qtype).to_wire())
        assert msg.answer and all(rrset.ttl > 0 for rrset in msg.answer + msg.additional)


def test_ptr_only_in_reverse_zones_and_alias_elsewhere():
    """A PTR question in a forward zone follows the alias instead of inventing a PTR."""
    snap = make_snapshot({"/skydns/local/svc/web": {"host": "hello.svc.local"}, **hello(1)},
                         zones=("svc.local", "in-addr.arpa"))
    for reply in (via_resolver(snap, make_query("web.svc.local", "PTR").to_wire()),
                  via_wire(snap, make_query("web.svc.local", "PTR").to_wire())):
        assert lines(reply.answer) == ["web.svc.local. 30 IN CNAME hello.svc.local."]
    for reply in (via_resolver(snap, make_query("1.0.0.10.in-addr.arpa", "PTR").to_wire()),
                  via_wire(snap, make_query("1.0.0.10.in-addr.arpa", "PTR").to_wire())):
        assert lines(reply.answer) == ["1.0.0.10.in-addr.arpa. 30 IN PTR i1.hello.svc.local."]


def test_unknown_reverse_names_are_left_to_forwarding():
    """With forwarding on, a reverse name we do not hold is not answered NXDOMAIN by us."""
    snap = make_snapshot(hello(1), zones=("svc.local", "in-addr.arpa"))
    q = make_query("8.8.8.8.in-addr.arpa", "PTR")
    forwarded = _answer(snap, q, forwarding=True)
    assert not forwarded.in_zone and not forwarded.cacheable
    alone = _answer(snap, q, forwarding=False)
    assert alone.in_zone and alone.rcode == dns.rcode.NXDOMAIN
    held = _answer(snap, make_query("1.0.0.10.in-addr.arpa", "PTR"), forwarding=True)
    assert held.in_zone and len(held.answer) == 1


# ----------------------------------------------------------------- labels are octets (RFC 2181 11)

@pytest.mark.parametrize("qtype", ["A", "AAAA", "SRV", "TXT", "MX", "PTR", "NS", "SOA", "CNAME", "ANY"])
@pytest.mark.parametrize("edns", [None, 0])
@pytest.mark.parametrize("labels,rcode", [
    ([b"caf\xe9", b"svc", b"local"], NXDOMAIN),                 # an octet past ASCII, in our zone
    ([b"i1", b"\xff\x80", b"svc", b"local"], NXDOMAIN),
    ([b"caf\xe9", b"example", b"com"], REFUSED),                # outside every zone
    ([b"hello", b"svc\xe9", b"local"], REFUSED),
    ([b"hello.svc", b"local"], REFUSED),                        # an escaped dot: not svc.local
    ([b"i1.hello", b"svc", b"local"], NXDOMAIN),
])
def test_any_octet_in_a_label_is_an_absent_name(labels, rcode, qtype, edns):
    """A name with octets no stored name holds gets what any absent name gets, for every type,
    with the OPT echoed when the query had one (never FORMERR)."""
    import dns.name
    snap = make_snapshot(hello(1))
    q = make_query(dns.name.Name(labels + [b""]), qtype, edns=edns)
    for transport in ("udp", "tcp"):
        msg = via_wire(snap, q.to_wire(), transport)
        assert dns.rcode.to_text(msg.rcode()) == rcode
        assert msg.question == q.question and not msg.answer
        assert msg.edns == (-1 if edns is None else 0)
        if rcode == NXDOMAIN:
            assert lines(msg.authority) == [soa()] and msg.flags & dns.flags.AA


# ----------------------------------------------------------------- messages (RFC 6891 6.1, RFC 6840 5.9)

def _opt_with_options(q: dns.message.Message, rdata: bytes) -> bytes:
    """The query's wire form with its OPT record's data replaced by `rdata` (maybe malformed)."""
    wire = q.to_wire()
    assert wire.endswith(b"\x00\x00")                       # an OPT with no options is last
    return wire[:-2] + struct.pack("!H", len(rdata)) + rdata


@pytest.mark.parametrize("rdata", [
    b"\x00\x0a\x00\x08abc",            # option length past the end of the OPT data
    b"\x00\x0a\x00",                   # a short option header
    b"\x00\x0a\x00\x02ab\x00",         # a good option, then a cut one
])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_malformed_edns_options_get_formerr_with_opt(rdata, transport):
    q = make_query("hello.svc.local", edns=0)
    msg = via_wire(make_snapshot(hello(1)), _opt_with_options(q, rdata), transport)
    assert msg.rcode() == dns.rcode.FORMERR and msg.id == q.id
    assert msg.edns == 0 and not msg.answer


def test_opt_outside_the_additional_section_gets_formerr_with_opt():
    q = make_query("hello.svc.local", edns=0)
    wire = bytearray(q.to_wire())
    # move the OPT from the additional section to the authority section: same bytes, other counts
    struct.pack_into("!HH", wire, 8, 1, 0)
    msg = via_wire(make_snapshot(hello(1)), bytes(wire))
    assert msg.rcode() == dns.rcode.FORMERR and msg.edns == 0


@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.STATUS, dns.opcode.UPDATE, 3])
def test_cd_is_not_copied_into_replies_to_other_opcodes(opcode):
    q = make_query("svc.local", "SOA", edns=0)
    q.flags |= dns.flags.CD
    q.set_opcode(opcode)
    msg = via_wire(make_snapshot(hello(1)), q.to_wire(), "udp")
    assert msg.rcode() == dns.rcode.NOTIMP and not msg.flags & dns.flags.CD
    plain = make_query("hello.svc.local", edns=0)
    plain.flags |= dns.flags.CD
    assert via_wire(make_snapshot(hello(1)), plain.to_wire(), "udp").flags & dns.flags.CD


@pytest.mark.parametrize("records,qname,qtype,count", [
    ({"/skydns/local/svc/t/a": {"text": "same"}, "/skydns/local/svc/t/b": {"text": "same"}}, "t.svc.local", "TXT", 1),
    ({"/skydns/local/svc/s/a": {"host": "db.example.com", "port": 5432},
      "/skydns/local/svc/s/b": {"host": "db.example.com", "port": 5432}}, "s.svc.local", "SRV", 1),
    ({"/skydns/local/svc/m/a": {"host": "mx.example.com", "mail": True},
      "/skydns/local/svc/m/b": {"host": "mx.example.com", "mail": True}}, "m.svc.local", "MX", 1),
    ({"/skydns/local/svc/a/x": {"host": "10.0.0.1"}, "/skydns/local/svc/a/y": {"host": "10.0.0.1"}}, "a.svc.local", "A", 1),
    ({"/skydns/arpa/in-addr/10/0/0/1": {"host": "web.example.com"},
      "/skydns/arpa/in-addr/10/0/0/1/x": {"host": "web.example.com"}}, "1.0.0.10.in-addr.arpa", "PTR", 1),
])
@pytest.mark.parametrize("path", ["udp", "tcp"])
def test_rrsets_hold_no_duplicates_on_the_wire(records, qname, qtype, count, path):
    """Counted in the raw message: dnspython merges duplicate records when it parses, so the
    table above cannot see them (RFC 2181 5)."""
    snap = make_snapshot(records, zones=("svc.local", "in-addr.arpa"))
    wire_q = make_query(qname, qtype).to_wire()
    raw = Responder(snap).handle(wire_q, path, CLIENT)
    assert struct.unpack_from("!H", raw, 6)[0] == count


@pytest.mark.parametrize("records,qname,qtype,rcode,ans,auth,add,zones", list(_case_params()))
@pytest.mark.parametrize("transport,edns", [("udp", 0), ("udp", None), ("tcp", None)])
def test_every_rule_cached_and_first_answers_byte_identical(transport, edns, records, qname, qtype, rcode, ans, auth,
                                                            add, zones):
    """Every case of the table: the first answer, the cached one and the exact-repeat one are
    the same bytes but the id (or, for an RRset that rotates, the same records)."""
    snap = make_snapshot(records, zones)
    responder = Responder(snap)
    q = make_query(qname, qtype, edns=edns)
    replies = []
    for qid in (1, 2, 3):
        q.id = qid
        replies.append(responder.handle(q.to_wire(), transport, CLIENT))
    # rotation may reorder a multi-record RRset between answers: compare as records then
    first, cached, repeat = (dns.message.from_wire(bytes(r)) for r in replies)
    for msg in (cached, repeat):
        assert msg.rcode() == first.rcode() and msg.flags == first.flags
        for section in ("answer", "authority", "additional"):
            assert lines(getattr(msg, section)) == lines(getattr(first, section))
    if not any(len(rrset) > 1 for rrset in first.answer):
        assert replies[1][2:] == replies[0][2:] and replies[2][2:] == replies[0][2:]


# ----------------------------------------------------------------- weighted A/AAAA order

@pytest.mark.parametrize("count,shares,firsts", [
    (1, None, {0: 1}),
    (3, None, {0: 1, 1: 1, 2: 1}),                                   # even: each first in turn
    (3, [(100, 10)] * 3, {0: 1, 1: 1, 2: 1}),                        # equal weights: even
    (2, [(100, 10), (200, 10)], {0: 1, 1: 2}),                       # twice the weight, twice as often
    (3, [(1, 10), (2, 10), (5, 10)], {0: 1, 1: 2, 2: 5}),
    (2, [(100, 10), (0, 10)], {0: 1}),                               # weight 0: never first
    (3, [(100, 20), (100, 10), (300, 10)], {1: 1, 2: 3}),            # only the lowest priority leads
    (2, [(0, 10), (0, 20)], {0: 1, 1: 1}),                           # all weigh 0: even
    (2, [(100, 20), (100, 10)], {0: 1, 1: 1}),                       # equal weights: priorities ignored
])
def test_answer_orders_shares(count, shares, firsts):
    orders = resolver.answer_orders(count, shares)
    counted = {}
    for order in orders:
        assert sorted(order) == list(range(count))                   # every record, once
        counted[order[0]] = counted.get(order[0], 0) + 1
    total = sum(firsts.values())
    assert {i: n / len(orders) for i, n in counted.items()} == pytest.approx({i: n / total for i, n in firsts.items()})


def test_answer_orders_track_odd_weights_within_a_thirty_second():
    shares = [(37, 10), (61, 10), (2, 10)]
    orders = resolver.answer_orders(3, shares)
    assert len(orders) == resolver.WEIGHTED_TURNS
    for i, (weight, _p) in enumerate(shares):
        share = sum(order[0] == i for order in orders) / len(orders)
        assert abs(share - weight / 100) <= 1 / resolver.WEIGHTED_TURNS


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("qname", ["web.svc.local", "svc.local", "WEB.svc.local"])
def test_weighted_rotation_over_ten_thousand_answers(qname, transport):
    """Instances' weights shape which address comes first (below the apex and at it, 0x20
    repeats too), within 5% of the weights over 10,000 answers."""
    weights = {"10.0.0.1": 100, "10.0.0.2": 200, "10.0.0.3": 700}
    base = "/skydns/local/svc/web" if qname.lower() != "svc.local" else "/skydns/local/svc"
    records = {f"{base}/i{n}": {"host": host, "weight": w} for n, (host, w) in enumerate(weights.items())}
    responder = Responder(make_snapshot(records))
    firsts = {}
    q = make_query(qname, "A")
    wire_q = q.to_wire()
    at = len(wire_q) + 12                 # the first answer's address: after the question, a pointer and 10 octets
    assert dns.message.from_wire(responder.handle(wire_q, transport, CLIENT)).answer[0].rdtype == dns.rdatatype.A
    for qid in range(10_000):
        reply = responder.handle(struct.pack("!H", qid) + wire_q[2:], transport, CLIENT)
        first = socket.inet_ntoa(reply[at:at + 4])
        firsts[first] = firsts.get(first, 0) + 1
    for host, weight in weights.items():
        assert firsts[host] / 10_000 == pytest.approx(weight / 1000, rel=0.05)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_an_address_in_both_the_zone_file_and_etcd_is_answered_once(transport):
    """RFC 2181 5: the zone file's A and etcd's A for the same address make one record."""
    snap = make_snapshot(hello(2), zone_text="hello 60 IN A 10.0.0.1\nhello 60 IN A 10.0.0.9\n")
    raw = Responder(snap).handle(make_query("hello.svc.local").to_wire(), transport, CLIENT)
    assert struct.unpack_from("!H", raw, 6)[0] == 3
    assert lines(dns.message.from_wire(raw).answer) == [f"hello.svc.local. 30 IN A 10.0.0.{i}" for i in (1, 2, 9)]


# address_rrset reads records.Record's items by position (its extra fields are properties):
# the same records read through the properties must give the same RRset, for records with
# and without fields off their defaults.
def _rrset_by_properties(recs, kind, zone):
    hosts, shares, ttl = [], [], None
    for r in recs:
        if r.host_kind != kind:
            continue
        rec_ttl = zone.ttl if r.ttl is None else r.ttl
        ttl = rec_ttl if ttl is None else min(ttl, rec_ttl)
        if r.host in hosts:
            at = hosts.index(r.host)
            shares[at] = (shares[at][0] + r.weight, min(shares[at][1], r.priority))
        else:
            hosts.append(r.host)
            shares.append((r.weight, r.priority))
    return hosts, ttl, shares


@pytest.mark.parametrize("fields", [
    [{}],
    [{"ttl": 7}, {}],
    [{"weight": 3, "priority": 5}, {"weight": 9, "priority": 1, "host": "10.0.0.1"}],
    [{"text": "t", "key": "/k"}, {"ttl": 0, "mail": True, "weight": 0}],
    [{"host": "fd00::1", "host_kind": "ipv6", "ttl": 60}, {"targetstrip": 1}],
    [{"host": f"10.0.0.{i % 5}", "weight": i, "priority": i % 3, "ttl": 100 - i} for i in range(20)],
])
@pytest.mark.parametrize("kind", ["ipv4", "ipv6"])
def test_address_rrset_matches_record_fields(fields, kind):
    from dnsdisco.dns.records import Record
    zone = ZoneConfig("svc.local", ttl=30)
    recs = [Record(**{"name": f"i{i}.s.svc.local", "host": "10.0.0.1", "host_kind": "ipv4", "port": 80, **f})
            for i, f in enumerate(fields)]
    assert resolver.address_rrset(recs, kind, zone) == _rrset_by_properties(recs, kind, zone)
