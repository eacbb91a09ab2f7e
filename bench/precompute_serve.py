"""A real `dnsdisco serve` with and without answers packed ahead (--precompute-budget), by dnsperf.

    python -m bench.precompute_serve --services 100000 --budgets 0,64

For each budget, on one etcd loaded with the bench dataset: start serve, wait until it answers
the last-loaded name (ready), then wait until /metrics says the packing ahead is done (`idle`:
no query meanwhile), and report the seconds that took, RSS (serve and its etcd helper), then
dnsperf over the mixed file once (first pass, -n 1) and again (repeat), their ratio, and RSS
after both.
With `--no-idle` the first pass starts at ready, as bench.run's scale table does: the packing
then backs off under dnsperf's load and the first pass is nearly a cold one. With `--burst`,
put -> served latency under a burst of 1,000 puts/s started at ready (bench.live.burst, as
in the scale table), while the answers are being packed.
"""
from __future__ import annotations

import argparse
import time
import urllib.request
from pathlib import Path

from bench import dataset, dnsperf, live, servers


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100_000)
    parser.add_argument("--budgets", default="0,64", help="MiB, comma-separated")
    parser.add_argument("--cache-size", type=int, default=None, help="serve --cache-size (default: serve's)")
    parser.add_argument("--seconds", type=float, default=30.0, help="dnsperf -l: the bound of one pass")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--no-idle", action="store_true", help="start the first pass at ready")
    parser.add_argument("--rounds", type=int, default=1, help="run the budgets this many times, in turn")
    parser.add_argument("--burst", action="store_true", help="instead of dnsperf: put -> served under a "
                        "burst of 1,000 puts/s started at ready, while the answers are being packed")
    args = parser.parse_args(argv)
    ds = dataset.Dataset(args.services)
    with servers.Supervisor() as sup:
        etcd = servers.start_etcd(sup)
        client = live.etcd_client(etcd.extra["endpoint"])
        count, secs = live.load(client, ds.etcd_items())
        print(f"loaded {count:,} keys in {secs:.1f} s")
        queries = str(Path(sup.root) / "mixed.txt")
        Path(queries).write_text(dataset.query_file_text(dataset.mixed_queries(ds, 100_000)))
        print("budget MiB | ready s | packed in s | answers | RSS MiB | first qps | repeat qps | first/repeat "
              "| RSS after MiB")
        for budget in [int(b) for b in args.budgets.split(",")] * args.rounds:
            http = servers.free_port()
            extra = ["--precompute-budget", str(budget), "--http", f"127.0.0.1:{http}"]
            if args.cache_size:
                extra += ["--cache-size", str(args.cache_size)]
            srv = servers.start_dnsdisco(sup, etcd.extra["endpoint"], extra_args=extra)
            try:
                servers.wait_dns(srv, ds.last_name(), 300)
                ready = time.monotonic() - srv.extra["t0"]
                if args.burst:
                    burst = live.burst(client, srv.port, puts=1000, rate=1000).summary()
                    packing = (f"packing running after it: {_metric(http, 'dnsdisco_precompute_running'):.0f}, "
                               f"{_metric(http, 'dnsdisco_precomputed_answers'):,.0f} answers" if budget else "")
                    print(f"{budget} MiB: ready {ready:.1f} s; burst {burst['n']} served, p50 {burst['p50']:.2f} "
                          f"ms, p99 {burst['p99']:.2f} ms, max {burst['max']:.2f} ms, {burst['timeouts']} "
                          f"timeouts; {packing}", flush=True)
                    continue
                packed_s = 0.0
                if budget and not args.no_idle:
                    packed_s = servers.wait_until(lambda: _metric(http, "dnsdisco_precompute_running") == 0
                                                  and (_metric(http, "dnsdisco_precomputed_answers") or 0) > 0,
                                                  300, 0.05, "the packing ahead to finish")
                answers = _metric(http, "dnsdisco_precomputed_answers") or 0
                rss = srv.rss_mib()
                first = dnsperf.run(srv.port, queries, args.seconds, args.clients, passes=1)
                repeat = dnsperf.run(srv.port, queries, args.seconds, args.clients, passes=1)
                print(f"{budget} | {ready:.1f} | {packed_s:.1f} | {answers:,.0f} | {rss:.0f} | {first.qps:,.0f} | "
                      f"{repeat.qps:,.0f} | {first.qps / repeat.qps:.2f} | {srv.rss_mib():.0f}", flush=True)
            finally:
                sup.stop(srv)
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
