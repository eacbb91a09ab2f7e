"""Stalls of the query path in-process: the collector's passes and the reply cache's eviction.

    python -m bench.pauses                      # 100,000 services
    python -m bench.pauses --services 1000000

A query that triggers a full garbage collection, or finds the reply cache full, waits for that
work, and every query queued behind it on the socket waits too. Both are measured in CPU time of
this thread (time.thread_time), so another process on the machine does not count:

- the collector: the mixed query file (`--queries` lines, the scale table's mix) sent through
  `Responder.handle` `--passes` times on a fresh responder after a build (collections counted by
  generation through gc.callbacks), with serve's thresholds after its first sync
  (app.FULL_COLLECTION_EVERY) and with CPython's defaults;
- eviction: questions never asked before, past a full cache of the default size, with the
  eviction batch serve uses (cache.eviction_batch) and with an eighth of the cache (how it was
  before EVICT_MOST): the longest CPU time one query took, and how many took over 1 ms.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time


def _collections(responder, packets: list[bytes], passes: int) -> dict:
    stats = {0: [], 1: [], 2: []}
    started = [0.0]

    def watch(phase, info):
        if phase == "start":
            started[0] = time.thread_time()
        else:
            stats[info["generation"]].append(time.thread_time() - started[0])

    client = ("127.0.0.1", 5353)
    gc.callbacks.append(watch)
    begun = time.thread_time()
    try:
        for _ in range(passes):
            for packet in packets:
                responder.handle(packet, "udp", client)
    finally:
        gc.callbacks.remove(watch)
    return {"cpu": time.thread_time() - begun, "stats": stats}


def _stalls(responder, packets: list[bytes]) -> list[float]:
    client = ("127.0.0.1", 5353)
    out = []
    clock = time.thread_time
    for packet in packets:
        started = clock()
        responder.handle(packet, "udp", client)
        out.append(clock() - started)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pauses", description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=100_000, help="services (2 instances each) [100000]")
    ap.add_argument("--queries", type=int, default=450_000,
                    help="lines of the mixed query file [450000: what the scale table's 5 s first run asks]")
    ap.add_argument("--passes", type=int, default=1, help="passes over the mixed file per responder [1]")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, each policy once per round in turn [2]")
    ap.add_argument("--cache-size", type=int, default=None,
                    help="the reply cache's size in the eviction rows [serve's default]")
    a = ap.parse_args(argv)

    from bench import dataset
    from dnsdisco import app
    from dnsdisco.dns import cache
    from dnsdisco.dns.responder import Responder
    from dnsdisco.dns.snapshot import Snapshot, ZoneConfig

    ds = dataset.Dataset(a.services)
    snap = Snapshot.build(dataset.PREFIX, [ZoneConfig(dataset.ZONE)], 10, ds.etcd_items())
    gc.collect()
    gc.freeze()                                    # as serve does after its first sync
    mixed = [dataset.query_packet(line, i & 0xFFFF) for i, line in enumerate(dataset.mixed_queries(ds, a.queries))]
    size = a.cache_size or cache.DEFAULT_CACHE_SIZE
    cold = [dataset.query_packet(line, i & 0xFFFF)
            for i, line in enumerate(dataset.cold_questions(ds, size + size // 2, []))]
    defaults = gc.get_threshold()
    print(f"{a.services:,} services, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print()
    print(f"| collector ({a.passes} passes of {len(mixed):,} mixed queries) | CPU s | full collections: n, "
          "total ms, longest ms | young collections (generations 0 and 1): n, total ms, longest ms |")
    print("|---|---:|---|---|")
    policies = ((f"serve's: a full pass per {app.FULL_COLLECTION_EVERY} young ones", app.FULL_COLLECTION_EVERY),
                (f"CPython's defaults {defaults}", defaults[2]))
    for label, full in [policies[(turn + at) % 2] for turn in range(a.rounds) for at in range(2)]:
        gc.set_threshold(defaults[0], defaults[1], full)
        got = _collections(Responder(snap), mixed, a.passes)
        gc.collect()
        stats = got["stats"]
        young = stats[0] + stats[1]
        print(f"| {label} | {got['cpu']:.2f} | {len(stats[2])}, {sum(stats[2]) * 1e3:.0f}, "
              f"{max(stats[2], default=0) * 1e3:.1f} | {len(young)}, {sum(young) * 1e3:.0f}, "
              f"{max(young, default=0) * 1e3:.1f} |")
    gc.set_threshold(*defaults)
    print()
    print(f"| eviction ({len(cold) - size:,} first answers past a full cache of {size:,}) | dropped at once | "
          "longest query ms | queries over 1 ms | 99.9th percentile ms |")
    print("|---|---:|---:|---:|---:|")
    gc.disable()                                   # the collector's own passes are measured above
    batch = cache.EVICT_MOST
    try:
        for label, most in (("serve's (cache.eviction_batch)", batch), ("an eighth of the cache", sys.maxsize)):
            cache.EVICT_MOST = most
            responder = Responder(snap, cache_size=size)
            times = sorted(_stalls(responder, cold)[size:])
            print(f"| {label} | {cache.eviction_batch(size):,} | {times[-1] * 1e3:.2f} | "
                  f"{sum(1 for t in times if t > 1e-3)} | {times[int(len(times) * 0.999)] * 1e3:.3f} |")
            del responder
            gc.collect()
    finally:
        cache.EVICT_MOST = batch
        gc.enable()
        gc.unfreeze()                              # main may run inside another program (a test)
    return 0


if __name__ == "__main__":
    sys.exit(main())
