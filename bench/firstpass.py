"""First answers against repeats in-process, at the scale table's sizes: no sockets, no etcd.

    python -m bench.firstpass                           # 100,000 services, this checkout
    python -m bench.firstpass --tree /path/to/old       # the same rows for another checkout, side by side

The scale table (bench/run.py) shows what a first answer costs a server under dnsperf; this
says where that cost sits, with the kernel and the load generator out of the way. A snapshot of
`--services` services of the bench dataset (bench/dataset.py) is built in-process, then:

- the mixed query file (the scale table's, `--queries` lines) is sent through
  `Responder.handle` once on a fresh responder (mostly first answers) and then again
  (exact-query repeats): microseconds per query of each pass;
- its distinct questions go through `rules.answer` alone and then `encoder.encode` alone, the
  two parts of a first answer that are not the cache's;
- the cold pass: A (AAAA for IPv6 instances) of names the mixed file never asks, up to
  `--cold` of them, once and then again;
- the octets the reply cache holds per cached question after the mixed file's first pass
  (tracemalloc, on a responder of its own).

With --tree, every row is measured in a child process that imports dnsdisco from each tree in
turn, rounds alternating, and each row shows its lowest figure over the rounds.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time



def _dataset():
    """This checkout's bench/dataset.py, whichever tree dnsdisco is imported from: a child
    runs with another tree first on its path, whose bench/ may be older (dataset.py imports
    nothing of dnsdisco or bench)."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dataset.py")
    spec = importlib.util.spec_from_file_location("firstpass_dataset", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses look their module up while making the class
    spec.loader.exec_module(module)
    return module

def _serve_collector() -> None:
    """The collector's thresholds serve sets after its first sync (app._freezing), in a tree
    that has them: the first pass makes ~100,000 cache entries that full collections walk."""
    try:
        from dnsdisco.app import FULL_COLLECTION_EVERY
    except ImportError:
        return
    young, middle, _full = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def pass_micros(handle, packets: list[bytes]) -> float:
    """Mean microseconds per query over one pass of `packets` through `handle` (Responder.handle)."""
    client = ("127.0.0.1", 5353)
    started = time.perf_counter()
    for packet in packets:
        handle(packet, "udp", client)
    return (time.perf_counter() - started) / len(packets) * 1e6


def _measure(services: int, queries: int, cold_count: int) -> dict[str, float]:
    import tracemalloc

    from dnsdisco.dns.encoder import encode
    from dnsdisco.dns.responder import Responder
    from dnsdisco.dns.rules import answer
    from dnsdisco.dns.snapshot import Snapshot, ZoneConfig

    dataset = _dataset()
    ds = dataset.Dataset(services)
    snap = Snapshot.build(dataset.PREFIX, [ZoneConfig(dataset.ZONE)], 10, ds.etcd_items())
    gc.collect()
    gc.freeze()                          # as serve does after its first sync
    _serve_collector()
    mixed = dataset.mixed_queries(ds, queries)
    packets = [dataset.query_packet(line, i & 0xFFFF) for i, line in enumerate(mixed)]
    cold = [dataset.query_packet(line, i & 0xFFFF) for i, line in enumerate(dataset.cold_questions(ds, cold_count, mixed))]
    rows: dict[str, float] = {}

    responder = Responder(snap)
    rows["mixed file, first pass"] = pass_micros(responder.handle, packets)
    rows["mixed file, repeat pass"] = pass_micros(responder.handle, packets)
    if cold:
        rows[f"cold pass ({len(cold):,} names never asked), first"] = pass_micros(responder.handle, cold)
        rows["cold pass, repeat"] = pass_micros(responder.handle, cold)
    del responder
    gc.collect()

    distinct = list(dict.fromkeys((line.split()[0].lower(), dataset.QUERY_TYPES[line.split()[1]]) for line in mixed))
    wires = [(dataset.wire_name(name), qtype) for name, qtype in distinct]
    started = time.perf_counter()
    answers = [answer(snap, wire, qtype) for wire, qtype in wires]
    rows["rules.answer per distinct question"] = (time.perf_counter() - started) / len(wires) * 1e6
    started = time.perf_counter()
    for ans, (wire, qtype) in zip(answers, wires):
        encode(ans, wire, qtype, 1, 0x8580, False, False, 512)
    rows["encoder.encode per distinct question"] = (time.perf_counter() - started) / len(wires) * 1e6
    del answers
    gc.collect()

    traced = Responder(snap)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    pass_micros(traced.handle, packets)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    rows["octets per cached question (not µs)"] = held / max(1, len(traced.cache.entries))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.firstpass", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], help="another checkout to measure beside this one")
    parser.add_argument("--services", type=int, default=100_000, help="services (2 instances each) [100000]")
    parser.add_argument("--queries", type=int, default=100_000, help="lines of the mixed query file [100000]")
    parser.add_argument("--cold", type=int, default=50_000, help="names in the cold pass at most [50000]")
    parser.add_argument("--rounds", type=int, default=2, help="rounds alternating between the trees [2]")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.services < 1 or args.queries < 1 or args.cold < 0 or args.rounds < 1:
        parser.error("--services, --queries and --rounds must be at least 1, --cold at least 0")
    if args.child:
        import dnsdisco
        print(json.dumps({**_measure(args.services, args.queries, args.cold),
                          "dnsdisco imported from": dnsdisco.__file__}))
        return 0
    from bench.micro import commit_of, run_child, table
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {f"this checkout ({commit_of(here)})": here, **{f"{tree} ({commit_of(tree)})": tree for tree in args.tree}}
    columns: dict[str, dict[str, float]] = {name: {} for name in trees}
    child_args = ["--services", str(args.services), "--queries", str(args.queries), "--cold", str(args.cold)]
    for _round in range(args.rounds):
        for name, tree in trees.items():
            for row, value in run_child(__file__, tree, child_args).items():
                columns[name][row] = min(value, columns[name].get(row, value))
    print(f"{args.services:,} services, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(table(columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
