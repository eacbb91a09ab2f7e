"""Instructions per first answer, counted by valgrind: no sockets, no etcd, no clock.

    python -m bench.instructions                               # this checkout
    python -m bench.instructions --tree /path/to/old           # and another, side by side

Timing a first answer on a shared 2-core machine moves by ±15% from one run to the next;
the count of instructions the CPU ran for it does not. For each tree and each kind of pass
(`cold`: A or AAAA of names the mixed file never asks; `mixed`: the scale table's mixed file
in its order), a child process builds a snapshot of `--services` services of the bench dataset,
sets serve's collector thresholds, and sends the first `--fewer` and then `--more` questions
of the pass through a fresh `Responder.handle` (with serve's metrics), each under
`valgrind --tool=cachegrind --cache-sim=no`. The difference of the two totals over the
difference of the counts is what one first answer costs, the build and the start taken out.
PYTHONHASHSEED is fixed, so dict layouts (and the count) repeat from run to run.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def child(tree: str, services: int, count: int, built: int, kind: str) -> None:
    """Runs under valgrind: `count` first answers of the pass `kind` through `tree`'s code,
    out of `built` questions made (the same in both runs, so making them cancels out)."""
    import gc
    sys.path.insert(0, str(REPO))
    from bench import dataset           # this checkout's dataset (it imports nothing of dnsdisco)
    from bench.firstpass import _serve_collector
    sys.path.insert(0, tree)             # and the tree's dnsdisco
    from dnsdisco.dns.responder import Responder
    from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
    from dnsdisco.ops.metrics import Metrics
    ds = dataset.Dataset(services)
    snap = Snapshot.build(dataset.PREFIX, [ZoneConfig(dataset.ZONE)], 10, ds.etcd_items())
    gc.collect()
    gc.freeze()                          # as serve does after its first sync
    _serve_collector()                   # with the tree's thresholds, as bench.firstpass
    mixed = dataset.mixed_queries(ds, services)
    lines = dataset.cold_questions(ds, built, mixed) if kind == "cold" else mixed
    packets = [dataset.query_packet(line, i & 0xFFFF) for i, line in enumerate(lines[:built])]
    if len(packets) < built:
        raise SystemExit(f"only {len(packets)} questions for a {kind} pass of {built}: raise --services")
    responder = Responder(snap, metrics=Metrics(process_metrics=False))
    client = ("127.0.0.1", 5353)
    for packet in packets[:count]:
        responder.handle(packet, "udp", client)


def instructions(tree: str, services: int, count: int, built: int, kind: str) -> int:
    """Instructions valgrind counts for one child run."""
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=tree)
    out = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                          sys.executable, "-m", "bench.instructions", "--child", tree, str(services), str(count), str(built), kind],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed ({tree}, {kind}, {count}):\n{out.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        tree, services, count, built, kind = argv[1:6]
        child(tree, int(services), int(count), int(built), kind)
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", default=[], help="another checkout to count beside this one")
    ap.add_argument("--services", type=int, default=20_000, help="services in the snapshot [20000]")
    ap.add_argument("--fewer", type=int, default=1_000, help="questions in the shorter run [1000]")
    ap.add_argument("--more", type=int, default=5_000, help="questions in the longer run [5000]")
    ap.add_argument("--kinds", default="cold,mixed", help="passes to count, of cold and mixed [cold,mixed]")
    a = ap.parse_args(argv)
    kinds = [kind for kind in a.kinds.split(",") if kind]
    if not 0 < a.fewer < a.more or a.services < 2 or not kinds or set(kinds) - {"cold", "mixed"}:
        ap.error("need 0 < --fewer < --more, --services at least 2, --kinds of cold and mixed")
    if shutil.which("valgrind") is None:
        ap.error("valgrind is not installed (apt-get install valgrind)")
    trees = [str(REPO)] + [str(Path(tree).resolve()) for tree in a.tree]
    print(f"instructions per first answer (valgrind, {a.services:,} services, runs of {a.fewer:,} and "
          f"{a.more:,} questions, PYTHONHASHSEED=0)")
    print("| tree | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for tree in trees:
        cells = []
        for kind in kinds:
            per = ((instructions(tree, a.services, a.more, a.more, kind)
                    - instructions(tree, a.services, a.fewer, a.more, kind)) / (a.more - a.fewer))
            cells.append(f"{per:,.0f}")
        print(f"| {tree} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
