"""First run and repeats of the mixed file on several checkouts at once, on one etcd.

    python -m bench.repeatpair --services 1000000 /path/to/before /path/to/after

Loads a private etcd once with `--services` services (bench/dataset.py), lists it once with a
throwaway start (servers.warm_etcd), starts every checkout's `python -m dnsdisco serve` on it (its own code: PYTHONPATH is the checkout; each
once etcd has settled, servers.wait_idle), pins each with its etcd helper to the first CPU
once ready and runs dnsperf on the others, then
sends each the scale table's mixed query file once (the first run: mostly first answers) and
then `--rounds` repeats, taking the servers in turn and the order turned around every round,
so that whatever else the machine does falls on all of them alike. The scale table
(bench/run.py) compares each size with a 10-service server; this compares checkouts with
each other on the same keys and the same seconds.

With `--cold-rounds N`, each checkout then takes N cold passes in turn, as the scale table's
(questions for names none of the runs before asked, `--cold` of them, once through and then
again): every round a new set of names, the same set for every checkout.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from . import dataset, dnsperf, live, servers
from .micro import commit_of
from .run import write_queries


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.repeatpair", description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=100_000, help="services (2 instances each) [100000]")
    ap.add_argument("--rounds", type=int, default=6, help="repeats of the mixed file per checkout [6]")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per dnsperf run [5]")
    ap.add_argument("--queries", type=int, default=100_000, help="lines of the mixed query file [100000]")
    ap.add_argument("--cold-rounds", type=int, default=0, help="cold passes per checkout after the repeats [0]")
    ap.add_argument("--cold", type=int, default=50_000, help="questions per cold pass [50000, as the scale table]")
    ap.add_argument("--ready-timeout", type=float, default=180)
    ap.add_argument("trees", nargs="+", help="checkouts of dnsdisco to start side by side")
    a = ap.parse_args(argv)
    if a.services < 2 or a.rounds < 1 or a.seconds <= 0 or a.cold_rounds < 0 or a.cold < 1:
        ap.error("--services must be at least 2, --rounds and --cold at least 1, --cold-rounds at least 0, "
                 "--seconds above 0")
    server_cpu, load_cpus = servers.split_cpus()
    ds = dataset.Dataset(a.services)
    names = [f"{tree} ({commit_of(tree)})" for tree in a.trees]
    with servers.Supervisor(keep=False) as sup:
        etcd, count, secs = live.loaded_etcd(sup, ds.etcd_items(), "etcd-repeatpair")
        print(f"loaded {count:,} keys in {secs:.1f} s", file=sys.stderr)
        servers.wait_idle(etcd.pid)
        servers.warm_etcd(sup, etcd.extra["endpoint"], ds.last_name(), a.ready_timeout)
        mixed = dataset.mixed_queries(ds, a.queries)
        queries = write_queries(Path(sup.workdir("queries")) / "mixed.txt", mixed)
        unasked = dataset.cold_questions(ds, a.cold * a.cold_rounds, mixed)
        colds = [write_queries(Path(sup.workdir("queries")) / f"cold{i}.txt", unasked[i * a.cold:(i + 1) * a.cold])
                 for i in range(a.cold_rounds) if unasked[i * a.cold:(i + 1) * a.cold]]
        started = []
        for i, tree in enumerate(a.trees):
            servers.wait_idle(etcd.pid)         # etcd done persisting the load
            srv = servers.start_dnsdisco(sup, etcd.extra["endpoint"], name=f"checkout{i}", tree=tree,
                                         extra_args=["--tcp-idle-timeout", "600"])
            servers.wait_dns(srv, ds.last_name(), a.ready_timeout)
            if server_cpu:
                servers.pin_running(srv, server_cpu)
            started.append(srv)
        first = [dnsperf.run(srv.port, queries, a.seconds, 4, cpus=load_cpus).qps for srv in started]
        repeats: list[list[float]] = [[] for _ in started]
        for round_no in range(a.rounds):
            order = range(len(started)) if round_no % 2 == 0 else reversed(range(len(started)))
            for i in order:
                repeats[i].append(dnsperf.run(started[i].port, queries, a.seconds, 4, cpus=load_cpus).qps)
        cold: list[list[tuple[float, float]]] = [[] for _ in started]
        for round_no, path in enumerate(colds):
            order = range(len(started)) if round_no % 2 == 0 else reversed(range(len(started)))
            for i in order:
                first_pass = dnsperf.run(started[i].port, path, COLD_LIMIT_S, 4, passes=1, cpus=load_cpus)
                second_pass = dnsperf.run(started[i].port, path, COLD_LIMIT_S, 4, passes=1, cpus=load_cpus)
                cold[i].append((first_pass.qps, second_pass.qps))
        rss = [srv.rss_mib() for srv in started]
    print(f"{a.services:,} services, mixed file of {a.queries:,} lines, dnsperf -c 4 -l {a.seconds:g}, "
          f"{'servers on CPU ' + server_cpu + ', dnsperf on ' + load_cpus if server_cpu else 'not pinned'}")
    print("| checkout | QPS first run | QPS repeat (median) | repeats | first / repeat | RSS MiB after |")
    print("|---|---|---|---|---|---|")
    for name, one, again, mib in zip(names, first, repeats, rss):
        median = statistics.median(again)
        print(f"| {name} | {one:,.0f} | {median:,.0f} | {', '.join(f'{q:,.0f}' for q in again)} | "
              f"{one / median:.2f} | {mib:.0f} |")
    if colds:
        print(f"\ncold passes of {a.cold:,} questions each, a new set of names every round, the same for every checkout")
        print("| checkout | cold pass QPS / its repeat, per round | ratios | median ratio |")
        print("|---|---|---|---|")
        for name, passes in zip(names, cold):
            ratios = [one / again for one, again in passes]
            print(f"| {name} | {', '.join(f'{one:,.0f} / {again:,.0f}' for one, again in passes)} | "
                  f"{', '.join(f'{r:.2f}' for r in ratios)} | {statistics.median(ratios):.2f} |")
    return 0


COLD_LIMIT_S = 60       # a cold pass is one pass through its file (dnsperf -n 1), bounded as the scale table's


if __name__ == "__main__":
    sys.exit(main())
