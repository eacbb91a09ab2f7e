"""Answers packed ahead in idle time (serve --precompute-budget): which questions, in which
order, and when to stop.

After a full sync every first answer is built by the rules and the encoder, where a repeat is
a write of the id into packed bytes; so a start (or a re-list after a compaction) is followed
by a slow first pass over the names clients ask. `Packer` asks the responder the questions
clients ask most, through the responder's own first-query path (`Responder.prepare`), so the
reply cache ends up holding exactly what those queries would have left there:

1. A of every service name (a name with instances one label below it),
2. SRV of the same names,
3. A of every instance name,

each as a plain query (no EDNS; RD set, as glibc and dnsperf send it: a query with RD
clear, as resolvers send it, is served from the same entry). Names outside the served zones are left out
(forwarded or refused, never packed ahead).

It stops when the plan is done, when the estimated octets it added reach the budget, or when
the reply cache holds 7/8 of --cache-size: the cache evicts an eighth when full, and packing
ahead must never push out what real queries put there (the cache also evicts the packed
answers no query has used before any other, ReplyCache.ahead).

Pure: no I/O and no clock; the greenlet that runs `Packer.step` in idle time is app.py's.
"""
from __future__ import annotations

from typing import Iterator

from dnsdisco.dns.constants import T_A, T_SRV
from dnsdisco.dns.wire import encode_name

MIB = 1 << 20
BATCH = 16            # questions per step: a step is one short turn of the event loop
HEADROOM = 8          # stop at (HEADROOM - 1) / HEADROOM of the cache's size
MIN_IDLE = 0.02       # a saturated server still gives packing this share, so it ends some day
LONGEST_PAUSE = 0.1   # seconds, at most, between two batches

# What one packed-ahead answer holds besides its reply octets: the cache entry (one slotted
# object), its dict slot and key (the plain query's own octets), the replies tuple when there
# are several answer orders, and its key's place in the eviction order. Measured with
# tracemalloc over the answers packed ahead at 100,000 services of the bench dataset by
# bench/precompute_cost.py (python -m bench.precompute_cost, at the default --cache-size and at
# --cache-size 500000), less the replies' own octets and the name (that script still counts a
# key as the name and 7 octets, 7 fewer than a plain key holds), and rounded up to the larger.
ENTRY_OVERHEAD = 250
REPLY_OVERHEAD = 33   # a bytes object's header (sys.getsizeof(b"")), per packed reply variant
NAME_OVERHEAD = 1     # the cache key holds the name once more


def questions(snapshot) -> Iterator[tuple[bytes, int]]:
    """(lower-case wire name, qtype) in the order they are worth packing (the module's list).
    Lazy, a name at a time: a step must stay short at a million services."""
    zone_of = snapshot.zone_of
    for qtype in (T_A, T_SRV):
        for name in snapshot.parent_names():
            if zone_of(name) is not None:
                yield encode_name(name), qtype
    for name, instances in snapshot.parents():
        if zone_of(name) is not None:
            for instance in instances:
                yield encode_name(instance), T_A


def pause_after(batch_seconds: float, busy: float) -> float:
    """Seconds to wait after a batch that took `batch_seconds`, when the server spent the
    share `busy` (0 to 1) of the time since the batch before on anything else (answering
    queries, applying etcd changes): packing ahead takes only the idle share of the time,
    and at least MIN_IDLE of it, so a busy server spends almost nothing on it."""
    busy = min(max(busy, 0.0), 1.0)
    if busy <= 0.0:
        return 0.0
    return min(LONGEST_PAUSE, batch_seconds * busy / max(1.0 - busy, MIN_IDLE))


def entry_cost(lname: bytes, variants) -> int:
    """Estimated octets one packed-ahead answer holds (see ENTRY_OVERHEAD for the source)."""
    return (ENTRY_OVERHEAD + NAME_OVERHEAD * len(lname)
            + sum(len(reply) + REPLY_OVERHEAD for reply in variants))


class Budget:
    """The stop rule: `octets` of packed answers at most, and the reply cache below
    (HEADROOM - 1) / HEADROOM of its `cache_size` entries (counting real queries' entries)."""

    def __init__(self, octets: int, cache_size: int):
        self.octets = octets
        self.most_entries = cache_size - cache_size // HEADROOM
        self.used = 0
        self.added = 0

    def room(self, cached: int) -> bool:
        """Whether one more answer may be packed with `cached` entries in the cache now."""
        return self.used < self.octets and cached < self.most_entries

    def spend(self, octets: int) -> None:
        self.used += octets
        self.added += 1


class Packer:
    """Packs the plan's answers into `responder`'s cache, BATCH questions a `step`.

    `begin()` after every full sync (the cache was emptied, so the budget starts again);
    between steps a snapshot swap is harmless: the next questions are answered from the new
    snapshot, and answers a change dropped are not packed again."""

    IDLE, RUNNING, DONE = "idle", "running", "done"

    def __init__(self, responder, budget_octets: int):
        self.responder = responder
        self.budget_octets = budget_octets
        self.state = self.IDLE
        self.budget = Budget(budget_octets, responder.cache.max_entries)
        self.why = ""                   # why the last run ended: "all", "budget", "cache"
        self._plan: Iterator[tuple[bytes, int]] | None = None

    @property
    def added(self) -> int:
        return self.budget.added

    @property
    def used(self) -> int:
        return self.budget.used

    def begin(self) -> None:
        """Start over from the first question, on the responder's snapshot now."""
        self.budget = Budget(self.budget_octets, self.responder.cache.max_entries)
        self._plan = questions(self.responder.snapshot) if self.budget_octets > 0 else None
        self.state = self.RUNNING if self._plan is not None else self.DONE
        self.why = ""

    def step(self, batch: int = BATCH) -> bool:
        """Pack up to `batch` more answers; False once this run is finished (or never begun)."""
        if self.state != self.RUNNING:
            return False
        responder, budget, plan = self.responder, self.budget, self._plan
        cache = responder.cache
        for _ in range(batch):
            if not budget.room(len(cache)):
                return self._finish("budget" if budget.used >= budget.octets else "cache")
            question = next(plan, None)
            if question is None:
                return self._finish("all")
            lname, qtype = question
            entry = responder.prepare(lname, qtype)
            if entry is not None:
                budget.spend(entry_cost(lname, entry.variants))
        return True

    def _finish(self, why: str) -> bool:
        self.state = self.DONE
        self.why = why
        self._plan = None        # the plan holds the snapshot it was made from
        return False
