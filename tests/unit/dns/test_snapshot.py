"""Snapshot: batches of etcd changes, the indexes (children, empty non-terminals, PTR), the
layered maps past FOLD_AT, and that an incremental snapshot equals a fresh build."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsdisco.dns import layered as layered_mod
from dnsdisco.dns.names import ancestors, name_for, reverse_name
from dnsdisco.dns.layered import FOLD_AT, Layered
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig

PREFIX = "/skydns"
ZONES = (ZoneConfig("svc.local"), ZoneConfig("in-addr.arpa"))


def val(**fields) -> bytes:
    return json.dumps(fields).encode()


def build(items, revision=1, zones=ZONES):
    return Snapshot.build(PREFIX, zones, revision, items)


def state(snap: Snapshot):
    """Everything a snapshot serves from, as plain dicts, read through its public methods:
    records, instance names, PTR owners, and the count below every name that has one."""
    records = dict(snap.named_records())
    ptrs = dict(snap.ptr_items())
    names = set()
    for name in list(records) + [reverse_name(address) for address in ptrs]:
        names.update(ancestors(name))
    below = {name: snap.count_below(name) for name in names if snap.count_below(name)}
    children = dict(snap.parents())
    assert sorted(snap.parent_names()) == sorted(children)          # the same parents, names or not
    assert all(snap.has_instances(name) == bool(children.get(name)) for name in names | set(records))
    return {
        "records": records,
        "children": children,
        "below": below,
        "ptrs": ptrs,
        "sizes": (snap.record_count, snap.parent_count, len(ptrs)),
        "layout": _layout(snap),
    }


def _layout(snap: Snapshot):
    """How the records are held, so two ways to one set of records also hold it alike (a
    plain value packed, a service's node in bytes, whichever path they came by)."""
    values = {name: type(snap._value_at(name)).__name__ for name, _rec in snap.named_records()}
    return values, {par: type(node).__name__ for par, node in snap.nodes.items()}


def test_build_indexes():
    snap = build([
        ("/skydns/local/svc/hello/a", val(host="10.0.0.1", port=80)),
        ("/skydns/local/svc/hello/b", val(host="10.0.0.2")),
        ("/skydns/local/svc/hello/_tcp/_http/x", val(host="10.0.0.3")),
        ("/skydns/local/svc/other", val(text="t")),
    ], revision=12)
    assert snap.revision == 12
    assert snap.record_count == 4
    assert snap.instance_names("hello.svc.local") == ("a.hello.svc.local", "b.hello.svc.local")
    assert snap.instance_names("_tcp.hello.svc.local") == ()         # no record one level below
    assert snap.instance_names("_http._tcp.hello.svc.local") == ("x._http._tcp.hello.svc.local",)
    assert snap.count_below("hello.svc.local") == 3
    assert snap.count_below("svc.local") == 4
    assert snap.exists("_tcp.hello.svc.local")                       # empty non-terminal
    assert snap.exists("hello.svc.local")
    assert not snap.exists("nope.svc.local")
    assert [r.name for r in snap.records_for("hello.svc.local")] == ["a.hello.svc.local", "b.hello.svc.local"]
    assert [r.name for r in snap.records_for("a.hello.svc.local")] == ["a.hello.svc.local"]
    assert snap.ptr_names("1.0.0.10.in-addr.arpa") == ("a.hello.svc.local",)
    assert snap.exists("1.0.0.10.in-addr.arpa")       # automatic PTR name
    assert snap.exists("0.10.in-addr.arpa")           # its empty non-terminal ancestor
    assert not snap.exists("9.0.0.10.in-addr.arpa")
    assert snap.zone_of("x.svc.local").name == "svc.local"
    assert snap.zone_of("example.com") is None


def test_apply_touched_and_revision():
    snap = build([("/skydns/local/svc/hello/a", val(host="10.0.0.1"))], revision=5)
    new, touched, rejected = snap.apply(9, [("/skydns/local/svc/hello/b", val(host="10.0.0.2"))])
    assert rejected == ()
    assert new.revision == 9 and snap.revision == 5            # the old snapshot is unchanged
    assert snap.records_for("hello.svc.local")[0].host == "10.0.0.1" and len(snap.records_for("hello.svc.local")) == 1
    assert {"b.hello.svc.local", "hello.svc.local", "svc.local", "local", "",
            "2.0.0.10.in-addr.arpa"} <= touched
    assert "a.hello.svc.local" not in touched
    # an unchanged put touches nothing
    again, touched2, _ = new.apply(10, [("/skydns/local/svc/hello/b", val(host="10.0.0.2"))])
    assert touched2 == frozenset()
    # an address change touches both reverse names
    moved, touched3, _ = again.apply(11, [("/skydns/local/svc/hello/b", val(host="10.0.0.3"))])
    assert {"2.0.0.10.in-addr.arpa", "3.0.0.10.in-addr.arpa", "b.hello.svc.local"} <= touched3
    assert moved.ptr_names("2.0.0.10.in-addr.arpa") == ()
    assert moved.ptr_names("3.0.0.10.in-addr.arpa") == ("b.hello.svc.local",)


@pytest.mark.parametrize("batch,present", [
    ([("put", "10.0.0.2"), ("del", None)], False),
    ([("del", None), ("put", "10.0.0.2")], True),
    ([("put", "10.0.0.2"), ("del", None), ("put", "10.0.0.3")], True),   # re-add
    ([("put", "10.0.0.2"), ("put", "10.0.0.3")], True),
])
def test_same_key_several_times_in_one_batch(batch, present):
    base = build([("/skydns/local/svc/hello/a", val(host="10.0.0.1"))])
    key = "/skydns/local/svc/hello/b"
    changes = [(key, val(host=h) if op == "put" else None) for op, h in batch]
    new, _touched, _ = base.apply(2, changes)
    final = {}
    for op, h in batch:
        final.pop(key, None) if op == "del" else final.__setitem__(key, h)
    expect = build([("/skydns/local/svc/hello/a", val(host="10.0.0.1"))] +
                   [(k, val(host=h)) for k, h in final.items()])
    assert state(new) == state(expect)
    assert (new.record_at("b.hello.svc.local") is not None) == present


def test_delete_last_instance_removes_ent_and_children():
    snap = build([("/skydns/local/svc/hello/_tcp/_http/x", val(host="10.0.0.3"))])
    assert snap.exists("_tcp.hello.svc.local")
    new, touched, _ = snap.apply(2, [("/skydns/local/svc/hello/_tcp/_http/x", None)])
    assert not new.exists("_tcp.hello.svc.local") and not new.exists("hello.svc.local")
    assert "_tcp.hello.svc.local" in touched and "hello.svc.local" in touched
    assert state(new) == state(build([]))
    # deleting a key that never existed changes nothing
    same, touched2, _ = new.apply(3, [("/skydns/local/svc/ghost", None)])
    assert touched2 == frozenset() and state(same) == state(new)


def test_ptr_index_follows_puts_and_deletes():
    snap = build([("/skydns/local/svc/x/a", val(host="10.0.0.1")), ("/skydns/local/svc/y/b", val(host="10.0.0.1"))])
    assert snap.ptr_names("1.0.0.10.in-addr.arpa") == ("a.x.svc.local", "b.y.svc.local")
    one, _, _ = snap.apply(2, [("/skydns/local/svc/x/a", None)])
    assert one.ptr_names("1.0.0.10.in-addr.arpa") == ("b.y.svc.local",)
    none, _, _ = one.apply(3, [("/skydns/local/svc/y/b", val(host="fd00::1"))])
    assert none.ptr_names("1.0.0.10.in-addr.arpa") == ()
    assert not none.exists("0.10.in-addr.arpa")
    assert none.ptr_names("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa") == ("b.y.svc.local",)
    name_host, _, _ = none.apply(4, [("/skydns/local/svc/y/b", val(host="db.example.com"))])
    assert dict(name_host.ptr_items()) == {}


@pytest.mark.parametrize("key,value,fragment", [
    ("/skydns/local/svc/bad1", b"{not json", "not JSON"),
    ("/skydns/local/svc/bad2", val(host=5), "host"),
    ("/skydns/local/svc/bad3", val(host="10.0.0.300"), "10.0.0.300"),
    ("/skydns/local/svc/bad4", val(host="10.0.0.1", port=65536), "port"),
    ("/skydns/local/svc/bad5", val(host="10.0.0.1", port=-1), "port"),
    ("/skydns/local/svc/bad.dot", val(host="10.0.0.1"), "does not map"),
    ("/skydns/local//svc", val(host="10.0.0.1"), "does not map"),
    ("/skydns/", val(host="10.0.0.1"), "does not map"),
    ("/skydns/local/svc/" + "x" * 64, val(host="10.0.0.1"), "does not map"),
    ("/other/local/svc/x", val(host="10.0.0.1"), "does not map"),
])
def test_bad_values_skipped_with_key_named(key, value, fragment):
    good = ("/skydns/local/svc/good", val(host="10.0.0.1"))
    snap = build([good, (key, value)])
    assert [k for k, _ in snap.rejected] == [key]
    message = snap.rejected[0][1]
    assert key in message and fragment in message
    assert snap.record_count == 1
    assert snap.records_for("good.svc.local")[0].host == "10.0.0.1"


def test_bad_value_replacing_good_one_removes_it():
    snap = build([("/skydns/local/svc/x", val(host="10.0.0.1"))])
    new, touched, rejected = snap.apply(2, [("/skydns/local/svc/x", b"garbage")])
    assert [k for k, _ in rejected] == ["/skydns/local/svc/x"]
    assert new.record_at("x.svc.local") is None and "x.svc.local" in touched


def test_upper_case_key_is_served_under_its_lower_case_name():
    snap = build([("/skydns/local/svc/hello/Web1", val(host="10.0.0.1"))])
    assert [r.host for r in snap.records_for("hello.svc.local")] == ["10.0.0.1"]
    assert snap.record_at("web1.hello.svc.local") is not None
    gone, _, _ = snap.apply(2, [("/skydns/local/svc/hello/Web1", None)])
    assert state(gone) == state(build([]))


def test_bytes_keys_accepted():
    snap = build([(b"/skydns/local/svc/x", val(host="10.0.0.1"))])
    assert snap.record_at("x.svc.local").host == "10.0.0.1"


def test_with_zones_keeps_records():
    snap = build([("/skydns/local/svc/x", val(host="10.0.0.1"))], revision=4)
    other = snap.with_zones([ZoneConfig("svc.local", ttl=99)])
    assert other.zones[0].ttl == 99 and other.revision == 4
    assert other.record_at("x.svc.local") == snap.record_at("x.svc.local")
    assert other.zone_of("1.0.0.10.in-addr.arpa") is None
    assert snap.zone_of("1.0.0.10.in-addr.arpa") is not None     # the original is unchanged


@pytest.mark.parametrize("reverse_zone", ["in-addr.arpa", "ip6.arpa", "arpa", "10.in-addr.arpa"])
def test_ptr_index_kept_with_or_without_a_reverse_zone(reverse_zone):
    """PTR questions for registered addresses are answered without a reverse zone too, so the
    address index follows every change either way; the reverse names' empty non-terminals are
    kept only while a reverse zone is served. SIGHUP adding one gives the same state as a fresh
    build, and removing it gives the state before."""
    items = [("/skydns/local/svc/hello/a", val(host="10.0.0.1")), ("/skydns/local/svc/hello/b", val(host="fd00::1"))]
    plain = build(items, zones=(ZoneConfig("svc.local"),))
    assert plain.ptr_names("1.0.0.10.in-addr.arpa") == ("a.hello.svc.local",)
    assert not plain.exists("0.10.in-addr.arpa")
    moved, touched, _ = plain.apply(2, [("/skydns/local/svc/hello/c", val(host="10.0.0.3"))])
    assert moved.ptr_names("3.0.0.10.in-addr.arpa") == ("c.hello.svc.local",)
    assert "3.0.0.10.in-addr.arpa" in touched
    reverse = (ZoneConfig("svc.local"), ZoneConfig(reverse_zone))
    widened = moved.with_zones(reverse)
    fresh = build(items + [("/skydns/local/svc/hello/c", val(host="10.0.0.3"))], revision=2, zones=reverse)
    assert state(widened) == state(fresh)
    assert widened.exists("0.10.in-addr.arpa")
    narrowed = widened.with_zones((ZoneConfig("svc.local"),))
    assert state(narrowed) == state(moved)


def test_layered_mapping():
    base = Layered({"a": 1, "b": 2})
    m = base.with_changes({"a": None, "c": 3})
    assert dict(m.items()) == {"b": 2, "c": 3} and len(m) == 2 and "a" not in m and m.get("a") is None
    m2 = m.with_changes({"a": 5, "zz": None})
    assert dict(m2.items()) == {"a": 5, "b": 2, "c": 3} and len(m2) == 3
    assert dict(base.items()) == {"a": 1, "b": 2}


# ----------------------------------------------------------------- one by one past FOLD_AT

def _key(i: int) -> str:
    return f"/skydns/local/svc/s{i % 37}/i{i % 53}"


def test_many_single_changes_fold_and_match_a_fresh_build():
    assert FOLD_AT <= 1024
    snap = build([])
    etcd: dict[str, bytes] = {}
    for step in range(2 * FOLD_AT + 300):
        key = _key(step * 7)
        if step % 5 == 3:
            etcd.pop(key, None)
            change = (key, None)
        else:
            value = val(host=f"10.{step % 3}.{step % 7}.{step % 11}", port=step % 3)
            etcd[key] = value
            change = (key, value)
        snap, _touched, _ = snap.apply(step + 2, [change])
    assert len(snap.nodes._over) < FOLD_AT and len(snap.below._over) < FOLD_AT   # folded on the way
    assert state(snap) == state(build(list(etcd.items())))
    for key in etcd:
        assert snap.record_at(name_for(PREFIX, key)) is not None



@pytest.mark.parametrize("prefix, key, kept", [
    ("/skydns", "/skydns/local/svc/hello/a", False),       # the name's own key: not held
    ("/skydns", "/skydns/local/svc/Hello/a", True),        # upper case maps to the same name
    ("/skydns", "/skydns/local/svc/hello/ a", True),       # a space name_for strips
    ("/", "/local/svc/hello", False),
    ("/skydns/", "/skydns/local/svc/hello", False),
])
def test_record_keys_are_held_only_when_the_name_does_not_give_them(prefix, key, kept):
    snap = Snapshot.build(prefix, ZONES, 1, [(key, val(host="10.0.0.1"))])
    (rec,) = [rec for _name, rec in snap.named_records()]
    assert rec.key == (key if kept else "")
    assert snap.key_of(rec) == key
    assert [snap.key_of(r) for r in snap.all_records()] == [key]
    changed, _touched, _ = snap.apply(2, [(key, val(host="10.0.0.2"))])
    assert changed.key_of(changed.record_at(rec.name)) == key

_names = st.sampled_from(["a", "b", "c", "Web1", "_tcp"])
_keys = st.lists(_names, min_size=1, max_size=4).map(lambda parts: "/skydns/local/svc/" + "/".join(parts))
_values = st.one_of(
    st.none(),
    st.builds(lambda a, p: val(host=f"10.0.0.{a}", port=p), st.integers(1, 4), st.integers(0, 2)),
    st.builds(lambda a: val(host=f"fd00::{a}"), st.integers(1, 3)),
    st.just(val(host="other.svc.local")),
    st.just(val(text="t")),
    st.just(b"not json"),
)
_batches = st.lists(st.lists(st.tuples(_keys, _values), min_size=1, max_size=6), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches, st.integers(2, 40))
def test_incremental_equals_build(batches, fold_at):
    """Any sequence of batches gives the same snapshot as building the final etcd state."""
    saved = layered_mod.FOLD_AT, layered_mod.MIDDLE_SHARE
    # fold often, into the middle tier and on into the base, so every layout is exercised
    layered_mod.FOLD_AT, layered_mod.MIDDLE_SHARE = fold_at, 2
    try:
        snap = build([])
        etcd: dict[str, bytes] = {}
        for rev, batch in enumerate(batches, start=2):
            for key, value in batch:
                if value is None:
                    etcd.pop(key, None)
                else:
                    etcd[key] = value
            snap, touched, _ = snap.apply(rev, batch)
        fresh = build(list(etcd.items()), revision=snap.revision)
        assert state(snap) == state(fresh)
        for name in ("svc.local", "a.svc.local", "b.a.svc.local", "_tcp.svc.local", "1.0.0.10.in-addr.arpa",
                     "0.0.10.in-addr.arpa"):
            assert snap.exists(name) == fresh.exists(name)
            assert snap.records_for(name) == fresh.records_for(name)
    finally:
        layered_mod.FOLD_AT, layered_mod.MIDDLE_SHARE = saved


# ------------------------------------------------------------------ bulk.Builder: serve's first sync

MIXED = [
    ("/skydns/local/svc/a/i0", b'{"host":"10.0.0.1","port":80}'),
    ("/skydns/local/svc/a/i1", b'{ "host" : "10.0.0.2" , "port" : 0 }'),
    ("/skydns/local/svc/a/I1", b'{"host":"10.0.0.3","port":80}'),          # one name with i1: i1 is larger
    ("/skydns/local/svc/b/x", b'{"host":"10.0.0.1","port":8080,"ttl":9}'),  # 10.0.0.1 has two owners
    ("/skydns/local/svc/b/y", b'{"host":"10.0.0.300","port":1}'),          # plain shape, bad address
    ("/skydns/local/svc/b/z", b'{"host":"10.0.0.4","port":65536}'),        # plain shape, bad port
    ("/skydns/local/svc/b/w", b'{"host":"10.0.0.5","port":007}'),          # not JSON
    ("/skydns/local/svc/c", b'{"text":"own"}'),
    ("/skydns/local/svc/c/_tcp/_http/x", b'{"host":"fd00::1","port":80}'),
    ("/skydns/local/svc", b'{"host":"10.0.0.9","port":1}'),                # the zone apex itself
    ("/skydns/local/svc/d/\xe9", b'{"host":"10.0.0.6","port":1}'),          # not a plain label
    ("/skydns/local/svc/e/n", b'{"host":"db.example.com"}'),
]


def lines_of(pairs) -> bytes:
    return b"\n".join(key.encode() + b"\t" + value for key, value in pairs)


@pytest.mark.parametrize("split", [1, 3, len(MIXED)])
def test_builder_reads_helper_lines_as_build_reads_pairs(split):
    """Pages of `key TAB value` lines (the helper's form), in any order, make the snapshot
    `Snapshot.build` makes of the same pairs in key order."""
    from dnsdisco.dns.bulk import Builder
    pairs = sorted(MIXED)
    builder = Builder(PREFIX, ZONES)
    pages = [pairs[i:i + split] for i in range(0, len(pairs), split)]
    for page in reversed(pages):
        builder.page(lines_of(page))
    built = builder.finish(5)
    expected = build(pairs, revision=5)
    assert state(built) == state(expected)
    assert sorted(built.rejected) == sorted(expected.rejected)
    assert len(built.rejected) == 3
    assert built.record_at("i1.a.svc.local").host == "10.0.0.2"
    assert built.ptr_names("1.0.0.10.in-addr.arpa") == ("i0.a.svc.local", "x.b.svc.local")


def test_builder_starts_over_when_the_listing_does():
    from dnsdisco.dns.bulk import Builder
    builder = Builder(PREFIX, ZONES)
    builder.page(lines_of(MIXED[:4]))
    builder.page(None)
    builder.page(lines_of([("/skydns/local/svc/z/i0", b'{"host":"10.1.1.1","port":1}')]))
    assert state(builder.finish(1)) == state(build([("/skydns/local/svc/z/i0", b'{"host":"10.1.1.1","port":1}')]))


def test_ptr_index_of_a_dense_network_follows_changes_both_ways():
    """A /24 holding more than nodes.DENSE_AT addresses is held as 256 slots, fewer as pairs:
    changes across that line, one at a time and in one batch, give a fresh build's state."""
    from dnsdisco.dns.nodes import DENSE_AT
    etcd = {f"/skydns/local/svc/s{i % 7}/i{i}": val(host=f"10.1.2.{i}", port=i) for i in range(DENSE_AT + 3)}
    etcd["/skydns/local/svc/twin/a"] = val(host="10.1.2.5")          # a second owner in the dense /24
    snap = build(list(etcd.items()))
    from dnsdisco.dns.bulk import Builder
    builder = Builder(PREFIX, ZONES)
    builder.page(lines_of(sorted((key, b'{"host":"%s","port":1}' % json.loads(value)["host"].encode())
                                 for key, value in etcd.items())))
    assert dict(builder.finish(1).ptr_items()) == dict(snap.ptr_items())      # helper lines: the other path
    assert snap.ptr_names("5.2.1.10.in-addr.arpa") == ("a.twin.svc.local", "i5.s5.svc.local")
    assert snap.count_below("2.1.10.in-addr.arpa") == DENSE_AT + 3
    for step, key in enumerate(sorted(etcd)[:6]):               # down across the line, one by one
        snap, touched, _ = snap.apply(step + 2, [(key, None)])
        del etcd[key]
        assert state(snap) == state(build(list(etcd.items())))
    batch = [(f"/skydns/local/svc/n/i{i}", val(host=f"10.1.2.{i}")) for i in range(100, 200)]
    snap, touched, _ = snap.apply(20, batch)                      # and up again in one batch
    etcd.update(batch)
    assert "150.2.1.10.in-addr.arpa" in touched
    assert state(snap) == state(build(list(etcd.items())))
    assert snap.ptr_names("150.2.1.10.in-addr.arpa") == ("i150.n.svc.local",)
    assert snap.ptr_names("250.2.1.10.in-addr.arpa") == ()


_listing_keys = st.builds(lambda par, label, variant: f"/skydns/local/svc/{par}/{variant(label)}",
                          st.sampled_from(["a", "b", "a/_tcp"]), st.sampled_from(["i0", "i1", "x-y", "x"]),
                          st.sampled_from([str, str.upper, lambda label: " " + label, lambda label: "\u00a0" + label]))
_listing_values = st.one_of(
    st.builds(lambda a, p: b'{"host":"10.0.%d.%d","port":%d}' % (a // 4, a, p), st.integers(1, 6), st.integers(0, 2)),
    st.builds(lambda a: val(host=f"10.0.0.{a}", ttl=5), st.integers(1, 3)),
    st.just(b'{"host":"10.0.0.300","port":1}'),
    st.just(val(text="t")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_listing_keys, _listing_values, max_size=14), st.integers(1, 4), st.randoms())
def test_builder_pages_equal_applying_the_listing_in_key_order(listing, split, rnd):
    """Short-path keys, keys of one name in other letter case or with a leading space that
    name_for strips (a no-break space makes a key larger than the name's own), bad and other values, in pages of any order: the
    Builder's snapshot is the one applying the listing in key order makes."""
    from dnsdisco.dns.bulk import Builder
    pairs = sorted(listing.items())
    applied = Snapshot.empty(PREFIX, ZONES)
    for key, value in pairs:
        applied, _touched, _ = applied.apply(1, [(key, value)])
    pages = [pairs[i:i + split] for i in range(0, len(pairs), split)]
    rnd.shuffle(pages)
    builder = Builder(PREFIX, ZONES)
    for page in pages:
        builder.page(lines_of(page))
    assert state(builder.finish(1)) == state(applied)


def _applied_one_by_one(pairs: list, zones) -> tuple:
    """The snapshot applying `pairs` one at a time to an empty one makes (as watch events
    would), and what it rejected: what a Builder given the same listing must make."""
    applied = Snapshot.empty(PREFIX, zones)
    rejected = []
    for key, value in pairs:
        applied, _touched, skipped = applied.apply(1, [(key, value)])
        rejected += skipped
    return applied, rejected


def _plain(host: str, port: int = 1) -> bytes:
    return b'{"host":"%s","port":%d}' % (host.encode(), port)


_LONG = "/".join(["p" * 60] * 3)      # a directory whose parents leave a label less than 63 octets of room


@pytest.mark.parametrize("listing", [
    # two plain siblings on consecutive lines: one row of the page's regular expression
    [("/skydns/local/svc/a/i0", _plain("10.0.0.1")), ("/skydns/local/svc/a/i1", _plain("10.0.0.2"))],
    # the second of two siblings, the first, or both out of range (a host, a port)
    [("/skydns/local/svc/a/i0", _plain("10.0.0.1")), ("/skydns/local/svc/a/i1", _plain("10.0.0.2", 65536))],
    [("/skydns/local/svc/a/i0", _plain("10.0.0.256")), ("/skydns/local/svc/a/i1", _plain("10.0.0.2"))],
    [("/skydns/local/svc/a/i0", _plain("10.0.0.256")), ("/skydns/local/svc/a/i1", _plain("10.0.0.2", 99999)),
     ("/skydns/local/svc/b/i0", _plain("10.0.0.3"))],
    # three and five siblings: rows of two and one under one parent
    [(f"/skydns/local/svc/a/i{n}", _plain(f"10.0.0.{n + 1}", n)) for n in range(3)],
    [(f"/skydns/local/svc/a/i{n}", _plain(f"10.0.0.{n + 1}", n)) for n in range(5)],
    # siblings whose key order is not their name order ("x" < "x-y", but x-y.a sorts before x.a)
    [("/skydns/local/svc/a/x", _plain("10.0.0.1")), ("/skydns/local/svc/a/x-y", _plain("10.0.0.2"))],
    # a line of another shape between two siblings, and after them
    [("/skydns/local/svc/a/i0", _plain("10.0.0.1")), ("/skydns/local/svc/a/i00", val(host="::1")),
     ("/skydns/local/svc/a/i1", _plain("10.0.0.2")), ("/skydns/local/svc/a/z", val(text="t"))],
    # siblings of two parents on consecutive lines, and parents of two directories
    [("/skydns/local/svc/a/i0", _plain("10.0.0.1")), ("/skydns/local/svc/b/i0", _plain("10.0.0.1")),
     ("/skydns/local/svc/b/_tcp/x", _plain("10.0.0.2")), ("/skydns/local/svc/c/i0", _plain("10.0.0.3"))],
    # an empty directory part, a parent that is a zone apex, a parent a zone apex is under
    [("/skydns/local/x", _plain("10.0.0.1")), ("/skydns/local/svc/x", _plain("10.0.0.2")),
     ("/skydns/arpa/in-addr/x", _plain("10.0.0.3")), ("/skydns/arpa/y", _plain("10.0.0.4"))],
    # parents with no room for a long label, and with room for a short one
    [(f"/skydns/local/svc/{_LONG}/q/{'l' * 63}", _plain("10.0.0.1")), (f"/skydns/local/svc/{_LONG}/q/i0", _plain("10.0.0.2")),
     (f"/skydns/local/svc/{_LONG}/r/{'l' * 9}", _plain("10.0.0.3"))],
    # directory parts with an empty label or one longer than 63 octets, beside a plain one
    [("/skydns//local/svc/a/i0", _plain("10.0.0.1")), ("/skydns//local/svc/a/i1", _plain("10.0.0.2")),
     ("/skydns/local//svc/a/i0", _plain("10.0.0.3")), (f"/skydns/local/{'v' * 64}/a/i0", _plain("10.0.0.4")),
     (f"/skydns/local/{'v' * 63}/a/i0", _plain("10.0.0.5")), ("/skydns/local/svc/a/i0", _plain("10.0.0.6"))],
    # port 0, a dense /24 (more than nodes.DENSE_AT addresses) with a shared address
    [(f"/skydns/local/svc/s{n // 2}/i{n % 2}", _plain(f"10.1.1.{n}", 0)) for n in range(90)]
    + [("/skydns/local/svc/twin/a", _plain("10.1.1.7")), ("/skydns/local/svc/twin/b", _plain("10.1.1.7"))],
])
@pytest.mark.parametrize("split", [1, 2, 3, 1000])
def test_builder_rows_of_siblings_equal_applying_the_listing(listing, split):
    """The helper's lines of the usual service (one or two plain siblings) are read a row at a
    time; siblings in any number of rows, out of name order, between other lines, with values
    out of range, or under a parent a zone gives limits of its own make the snapshot that
    applying the listing in key order makes, in pages of any size and order."""
    from dnsdisco.dns.bulk import Builder
    pairs = sorted(listing)
    applied, rejected = _applied_one_by_one(pairs, ZONES)
    builder = Builder(PREFIX, ZONES)
    for page in reversed([pairs[i:i + split] for i in range(0, len(pairs), split)]):
        builder.page(lines_of(page))
    built = builder.finish(1)
    assert state(built) == state(applied)
    assert sorted(built.rejected) == sorted(rejected)


@pytest.mark.parametrize("limit", [30, 35, 40, 64])
def test_builder_counts_a_plain_value_as_its_line_holds_it(limit):
    """A zone's value limit counts a value's own octets, the spaces JSON allows included: a
    plain line the limit turns away is refused as applying it refuses it."""
    from dnsdisco.dns.bulk import Builder
    zones = (ZoneConfig("svc.local", max_value_bytes=limit),)
    pairs = [("/skydns/local/svc/a/i0", b'{ "host" : "10.0.0.1" , "port" : 80 }'),        # 37 octets
             ("/skydns/local/svc/a/i1", b'{"host":"10.0.0.2","port":80}'),                # 29 octets
             ("/skydns/local/svc/b/i0", b'{"host" : "10.0.0.3","port":1234}')]            # 33 octets
    applied = Snapshot.empty(PREFIX, zones)
    applied, _touched, rejected = applied.apply(1, pairs)
    builder = Builder(PREFIX, zones)
    builder.page(lines_of(pairs))
    built = builder.finish(1)
    assert state(built) == state(applied)
    assert sorted(built.rejected) == sorted(rejected)


_LIMITED_ZONES = (ZoneConfig("svc.local", max_value_bytes=64), ZoneConfig("big.svc.local", max_value_bytes=200),
                  ZoneConfig("local", max_value_bytes=100), ZoneConfig("zz.big.svc.local", max_value_bytes=64))


@pytest.mark.parametrize("paths, refused", [
    (("svc/a/x", "svc/big/x", "svc/big/b/x", "svc/c/x", "other/x", "svc/x", "big/x"), {"svc/a/x", "svc/c/x", "svc/x"}),
    (("svc/big/b/x", "svc/big/x", "svc/bih/d/x"), {"svc/bih/d/x"}),       # beside a directory of another zone
    (("svc/big/b/x", "svc/big/x", "svc/big/zz/q/x"), {"svc/big/zz/q/x"}),  # below it, in a zone of its own
])
def test_builder_gives_each_parent_its_own_zones_value_limit(paths, refused):
    """A parent's value limit is its zone's; siblings' parents share their directory's, but
    a parent that is a zone apex, beside the directory or below it in another zone has its own."""
    from dnsdisco.dns.bulk import Builder
    long = b'{"host":"10.0.0.1","port":1,   "weight":5}' + b" " * 40         # 82 octets
    pairs = sorted([(f"/skydns/local/{path}", long) for path in paths]
                   + [("/skydns/local/svc/big/a/y", b'{"host":"10.0.0.2","port":2}')])
    applied, rejected = _applied_one_by_one(pairs, _LIMITED_ZONES)
    builder = Builder(PREFIX, _LIMITED_ZONES)
    builder.page(lines_of(pairs))
    built = builder.finish(1)
    assert state(built) == state(applied)
    assert sorted(built.rejected) == sorted(rejected)
    assert {key[len("/skydns/local/"):] for key, _message in rejected} == refused


@pytest.mark.parametrize("change, reverse_touched, names_after", [
    # a shared address gains an owner under a third service
    (("/skydns/local/svc/three/x", val(host="10.0.0.7", port=80)), True,
     ("a.one.svc.local", "b.two.svc.local", "x.three.svc.local")),
    # one of its owners goes
    (("/skydns/local/svc/one/a", None), True, ("b.two.svc.local",)),
    # an owner moves to another address
    (("/skydns/local/svc/two/b", val(host="10.0.0.8", port=80)), True, ("a.one.svc.local",)),
    # a service holding the address changes a record with another address: its names stay
    (("/skydns/local/svc/one/other", val(host="10.0.0.9", port=80)), False, ("a.one.svc.local", "b.two.svc.local")),
    # the port changes, the address does not: the PTR names are the same
    (("/skydns/local/svc/one/a", val(host="10.0.0.7", port=81)), False, ("a.one.svc.local", "b.two.svc.local")),
])
def test_a_shared_address_touches_its_reverse_name_only_when_its_names_change(change, reverse_touched, names_after):
    """Many services often register one host's address; a change is compared on the edited
    services' names alone, so the reverse name is touched (its cached answers dropped) exactly
    when the set of names holding the address changes."""
    items = [("/skydns/local/svc/one/a", val(host="10.0.0.7", port=80)),
             ("/skydns/local/svc/two/b", val(host="10.0.0.7", port=80))]
    items += [(f"/skydns/local/svc/s{i}/i", val(host="10.0.0.7", port=80)) for i in range(40)]
    snap = build(items)
    after, touched, _ = snap.apply(2, [change])
    assert ("7.0.0.10.in-addr.arpa" in touched) is reverse_touched
    assert set(names_after) <= set(after.ptr_names("7.0.0.10.in-addr.arpa"))
    fresh = build([item for item in items if item[0] != change[0]] + ([change] if change[1] else []), revision=2)
    assert after.ptr_names("7.0.0.10.in-addr.arpa") == fresh.ptr_names("7.0.0.10.in-addr.arpa")
