"""dns/cache.py's layout: a plain query keyed on its own octets and answered from the UDP exact
table by its cache entry itself, own-name entries found again by building their keys, other
other spellings as objects of their own; eviction, drops by the names a change touches, SOA serials per revision,
TCP beside UDP. What a client is sent is tested in test_wire.py; these check the structure."""
from __future__ import annotations

import json
import struct

import dns.message
import dns.rcode
import pytest

from dnsdisco.dns.cache import (DEAD, EDNS, EVICT_MOST, MAX_SHAPES, PLAIN, ReplyCache, cache_key, edns_key,
                                eviction_batch, is_spelling, key_name, plain_key)
from dnsdisco.dns.responder import Responder
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.wire import encode_name

CLIENT = ("127.0.0.1", 5353)
ZONES = (ZoneConfig("svc.local"),)


def val(**fields) -> bytes:
    return json.dumps(fields).encode()


def build(count=10, revision=3, extra=()):
    items = [(f"/skydns/local/svc/s{i}", val(host=f"10.2.{i // 250}.{i % 250 + 1}")) for i in range(count)]
    return Snapshot.build("/skydns", ZONES, revision, items + list(extra))


def query(name, qtype=1, *, qid=7, rd=True, edns=None, do=False):
    flags = 0x0100 if rd else 0
    opt = b"" if edns is None else b"\x00" + struct.pack("!HHIH", 41, edns, 0x8000 if do else 0, 0)
    return (struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0 if edns is None else 1)
            + b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
            + struct.pack("!HH", qtype, 1) + opt)


def addresses(reply) -> list[str]:
    return [rd.to_text() for rr in dns.message.from_wire(reply).answer for rd in rr]


# ---------------------------------------------------------------- keys

@pytest.mark.parametrize("lname, qtype, edns, do, limit", [
    (encode_name("s1.svc.local"), 1, False, False, 512),
    (encode_name("s1.svc.local"), 28, True, True, 1232),
    (b"\x01\x00\x00", 0x0100, False, False, 512),        # starts with PLAIN's first three octets
    (b"\x01\x00\x00", 1, True, False, 4096),
    (b"\x00", 6, False, False, 65535),
])
def test_the_three_key_forms_never_meet_and_give_their_name_back(lname, qtype, edns, do, limit):
    other = cache_key(lname, qtype, 1, edns, do, limit)
    plain = plain_key(lname, qtype, 1)
    opt = edns_key(lname, qtype, 1, do, limit)
    assert len({other, plain, opt}) == 3 and len(plain) >= 15 and plain.startswith(PLAIN) and opt.startswith(EDNS)
    assert key_name(other) == key_name(plain) == key_name(opt) == lname


def test_a_plain_query_is_keyed_on_its_own_octets_and_answered_by_its_entry():
    r = Responder(build())
    data = query("s1.svc.local")
    r.handle(data, "udp", CLIENT)
    entry = r.cache.entries[data[2:]]
    assert not is_spelling(entry) and r._exact["udp"] == {data[2:]: entry}
    assert r.cache.depends == {} and r.cache.by_name == {} and r.cache.spellings == {}
    assert type(entry.replies) is bytes and entry.variants == (entry.replies,)
    assert addresses(r.handle(query("s1.svc.local", qid=9), "udp", CLIENT)) == ["10.2.0.2"]
    assert entry.turn == 2


@pytest.mark.parametrize("do", [False, True])
def test_a_query_with_a_bare_opt_is_keyed_on_its_own_octets_too(do):
    r = Responder(build())
    data = query("s1.svc.local", edns=1232, do=do)
    reply = r.handle(data, "udp", CLIENT)
    assert dns.message.from_wire(reply).edns == 0
    entry = r.cache.entries[data[2:]]
    assert data[2:] == edns_key(encode_name("s1.svc.local"), 1, 1, do, 1232)
    assert r._exact["udp"] == {data[2:]: entry} and r.cache.spellings == {}
    assert r.handle(query("s1.svc.local", qid=9, edns=1232, do=do), "udp", CLIENT)[2:] == reply[2:]
    bigger = query("s1.svc.local", edns=4096, do=do)       # the same question and limit: the same entry
    assert r.handle(bigger, "udp", CLIENT)[2:] == reply[2:] and len(r.cache) == 1
    assert [is_spelling(held) for held in r._exact["udp"].values()] == [False, True]


# ---------------------------------------------------------------- spellings and transports

