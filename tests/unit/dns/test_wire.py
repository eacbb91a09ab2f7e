"""wire.Responder: header rules, EDNS and truncation, rotation, and the packed-reply cache
(issue 6 point 4). Replies are parsed with dnspython."""
from __future__ import annotations

import json
import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest

from dnsdisco.dns.cache import DEAD, is_spelling
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.responder import Responder
from dnsdisco.dns.wire import parse_fast, udp_limit

PREFIX = "/skydns"
CLIENT = ("127.0.0.1", 5353)
ZONES = (ZoneConfig("svc.local"), ZoneConfig("in-addr.arpa"))


def val(**fields) -> bytes:
    return json.dumps(fields).encode()


def instances(service: str, n: int, **extra):
    return [(f"/skydns/local/svc/{service}/i{i:03d}", val(host=f"10.{i // 250}.{i % 250}.{i % 7 + 1}", port=8080, **extra))
            for i in range(n)]


def build(items, revision=3, zones=ZONES):
    return Snapshot.build(PREFIX, zones, revision, items)


def query(name, qtype="A", *, qid=77, edns=None, payload=1232, options=None, rd=True, cd=False, do=False):
    if edns is None:
        q = dns.message.make_query(name, qtype, use_edns=False)
    else:
        q = dns.message.make_query(name, qtype, use_edns=edns, payload=payload, options=options or [],
                                   want_dnssec=do)
    q.id = qid
    if not rd:
        q.flags &= ~dns.flags.RD
    if cd:
        q.flags |= dns.flags.CD
    return q.to_wire()


def parse(reply) -> dns.message.Message:
    assert reply is not None
    return dns.message.from_wire(bytes(reply))


