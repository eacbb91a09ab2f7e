"""Answers packed ahead in idle time (dns/precompute.py, serve --precompute-budget): the order of
the questions, the budget's stop rule, and that what is packed is what a first query would have
cached (same bytes, same rotation), never at the cost of a real query's cache entry."""
from __future__ import annotations

import json
import struct

import pytest

from dnsdisco.dns.cache import key_name, plain_key
from dnsdisco.dns.constants import T_A, T_SRV
from dnsdisco.dns.precompute import (ENTRY_OVERHEAD, HEADROOM, LONGEST_PAUSE, MIN_IDLE, REPLY_OVERHEAD, Budget,
                                     Packer, entry_cost, pause_after, questions)
from dnsdisco.dns.responder import Responder
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.wire import encode_name

PREFIX = "/skydns"
ZONES = (ZoneConfig("svc.local"),)
CLIENT = ("127.0.0.1", 5353)


def val(**fields) -> bytes:
    return json.dumps(fields).encode()


def services(count: int, per: int = 2, start: int = 0):
    return [(f"/skydns/local/svc/s{i:04d}/i{j}", val(host=f"10.{i // 250}.{i % 250}.{j + 1}", port=8000 + j))
            for i in range(start, start + count) for j in range(per)]


def build(items, revision=3, zones=ZONES):
    return Snapshot.build(PREFIX, zones, revision, items)


def plain(name: str, qtype: int, qid: int = 4242, rd: bool = True) -> bytes:
    """A query without EDNS, as glibc (RD set) and dnsperf (RD clear) send it."""
    return (struct.pack("!HHHHHH", qid, 0x0100 if rd else 0, 1, 0, 0, 0) + encode_name(name)
            + struct.pack("!HH", qtype, 1))


def run(packer: Packer) -> int:
    packer.begin()
    steps = 0
    while packer.step(batch=3):
        steps += 1
        assert steps < 10_000
    return steps


# ---------------------------------------------------------------- the order of the questions

@pytest.mark.parametrize("items, expected", [
    # A of every service, then SRV of every service, then A of every instance (keys' order)
    (services(2), [("s0000.svc.local", "A"), ("s0001.svc.local", "A"),
                   ("s0000.svc.local", "SRV"), ("s0001.svc.local", "SRV"),
                   ("i0.s0000.svc.local", "A"), ("i1.s0000.svc.local", "A"),
                   ("i0.s0001.svc.local", "A"), ("i1.s0001.svc.local", "A")]),
    # a record at a service name itself makes its parent (here the zone apex) a name with instances
    ([("/skydns/local/svc/web", val(host="10.0.0.1")), ("/skydns/local/svc/web/x", val(host="10.0.0.2"))],
     [("svc.local", "A"), ("web.svc.local", "A"), ("svc.local", "SRV"), ("web.svc.local", "SRV"),
      ("web.svc.local", "A"), ("x.web.svc.local", "A")]),
    # names outside every served zone are forwarded or refused: never packed
    ([("/skydns/org/other/a", val(host="10.0.0.3"))] + services(1),
     [("s0000.svc.local", "A"), ("s0000.svc.local", "SRV"), ("i0.s0000.svc.local", "A"),
      ("i1.s0000.svc.local", "A")]),
    ([], []),
])
def test_questions_come_services_first_then_srv_then_instances(items, expected):
    names = {"A": T_A, "SRV": T_SRV}
    got = list(questions(build(items)))
    assert got == [(encode_name(name), names[qtype]) for name, qtype in expected]


# ---------------------------------------------------------------- the budget

@pytest.mark.parametrize("octets, cache_size, spent, cached, room", [
    (1000, 800, [], 0, True),
    (1000, 800, [999], 0, True),
    (1000, 800, [600, 400], 0, False),          # the budget is spent
    (1000, 800, [1500], 0, False),              # one answer may take it past: then it stops
    (10**9, 800, [], 700 - 1, True),
    (10**9, 800, [], 700, False),               # 7/8 of the cache: the rest is the real queries'
    (10**9, 8, [], 6, True),
    (10**9, 8, [], 7, False),
    (0, 800, [], 0, False),
])
def test_budget_stops_at_its_octets_or_seven_eighths_of_the_cache(octets, cache_size, spent, cached, room):
    budget = Budget(octets, cache_size)
    for cost in spent:
        budget.spend(cost)
    assert budget.room(cached) is room
    assert budget.added == len(spent) and budget.used == sum(spent)
    assert budget.most_entries == cache_size - cache_size // HEADROOM


@pytest.mark.parametrize("lname, variants, expected", [
    (b"\x01a\x00", (b"x" * 100,), ENTRY_OVERHEAD + 3 + 100 + REPLY_OVERHEAD),
    (b"\x01a\x00", (b"x" * 100, b"y" * 100), ENTRY_OVERHEAD + 3 + 2 * (100 + REPLY_OVERHEAD)),
    (b"\x03abc\x01b\x00", (b"",), ENTRY_OVERHEAD + 7 + REPLY_OVERHEAD),
])
def test_entry_cost_counts_the_replies_and_the_name(lname, variants, expected):
    assert entry_cost(lname, variants) == expected


