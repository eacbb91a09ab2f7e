"""Where a large first sync spends its time and where the snapshot's memory goes (issue 23).

    python -m bench.scalebreakdown --services 1000000            # private etcd, loaded here
    python -m bench.scalebreakdown --services 1000000 --etcd URL  # an etcd already holding them
    python -m bench.scalebreakdown --services 100000 --no-etcd    # only the in-process tables

Prints markdown tables:

- sync phases: the listing alone in this process (etcd's range work and the gRPC client),
  the listing through serve's helper process to here with nothing built (the transfer),
  then the same with `snapshot.Builder` reading every page as it arrives and `finish()`.
  Each with wall time and the CPU seconds of this process, of the helper and of etcd (when
  this command started it), so a busy machine shows as wall time above the CPU figures.
- build in-process: the same pages packed as the helper packs them, read by the Builder,
  without etcd (CPU seconds).
- memory per structure of the built snapshot, counted object by object (sys.getsizeof of
  every dict, tuple and string it holds, each object once), with `--traced` beside
  tracemalloc's totals for a second build; then the reply cache and exact-query table after `--questions` questions
  answered in-process by dns.responder (a sample of every_question: every name asked once
  is more than the cache holds at these sizes).
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
import tracemalloc

from . import dataset, live, servers

MIB = 1024 * 1024


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _KeyValue:
    __slots__ = ("key", "value")

    def __init__(self, key: bytes, value: bytes):
        self.key, self.value = key, value


def helper_pages(ds: dataset.Dataset, chunk: int):
    """The dataset's pairs as the etcd helper sends them (etcd.helper._packed), in key order."""
    from dnsdisco.etcd.helper import _packed
    pairs = sorted((key.encode(), value) for key, value in ds.etcd_items())
    return [_packed([_KeyValue(k, v) for k, v in pairs[i:i + chunk]]) for i in range(0, len(pairs), chunk)]


def zones():
    from dnsdisco.dns.snapshot import ZoneConfig
    return (ZoneConfig(dataset.ZONE),)


def sync_phases(endpoint: str, etcd_pid: int | None) -> list[tuple]:
    from dnsdisco.dns.bulk import Builder
    from dnsdisco.etcd.client import KV
    from dnsdisco.etcd.helper import ProcessKV
    from dnsdisco.etcd.types import check_settings

    rows = []
    gc.disable()
    try:
        def measure(label, run, helper=None):
            e0 = cpu_of(etcd_pid) if etcd_pid else None
            h0 = cpu_of(helper()) if helper else None
            c0, t0 = time.process_time(), time.perf_counter()
            extra = run()
            wall, own = time.perf_counter() - t0, time.process_time() - c0
            rows.append((label, wall, own, cpu_of(helper()) - h0 if helper else None,
                         cpu_of(etcd_pid) - e0 if etcd_pid else None, extra))

        kv = KV([endpoint], timeout=120)
        count = [0]

        def in_process():
            count[0] = 0
            kv.list_prefix(dataset.PREFIX + "/", pages=lambda kvs: count.__setitem__(0, count[0] + len(kvs or ())),
                           raw=True)
            return f"{count[0]:,} keys"
        measure("etcd range (in this process, KeyValue messages only)", in_process)
        kv.close()

        pkv = ProcessKV(check_settings([endpoint], timeout=120))
        pkv._ensure()
        helper = lambda: pkv._proc.pid   # noqa: E731

        def transfer():
            parts = [0]
            pkv.list_prefix(dataset.PREFIX + "/", pages=lambda part: parts.__setitem__(0, parts[0] + 1))
            return f"{parts[0]:,} parts"
        measure("range + transfer through the helper (nothing built)", transfer, helper)

        built = {}

        def build():
            builder = Builder(dataset.PREFIX, zones())
            revision, _ = pkv.list_prefix(dataset.PREFIX + "/", pages=builder.page)
            built["builder"], built["revision"] = builder, revision
            return f"{builder.pending:,} records"
        measure("range + transfer + Builder.page (nodes of runs of siblings, PTR)", build, helper)

        def finish():
            snap = built.pop("builder").finish(built["revision"])
            return f"{snap.record_count:,} records"
        measure("Builder.finish (merged runs, off-path names, below, PTR entries)", finish)
        pkv.close()
    finally:
        gc.enable()
    return rows


