"""Pure: SOA serial arithmetic (RFC 1982) past 2^32 and the IXFR journal (condensing, bounds,
what it cannot answer), on snapshots built in memory with the real rules (zonedata)."""
from __future__ import annotations

import json

import pytest

from dnsdisco.net.journal import Journal, changes_between, parse_size
from dnsdisco.dns.serial import MOD, revision_of, serial_lt, serial_of
from tests.support.serials import serial_add, serial_gt
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.zonedata import zone_rrsets

ZONE = "svc.local"


def key(name: str) -> str:
    return "/skydns/" + "/".join(reversed(name.split(".")))


def value(host: str, **extra) -> bytes:
    return json.dumps({"host": host, **extra}).encode()


# ---------------------------------------------------------------- serials

def test_serial_is_the_revision_mod_2_32_and_newer_across_the_wrap():
    assert serial_of(0) == 1 and serial_of(7) == 7
    assert serial_of(MOD - 1) == MOD - 1 and serial_of(MOD) == 0 and serial_of(MOD + 5) == 5
    # RFC 1982: a revision past 2^32 still reads as newer
    assert serial_gt(serial_of(MOD + 5), serial_of(MOD - 1))
    assert serial_lt(serial_of(MOD - 1), serial_of(MOD))
    assert not serial_lt(5, 5) and not serial_gt(5, 5)
    assert serial_lt(1, 2) and not serial_lt(2, 1)
    assert not serial_lt(0, 1 << 31) and not serial_gt(0, 1 << 31)     # undefined distance
    assert serial_add(MOD - 1, 2) == 1
    with pytest.raises(ValueError, match="2\\^31"):
        serial_add(1, 1 << 31)


def test_revision_of_a_serial_near_the_current_revision():
    current = MOD + 10
    assert revision_of(serial_of(current), current) == current
    assert revision_of(MOD - 3, current) == MOD - 3           # before the wrap
    assert revision_of(serial_of(current + 1), current) is None   # newer than us
    assert revision_of(3, 100) == 3


# ---------------------------------------------------------------- the journal

def snap(revision: int, items: dict) -> Snapshot:
    return Snapshot.build("/skydns", [ZoneConfig(ZONE)], revision, [(key(n), v) for n, v in items.items()])


def step(journal: Journal, old: Snapshot, changes: dict, revision: int) -> Snapshot:
    new, touched, _ = old.apply(revision, [(key(n), v) for n, v in changes.items()])
    journal.record(ZONE, old.revision, new.revision,
                   changes_between(zone_rrsets(old, ZONE, touched), zone_rrsets(new, ZONE, touched)))
    return new


def texts(rrs) -> set:
    return {(str(rr.rname).rstrip("."), rr.rtype, str(rr.rdata)) for rr in rrs}


def test_a_new_instance_changes_the_service_rrsets_and_adds_its_name():
    journal = Journal()
    s0 = snap(10, {"a.hello.svc.local": value("10.0.0.7", port=80)})
    journal.reset(10)
    s1 = step(journal, s0, {"b.hello.svc.local": value("10.0.0.8", port=80)}, 11)
    diff = journal.diff(ZONE, 10, s1.revision)
    assert texts(diff.removed) == set()
    assert texts(diff.added) == {("hello.svc.local", 1, "10.0.0.8"), ("b.hello.svc.local", 1, "10.0.0.8"),
                                 ("hello.svc.local", 33, "10 100 80 b.hello.svc.local."),
                                 ("b.hello.svc.local", 33, "10 100 80 b.hello.svc.local.")}
    assert journal.diff(ZONE, 11, 11) == "current"
    assert journal.diff(ZONE, 12, 11) == "current"          # a client ahead of us: our SOA


def test_condensing_nets_out_an_add_and_a_delete_and_keeps_ttl_changes():
    journal = Journal()
    s0 = snap(10, {"a.hello.svc.local": value("10.0.0.7")})
    journal.reset(10)
    s1 = step(journal, s0, {"tmp.svc.local": value("10.9.9.9")}, 11)
    s2 = step(journal, s1, {"tmp.svc.local": None}, 12)
    s3 = step(journal, s2, {"a.hello.svc.local": value("10.0.0.7", ttl=99)}, 13)
    diff = journal.diff(ZONE, 10, s3.revision)
    assert not any("tmp" in str(rr.rname) for rr in diff.removed + diff.added)
    # a TTL change replaces the whole RRset (delete the old records, add the new)
    assert ("a.hello.svc.local", 1, "10.0.0.7") in texts(diff.removed)
    assert {rr.ttl for rr in diff.added if str(rr.rname) == "a.hello.svc.local."} == {99}
    # from the middle: only what came after
    diff = journal.diff(ZONE, 12, s3.revision)
    assert texts(diff.added) >= {("a.hello.svc.local", 1, "10.0.0.7")} and not any("tmp" in str(rr.rname)
                                                                              for rr in diff.removed + diff.added)