@pytest.mark.parametrize("second, transport", [
    (dict(rd=False), "udp"),              # dnsperf's flags
    (dict(edns=4096), "udp"),             # another key (limit 1232), not its octets: a spelling
    ({}, "tcp"),
])
def test_a_second_spelling_is_an_exact_of_its_own_and_dies_with_its_entry(second, transport):
    snap = build()
    r = Responder(snap)
    r.handle(query("s1.svc.local"), "udp", CLIENT)
    data = query("s1.svc.local", **second)
    for qid in (1, 2):
        assert addresses(r.handle(data[:0] + struct.pack("!H", qid) + data[2:], transport, CLIENT)) == ["10.2.0.2"]
    exact = r._exact[transport][data[2:]]
    assert is_spelling(exact) and exact in r.cache.spelled(exact.extra.owner)
    assert exact.extra.owner in r.cache.entries
    changed, touched, _ = snap.apply(4, [("/skydns/local/svc/s1", val(host="10.8.8.8"))])
    r.on_swap(changed, touched)
    assert exact.stamp == DEAD and r._exact == {"udp": {}, "tcp": {}} and len(r.cache) == 0
    assert r.cache.spellings == {}
    assert addresses(r.handle(data, transport, CLIENT)) == ["10.8.8.8"]


def test_tcp_then_udp_of_one_question_are_two_entries_dropped_together():
    snap = build()
    r = Responder(snap)
    tcp = r.handle(query("s2.svc.local", qid=1), "tcp", CLIENT)
    udp = r.handle(query("s2.svc.local", qid=1), "udp", CLIENT)
    assert tcp == udp                                            # a small reply: the same octets
    keys = set(r.cache.entries)
    assert keys == {cache_key(encode_name("s2.svc.local"), 1, 1, False, False, 65535),
                    plain_key(encode_name("s2.svc.local"), 1, 1)}
    assert len(r._exact["tcp"]) == 1 and len(r._exact["udp"]) == 1
    changed, touched, _ = snap.apply(4, [("/skydns/local/svc/s2", None)])
    r.on_swap(changed, touched)
    assert len(r.cache) == 0 and r._exact == {"udp": {}, "tcp": {}}
    for transport in ("tcp", "udp"):
        reply = dns.message.from_wire(r.handle(query("s2.svc.local"), transport, CLIENT))
        assert reply.rcode() == dns.rcode.NXDOMAIN


# ---------------------------------------------------------------- drops by name

@pytest.mark.parametrize("asked, change, dropped", [
    # (questions asked, the key changed, the questions whose entries the change drops)
    ([("s1.svc.local", 1, None), ("s2.svc.local", 1, None)], "s1", {("s1.svc.local", 1, None)}),
    ([("s1.svc.local", 1, None), ("s1.svc.local", 28, None), ("s1.svc.local", 1, 1232)], "s1",
     {("s1.svc.local", 1, None), ("s1.svc.local", 28, None), ("s1.svc.local", 1, 1232)}),
    ([("s1.svc.local", 1, 1232), ("s3.svc.local", 1, 1232)], "s3", {("s3.svc.local", 1, 1232)}),
    # a CNAME reads its target too: indexed by both names
    ([("web.svc.local", 1, None), ("s1.svc.local", 1, None)], "s1",
     {("web.svc.local", 1, None), ("s1.svc.local", 1, None)}),
    ([("web.svc.local", 1, None), ("s1.svc.local", 1, None)], "web", {("web.svc.local", 1, None)}),
    ([("nothing.svc.local", 1, None), ("s1.svc.local", 1, None)], "s4", set()),
])
def test_a_change_drops_the_entries_of_the_names_it_touched(asked, change, dropped):
    snap = build(extra=[("/skydns/local/svc/web", val(host="s1.svc.local"))])
    r = Responder(snap)
    for name, qtype, edns in asked:
        r.handle(query(name, qtype, edns=edns), "udp", CLIENT)
    before = dict(r.cache.entries)
    changed, touched, _ = snap.apply(4, [(f"/skydns/local/svc/{change}", val(host="10.7.7.7"))])
    r.on_swap(changed, touched)
    gone = {key for key in before if key not in r.cache.entries}
    assert all(before[key].stamp == DEAD for key in gone)
    assert {key_name(key) for key in gone} == {encode_name(name) for name, _t, _e in dropped}
    assert len(gone) == len(dropped)
    for name, qtype, edns in asked:          # every answer is the new snapshot's
        fresh = Responder(changed).handle(query(name, qtype, edns=edns), "udp", CLIENT)
        assert r.handle(query(name, qtype, edns=edns), "udp", CLIENT) == fresh


def test_past_max_shapes_entries_are_indexed_by_name_and_still_dropped():
    snap = build()
    r = Responder(snap)
    for qtype in range(100, 100 + MAX_SHAPES + 4):          # a query type each: a shape each
        r.handle(query("s1.svc.local", qtype), "udp", CLIENT)
    assert len(r.cache.shapes[PLAIN]) == MAX_SHAPES and len(r.cache.depends) == 4
    assert r.cache.by_name == {"s1.svc.local": set(r.cache.depends)}
    changed, touched, _ = snap.apply(4, [("/skydns/local/svc/s1", val(host="10.7.7.7"))])
    r.on_swap(changed, touched)
    assert len(r.cache) == 0 and r.cache.by_name == {} and r.cache.depends == {}