def rss_mib() -> float:
    """This process's resident memory."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def build_in_process(ds: dataset.Dataset, traced_too: bool):
    from dnsdisco.dns.bulk import Builder
    t0 = time.process_time()
    pages = helper_pages(ds, 5000)
    packed = time.process_time() - t0
    gc.collect()
    with_pages = rss_mib()
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time()
        builder = Builder(dataset.PREFIX, zones())
        for page in pages:
            builder.page(page)
        added = time.process_time() - t0
        t0 = time.process_time()
        snap = builder.finish(1)
        finished = time.process_time() - t0
        del builder
        grown = rss_mib() - with_pages     # what the build left resident (freed objects' arenas too)
        traced = None
        if traced_too:      # again, traced: tracemalloc slows every allocation, so not timed
            snap = None
            gc.collect()
            tracemalloc.start()
            builder = Builder(dataset.PREFIX, zones())
            for page in pages:
                builder.page(page)
            snap = builder.finish(1)
            del builder
            traced = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    finally:
        gc.enable()
    del pages
    return snap, [("(bench side: generate the dataset, pack it as the helper does)", packed),
                  ("Builder.page: parse values, runs of siblings made into nodes, PTR", added),
                  ("Builder.finish: merged runs, off-path names, below, PTR entries", finished),
                  ("(RSS MiB this process grew by in the build, not CPU s)", grown)], traced


def memory_rows(snap) -> list[tuple[str, int, int]]:
    """(structure, objects, bytes) counted object by object, each object once."""
    seen: set[int] = set()
    size = sys.getsizeof

    def once(obj) -> int:
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        return size(obj)

    rows = []

    def layered(label, mapping):
        return once(mapping._base) + once(mapping._middle) + once(mapping._over)

    nodes = snap.nodes
    rows.append(("nodes map (dict: parent -> node)", len(nodes), layered("nodes", nodes)))
    from dnsdisco.dns.nodes import items
    tuples = dicts = packed_nodes = parents = labels = ints = recs = rec_strings = extras = 0
    small = big = nbytes = packed = other = 0
    for par, node in nodes.items():
        parents += once(par)
        if type(node) is bytes:        # labels and values inside: nothing more to count
            nbytes += 1
            packed_nodes += once(node)
            continue
        if type(node) is tuple:
            small += 1
            tuples += once(node)
        else:
            big += 1
            dicts += once(node)
        for label, value in items(node):
            labels += once(label)
            if type(value) is int:
                packed += 1
                ints += once(value)
            else:
                other += 1
                recs += once(value)
                rec_strings += once(value[0]) + once(value[1])
                if len(value) > 4:
                    extras += once(value[4])
    rows.append(("  bytes nodes (plain values: count, 6 octets each, labels)", nbytes, packed_nodes))
    rows.append(("  node tuples (label, value, ...)", small, tuples))
    rows.append(("  node dicts (parents of more than nodes.BIG)", big, dicts))
    rows.append(("  parent names (str)", len(nodes), parents))
    rows.append(("  labels of tuple and dict nodes (str, interned)", 0, labels))
    rows.append(("  their packed values (int: IPv4 address and port)", packed, ints))
    rows.append(("  their other values (Record tuples)", other, recs))
    rows.append(("    name and host strings of those", 0, rec_strings))
    rows.append(("    rare fields of those (key, ttl, text, ...)", 0, extras))
    below_keys = 0
    for name, _count in snap.below.items():
        below_keys += once(name)
    rows.append(("below map (dict; counts two labels down and reverse ENTs)", len(snap.below),
                 layered("below", snap.below)))
    rows.append(("  its names not held above", 0, below_keys))
    keys = entries = owners = addresses = 0
    from dnsdisco.dns.nodes import ptr_entries
    for key, entry in snap.ptrs.items():
        keys += once(key)
        entries += once(entry)
    for _address, held in ptr_entries(snap.ptrs):
        addresses += 1
        owners += once(held)
    rows.append((f"PTR index (dict: IPv4 /24 or IPv6 address -> entry; {addresses:,} addresses)", len(snap.ptrs),
                 layered("ptrs", snap.ptrs)))
    rows.append(("  keys (int /24, str IPv6)", len(snap.ptrs), keys))
    rows.append(("  /24 entries (256 slots, or octet/owner pairs)", 0, entries))
    rows.append(("  owner tuples and parent names not held above", 0, owners))
    return rows


def reply_memory(snap, ds: dataset.Dataset, questions: int) -> list[tuple[str, int, int]]:
    """tracemalloc's growth while `questions` questions (a seeded sample of every_question)
    are answered in-process, and the entries of the reply cache and exact-query tables."""
    from dnslib import DNSRecord

    from dnsdisco.dns.responder import Responder
    lines = list(dataset.every_question(ds))
    rng = random.Random(23)
    sample = rng.sample(lines, min(questions, len(lines)))
    packets = []
    for line in sample:
        qname, qtype = line.split()
        packets.append(bytes(DNSRecord.question(qname, qtype).pack()))
    del lines
    gc.collect()
    responder = Responder(snap)
    tracemalloc.start()
    for packet in packets:
        responder.handle(packet, "udp", ("127.0.0.1", 5300))
    traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    exact = sum(len(table) for table in responder._exact.values())
    return [(f"reply cache + exact table after {len(packets):,} questions (tracemalloc)", len(responder.cache), traced),
            ("  exact-query table entries", exact, 0)]


def table(header: tuple, rows: list) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def num(x, fmt="{:.2f}") -> str:
    return "" if x is None else fmt.format(x)


def markdown(ds: dataset.Dataset, endpoint: str | None, etcd_pid: int | None, questions: int,
             traced: bool = False) -> str:
    """The tables for `ds`: sync phases against `endpoint` (skipped when None), then the
    in-process build and the memory per structure."""
    out = []
    if endpoint is not None:
        rows = sync_phases(endpoint, etcd_pid)
        out.append(table(("phase", "wall s", "this process CPU s", "helper CPU s", "etcd CPU s", ""),
                         [(label, num(wall), num(own), num(helper), num(etcd), extra)
                          for label, wall, own, helper, etcd, extra in rows]))
    snap, phases, traced_totals = build_in_process(ds, traced)
    out.append(table(("build in-process (no etcd)", "CPU s"), [(label, num(secs)) for label, secs in phases]))
    rows = memory_rows(snap)
    total = sum(size for _label, _n, size in rows)
    rows.append(("**snapshot, counted**", snap.record_count, total))
    if traced_totals is not None:
        rows.append(("snapshot, tracemalloc: held after the build", 0, traced_totals[0]))
        rows.append(("snapshot, tracemalloc: peak during the build", 0, traced_totals[1]))
    rows += reply_memory(snap, ds, questions)
    out.append(table(("structure", "entries", "MiB", "bytes per service"),
                     [(label, f"{n:,}" if n else "", f"{size / MIB:.1f}" if size else "",
                       f"{size / ds.services:.0f}" if size else "") for label, n, size in rows]))
    return "\n\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scalebreakdown", description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=100_000)
    ap.add_argument("--etcd", help="an etcd already holding the dataset of --services (else a private one)")
    ap.add_argument("--no-etcd", action="store_true", help="only the in-process build and memory tables")
    ap.add_argument("--questions", type=int, default=100_000, help="questions answered for the reply-cache row")
    ap.add_argument("--traced", action="store_true", help="also build once under tracemalloc (slow) for its totals")
    a = ap.parse_args(argv)
    ds = dataset.Dataset(a.services)
    keys = sum(1 for _ in ds.instances())
    print(f"## First sync and memory at {a.services:,} services ({keys:,} keys)\n")
    print(f"`python -m bench.scalebreakdown {' '.join(argv if argv is not None else sys.argv[1:])}`, "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}, load average {os.getloadavg()[0]:.2f} at start\n")
    if a.no_etcd:
        print(markdown(ds, None, None, a.questions, a.traced))
        return 0
    with servers.Supervisor(keep=False) as sup:
        endpoint, pid = a.etcd, None
        if endpoint is None:
            etcd = servers.start_etcd(sup, name="etcd-breakdown")
            endpoint, pid = etcd.extra["endpoint"], etcd.pid
            client = live.etcd_client(endpoint)
            count, secs = live.load(client, ds.etcd_items())
            client.close()
            print(f"loaded {count:,} keys in {secs:.1f} s\n")
        print(markdown(ds, endpoint, pid, a.questions, a.traced))
    return 0


if __name__ == "__main__":
    sys.exit(main())
