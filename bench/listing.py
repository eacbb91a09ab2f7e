"""How long a full listing of the bench dataset takes, and what it costs etcd, per checkout.

    python -m bench.listing --services 1000000 --tree /path/to/old --rounds 3

Loads a private etcd once with `--services` services (bench/dataset.py), then lists the whole
prefix with each checkout's own etcd client (`KV.list_prefix` as serve's helper calls it: pages
handed over as they come, etcd's messages as they are), the checkouts taking turns for
`--rounds` rounds, each in a child process of its own. Per listing: the wall time, the time
to the first page, and the CPU seconds etcd and the listing process used. Nothing is built:
this is the listing alone (etcd/listing.py), which start → ready shares with the snapshot's
build (bench/startpair.py, bench/scalebreakdown.py).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import dataset, live, servers

REPO = Path(__file__).resolve().parent.parent


def child(tree: str, endpoint: str, etcd_pid: int) -> None:
    """One listing through `tree`'s client; prints its figures as JSON."""
    sys.path.insert(0, tree)
    from dnsdisco.etcd.client import KV
    kv = KV(endpoint)
    first = []
    count = [0]

    def pages(part):
        if part:
            count[0] += len(part)
            if not first:
                first.append(time.monotonic())

    before_etcd, before_self = sum(servers.cpu_seconds(etcd_pid)), os.times()
    started = time.monotonic()
    kv.list_prefix(f"{dataset.PREFIX}/", 1000, pages=pages, raw=True)
    wall = time.monotonic() - started
    after_self = os.times()
    print(json.dumps({"wall": wall, "first": first[0] - started if first else None, "keys": count[0],
                      "etcd_cpu": sum(servers.cpu_seconds(etcd_pid)) - before_etcd,
                      "self_cpu": after_self.user + after_self.system - before_self.user - before_self.system}))
    kv.close()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1], argv[2], int(argv[3]))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.listing", description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=100_000, help="services of the bench dataset [100000]")
    ap.add_argument("--tree", action="append", default=[], help="another checkout to list with beside this one")
    ap.add_argument("--rounds", type=int, default=3, help="listings per checkout, taking turns [3]")
    a = ap.parse_args(argv)
    if a.services < 1 or a.rounds < 1:
        ap.error("need --services and --rounds of at least 1")
    trees = [str(REPO)] + [str(Path(tree).resolve()) for tree in a.tree]
    results: list[tuple[str, list[dict]]] = [(tree, []) for tree in trees]     # a tree may come twice
    with servers.Supervisor(keep=False) as sup:
        etcd, count, secs = live.loaded_etcd(sup, dataset.Dataset(a.services).etcd_items(), "etcd-listing")
        print(f"loaded {count:,} keys in {secs:.1f} s", file=sys.stderr)
        for _ in range(a.rounds):
            for tree, runs in results:
                servers.wait_idle(etcd.pid)
                out = subprocess.run([sys.executable, "-m", "bench.listing", "--child", tree, etcd.extra["endpoint"],
                                      str(etcd.pid)], capture_output=True, text=True, cwd=REPO, timeout=600,
                                     env=dict(os.environ, PYTHONPATH=tree))
                if out.returncode != 0:
                    raise SystemExit(f"listing with {tree} failed:\n{out.stderr[-2000:]}")
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"full listing of {count:,} keys, {a.rounds} round(s) per checkout, taking turns "
          f"(medians, range in brackets)")
    print("| checkout | listing s | first page s | etcd CPU s | listing process CPU s |")
    print("|---|---|---|---|---|")
    for tree, runs in results:
        cells = []
        for key in ("wall", "first", "etcd_cpu", "self_cpu"):
            values = [run[key] for run in runs if run[key] is not None]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        print(f"| {tree} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
