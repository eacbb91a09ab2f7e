"""Repeats of a large server: the many questions it repeats against a few of them.

    python -m bench.workingset --services 1000000 --rounds 6

The scale table compares the repeats of a big server's mixed file with those of a 10-service
reference. This asks which of the two differences it sees costs the rate: the size of the
zone, or the number of distinct questions repeated (the reply cache's working set). It loads a
private etcd with `--services` services (bench/dataset.py) and another with 10, starts
`python -m dnsdisco serve` on each (this checkout), pins both to the first CPU and dnsperf to
the others, asks every file once, then runs in turn, order turned around every round:

- `big, mixed`: the big server with the scale table's mixed file (~90,000 distinct questions at
  1,000,000 services, all cached after the first run);
- `big, few`: the same server with a file of the first `--few` distinct questions of that
  mixed file, repeated to the same length;
- `reference`: the 10-service server with its own mixed file.

It prints each one's QPS per round and the medians of the per-round ratios to the reference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from . import dataset, dnsperf, live, servers
from .run import write_queries

REFERENCE_SERVICES = 10


def few_questions(mixed: list[str], few: int) -> list[str]:
    """The first `few` distinct lines of `mixed`, repeated in turn to its length."""
    distinct = list(dict.fromkeys(mixed))[:few]
    return [distinct[i % len(distinct)] for i in range(len(mixed))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.workingset", description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=1_000_000, help="services of the big server (2 instances each) [1000000]")
    ap.add_argument("--rounds", type=int, default=6, help="rounds of the three runs [6]")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per dnsperf run [5]")
    ap.add_argument("--queries", type=int, default=100_000, help="lines of each query file [100000]")
    ap.add_argument("--few", type=int, default=70, help="distinct questions of the few-questions file [70: "
                    "about what the 10-service reference's mixed file holds]")
    ap.add_argument("--ready-timeout", type=float, default=300)
    a = ap.parse_args(argv)
    if a.services < 2 or a.rounds < 1 or a.seconds <= 0 or a.queries < 1 or a.few < 1:
        ap.error("--services must be at least 2, --rounds, --queries and --few at least 1, --seconds above 0")
    server_cpu, load_cpus = servers.split_cpus()
    big_ds, ref_ds = dataset.Dataset(a.services), dataset.Dataset(REFERENCE_SERVICES)
    with servers.Supervisor(keep=False) as sup:
        started = {}
        for label, ds in (("big", big_ds), ("reference", ref_ds)):
            etcd, count, secs = live.loaded_etcd(sup, ds.etcd_items(), f"etcd-{label}")
            print(f"{label}: loaded {count:,} keys in {secs:.1f} s", file=sys.stderr)
            servers.wait_idle(etcd.pid)
            servers.warm_etcd(sup, etcd.extra["endpoint"], ds.last_name(), a.ready_timeout)
            servers.wait_idle(etcd.pid)
            srv = servers.start_dnsdisco(sup, etcd.extra["endpoint"], name=label,
                                         extra_args=["--tcp-idle-timeout", "600"])
            servers.wait_dns(srv, ds.last_name(), a.ready_timeout)
            if server_cpu:
                servers.pin_running(srv, server_cpu)
            started[label] = srv
        workdir = Path(sup.workdir("queries"))
        mixed = dataset.mixed_queries(big_ds, a.queries)
        runs = {
            "big, mixed": (started["big"], write_queries(workdir / "mixed.txt", mixed)),
            "big, few": (started["big"], write_queries(workdir / "few.txt", few_questions(mixed, a.few))),
            "reference": (started["reference"],
                          write_queries(workdir / "reference.txt", dataset.mixed_queries(ref_ds, a.queries))),
        }
        for srv, path in runs.values():         # every question asked once: the runs below are repeats
            dnsperf.run(srv.port, path, a.seconds, 4, cpus=load_cpus)
        qps: dict[str, list[float]] = {label: [] for label in runs}
        for round_no in range(a.rounds):
            order = list(runs) if round_no % 2 == 0 else list(reversed(runs))
            for label in order:
                srv, path = runs[label]
                qps[label].append(dnsperf.run(srv.port, path, a.seconds, 4, cpus=load_cpus).qps)
        distinct = len(set(mixed))
    print(f"{a.services:,} services against {REFERENCE_SERVICES}; dnsperf -c 4 -l {a.seconds:g}, "
          f"{'servers on CPU ' + server_cpu + ', dnsperf on ' + load_cpus if server_cpu else 'not pinned'}; "
          f"mixed file: {distinct:,} distinct questions, few: {min(a.few, distinct):,}")
    print("| run | QPS per round | median | median of the ratios to the reference (range) |")
    print("|---|---|---|---|")
    for label, values in qps.items():
        ratios = [one / ref for one, ref in zip(values, qps["reference"])]
        print(f"| {label} | {', '.join(f'{q:,.0f}' for q in values)} | {statistics.median(values):,.0f} | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
