"""In-process timings of the answer path: no sockets, no etcd, one core.

    python -m bench.micro                          # this checkout
    python -m bench.micro --tree /path/to/old      # the same table for another checkout, side by side

Each row is the median over `--repeat` runs of the mean cost per call, in microseconds (with
--tree, the lowest such median over `--rounds` rounds that alternate between the trees, so that
load from other processes falls on both columns alike):
an exact repeat (same bytes but the id), a 0x20 repeat (other letter case), a reply-cache hit
(new id and RD bit), the first answer of each kind (A, AAAA NODATA, SRV with glue, TXT,
NXDOMAIN, an alias, a PTR), building a Snapshot from `--keys` keys, applying one batch of
100 changes, the slowest of 3,000 single changes applied one after another (a fold of
the maps is the stall a burst of updates feels), and a change to one of 1,000 services that share an address. With --tree, every row is measured in a child process that imports dnsdisco from
each tree in turn, so both sets of figures come from one run on the same machine.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

# the child: measures one tree and prints JSON ------------------------------------------------

SERVICES = 1000


def _dataset(services: int):
    items = []
    for i in range(services):
        for j in range(2):
            items.append((f"/skydns/local/svc/s{i:06d}/i{j}",
                          json.dumps({"host": f"10.{i // 250 % 256}.{i % 250}.{j + 1}", "port": 8000 + j}).encode()))
        if i % 50 == 0:
            items.append((f"/skydns/local/svc/s{i:06d}/v6", json.dumps({"host": f"fd00::{i:x}"}).encode()))
        if i % 10 == 0:
            items.append((f"/skydns/local/svc/s{i:06d}/t", json.dumps({"text": f"v={i}"}).encode()))
    items.append(("/skydns/local/svc/alias", json.dumps({"host": "s000001.svc.local"}).encode()))
    return items


def _query(name: str, qtype: int, qid: int = 1, rd: bool = True) -> bytes:
    import struct
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0x0100 if rd else 0, 1, 0, 0, 1) + wire + struct.pack("!HH", qtype, 1) \
        + b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)


def _per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def _measure(keys: int, repeat: int) -> dict[str, float]:
    from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
    from dnsdisco.dns.responder import Responder

    zones = [ZoneConfig("svc.local"), ZoneConfig("in-addr.arpa")]
    items = _dataset(SERVICES)
    snap = Snapshot.build("/skydns", zones, 10, items)
    client = ("127.0.0.1", 5353)
    rows: dict[str, list[float]] = {}

    def add(row: str, value: float) -> None:
        rows.setdefault(row, []).append(value)

    firsts = {
        "first A (service, 2 addresses)": ("s{:06d}.svc.local", 1),
        "first AAAA NODATA": ("s{:06d}.svc.local", 28),
        "first SRV with glue": ("s{:06d}.svc.local", 33),
        "first A (instance)": ("i0.s{:06d}.svc.local", 1),
        "first NXDOMAIN": ("nope{:06d}.svc.local", 1),
        "first TXT": ("t.s{:06d}.svc.local", 16),
    }
    for _ in range(repeat):
        responder = Responder(snap)
        for row, (pattern, qtype) in firsts.items():
            names = [pattern.format(i) for i in range(0, SERVICES, 10 if "TXT" in row else 1)]
            packets = [_query(name, qtype) for name in names]
            it = iter(packets)
            add(row, _per_call(lambda: responder.handle(next(it), "udp", client), len(packets)))
        packets = iter([_query("alias.svc.local", 1, qid=i) for i in range(200)])
        fresh = [Responder(snap) for _ in range(200)]
        it_r = iter(fresh)
        add("first alias (CNAME + target)", _per_call(lambda: next(it_r).handle(next(packets), "udp", client), 200))
        ptr = [_query(f"1.{i % 250}.{i // 250 % 256}.10.in-addr.arpa", 12) for i in range(SERVICES)]
        it_p = iter(ptr)
        add("first PTR", _per_call(lambda: responder.handle(next(it_p), "udp", client), len(ptr)))
        packet = _query("s000007.svc.local", 1)
        responder.handle(packet, "udp", client)
        add("exact repeat", _per_call(lambda: responder.handle(packet, "udp", client), 20000))
        mixed = _query("S000007.Svc.Local", 1)
        add("0x20 repeat", _per_call(lambda: responder.handle(mixed, "udp", client), 20000))
        hits = [_query("s000007.svc.local", 1, qid=i, rd=bool(i & 1)) for i in range(2)]
        state = [0]

        def hit():
            state[0] ^= 1
            responder.handle(hits[state[0]], "udp", client)
        add("cache hit (RD differs)", _per_call(hit, 20000))

        big = _dataset(keys // 2)[:keys]
        start = time.perf_counter()
        built = Snapshot.build("/skydns", zones, 11, big)
        add(f"Snapshot.build, {len(big):,} keys (ms)", (time.perf_counter() - start) * 1e3)
        batch = [(f"/skydns/local/svc/s{i:06d}/i9", json.dumps({"host": f"10.99.{i % 250}.9", "port": 80}).encode())
                 for i in range(100)]
        start = time.perf_counter()
        built.apply(12, batch)
        add("apply 100 changes (ms)", (time.perf_counter() - start) * 1e3)
        # one change at a time, as a burst of puts arrives: the slowest apply is the stall the
        # updates queued behind it feel (a fold of the snapshot's maps)
        slowest = 0.0
        gc.collect()
        gc.freeze()          # as serve does after its first sync: the collector skips the snapshot
        for i in range(3000):
            one = [(f"/skydns/local/svc/b{i:06d}/i0", json.dumps({"host": f"10.98.{i // 250 % 256}.{i % 250}",
                                                                 "port": 80}).encode())]
            start = time.perf_counter()
            built, _touched, _rejected = built.apply(13 + i, one)
            slowest = max(slowest, time.perf_counter() - start)
        gc.unfreeze()
        add("apply: slowest of 3,000 single changes (ms)", slowest * 1e3)
        # many services on one host's address: a change to one of them, one at a time
        shared = json.dumps({"host": "10.97.0.1", "port": 80}).encode()
        built, _touched, _rejected = built.apply(4000, [(f"/skydns/local/svc/h{i:04d}/i0", shared) for i in range(1000)])
        start = time.perf_counter()
        for i in range(200):
            built, _touched, _rejected = built.apply(4001 + i, [(f"/skydns/local/svc/h{i:04d}/i1", shared)])
        add("apply: one change to an address 1,000 services share (ms)", (time.perf_counter() - start) / 200 * 1e3)
        del built, big
    return {row: statistics.median(values) for row, values in rows.items()}


# the parent: runs children, prints the table ---------------------------------------------------

def _run_tree(tree: str, keys: int, repeat: int) -> dict[str, float]:
    """The rows for `tree`, measured in a child that imports dnsdisco from it."""
    return run_child(__file__, tree, ["--keys", str(keys), "--repeat", str(repeat)])


def run_child(script: str, tree: str, args: list[str]) -> dict[str, float]:
    """What `script --child ARGS` prints (JSON, with "dnsdisco imported from") when run with
    dnsdisco imported from `tree`. The child runs the script by its path from the tree itself:
    with `-m` from this checkout, Python would put this checkout first on the path and every
    column would measure the same code."""
    tree = os.path.abspath(tree)
    env = dict(os.environ, PYTHONPATH=tree)
    name = os.path.basename(script)
    out = subprocess.run([sys.executable, os.path.abspath(script), "--child", *args], env=env, cwd=tree,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"bench {name}: the run for {tree} failed:\n{out.stderr[-2000:]}")
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    imported = rows.pop("dnsdisco imported from")
    if not imported.startswith(tree + os.sep):
        raise SystemExit(f"bench {name}: the run for {tree} imported dnsdisco from {imported}")
    return rows


def table(columns: dict[str, dict[str, float]]) -> str:
    names = list(columns)
    rows = list(next(iter(columns.values())))
    head = "| measure (µs per call unless said) | " + " | ".join(names) + " |"
    lines = [head, "|---|" + "---:|" * len(names)]
    for row in rows:
        cells = [f"{columns[n].get(row, float('nan')):.2f}" for n in names]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[],
                        help="another checkout to measure beside this one (repeatable)")
    parser.add_argument("--keys", type=int, default=200_000, help="keys for the Snapshot build row (default 200000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row; the median is shown (default 5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds alternating between the trees; each row shows its lowest (default 3)")
    parser.add_argument("--write", metavar="PATH", help="also write the table as a page (docs/benchmarks-micro.md)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.keys < 2 or args.repeat < 1 or args.rounds < 1:
        parser.error("--keys must be at least 2, --repeat and --rounds at least 1")
    if args.child:
        import dnsdisco
        print(json.dumps({**_measure(args.keys, args.repeat), "dnsdisco imported from": dnsdisco.__file__}))
        return 0
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {f"this checkout ({commit_of(here)})": here, **{f"{tree} ({commit_of(tree)})": tree for tree in args.tree}}
    columns: dict[str, dict[str, float]] = {name: {} for name in trees}
    load = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for _round in range(args.rounds):
        for name, tree in trees.items():
            for row, value in _run_tree(tree, args.keys, args.repeat).items():
                columns[name][row] = min(value, columns[name].get(row, value))
    print(table(columns))
    if args.write:
        command = "python -m bench.micro " + " ".join(argv if argv is not None else sys.argv[1:])
        with open(args.write, "w", encoding="utf-8") as out:
            out.write(PAGE.format(started=started, command=command.strip(), load=" ".join(f"{x:.2f}" for x in load),
                                  python=sys.version.split()[0], table=table(columns)))
    return 0


def commit_of(tree: str) -> str:
    try:
        return subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


PAGE = """# Benchmark: the answer path in-process (bench/micro.py)

Run: {started}, `{command}`, Python {python}, on the shared 2-CPU machine of
[benchmarks.md](benchmarks.md) (load average before the run {load}; other sessions may have
been running: the rounds alternate between the checkouts so that such load falls on both).

No sockets and no etcd: `Responder.handle` on query packets, one core. 1,000 services (2
instances each, an AAAA on every 50th, a TXT on every 10th) unless the row says otherwise.
"first" rows answer each name once on a fresh responder (the rules and the encoder, then the
cache keeps the bytes); "exact repeat" sends the same bytes again (only the id is written),
"0x20 repeat" the same question in other letter case, "cache hit" the same question with
another id and RD bit. Each figure is the lowest, over the rounds, of the median of the runs
of a round.

{table}
"""


if __name__ == "__main__":
    sys.exit(main())
