"""How KV lists a prefix: one revision, in pages, and a large prefix in windows read side by side.

Why windows: etcd 3.5 counts every key from a range request's start to its range end on
every request (its in-memory index is walked to fill `count`, whatever the limit), so N keys
read in pages of p from one start cost about N²/2p key visits; at 2,000,000 keys that walk,
not the data, was most of the listing. Cut into windows that end at a known key, a page
counts only the rest of its own window, and etcd serves the windows' requests side by side.

Where to cut: the first page gives the revision, the count of the whole range and the first
keys; the largest key is found by probing the upper half of what is left (a probe counts only
the keys above its start, so the probes that find nothing, most of them, cost nothing); the
span between the two is cut into equal parts of the key read as a number in the octets the
keys use (`_cuts`). Both the first page and the search count keys in etcd (at 2,000,000 keys,
~0.3 and ~0.4 s), so the search runs beside the first page rather than after it, on the
newest revision (the cuts are a hint: any key range gives windows that cover the span), and
is called off when the first page shows a range too small for windows. A key range that is
uneven only makes some windows larger, never loses or repeats a key: the windows are
disjoint half-open ranges that cover the span, each read in pages at the one revision.
"""
from __future__ import annotations

import bisect
import queue
import threading
from typing import Callable

from dnsdisco.etcd.types import Compacted, EtcdError, EtcdTooLarge, range_end

LIST_PAGE_BYTES = 8 * 1024 * 1024    # aim of one list page after the first
LIST_PAGE_MAX = 50_000               # keys in one list page at most
WINDOWED_FROM = 100_000              # keys left after the first page: below this, one pass
WINDOW_KEYS = 100_000                # aim of one window
MAX_WINDOWS = 256
LIST_THREADS = 4                     # windows in flight at once
ATTEMPTS = 5                         # listings started over after a compaction, at most

# rng(start, end, limit, revision, keys_only) -> etcd RangeResponse
Range = Callable[[bytes, bytes, int, int, bool], object]


def list_range(rng: Range, start: bytes, end: bytes, page_size: int, pages=None,
               threads: int = LIST_THREADS, decode=lambda key: key.decode("utf-8", "replace")):
    """(revision, [(key, value)...]) of [start, end) at one revision; see KV.list_prefix.

    With `pages`, pairs go to `pages(list)` as they arrive (from several threads, one call at
    a time, windows in any order) and the returned list is empty; `pages(None)` says a
    compaction started the listing over. `decode` None hands etcd's KeyValue messages as they
    came (the serve helper packs them itself)."""
    for attempt in range(ATTEMPTS):
        if pages is not None and attempt > 0:
            pages(None)
        try:
            return _list_once(rng, start, end, page_size, pages, threads, decode)
        except Compacted:
            continue
    raise EtcdError(f"list {start.decode('utf-8', 'replace')!r}: etcd kept compacting past the listed revision")