def test_unknown_serials_and_bounds_give_the_whole_zone():
    journal = Journal(max_entries=3)
    current = snap(100, {"a.svc.local": value("10.0.0.1")})
    assert journal.diff(ZONE, 50, 100) is None            # before any listing: nothing known
    journal.reset(100)
    assert journal.diff(ZONE, 99, 100) is None            # before the listing
    for n in range(5):
        current = step(journal, current, {f"n{n}.svc.local": value(f"10.0.1.{n}")}, 101 + 2 * n)
    assert len(journal.entries) == 3                       # bounded by entries: the oldest went
    assert journal.diff(ZONE, 100, current.revision) is None
    # entries (103,105) (105,107) (107,109) are left: 103 is answerable, 102 was evicted,
    # 104 lies inside a batch (a state never served)
    assert journal.diff(ZONE, 103, current.revision) is not None
    assert journal.diff(ZONE, 102, current.revision) is None
    assert journal.diff(ZONE, 104, current.revision) is None
    # a revision inside a batch was never served: unknown
    wide = Journal()
    wide.reset(200)
    base = snap(200, {"a.svc.local": value("10.0.0.1")})
    after = step(wide, base, {"b.svc.local": value("10.0.0.2")}, 210)
    assert wide.diff(ZONE, 205, after.revision) is None
    assert wide.diff(ZONE, 200, after.revision) is not None
    # a revision in a span where the zone did not change is a known state
    wide.record("other.zone", 210, 220, {("x.other.zone", 1): (None, None)})
    assert wide.diff(ZONE, 215, 220) is not None and not wide.diff(ZONE, 215, 220).added

    # bounded by bytes: one big entry pushes the older ones out
    small = Journal(max_entries=100, max_bytes=2000)
    small.reset(1)
    cur = snap(1, {})
    for n in range(10):
        cur = step(small, cur, {f"h{n}.svc.local": value(f"10.0.2.{n}", text="x" * 100)}, 2 + n)
    assert small.bytes <= 2000 and len(small.entries) < 10
    assert small.diff(ZONE, 1, cur.revision) is None


def test_reset_forgets_everything_and_sizes_parse():
    journal = Journal()
    s0 = snap(10, {})
    journal.reset(10)
    step(journal, s0, {"a.svc.local": value("10.0.0.1")}, 11)
    journal.reset(50)
    assert journal.entries == [] and journal.bytes == 0 and journal.diff(ZONE, 10, 50) is None
    assert parse_size("1000") == (1000, 32 << 20)
    assert parse_size("10:64K") == (10, 65536) and parse_size("5:2M") == (5, 2 << 20)
    with pytest.raises(ValueError, match="ENTRIES"):
        parse_size("lots")
    with pytest.raises(ValueError, match="BYTES"):
        parse_size("10:many")


def test_revisions_past_2_32_in_the_journal():
    """etcd revisions past 2^32: serials wrap to 0, 1, ... and IXFR still finds them."""
    journal = Journal()
    low = MOD - 2
    s0 = snap(low, {"a.svc.local": value("10.0.0.1")})
    journal.reset(low)
    s1 = step(journal, s0, {"b.svc.local": value("10.0.0.2")}, MOD)         # serial 0
    s2 = step(journal, s1, {"c.svc.local": value("10.0.0.3")}, MOD + 3)     # serial 3
    assert serial_of(s1.revision) == 0 and serial_of(s2.revision) == 3
    diff = journal.diff(ZONE, serial_of(low), s2.revision)
    assert {str(rr.rname) for rr in diff.added} >= {"b.svc.local.", "c.svc.local."}
    diff = journal.diff(ZONE, 0, s2.revision)
    names = {str(rr.rname) for rr in diff.added}
    assert "c.svc.local." in names and "b.svc.local." not in names      # (the apex A set changes too)
    assert journal.diff(ZONE, 3, s2.revision) == "current"


class _Worker:
    """What gevent.spawn returns, as far as Transfers looks: run later by the test."""

    def __init__(self, fn):
        self.fn = fn
        self.dead = False

    def run(self):
        self.fn()
        self.dead = True


def test_swaps_that_arrive_while_the_journal_worker_runs_are_merged():
    from dnsdisco.net.transfer import Transfers
    workers = []
    transfers = Transfers(journal=Journal(), spawn=lambda fn: workers.append(_Worker(fn)) or workers[-1])
    s0 = snap(10, {"a.svc.local": value("10.0.0.1")})
    transfers.on_swap(Snapshot.empty("/skydns", s0.zones), s0, None)     # the first listing
    workers[-1].run()
    assert transfers.recorded == 10 and transfers.journal.base == 10
    s1, t1, _ = s0.apply(11, [(key("b.svc.local"), value("10.0.0.2"))])
    s2, t2, _ = s1.apply(12, [(key("c.svc.local"), value("10.0.0.3"))])
    transfers.on_swap(s0, s1, t1)
    transfers.on_swap(s1, s2, t2)                     # while the worker has not run: merged
    assert len(workers) == 2
    workers[-1].run()
    entries = transfers.journal.entries
    assert [(e.start, e.end) for e in entries] == [(10, 12)] and transfers.recorded == 12
    diff = transfers.journal.diff(ZONE, 10, 12)
    assert {str(rr.rname) for rr in diff.added} >= {"b.svc.local.", "c.svc.local."}
    assert transfers.journal.diff(ZONE, 11, 12) is None      # merged away: the whole zone