def header(qid, flags, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def qname_wire(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


class Recorder:
    """Stands in for the metrics sink: records (rcode, hit) per query."""

    def __init__(self):
        self.seen = []
        self.cells = {}
        self.latencies = []

    def query(self, qtype, rcode, transport, seconds, hit):
        """Counted in its cell, as ops.metrics.Metrics counts it, and remembered in `seen`."""
        self.seen.append((rcode, hit))
        cell = self.cell_for(qtype, rcode, transport)
        cell[0] += 1
        cell[1] += bool(hit)

    def cell_for(self, qtype, rcode, transport):
        """Repeats of identical query bytes, and the first answers that put them in the
        exact-query table, add to a cell instead of calling query()."""
        return self.cells.setdefault((qtype, rcode, transport), [0, 0])

    def latency(self, seconds):
        self.latencies.append(seconds)

    def dropped(self, why):
        self.seen.append(("dropped", why))

    def handler_error(self):
        self.seen.append(("error", None))


@pytest.fixture
def snap():
    return build(instances("hello", 3) + [("/skydns/local/svc/one", val(host="10.9.9.9", port=80))])


# ----------------------------------------------------------------- garbage and header rules

@pytest.mark.parametrize("data", [b"", b"\x00", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00"])
def test_shorter_than_a_header_is_dropped(snap, data):
    assert Responder(snap).handle(data, "udp", CLIENT) is None


def test_responses_get_no_reply(snap):
    data = bytearray(query("one.svc.local"))
    data[2] |= 0x80
    assert Responder(snap).handle(bytes(data), "udp", CLIENT) is None
    assert Responder(snap).handle(header(1, 0x8000, qd=0), "udp", CLIENT) is None


@pytest.mark.parametrize("data", [
    header(0xBEEF, 0x0100) + b"\x05hel",                               # question cut short
    header(0xBEEF, 0x0100) + qname_wire("one.svc.local") + b"\x00",    # type/class cut short
    header(0xBEEF, 0x0100) + b"\xc0\x0c\x00\x01\x00\x01",             # pointer loop in the question
    header(0xBEEF, 0x0100, ar=1) + qname_wire("one.svc.local") + b"\x00\x01\x00\x01" + b"\x00\x00",
])
def test_unparseable_question_gets_formerr(snap, data):
    msg = parse(Responder(snap).handle(data, "udp", CLIENT))
    assert msg.id == 0xBEEF and msg.rcode() == dns.rcode.FORMERR
    assert msg.flags & dns.flags.QR and msg.flags & dns.flags.RD


def test_opt_with_owner_name_formerr(snap):
    data = bytearray(query("one.svc.local", edns=0))
    data[-11:-10] = b"\x03foo\x00"                      # OPT owner must be the root
    msg = parse(Responder(snap).handle(bytes(data), "udp", CLIENT))
    assert msg.rcode() == dns.rcode.FORMERR and msg.id == 77


@pytest.mark.parametrize("qd", [0, 2])
def test_qdcount_not_one_is_formerr(snap, qd):
    body = qname_wire("one.svc.local") + b"\x00\x01\x00\x01"
    data = header(0x1234, 0x0100, qd=qd) + body * qd
    msg = parse(Responder(snap).handle(data, "udp", CLIENT))
    assert msg.id == 0x1234 and msg.rcode() == dns.rcode.FORMERR and not msg.answer


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY])
def test_other_opcodes_notimp(snap, opcode):
    q = dns.message.make_query("one.svc.local", "A", use_edns=False)
    q.set_opcode(opcode)
    msg = parse(Responder(snap).handle(q.to_wire(), "udp", CLIENT))
    assert msg.rcode() == dns.rcode.NOTIMP and msg.opcode() == opcode and msg.id == q.id


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
def test_zone_transfers_refused_by_default(snap, qtype):
    """No --transfer-allow: nobody may transfer (transfer.py; tests/test_transfer.py has the rest)."""
    msg = parse(Responder(snap).handle(query("svc.local", qtype), "tcp", CLIENT))
    assert msg.rcode() == dns.rcode.REFUSED and not msg.answer


@pytest.mark.parametrize("rdclass", ["CH", "HS", "ANY"])
def test_class_not_in_refused(snap, rdclass):
    q = dns.message.make_query("one.svc.local", "A", rdclass=rdclass, use_edns=False)
    msg = parse(Responder(snap).handle(q.to_wire(), "udp", CLIENT))
    assert msg.rcode() == dns.rcode.REFUSED and not msg.answer


def test_refused_outside_zones_not_authoritative(snap):
    msg = parse(Responder(snap).handle(query("www.example.com"), "udp", CLIENT))
    assert msg.rcode() == dns.rcode.REFUSED and not msg.flags & dns.flags.AA and not msg.flags & dns.flags.RA


# ----------------------------------------------------------------- EDNS

def test_edns_opt_echoed_with_our_size(snap):
    msg = parse(Responder(snap).handle(query("one.svc.local", edns=0, payload=4096), "udp", CLIENT))
    assert msg.edns == 0 and msg.payload == 1232 and msg.rcode() == dns.rcode.NOERROR
    assert not msg.ednsflags & dns.flags.DO
    msg = parse(Responder(snap).handle(query("one.svc.local", edns=0, do=True), "udp", CLIENT))
    assert msg.ednsflags & dns.flags.DO


def test_no_edns_no_opt(snap):
    msg = parse(Responder(snap).handle(query("one.svc.local"), "udp", CLIENT))
    assert msg.edns == -1


def test_edns_version_above_zero_badvers(snap):
    msg = parse(Responder(snap).handle(query("one.svc.local", edns=1), "udp", CLIENT))
    assert msg.rcode() == dns.rcode.BADVERS and msg.edns == 0 and not msg.answer


def test_two_opt_records_formerr(snap):
    data = bytearray(query("one.svc.local", edns=0))
    opt = bytes(data[-11:])
    data[11] = 2
    msg = parse(Responder(snap).handle(bytes(data) + opt, "udp", CLIENT))
    assert msg.rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize("edns,size,limit", [(False, 0, 512), (True, 100, 512), (True, 512, 512), (True, 800, 800),
                                             (True, 1232, 1232), (True, 4096, 1232), (True, 65535, 1232)])
def test_udp_limit(edns, size, limit):
    assert udp_limit(edns, size) == limit


# ----------------------------------------------------------------- truncation

def _big(n=100):
    return build(instances("big", n))


@pytest.mark.parametrize("edns,payload,allowance", [(None, 0, 512), (0, 512, 512), (0, 700, 700), (0, 1232, 1232),
                                                     (0, 4096, 1232)])
@pytest.mark.parametrize("n", [20, 40, 100])
def test_udp_reply_within_allowance_whole_rrsets(edns, payload, allowance, n):
    snap = _big(n)
    full = parse(Responder(snap).handle(query("big.svc.local"), "tcp", CLIENT))
    assert len(full.answer[0]) == n and not full.flags & dns.flags.TC
    resp = Responder(snap)
    for _ in range(2):                                      # miss, then cache hit
        raw = resp.handle(query("big.svc.local", edns=edns, payload=payload), "udp", CLIENT)
        assert len(raw) <= allowance
        msg = parse(raw)
        if len(full.to_wire()) + (11 if edns is not None else 0) <= allowance:
            assert not msg.flags & dns.flags.TC and len(msg.answer[0]) == n
        else:
            assert msg.flags & dns.flags.TC
            assert msg.answer == []                          # one RRset: cut whole, never in part
        assert (msg.edns == 0) == (edns is not None)


def test_tc_keeps_whole_leading_rrsets():
    items = [("/skydns/local/svc/web", val(host="big.svc.local"))] + instances("big", 60)
    msg = parse(Responder(build(items)).handle(query("web.svc.local"), "udp", CLIENT))
    assert msg.flags & dns.flags.TC
    assert [dns.rdatatype.to_text(r.rdtype) for r in msg.answer] == ["CNAME"]
    full = parse(Responder(build(items)).handle(query("web.svc.local"), "tcp", CLIENT))
    assert not full.flags & dns.flags.TC and len(full.answer) == 2 and len(full.answer[1]) == 60


def test_glue_dropped_before_answer_without_tc():
    snap = _big(10)
    raw_tcp = Responder(snap).handle(query("big.svc.local", "SRV"), "tcp", CLIENT)
    tcp = parse(raw_tcp)
    assert len(tcp.answer[0]) == 10 and len(tcp.additional) == 10
    assert len(raw_tcp) > 512
    raw = Responder(snap).handle(query("big.svc.local", "SRV"), "udp", CLIENT)
    msg = parse(raw)
    assert len(raw) <= 512
    assert len(msg.answer[0]) == 10 and not msg.flags & dns.flags.TC and msg.additional == []


# ----------------------------------------------------------------- ids, flags, case, rotation

@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_id_rd_cd_copied_on_miss_and_hit(snap, transport):
    resp = Responder(snap)
    combos = [(True, False), (False, False), (True, True), (False, True)]
    for qid, (rd, cd) in enumerate(combos * 2 + combos[::-1], start=0xFFF0):
        msg = parse(resp.handle(query("one.svc.local", qid=qid, rd=rd, cd=cd), transport, CLIENT))
        assert msg.id == qid
        assert bool(msg.flags & dns.flags.RD) == rd and bool(msg.flags & dns.flags.CD) == cd
        assert msg.flags & dns.flags.AA and msg.flags & dns.flags.QR and not msg.flags & dns.flags.RA


@pytest.mark.parametrize("spelling", ["One.SVC.local", "ONE.SVC.LOCAL", "one.svc.local", "oNe.sVc.LoCaL"])
def test_question_echoed_as_sent(snap, spelling):
    resp = Responder(snap)
    resp.handle(query("one.svc.local"), "udp", CLIENT)            # warm the cache with another spelling
    for transport in ("udp", "tcp", "udp"):
        raw = resp.handle(query(spelling), transport, CLIENT)
        msg = parse(raw)
        assert msg.question[0].name.to_text() == spelling + "."
        assert qname_wire(spelling) in raw
        assert [r.to_text() for r in msg.answer[0]] == ["10.9.9.9"]


def test_rotation_each_address_first_in_turn(snap):
    resp = Responder(snap)
    firsts = []
    for i in range(6):
        msg = parse(resp.handle(query("hello.svc.local", qid=i), "udp", CLIENT))
        addrs = [r.to_text() for r in msg.answer[0]]
        assert sorted(addrs) == ["10.0.0.1", "10.0.1.2", "10.0.2.3"]
        firsts.append(addrs[0])
    assert sorted(firsts[:3]) == ["10.0.0.1", "10.0.1.2", "10.0.2.3"]
    assert firsts[3:] == firsts[:3]


# ----------------------------------------------------------------- the cache

CACHE_QUERIES = [("one.svc.local", "A"), ("ONE.svc.LOCAL", "A"), ("one.svc.local", "AAAA"),
                 ("nope.svc.local", "A"), ("hello.svc.local", "SRV"), ("svc.local", "SOA"), ("svc.local", "NS"),
                 ("www.example.com", "A"), ("i000.hello.svc.local", "TXT"), ("one.svc.local", "ANY")]


@pytest.mark.parametrize("edns", [None, 0])
@pytest.mark.parametrize("name,qtype", CACHE_QUERIES)
def test_cached_reply_byte_identical_to_uncached(snap, name, qtype, edns):
    single = build([("/skydns/local/svc/one", val(host="10.9.9.9", port=80))] + instances("hello", 1))
    resp = Responder(single)
    resp.handle(query(name.lower(), qtype, qid=1, edns=edns), "udp", CLIENT)     # miss: fills the cache
    hit = resp.handle(query(name, qtype, qid=2, edns=edns), "udp", CLIENT)
    fresh = Responder(single).handle(query(name, qtype, qid=2, edns=edns), "udp", CLIENT)
    assert bytes(hit) == bytes(fresh)


def test_cached_rotation_matches_fresh_rrsets(snap):
    resp = Responder(snap)
    for i in range(4):
        hit = parse(resp.handle(query("HELLO.svc.local", qid=i), "udp", CLIENT))
        fresh = parse(Responder(snap).handle(query("HELLO.svc.local", qid=i), "udp", CLIENT))
        assert hit.id == fresh.id and hit.question == fresh.question and hit.flags == fresh.flags
        assert hit.answer == fresh.answer          # dnspython compares RRsets as sets


def test_cookie_option_answered_and_a_cache_hit(snap):
    metrics = Recorder()
    resp = Responder(snap, metrics=metrics)
    cookie1 = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    cookie2 = dns.edns.GenericOption(dns.edns.COOKIE, b"\x02" * 8 + b"\x03" * 16)
    a = parse(resp.handle(query("one.svc.local", edns=0, options=[cookie1], qid=5), "udp", CLIENT))
    b = parse(resp.handle(query("one.svc.local", edns=0, options=[cookie2], qid=6), "udp", CLIENT))
    c = parse(resp.handle(query("one.svc.local", edns=0, qid=7), "udp", CLIENT))
    for msg, qid in ((a, 5), (b, 6), (c, 7)):
        assert msg.id == qid and msg.rcode() == dns.rcode.NOERROR and [r.to_text() for r in msg.answer[0]] == ["10.9.9.9"]
    assert [hit for _rcode, hit in metrics.seen] == [False, True, True]
    assert len(resp.cache) == 1


def test_cache_key_separates_type_edns_do_and_size(snap):
    metrics = Recorder()
    resp = Responder(snap, metrics=metrics)
    variants = [query("one.svc.local"), query("one.svc.local", "AAAA"), query("one.svc.local", edns=0),
                query("one.svc.local", edns=0, do=True), query("one.svc.local", edns=0, payload=800)]
    for data in variants:
        resp.handle(data, "udp", CLIENT)
    resp.handle(variants[0], "tcp", CLIENT)
    assert all(not hit for _rcode, hit in metrics.seen)
    assert len(resp.cache) == len(variants) + 1
    aaaa = parse(resp.handle(variants[1], "udp", CLIENT))
    assert aaaa.answer == [] and aaaa.rcode() == dns.rcode.NOERROR


# ----------------------------------------------------------------- updates are never hidden

UPDATES = [
    # (id, initial items, changes, query, expected rcode before, expected rcode after, text in the new answer)
    ("address-change", [("/skydns/local/svc/x", val(host="10.0.0.1"))], [("/skydns/local/svc/x", val(host="10.0.0.2"))],
     ("x.svc.local", "A"), "NOERROR", "NOERROR", "10.0.0.2"),
    ("new-instance", [("/skydns/local/svc/x/a", val(host="10.0.0.1"))], [("/skydns/local/svc/x/b", val(host="10.0.0.2"))],
     ("x.svc.local", "A"), "NOERROR", "NOERROR", "10.0.0.2"),
    ("delete", [("/skydns/local/svc/x", val(host="10.0.0.1"))], [("/skydns/local/svc/x", None)],
     ("x.svc.local", "A"), "NOERROR", "NXDOMAIN", None),
    ("negative-to-positive", [], [("/skydns/local/svc/x", val(host="10.0.0.1"))],
     ("x.svc.local", "A"), "NXDOMAIN", "NOERROR", "10.0.0.1"),
    ("nodata-to-positive", [("/skydns/local/svc/x", val(host="10.0.0.1"))], [("/skydns/local/svc/x/v6", val(host="fd00::1"))],
     ("x.svc.local", "AAAA"), "NOERROR", "NOERROR", "fd00::1"),
    ("cname-target-change", [("/skydns/local/svc/web", val(host="app.svc.local")), ("/skydns/local/svc/app", val(host="10.0.0.1"))],
     [("/skydns/local/svc/app", val(host="10.0.0.2"))], ("web.svc.local", "A"), "NOERROR", "NOERROR", "10.0.0.2"),
    ("cname-target-appears", [("/skydns/local/svc/web", val(host="app.svc.local"))],
     [("/skydns/local/svc/app/i", val(host="10.0.0.2"))], ("web.svc.local", "A"), "NXDOMAIN", "NOERROR", "10.0.0.2"),
    ("cname-retargeted", [("/skydns/local/svc/web", val(host="app.svc.local")), ("/skydns/local/svc/app", val(host="10.0.0.1")),
                          ("/skydns/local/svc/app2", val(host="10.0.0.2"))],
     [("/skydns/local/svc/web", val(host="app2.svc.local"))], ("web.svc.local", "A"), "NOERROR", "NOERROR", "10.0.0.2"),
    ("srv-glue-change", [("/skydns/local/svc/s/a", val(host="db.svc.local", port=5432)), ("/skydns/local/svc/db", val(host="10.0.0.1"))],
     [("/skydns/local/svc/db", val(host="10.0.0.2"))], ("s.svc.local", "SRV"), "NOERROR", "NOERROR", "10.0.0.2"),
    ("srv-own-glue-change", [("/skydns/local/svc/s/a", val(host="10.0.0.1", port=80))],
     [("/skydns/local/svc/s/a", val(host="10.0.0.2", port=80))], ("s.svc.local", "SRV"), "NOERROR", "NOERROR", "10.0.0.2"),
    ("ns-glue-change", [("/skydns/local/svc/dns/ns/ns1", val(host="10.0.0.1"))],
     [("/skydns/local/svc/dns/ns/ns1", val(host="10.0.0.2"))], ("svc.local", "NS"), "NOERROR", "NOERROR", "10.0.0.2"),
    ("new-ent-child", [("/skydns/local/svc/other", val(host="10.0.0.1"))],
     [("/skydns/local/svc/hello/_tcp/_http/i", val(host="10.0.0.2", port=80))], ("_tcp.hello.svc.local", "SRV"),
     "NXDOMAIN", "NOERROR", None),
    ("ent-goes-away", [("/skydns/local/svc/hello/_tcp/_http/i", val(host="10.0.0.2", port=80))],
     [("/skydns/local/svc/hello/_tcp/_http/i", None)], ("_tcp.hello.svc.local", "SRV"), "NOERROR", "NXDOMAIN", None),
    ("ptr-appears", [("/skydns/local/svc/x", val(host="10.0.0.1"))], [("/skydns/local/svc/y", val(host="10.0.0.7"))],
     ("7.0.0.10.in-addr.arpa", "PTR"), "NXDOMAIN", "NOERROR", "y.svc.local."),
    ("ptr-moves", [("/skydns/local/svc/x", val(host="10.0.0.7"))], [("/skydns/local/svc/y", val(host="10.0.0.7")),
                                                                    ("/skydns/local/svc/x", None)],
     ("7.0.0.10.in-addr.arpa", "PTR"), "NOERROR", "NOERROR", "y.svc.local."),
    ("soa-serial", [("/skydns/local/svc/x", val(host="10.0.0.1"))], [("/skydns/local/svc/y", val(host="10.0.0.2"))],
     ("svc.local", "SOA"), "NOERROR", "NOERROR", " 10 60 10 "),
    ("txt-change", [("/skydns/local/svc/t", val(text="old"))], [("/skydns/local/svc/t", val(text="new"))],
     ("t.svc.local", "TXT"), "NOERROR", "NOERROR", '"new"'),
]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("items,changes,q,before,after,needle",
                         [pytest.param(*case[1:], id=case[0]) for case in UPDATES])
def test_update_never_hidden_by_cache(transport, items, changes, q, before, after, needle):
    old = build(items, revision=3)
    resp = Responder(old)
    for _ in range(2):                                   # cache it and hit it
        msg = parse(resp.handle(query(*q), transport, CLIENT))
        assert dns.rcode.to_text(msg.rcode()) == before
    new, touched, _ = old.apply(10, changes)
    resp.on_swap(new, touched)
    msg = parse(resp.handle(query(*q), transport, CLIENT))
    fresh = parse(Responder(new).handle(query(*q), transport, CLIENT))
    assert dns.rcode.to_text(msg.rcode()) == after
    assert msg.answer == fresh.answer and msg.authority == fresh.authority and msg.additional == fresh.additional
    if needle:
        assert needle in msg.to_text()


def test_swap_keeps_untouched_entries(snap):
    metrics = Recorder()
    resp = Responder(snap, metrics=metrics)
    resp.handle(query("one.svc.local"), "udp", CLIENT)
    new, touched, _ = snap.apply(10, [("/skydns/local/svc/hello/i000", val(host="10.7.7.7"))])
    resp.on_swap(new, touched)
    resp.handle(query("one.svc.local"), "udp", CLIENT)
    assert metrics.cells == {(1, 0, "udp"): [2, 1]}                  # a miss, then a hit from the same entry


def test_zone_change_drops_everything(snap):
    resp = Responder(snap)
    assert parse(resp.handle(query("one.svc.local"), "udp", CLIENT)).answer[0].ttl == 30
    assert len(resp._exact["udp"]) == 1
    resp.on_swap(snap.with_zones([ZoneConfig("svc.local", ttl=99)]), frozenset())
    assert resp._exact == {"udp": {}, "tcp": {}}        # nothing left pointing at dead entries
    assert parse(resp.handle(query("one.svc.local"), "udp", CLIENT)).answer[0].ttl == 99
    resp.on_swap(snap.with_zones([ZoneConfig("other.local")]), frozenset())
    assert parse(resp.handle(query("one.svc.local"), "udp", CLIENT)).rcode() == dns.rcode.REFUSED


def test_parse_fast():
    data = query("One.svc.local", "AAAA", qid=9, edns=0, payload=4096, do=True)
    qid, qname, qtype, qclass, edns, size, do = parse_fast(data)
    assert (qid, qname, qtype, qclass, edns, size, do) == (9, qname_wire("One.svc.local"), 28, 1, True, 4096, True)
    assert parse_fast(b"short") == "drop"


# ---------------------------------------------------------------- SOA serial and eviction

@pytest.mark.parametrize("name,qtype", [("nothing.svc.local", "A"), ("hello.svc.local", "AAAA"), ("svc.local", "SOA")])
def test_cached_soa_serial_follows_the_revision(name, qtype):
    """Negative and SOA replies stay cached across unrelated changes, with the current serial."""
    base = build([("/skydns/local/svc/hello/a", val(host="10.0.0.1"))], revision=10)
    r = Responder(base)
    first = parse(r.handle(query(name, qtype), "udp", ("127.0.0.1", 1)))
    soa = (first.authority or first.answer)[0][0]
    assert soa.serial == 10
    for _ in range(2):                                    # cache hit, then the exact-query table
        again = parse(r.handle(query(name, qtype), "udp", ("127.0.0.1", 1)))
        assert (again.authority or again.answer)[0][0].serial == 10
    changed, touched, _ = base.apply(11, [("/skydns/local/svc/other/x", val(host="10.0.0.2"))])
    r.on_swap(changed, touched)
    cached = r.handle(query(name, qtype), "udp", ("127.0.0.1", 1))
    fresh = Responder(changed).handle(query(name, qtype), "udp", ("127.0.0.1", 1))
    assert cached == fresh
    assert (parse(cached).authority or parse(cached).answer)[0][0].serial == 11
    assert len(r.cache) >= 1


def test_full_cache_evicts_the_oldest_and_forgets_their_names():
    snap = build([(f"/skydns/local/svc/s{i}", val(host=f"10.0.{i // 250}.{i % 250 + 1}")) for i in range(100)])
    r = Responder(snap, cache_size=40)
    for i in range(100):
        r.handle(query(f"s{i}.svc.local"), "udp", ("127.0.0.1", 1))
    assert len(r.cache) <= 40
    held = [keys if isinstance(keys, set) else {keys} for keys in r.cache.by_name.values()]
    assert all(held)
    live = {key for keys in held for key in keys}
    assert live <= set(r.cache.entries)
    reply = parse(r.handle(query("s99.svc.local"), "udp", ("127.0.0.1", 1)))
    assert [rd.to_text() for rr in reply.answer for rd in rr] == ["10.0.0.100"]


# ---------------------------------------------------------------- the encoder against dnslib

PACKER_RECORDS = [
    ("/skydns/local/svc/hello/a", val(host="10.0.0.7", port=8080, ttl=60)),
    ("/skydns/local/svc/hello/b", val(host="10.0.0.8", port=8081, priority=20, weight=5)),
    ("/skydns/local/svc/hello/c", val(host="fd00::8", port=8082)),
    ("/skydns/local/svc/hello", val(host="10.0.0.9", port=80)),
    ("/skydns/local/svc/notes", val(text="a" * 300)),
    ("/skydns/local/svc/deep/_tcp/_http/x", val(host="10.0.1.1", port=80)),
]


@pytest.mark.parametrize("name,qtype", [
    ("hello.svc.local", "A"), ("hello.svc.local", "AAAA"), ("hello.svc.local", "SRV"), ("hello.svc.local", "TXT"),
    ("a.hello.svc.local", "A"), ("c.hello.svc.local", "AAAA"), ("a.hello.svc.local", "SRV"),
    ("notes.svc.local", "TXT"), ("notes.svc.local", "A"), ("nothing.svc.local", "A"), ("_tcp.deep.svc.local", "SRV"),
    ("x.nothing.svc.local", "TXT"), ("7.0.0.10.in-addr.arpa", "A"), ("0.0.10.in-addr.arpa", "A"),
])
@pytest.mark.parametrize("edns", [None, 0])
def test_encoder_packs_no_worse_than_dnslib(name, qtype, edns):
    """Our reply, read and written again by dnslib (another library's compression), holds the
    same message, and ours is never the longer one."""
    from dnslib import DNSRecord
    snap = build(PACKER_RECORDS, revision=9)
    ours = Responder(snap).handle(query(name, qtype, edns=edns), "udp", CLIENT)
    theirs = DNSRecord.parse(ours).pack()
    a, b = parse(ours), parse(theirs)
    assert (a.rcode(), a.flags, a.question) == (b.rcode(), b.flags, b.question)
    for section in ("answer", "authority", "additional"):
        assert sorted(map(str, getattr(a, section))) == sorted(map(str, getattr(b, section))), section
    assert a.edns == b.edns and a.payload == b.payload
    assert len(ours) <= len(theirs)


@pytest.mark.parametrize("count", [300, 500])
def test_srv_set_beyond_a_pointers_reach_over_tcp(count):
    """SRV glue owners are pointers to the targets; past 16,383 octets no pointer reaches, so
    the later glue owners are written whole: every record, each with its glue, in every order."""
    items = [(f"/skydns/local/svc/big/x{i}", val(host=f"10.9.{i // 200}.{i % 200 + 1}", port=1000 + i))
             for i in range(count)]
    r = Responder(build(items))
    data = r.handle(query("big.svc.local", "SRV"), "tcp", CLIENT)
    reply = parse(data)
    targets = sorted(rd.target.to_text() for rr in reply.answer for rd in rr)
    assert targets == sorted(f"x{i}.big.svc.local." for i in range(count))
    glue = {rr.name.to_text() for rr in reply.additional}
    assert glue == set(targets)
    again = parse(r.handle(query("big.svc.local", "SRV", qid=5), "tcp", CLIENT))    # the next order
    assert sorted(rd.target.to_text() for rr in again.answer for rd in rr) == targets


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_exact_query_table_never_hides_an_update(transport):
    """Repeated identical bytes take the id-only path; a swap that touches the name ends it."""
    before = build([("/skydns/local/svc/hello/a", val(host="10.0.0.1"))], revision=5)
    r = Responder(before)
    packets = [query("hello.svc.local", qid=i) for i in range(4)]
    replies = [parse(r.handle(p, transport, CLIENT)) for p in packets]      # miss, hit, exact, exact
    assert [m.id for m in replies] == [0, 1, 2, 3]
    assert all([rd.to_text() for rr in m.answer for rd in rr] == ["10.0.0.1"] for m in replies)
    assert len(r._exact[transport]) == 1
    after, touched, _ = before.apply(6, [("/skydns/local/svc/hello/a", val(host="10.0.0.2"))])
    r.on_swap(after, touched)
    again = parse(r.handle(query("hello.svc.local", qid=9), transport, CLIENT))
    assert again.id == 9 and [rd.to_text() for rr in again.answer for rd in rr] == ["10.0.0.2"]
    fresh = Responder(after).handle(query("hello.svc.local", qid=9), transport, CLIENT)
    assert r.handle(query("hello.svc.local", qid=9), transport, CLIENT) == fresh


def test_mixed_case_queries_stay_out_of_the_exact_table():
    """0x20-randomised names never repeat byte for byte: keep them from churning the table."""
    r = Responder(build([("/skydns/local/svc/hello/a", val(host="10.0.0.1"))]))
    for spelling in ("hello.svc.local", "HeLLo.svc.local", "hElLo.SVC.local", "hello.svc.local"):
        reply = parse(r.handle(query(spelling), "udp", CLIENT))
        assert reply.question[0].name.to_text() == spelling + "."
        assert [rd.to_text() for rr in reply.answer for rd in rr] == ["10.0.0.1"]
    assert len(r._exact["udp"]) == 1



@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("name,qtype", [("hello.svc.local", "A"), ("hello.svc.local", "SRV"),
                                        ("hello.svc.local", "AAAA"), ("nothing.svc.local", "A")])
def test_mixed_case_repeat_is_the_lower_case_reply_with_the_clients_spelling(transport, name, qtype):
    """A 0x20 spelling of a question in the exact-query table is answered from it: the same bytes
    as a fresh responder's reply to that spelling, rotation and all, and never a stale one."""
    items = [("/skydns/local/svc/hello/a", val(host="10.0.0.1", port=80)),
             ("/skydns/local/svc/hello/b", val(host="10.0.0.2", port=81))]
    before = build(items, revision=5)
    r = Responder(before)
    r.handle(query(name, qtype, qid=1), transport, CLIENT)        # the lower-case twin enters the table
    spellings = [name.upper(), name.title(), name[:3].upper() + name[3:]]
    for i, spelling in enumerate(spellings):
        reference = Responder(before)
        for _ in range(1 + i):                                     # the same rotation turn as r's
            reference.handle(query(name, qtype, qid=1), transport, CLIENT)
        packet = query(spelling, qtype, qid=40 + i)
        assert r.handle(packet, transport, CLIENT) == reference.handle(packet, transport, CLIENT)
    assert len(r._exact[transport]) == 1                          # the spellings added nothing
    after, touched, _ = before.apply(6, [("/skydns/local/svc/hello/a", val(host="10.0.0.9", port=80))])
    r.on_swap(after, touched)
    packet = query(name.upper(), qtype, qid=50)
    assert r.handle(packet, transport, CLIENT) == Responder(after).handle(packet, transport, CLIENT)


def test_a_type_octet_that_reads_as_a_capital_is_not_folded():
    """Type 65 (HTTPS) is octet 0x41, 'A'; lower-casing the query bytes would make it type 97.
    A table entry for type 97 must not answer a type-65 query, nor the other way round."""
    r = Responder(build([("/skydns/local/svc/hello/a", val(host="10.0.0.1"))]))
    for first, second in ((97, 65), (65, 97)):
        r = Responder(build([("/skydns/local/svc/hello/a", val(host="10.0.0.1"))]))
        for qtype in (first, first, second, second):
            reply = parse(r.handle(query("hello.svc.local", qtype), "udp", CLIENT))
            assert reply.question[0].rdtype == qtype
        assert len(r._exact["udp"]) == 2


def test_exact_table_eviction_keeps_entries_consistent():
    """A full exact-query table forgets its oldest eighth; what it forgets leaves its cache
    entry's list (two spellings of the flags give each entry two table keys, so the table
    fills while the entries live), and an update still reaches every name afterwards."""
    items = [(f"/skydns/local/svc/s{i}", val(host=f"10.1.{i // 250}.{i % 250 + 1}")) for i in range(700)]
    snap = build(items, revision=3)
    r = Responder(snap, cache_size=1024)
    for rep in range(4):
        for i in range(700):
            for rd in (True, False):
                r.handle(query(f"s{i}.svc.local", qid=i, rd=rd), "udp", CLIENT)
    table = r._exact["udp"]
    assert len(table) <= 1024 and len(r.cache) == 700
    entries = r.cache.entries
    for key, held in table.items():              # the entry itself (RD set), or another spelling (RD clear)
        if is_spelling(held):
            assert held in r.cache.spelled(held.extra.owner) and held.extra.owner in entries
        else:
            assert entries[key] is held
    for key in entries:
        assert len(r.cache.spelled(key)) <= 1     # one for the other flag spelling, never piling up
    changed, touched, _ = snap.apply(4, [(f"/skydns/local/svc/s{i}", val(host="10.9.9.9")) for i in range(0, 700, 7)])
    r.on_swap(changed, touched)
    for i in range(0, 700, 7):
        for rd in (True, False):
            reply = parse(r.handle(query(f"s{i}.svc.local", qid=i, rd=rd), "udp", CLIENT))
            assert [d.to_text() for rr in reply.answer for d in rr] == ["10.9.9.9"], i


def test_repeats_count_in_their_metrics_cell(snap):
    """The exact-query path counts every repeat as a query and a cache hit, and times 1 in 16;
    the first answer that put the query there is counted in the same cell, as a miss."""
    metrics = Recorder()
    resp = Responder(snap, metrics=metrics)
    for i in range(40):
        resp.handle(query("one.svc.local", qid=i), "udp", CLIENT)
    assert metrics.cells == {(1, 0, "udp"): [40, 39]}                      # the miss and 39 repeats (hits)
    assert 1 <= len(metrics.latencies) <= 3 and all(0 <= s < 1 for s in metrics.latencies)


def test_a_dropped_entry_takes_its_exact_queries_out_of_the_table():
    """An etcd change that drops a cached question also empties its exact-query slots, so the
    table holds no dead replies (they would keep their memory until the table's own eviction)."""
    snap = build([(f"/skydns/local/svc/s{i}", val(host=f"10.2.0.{i + 1}")) for i in range(10)], revision=3)
    r = Responder(snap)
    for rd in (True, False):
        for i in range(10):
            r.handle(query(f"s{i}.svc.local", qid=i, rd=rd), "udp", CLIENT)
    table = r._exact["udp"]
    assert len(table) == 20
    changed, touched, _ = snap.apply(4, [(f"/skydns/local/svc/s{i}", val(host="10.3.3.3")) for i in range(5)])
    r.on_swap(changed, touched)
    assert len(table) == 10
    for key, held in table.items():
        assert held.stamp != DEAD
        assert (r.cache.entries[key] is held if not is_spelling(held)
                else held in r.cache.spelled(held.extra.owner))
    for i in range(10):
        reply = parse(r.handle(query(f"s{i}.svc.local", qid=i, rd=False), "udp", CLIENT))
        assert [d.to_text() for rr in reply.answer for d in rr] == ["10.3.3.3" if i < 5 else f"10.2.0.{i + 1}"]
    assert len(table) == 15


def test_the_tcp_exact_table_holds_an_eighth_of_the_cache_size():
    items = [(f"/skydns/local/svc/s{i}", val(host=f"10.4.{i // 250}.{i % 250 + 1}")) for i in range(2100)]
    r = Responder(build(items), cache_size=16384)
    for i in range(2100):
        r.handle(query(f"s{i}.svc.local"), "tcp", CLIENT)
    assert len(r.cache) == 2100
    assert 2048 * 7 // 8 <= len(r._exact["tcp"]) <= 2048
    reply = parse(r.handle(query("s0.svc.local", qid=9), "tcp", CLIENT))   # forgotten, still right
    assert [d.to_text() for rr in reply.answer for d in rr] == ["10.4.0.1"] and reply.id == 9


# ---------------------------------------------------------------- the encoder alone (dns/encoder.py)

def _encoded(answer, qname="svc.local", qtype=2, limit=65535, edns=False):
    from dnsdisco.dns.encoder import encode
    from dnsdisco.dns.wire import encode_name
    variants, offsets = encode(answer, encode_name(qname), qtype, 1, 0x8400, edns, False, limit)
    return [b"\x12\x34" + v for v in variants], offsets


def _rotating_answer():
    from dnsdisco.dns.rules import Answer
    ns = [("svc.local", 2, 30, f"ns{i}.svc.local") for i in range(3)]
    a = [("web.svc.local", 1, 30, f"10.0.0.{i}") for i in range(1, 3)]
    glue = [(f"ns{i}.svc.local", 1, 30, f"10.9.9.{i}") for i in range(3)]
    soa = ("svc.local", 6, 5, ("ns.dns.svc.local", "hostmaster.svc.local", 77, 60, 10, 1209600, 5))
    return Answer(0, True, ns + a, [soa], glue, name="svc.local")


def test_encoder_rotates_each_rrset_and_patches_the_names_that_point_into_it():
    """Two RRsets that rotate, glue owners that point at names inside the first, and an SOA
    after them: every order parses, each NS target leads in turn, each glue owner names its
    target, and the serial sits where the offsets say."""
    variants, offsets = _encoded(_rotating_answer())
    assert len(variants) == 3 and len(offsets) == 3
    leaders = set()
    for wire, (serial_at,) in zip(variants, offsets):
        msg = dns.message.from_wire(wire)
        ns_set = next(r for r in msg.answer if r.rdtype == dns.rdatatype.NS)
        leaders.add(ns_set[0].target.to_text())
        assert sorted(r.name.to_text() for r in msg.additional) == [f"ns{i}.svc.local." for i in range(3)]
        assert {r.name.to_text(): r[0].address for r in msg.additional} == \
            {f"ns{i}.svc.local.": f"10.9.9.{i}" for i in range(3)}
        assert struct.unpack_from("!I", wire, serial_at + 2)[0] == 77 == msg.authority[0][0].serial
    assert leaders == {f"ns{i}.svc.local." for i in range(3)}


@pytest.mark.parametrize("cut,tc,counts", [
    ("nothing", False, (5, 1, 3)),
    ("one octet", False, (5, 1, 0)),        # the additional section goes first, without TC
    ("additional", True, (5, 0, 0)),        # then the authority section, with TC
    ("authority", True, (3, 0, 0)),         # then whole RRsets from the end of the answer
    ("answer", True, (0, 0, 0)),
])
def test_encoder_truncates_by_whole_rrsets(cut, tc, counts):
    whole = len(_encoded(_rotating_answer())[0][0])
    without_additional = len(_encoded(_rotating_answer(), limit=whole - 1)[0][0])
    answer_only = len(_encoded(_rotating_answer(), limit=without_additional - 1)[0][0])
    limit = {"nothing": whole, "one octet": whole - 1, "additional": without_additional - 1,
             "authority": answer_only - 1, "answer": 40}[cut]
    variants, _offsets = _encoded(_rotating_answer(), limit=limit)
    for wire in variants:
        assert len(wire) <= limit
        msg = dns.message.from_wire(wire)
        assert bool(msg.flags & dns.flags.TC) == tc
        assert (sum(map(len, msg.answer)), sum(map(len, msg.authority)), sum(map(len, msg.additional))) == counts


def test_encoder_writes_records_of_other_types_as_they_are():
    from dnsdisco.dns.rules import Answer, Raw
    caa = dns.rdata.from_text("IN", "CAA", '0 issue "ca.example"')
    raw = Raw(caa.to_wire())
    variants, offsets = _encoded(Answer(0, True, [("svc.local", 257, 30, raw)], name="svc.local"), qtype=257)
    assert offsets is None
    msg = dns.message.from_wire(variants[0])
    assert msg.answer[0][0] == caa


def test_encoder_never_compresses_srv_targets():
    """RFC 2782: a target already written (here as the CNAME's data) is written again whole."""
    from dnsdisco.dns.rules import Answer
    answer = Answer(0, True, [("web.svc.local", 5, 30, "i1.hello.svc.local"),
                              ("web.svc.local", 33, 30, (10, 100, 80, "i1.hello.svc.local"))], name="web.svc.local")
    variants, _offsets = _encoded(answer, qname="web.svc.local", qtype=33)
    wire = variants[0]
    target = b"\x02i1\x05hello\x03svc\x05local\x00"
    assert wire.endswith(target)                      # the SRV's data: the whole name, last
    assert dns.message.from_wire(wire).answer[1][0].target.to_text() == "i1.hello.svc.local."


@pytest.mark.parametrize("edns", [None, 0])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_servfail_until_the_first_sync_then_the_answer(snap, edns, transport):
    """Before the first sync every question gets SERVFAIL (never a false NXDOMAIN a client
    would cache), with its question as sent and the OPT echoed; nothing of it is kept."""
    r = Responder(snap, ready=False)
    q = dns.message.make_query("HeLLo.svc.local", "A", use_edns=edns)
    signed_like = dns.message.make_query("hello.svc.local", "A", use_edns=edns)
    signed_like.additional.append(dns.rrset.from_text("x.", 0, "IN", "TXT", '"a"'))   # the fast reader declines it
    assert parse_fast(signed_like.to_wire()) is None and parse_fast(q.to_wire()) is not None
    for query in (q, signed_like):
        msg = dns.message.from_wire(r.handle(query.to_wire(), transport, CLIENT))
        assert msg.rcode() == dns.rcode.SERVFAIL and msg.id == query.id and not msg.answer
        assert msg.question == query.question and msg.question[0].name.to_text() == query.question[0].name.to_text()
        assert msg.edns == (-1 if edns is None else 0)
    assert not len(r.cache)
    r.on_swap(snap)
    msg = dns.message.from_wire(r.handle(q.to_wire(), transport, CLIENT))
    assert msg.rcode() == dns.rcode.NOERROR and msg.answer


# ---------------------------------------------------------------- a signed query to a responder with no keys

@pytest.mark.parametrize("qname, edns", [("a.svc.local", None), ("nowhere.example", 0)])
def test_signed_query_without_keys_gets_badkey_not_an_answer(qname, edns):
    """RFC 8945 5.2: never an unsigned normal answer to a signed query. The bare Responder (no
    net.transfer handed in) knows no key: NOTAUTH with a TSIG error BADKEY, checked by
    dnspython, for a name in the zone and one outside it."""
    import dns.tsig
    from dnsdisco.dns.responder import Responder
    from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
    snap = Snapshot.build("/skydns", [ZoneConfig("svc.local")], 5,
                          [("/skydns/local/svc/a", b'{"host":"10.0.0.1"}')])
    key = dns.tsig.Key("k1.", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "hmac-sha256")
    q = dns.message.make_query(qname, "A", use_edns=edns)
    q.use_tsig({key.name: key}, keyname=key.name)
    reply = Responder(snap).handle(q.to_wire(), "udp", ("192.0.2.9", 5353))
    msg = dns.message.from_wire(reply, keyring=False)
    assert msg.id == q.id and msg.rcode() == dns.rcode.NOTAUTH and not msg.answer
    assert msg.tsig[0].error == dns.rcode.BADKEY and msg.tsig[0].mac == b""
    assert msg.tsig[0].original_id == q.id and msg.tsig[0].algorithm == key.algorithm
    assert [str(rrset.name) for rrset in msg.question] == [qname + "."]


def test_unsigned_and_broken_messages_carry_no_badkey():
    from dnsdisco.dns.wire import badkey_reply
    plain = dns.message.make_query("a.svc.local", "A", use_edns=0).to_wire()
    assert badkey_reply(plain) is None
    assert badkey_reply(plain[:-3]) is None          # cut short inside the OPT
    assert badkey_reply(b"\x00" * 5) is None