def test_a_name_that_reads_back_otherwise_is_indexed_by_name():
    """A label holding a dot is escaped in the presentation name: building the key from the
    name would miss it, so the entry is indexed by its name instead."""
    cache = ReplyCache(100)
    lname = b"\x03a.b\x03svc\x05local\x00"
    key = plain_key(lname, 1, 1)
    cache.put(key, [b"reply"], "a\\.b.svc.local", own="a\\.b.svc.local")
    assert cache.depends == {key: "a\\.b.svc.local"} and cache.shapes == {PLAIN: {}, EDNS: {}, b"": {}}
    cache.invalidate({"a\\.b.svc.local"})
    assert len(cache) == 0


# ---------------------------------------------------------------- eviction

def test_eviction_takes_the_oldest_eighth_out_of_the_cache_and_the_exact_table():
    snap = build(40)
    r = Responder(snap, cache_size=16)
    asked = [query(f"s{i}.svc.local") for i in range(17)]
    for data in asked:
        r.handle(data, "udp", CLIENT)
    assert len(r.cache) == 15                                  # 16 held, the oldest 2 went, 1 added
    assert [key_name(key) for key in r.cache.entries] == [encode_name(f"s{i}.svc.local") for i in range(2, 17)]
    assert list(r._exact["udp"]) == [data[2:] for data in asked[2:]]
    assert all(r._exact["udp"][key] is entry for key, entry in r.cache.entries.items())
    changed, touched, _ = snap.apply(4, [(f"/skydns/local/svc/s{i}", val(host="10.7.7.7")) for i in (0, 5)])
    r.on_swap(changed, touched)
    assert len(r.cache) == 14 and plain_key(encode_name("s5.svc.local"), 1, 1) not in r.cache.entries
    assert addresses(r.handle(query("s0.svc.local"), "udp", CLIENT)) == ["10.7.7.7"]


@pytest.mark.parametrize("capacity, dropped", [(1, 1), (16, 2), (1024, 128), (8192, 1024), (8200, 1024),
                                               (100_000, EVICT_MOST)])
def test_a_full_table_drops_an_eighth_but_never_more_than_evict_most(capacity, dropped):
    assert eviction_batch(capacity) == dropped


def test_a_large_full_cache_drops_evict_most_of_its_oldest():
    """The query that finds a large cache full waits for EVICT_MOST drops, not an eighth of it."""
    cache = ReplyCache(max_entries=10_000)
    keys = [b"k%05d" % i for i in range(10_001)]
    for key in keys:
        cache.put(key, [b"reply"], ("n" + key.decode(),))
    assert list(cache.entries) == keys[EVICT_MOST:]
    assert set(cache.by_name) == {"n" + key.decode() for key in keys[EVICT_MOST:]}


def test_a_full_exact_table_forgets_spellings_but_keeps_the_entries():
    snap = build(1100)
    r = Responder(snap, cache_size=2048)
    for i in range(1100):
        for rd in (True, False):
            r.handle(query(f"s{i}.svc.local", rd=rd), "udp", CLIENT)
    table = r._exact["udp"]
    assert len(table) <= 2048 and len(r.cache) == 1100
    spelled = sum(len(r.cache.spelled(key)) for key in r.cache.entries)
    assert spelled == sum(is_spelling(held) for held in table.values())
    assert addresses(r.handle(query("s0.svc.local", rd=False), "udp", CLIENT)) == ["10.2.0.1"]


# ---------------------------------------------------------------- SOA serials

def test_a_negative_entry_rewrites_its_serial_once_per_revision_in_place():
    snap = build(revision=10)
    r = Responder(snap)
    data = query("nothing.svc.local")
    r.handle(data, "udp", CLIENT)
    entry = r.cache.entries[data[2:]]
    (at,), = entry.extra                                         # where the one reply's serial sits
    assert entry.replies[at:at + 4] == struct.pack("!I", 10)
    assert entry.stamp == 10 and r._exact["udp"][data[2:]] is entry
    changed, touched, _ = snap.apply(11, [("/skydns/local/svc/other", val(host="10.0.0.9"))])
    r.on_swap(changed, touched)
    assert r.cache.entries[data[2:]] is entry                   # untouched: kept, serial stale
    reply = r.handle(data, "udp", CLIENT)
    assert entry.stamp == 11 and r._exact["udp"][data[2:]] is entry
    assert entry.replies[at:at + 4] == struct.pack("!I", 11)
    assert dns.message.from_wire(reply).authority[0][0].serial == 11
    assert reply == Responder(changed).handle(data, "udp", CLIENT)
    assert r.handle(data, "udp", CLIENT) == reply                # the table again, same serial