@pytest.mark.parametrize("batch, busy, pause", [
    (0.001, 0.0, 0.0),                        # idle: the next batch at once
    (0.001, -0.5, 0.0),                       # a clock step back reads as idle, not as a negative wait
    (0.001, 0.5, 0.001),                      # half busy: packing gets the other half
    (0.001, 0.75, 0.003),
    (0.001, 0.9, 0.009),
    (0.001, 1.0, 0.001 / MIN_IDLE),           # saturated: packing gets MIN_IDLE of the time
    (0.001, 3.0, 0.001 / MIN_IDLE),           # CPU time over wall time can exceed 1 (other threads)
    (0.01, 1.0, LONGEST_PAUSE),               # never longer than this between batches
])
def test_pause_after_a_batch_leaves_packing_the_idle_share(batch, busy, pause):
    assert pause_after(batch, busy) == pytest.approx(pause)


# ---------------------------------------------------------------- packing through the responder

@pytest.mark.parametrize("rd", [True, False])
def test_packed_answers_are_the_bytes_and_rotation_a_first_query_gets(rd):
    snap = build(services(20, per=3))
    cold, warm = Responder(snap), Responder(snap)
    packer = Packer(warm, 1 << 30)
    run(packer)
    assert packer.state == Packer.DONE and packer.why == "all"
    assert packer.added == 20 + 20 + 60 == len(warm.cache)
    for name, qtype in [(f"s{i:04d}.svc.local", t) for i in range(20) for t in (T_A, T_SRV)] + \
                       [(f"i{j}.s{i:04d}.svc.local", T_A) for i in range(20) for j in range(3)]:
        for turn in range(4):                 # the rotation goes on the same way
            assert warm.handle(plain(name, qtype, turn, rd), "udp", CLIENT) == \
                   cold.handle(plain(name, qtype, turn, rd), "udp", CLIENT), (name, qtype, turn)
    assert len(warm.cache) == len(cold.cache) == 100


def test_answers_already_cached_are_not_packed_again_nor_counted():
    snap = build(services(5))
    r = Responder(snap)
    asked = r.handle(plain("s0003.svc.local", T_A), "udp", CLIENT)
    packer = Packer(r, 1 << 30)
    run(packer)
    assert packer.added == 5 + 5 + 10 - 1
    assert r.handle(plain("s0003.svc.local", T_A), "udp", CLIENT) != asked     # the rotation went on


@pytest.mark.parametrize("budget_answers, cache_size, added, why", [
    (2.5, 1000, 3, "budget"),       # stops once the estimate reaches the budget
    (1000, 16, 14, "cache"),        # 7/8 of 16 entries
    (1000, 1000, 40, "all"),
])
def test_packing_stops_at_the_budget_or_the_cache_headroom(budget_answers, cache_size, added, why):
    snap = build(services(10))
    one = Responder(snap)                     # what one service's A costs (all are alike here)
    entry = one.prepare(encode_name("s0000.svc.local"), T_A)
    cost = entry_cost(encode_name("s0000.svc.local"), entry.variants)
    r = Responder(snap, cache_size=cache_size)
    packer = Packer(r, int(budget_answers * cost))
    run(packer)
    assert (packer.added, packer.why) == (added, why)
    assert len(r.cache) == added


def test_budget_zero_packs_nothing():
    r = Responder(build(services(3)))
    packer = Packer(r, 0)
    packer.begin()
    assert not packer.step()
    assert packer.state == Packer.DONE and len(r.cache) == 0


def test_nothing_is_packed_before_the_first_sync():
    r = Responder(build(services(3)), ready=False)
    packer = Packer(r, 1 << 30)
    run(packer)
    assert packer.added == 0 and len(r.cache) == 0


def test_a_swap_midway_goes_on_with_the_new_snapshot():
    base = build(services(10))
    r = Responder(base)
    packer = Packer(r, 1 << 30)
    packer.begin()
    packer.step(batch=5)                                   # A of s0000..s0004
    changed, touched, _ = base.apply(4, [("/skydns/local/svc/s0001/i0", None),
                                         ("/skydns/local/svc/s0007/i0", val(host="10.9.9.9"))])
    r.on_swap(changed, touched)
    while packer.step():
        pass
    fresh = Responder(changed)
    for name, qtype in [("s0007.svc.local", T_A), ("s0007.svc.local", T_SRV), ("s0002.svc.local", T_A)]:
        assert r.handle(plain(name, qtype), "udp", CLIENT) == fresh.handle(plain(name, qtype), "udp", CLIENT)
    # s0001's A was packed before the change, which dropped it: it is not packed again
    assert len(r.cache) == packer.added - 1
    assert plain_key(encode_name("s0001.svc.local"), T_A, 1) not in r.cache.entries
    assert plain_key(encode_name("s0002.svc.local"), T_A, 1) in r.cache.entries


def test_a_full_cache_evicts_unused_packed_answers_before_real_queries_entries():
    snap = build(services(40, per=1))
    r = Responder(snap, cache_size=16)
    packer = Packer(r, 1 << 30)
    run(packer)                                             # 14 entries: A of s0000..s0013
    assert packer.added == 14
    r.handle(plain("s0000.svc.local", T_A), "udp", CLIENT)     # the oldest, but used
    real = [f"s{i:04d}.svc.local" for i in range(20, 24)]
    for name in real:                                       # 18 entries: the cache evicts 2
        r.handle(plain(name, T_A), "udp", CLIENT)
    kept = {key_name(key) for key in r.cache.entries}
    assert encode_name("s0000.svc.local") in kept           # used: it stays
    assert all(encode_name(name) in kept for name in real)
    assert encode_name("s0001.svc.local") not in kept       # the oldest never used went first
    assert encode_name("s0002.svc.local") not in kept
    assert kept == {encode_name(f"s{i:04d}.svc.local") for i in [0, *range(3, 14), *range(20, 24)]}
