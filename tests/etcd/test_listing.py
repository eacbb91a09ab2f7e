"""etcd/listing.py: a prefix read in windows side by side returns every key exactly once, at one
revision, also while keys change and when etcd compacts mid-way (real etcd); and the pure parts
(the cuts between two keys, the search for the last key) against a sorted list."""
from __future__ import annotations

import bisect
import threading
from types import SimpleNamespace

import pytest

from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.etcd import listing
from dnsdisco.etcd.helper import ProcessKV
from dnsdisco.etcd.types import check_settings


@pytest.fixture
def small_windows(monkeypatch):
    """Windows and pages small enough that a few thousand keys make many of each."""
    monkeypatch.setattr(listing, "WINDOWED_FROM", 100)
    monkeypatch.setattr(listing, "WINDOW_KEYS", 300)
    monkeypatch.setattr(listing, "LIST_PAGE_BYTES", 2000)


def fill(kv, prefix: str, count: int) -> list[str]:
    keys = [f"{prefix}local/svc/s{i:05d}/i{i % 3}" for i in range(count)]
    kv.put_many([(key, b'{"host":"10.0.%d.%d"}' % (i // 256, i % 256)) for i, key in enumerate(keys)])
    return sorted(keys)


def at_revision(etcd, prefix: str, revision: int) -> list[tuple[str, bytes]]:
    lines = etcd.etcdctl("get", "--prefix", f"--rev={revision}", prefix).splitlines()
    return list(zip(lines[0::2], [v.encode() for v in lines[1::2]]))


def test_windows_return_every_key_once_in_order(kv, prefix, small_windows):
    keys = fill(kv, prefix, 3000)
    kv.put(prefix.rstrip("/") + "X", b"outside")
    rev, items = kv.list_prefix(prefix, page_size=50)
    assert [k for k, _ in items] == keys
    assert rev == kv.revision()


def test_windows_handed_over_as_they_come_hold_each_key_once(etcd, kv, prefix, small_windows):
    """Pages in any order while a writer changes, adds and deletes keys: the listing is the
    prefix at its revision, each key once."""
    keys = fill(kv, prefix, 3000)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 3000:
            kv.put(keys[(i * 7) % len(keys)], b'{"host":"10.9.9.%d"}' % (i % 256))
            kv.put(f"{prefix}local/svc/new{i:05d}", b"{}")
            kv.delete(keys[(i * 13 + 5) % len(keys)])
            i += 1

    pages, lock = [], threading.Lock()

    def take(page):
        with lock:
            pages.append(page)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        rev, rest = kv.list_prefix(prefix, page_size=50, pages=take)
    finally:
        stop.set()
        thread.join(30)
    assert rest == [] and None not in pages and len(pages) > 10
    listed = [pair for page in pages for pair in page]
    assert len({k for k, _ in listed}) == len(listed)
    assert sorted(listed) == at_revision(etcd, prefix, rev)


def test_a_compaction_mid_way_starts_the_windows_over(etcd, kv, prefix, small_windows):
    keys = fill(kv, prefix, 2000)
    got, compacted_at = [], []
    lock = threading.Lock()

    def take(page):
        with lock:
            if page is not None and not compacted_at:
                for key in keys[::10]:
                    kv.put(key, b'{"host":"10.8.8.8"}')
                compacted_at.append(kv.put(prefix + "zz", b'{"host":"10.7.7.7"}'))
                kv.compact(compacted_at[0])
            got.append(page)

    rev, _ = kv.list_prefix(prefix, page_size=50, pages=take)
    restart = len(got) - 1 - got[::-1].index(None)          # the last start-over
    listed = [pair for page in got[restart + 1:] for pair in page]
    assert len({k for k, _ in listed}) == len(listed)
    assert sorted(listed) == at_revision(etcd, prefix, rev)
    assert rev >= compacted_at[0] and dict(listed)[prefix + "zz"] == b'{"host":"10.7.7.7"}'


def test_the_helper_hands_lines_that_build_the_same_snapshot(etcd, kv, prefix, small_windows):
    """serve's path: parts of `key TAB value` lines (or pairs, for a page whose value holds a
    tab or a newline) built into a snapshot equal to one built from the in-process listing."""
    fill(kv, prefix, 1500)
    kv.put(prefix + "local/svc/odd/x", b'{"text": "a\ttab and a\nnewline"}')
    kv.put(prefix + "local/svc/Upper/x", b'{"host": "10.1.1.1"}')
    kv.put(prefix + "local/svc/bad/x", b'{"host": "10.1.1.300"}')
    helper = ProcessKV(check_settings([etcd.endpoint], timeout=10))
    try:
        builder = snapshot_builder(prefix)
        parts = []

        def take(part):
            parts.append(type(part))
            builder.page(part)

        rev, _ = helper.list_prefix(prefix, 50, pages=take)
    finally:
        helper.close()
    assert bytes in parts and list in parts        # both forms were sent
    built = builder.finish(rev)
    rev2, items = kv.list_prefix(prefix)
    assert rev2 == rev
    direct = Snapshot.build(prefix.rstrip("/"), ZONES, rev, items)
    for read in ("named_records", "parents", "ptr_items"):      # the snapshot's public reads
        assert dict(getattr(built, read)()) == dict(getattr(direct, read)()), read
    assert [built.count_below(name) for name, _kids in direct.parents()] == \
        [direct.count_below(name) for name, _kids in direct.parents()]
    assert sorted(built.rejected) == sorted(direct.rejected) and built.rejected


ZONES = (ZoneConfig("svc.local"),)


def snapshot_builder(prefix: str):
    from dnsdisco.dns.bulk import Builder
    return Builder(prefix.rstrip("/"), ZONES)


# ------------------------------------------------------------------ pure: cuts and the last key

class SortedRange:
    """A sorted key list answering range requests as etcd does (first keys of [start, end),
    and the count of the whole range)."""

    def __init__(self, keys):
        self.keys = sorted(keys)
        self.requests = 0

    def __call__(self, start, end, limit, revision, keys_only):
        self.requests += 1
        lo = bisect.bisect_left(self.keys, start)
        hi = len(self.keys) if end == b"\0" else bisect.bisect_left(self.keys, end)
        found = self.keys[lo:max(lo, hi)]
        kvs = [SimpleNamespace(key=k, value=b"") for k in found[:limit or None]]
        return SimpleNamespace(kvs=kvs, count=len(found), more=len(found) > len(kvs),
                               header=SimpleNamespace(revision=1))


@pytest.mark.parametrize("keys", [
    [b"/p/s%07d/i%d" % (i, j) for i in range(0, 100000, 7) for j in (0, 1)],
    [b"/p/" + bytes([c]) * n for c in range(1, 256, 5) for n in (1, 2, 30)],
    [b"/p/a", b"/p/a\0", b"/p/a\0\0", b"/p/b"],
    [b"/p/only"],
    [b"/p/x" * 40 + b"%d" % i for i in range(50)],
])
def test_last_key_and_cuts(keys):
    rng = SortedRange(keys)
    lo, hi = b"/p/", b"/q"
    assert listing._last_key(rng, lo, hi, 1) == max(keys)
    assert rng.requests < 2000
    cuts = listing._cuts(min(keys), max(keys) + b"\0", 16)
    assert all(min(keys) < c < max(keys) + b"\0" for c in cuts)
    assert cuts == sorted(set(cuts))


def test_last_key_of_an_empty_range():
    assert listing._last_key(SortedRange([b"/a"]), b"/p/", b"/q", 1) is None


@pytest.mark.parametrize("count", [1, 99, 5000, 40000])
def test_list_range_against_a_sorted_list(count, monkeypatch):
    monkeypatch.setattr(listing, "WINDOWED_FROM", 100)
    monkeypatch.setattr(listing, "WINDOW_KEYS", 1000)
    keys = [b"/p/%x/k" % (i * 2654435761 % 2**32) for i in range(count)]
    rng = SortedRange(keys)
    rev, items = listing.list_range(rng, b"/p/", b"/q", 100, decode=bytes)
    assert [k for k, _ in items] == sorted(keys)


class HeldProbes(SortedRange):
    """A SortedRange whose probes (keys-only requests) wait until `release` is set."""

    def __init__(self, keys):
        super().__init__(keys)
        self.release = threading.Event()
        self.probes = 0

    def __call__(self, start, end, limit, revision, keys_only):
        if keys_only:
            self.probes += 1
            assert self.release.wait(5)
        return super().__call__(start, end, limit, revision, keys_only)


def test_the_last_key_search_runs_beside_the_first_page_and_stops_when_called_off():
    keys = [b"/p/k%05d" % i for i in range(5000)]
    rng = HeldProbes(keys)
    search = listing._LastKeySearch(rng, b"/p/", b"/q")
    first = rng(b"/p/", b"/q", 100, 0, False)        # the first page, while the first probe waits
    assert first.count == 5000 and rng.probes == 1
    search.call_off()
    rng.release.set()
    assert search.result() is None
    assert rng.probes == 1                            # no probe after the call-off


def test_the_last_key_search_finds_the_last_key_on_the_newest_revision():
    keys = [b"/p/k%05d" % i for i in range(5000)]
    rng = HeldProbes(keys)
    rng.release.set()
    search = listing._LastKeySearch(rng, b"/p/", b"/q")
    assert search.result() == max(keys)


@pytest.mark.parametrize("count", [0, 1, 50, 99])
def test_a_listing_too_small_for_windows_calls_the_search_off(count, monkeypatch):
    made = []
    real = listing._LastKeySearch

    class Spy(real):
        def __init__(self, *args):
            super().__init__(*args)
            self.called_off = False
            made.append(self)

        def call_off(self):
            self.called_off = True
            super().call_off()

    monkeypatch.setattr(listing, "_LastKeySearch", Spy)
    keys = [b"/p/k%05d" % i for i in range(count)]
    rev, items = listing.list_range(SortedRange(keys), b"/p/", b"/q", 100, decode=bytes)
    assert [k for k, _ in items] == keys
    assert len(made) == 1 and made[0].called_off