def _list_once(rng, start, end, page_size, pages, threads, decode):
    lock = threading.Lock()
    windows_out: dict[int, list] = {}

    def hand(index: int, kvs) -> None:
        pairs = kvs if decode is None else [(decode(kv.key), kv.value) for kv in kvs]
        if pages is None:
            windows_out.setdefault(index, []).extend(pairs)
        else:
            with lock:
                pages(pairs)

    search = _LastKeySearch(rng, start, end) if threads > 1 else None
    try:
        first, revision = _page(rng, start, end, page_size, 0)
    except BaseException:
        if search is not None:
            search.call_off()
        raise
    if first.kvs:
        hand(-1, first.kvs)
    rest = first.kvs[-1].key + b"\0" if first.kvs else end
    left = first.count - len(first.kvs)
    windowed = first.more and first.kvs and left >= WINDOWED_FROM and search is not None
    if search is not None and not windowed:
        search.call_off()
    if not first.more or not first.kvs:
        return revision, windows_out.get(-1, [])
    bounds = [rest, end]
    if windowed:
        last = search.result()
        if last is not None and last >= rest:
            # four times the windows the count asks for: the keys are seldom spread evenly
            # between the cuts, and an empty window costs one request
            bounds = [rest, *_cuts(rest, last + b"\0", min(MAX_WINDOWS, 4 * -(-left // WINDOW_KEYS)),
                                   [kv.key for kv in first.kvs]), end]
    work: queue.SimpleQueue = queue.SimpleQueue()
    for index in range(len(bounds) - 1):
        work.put(index)
    failed: list[BaseException] = []

    def worker() -> None:
        while not failed:
            try:
                index = work.get_nowait()
            except queue.Empty:
                return
            try:
                _read_window(rng, bounds[index], bounds[index + 1], revision, lambda kvs: hand(index, kvs),
                             lambda: bool(failed))
            except BaseException as exc:  # noqa: BLE001 - the caller raises it
                failed.append(exc)
                return

    count = min(threads, len(bounds) - 1)
    if count <= 1:
        worker()
    else:
        runners = [threading.Thread(target=worker, name="dnsdisco-list", daemon=True) for _ in range(count)]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join()
    if failed:
        raise failed[0]
    if pages is not None:
        return revision, []
    return revision, [pair for index in sorted(windows_out) for pair in windows_out[index]]


def _page(rng, key: bytes, end: bytes, limit: int, revision: int):
    """One page from `key`, asked again with fewer keys while it is over the receive limit."""
    while True:
        try:
            resp = rng(key, end, limit, revision, False)
        except EtcdTooLarge:
            if limit == 1:
                raise
            limit = max(1, limit // 4)
            continue
        return resp, revision or resp.header.revision


def _read_window(rng, key: bytes, end: bytes, revision: int, hand, stop) -> None:
    """Every key of [key, end) at `revision`, in pages of about LIST_PAGE_BYTES: a page over
    the receive limit is asked again with a quarter of the keys, and later pages aim at half
    the bytes."""
    limit, target = 1000, LIST_PAGE_BYTES
    while not stop():
        try:
            resp = rng(key, end, limit, revision, False)
        except EtcdTooLarge:
            if limit == 1:
                raise
            limit, target = max(1, limit // 4), max(1, target // 2)
            continue
        if resp.kvs:
            hand(resp.kvs)
        if not resp.more or not resp.kvs:
            return
        size = sum(len(kv.key) + len(kv.value) for kv in resp.kvs)
        limit = int(min(LIST_PAGE_MAX, max(1, target * len(resp.kvs) / max(size, 1))))
        key = resp.kvs[-1].key + b"\0"


def _number(key: bytes, width: int) -> int:
    return int.from_bytes(key[:width].ljust(width, b"\0"), "big")


def _octets(number: int, width: int) -> bytes:
    return number.to_bytes(width, "big").rstrip(b"\0")


class _LastKeySearch:
    """`_last_key` of [lo, hi) at the newest revision, in a thread of its own from now on,
    beside the first page; `call_off` ends it at its next probe (its result is then None)."""

    def __init__(self, rng, lo: bytes, hi: bytes):
        self._off = False
        self._found: bytes | None = None
        self._thread = threading.Thread(target=self._run, args=(rng, lo, hi), name="dnsdisco-last-key", daemon=True)
        self._thread.start()

    def _run(self, rng, lo: bytes, hi: bytes) -> None:
        try:
            self._found = _last_key(rng, lo, hi, 0, lambda: self._off)
        except Exception:  # noqa: BLE001 - a hint only: without it the rest is read in one pass
            self._found = None

    def call_off(self) -> None:
        self._off = True

    def result(self) -> bytes | None:
        self._thread.join()
        return None if self._off else self._found


def _last_key(rng, lo: bytes, hi: bytes, revision: int, off=lambda: False) -> bytes | None:
    """The largest key in [lo, hi) at `revision` (0: the newest), or None if there is none
    (or when `off()` says stop). Each probe asks for the first key at or above the middle of
    what is left; its cost to etcd is the keys above the probe, so the search walks down from
    the empty top of the key space, and ends when a probe's range holds one key."""
    found = None
    floor = lo
    for _ in range(4096):                      # a bound: each probe halves the gap or ends it
        if off():
            return None
        width = max(len(floor), len(hi)) + 2
        low, high = _number(floor, width), _number(hi, width)
        middle = _octets(low + (high - low) // 2, width)
        if not floor < middle < hi:
            middle = floor
        resp = rng(middle, hi, 1, revision, True)
        if resp.kvs:
            found = resp.kvs[0].key
            if resp.count == 1:                # the only key left above the probe
                return found
            floor = found + b"\0"
        elif middle == floor:
            return found
        else:
            hi = middle
    return found


def _cuts(lo: bytes, hi: bytes, parts: int, sample=()) -> list[bytes]:
    """Up to parts - 1 keys strictly between lo and hi, increasing, at equal steps of the keys
    read as numbers whose digit at each position is the rank of the octet among those the
    keys use there: up to where lo and hi first differ, the octets of lo, hi and the `sample`
    (the first page's keys) at that position, with every octet between lo's and hi's at the
    difference; after it, every octet they use anywhere after it. Decimal digits use 10 of 256 octet
    values; steps even in octets would put most windows where no key is."""
    width = max(len(lo), len(hi)) + 1
    first = next((i for i, (a, b) in enumerate(zip(lo, hi)) if a != b), min(len(lo), len(hi)))
    # past the first difference, any octet the keys use there may come at any position (the
    # first page holds only the low end of the high digits)
    tail = {0}
    for key in (lo, hi, *sample):
        tail.update(key[first:])
    alphabets = []
    for i in range(width):
        seen = {0}
        if i > first:
            seen = tail
        else:
            seen.update(key[i] for key in (lo, hi, *sample) if len(key) > i)
        if i == first and i < len(lo) and i < len(hi):
            seen.update(range(lo[i], hi[i] + 1))
        alphabets.append(sorted(seen))

    def number(key: bytes) -> int:
        n = 0
        for i, alphabet in enumerate(alphabets):
            rank = bisect.bisect_left(alphabet, key[i] if i < len(key) else 0)
            n = n * len(alphabet) + min(rank, len(alphabet) - 1)
        return n

    def octets(n: int) -> bytes:
        out = bytearray()
        for alphabet in reversed(alphabets):
            n, rank = divmod(n, len(alphabet))
            out.append(alphabet[rank])
        out.reverse()
        return bytes(out).rstrip(b"\0")

    low, high = number(lo), number(hi)
    out: list[bytes] = []
    for i in range(1, parts):
        cut = octets(low + (high - low) * i // parts)
        if lo < cut < hi and (not out or cut > out[-1]):
            out.append(cut)
    return out


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """[start, end) of every key under `prefix` (the whole key space for "")."""
    start = prefix.encode()
    if not start:
        return b"\0", b"\0"
    return start, range_end(start)
