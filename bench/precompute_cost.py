"""In-process figures of packing answers ahead (serve --precompute-budget): no sockets, no etcd.

    python -m bench.precompute_cost                          # 100,000 services, default cache
    python -m bench.precompute_cost --services 10000 --cache-size 400000 --budget 512

Builds the bench dataset's snapshot, then for a Responder without and one with answers packed
ahead (dnsdisco.dns.precompute.Packer, run to its end), times the first and a repeated pass of
the mixed query file (bench.dataset.mixed_queries) through `Responder.handle`, `--rounds`
times in turn (medians shown). The packing is timed on those responders and run once more
under tracemalloc, whose traced octets per answer (less the replies' own octets) are the
source of precompute.ENTRY_OVERHEAD.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc

from bench import dataset
from bench.firstpass import pass_micros
from dnsdisco.dns.cache import DEFAULT_CACHE_SIZE, key_name
from dnsdisco.dns.precompute import MIB, NAME_OVERHEAD, REPLY_OVERHEAD, Packer, entry_cost
from dnsdisco.dns.responder import Responder
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig


def _pack(responder, budget_mib: float) -> Packer:
    packer = Packer(responder, int(budget_mib * MIB))
    packer.begin()
    while packer.step():
        pass
    return packer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100_000)
    parser.add_argument("--cache-size", type=int, default=DEFAULT_CACHE_SIZE)
    parser.add_argument("--budget", type=float, default=256.0, help="MiB (the packing's budget)")
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="without and with, in turn; medians are shown")
    args = parser.parse_args(argv)

    ds = dataset.Dataset(args.services)
    started = time.perf_counter()
    snap = Snapshot.build(dataset.PREFIX, [ZoneConfig(dataset.ZONE)], 10, ds.etcd_items())
    print(f"snapshot of {args.services:,} services built in {time.perf_counter() - started:.1f} s")
    gc.collect()
    gc.freeze()
    packets = [dataset.query_packet(line, i & 0xFFFF) for i, line in enumerate(dataset.mixed_queries(ds, args.queries))]

    runs = {"without": [], "with": []}
    took = []
    for _ in range(args.rounds):      # in turn, so load from other processes falls on both alike
        cold = Responder(snap, cache_size=args.cache_size)
        runs["without"].append((pass_micros(cold.handle, packets), pass_micros(cold.handle, packets)))
        del cold
        gc.collect()
        warm = Responder(snap, cache_size=args.cache_size)
        started = time.perf_counter()
        packer = _pack(warm, args.budget)
        took.append(time.perf_counter() - started)
        runs["with"].append((pass_micros(warm.handle, packets), pass_micros(warm.handle, packets)))
        del warm
        gc.collect()
    took = statistics.median(took)

    traced = Responder(snap, cache_size=args.cache_size)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    measured = _pack(traced, args.budget)
    octets = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    replies = sum(sum(len(v) + REPLY_OVERHEAD for v in e.variants) for e in traced.cache.entries.values())
    names = sum(NAME_OVERHEAD * len(key_name(key)) for key in traced.cache.entries)
    estimated = sum(entry_cost(key_name(key), e.variants) for key, e in traced.cache.entries.items())
    added = measured.added

    print(f"packed {packer.added:,} answers ahead in {took:.2f} s ({took / max(1, packer.added) * 1e6:.1f} us each), "
          f"stopped by {packer.why!r}; estimate {packer.used / MIB:.1f} MiB of a {args.budget:g} MiB budget")
    print(f"tracemalloc: {octets / MIB:.1f} MiB for {added:,} answers = {octets / max(1, added):.0f} octets each; "
          f"replies {replies / max(1, added):.0f}, so the overhead is "
          f"{(octets - replies - names) / max(1, added):.0f} octets each; estimate/traced {estimated / max(1, octets):.2f}")
    print(f"mixed file ({args.queries:,} queries, cache {args.cache_size:,}): us/query first, repeat, "
          f"first/repeat rate (medians of {args.rounds}; each round's first passes in brackets)")
    for name, pairs in runs.items():
        first = statistics.median(f for f, _ in pairs)
        repeat = statistics.median(r for _, r in pairs)
        print(f"  {name:7s}: {first:6.2f} {repeat:6.2f}  {repeat / first:.2f}  "
              f"[{', '.join(f'{f:.2f}' for f, _ in pairs)}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
