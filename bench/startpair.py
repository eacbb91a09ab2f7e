"""Start → ready, memory and a put burst for several checkouts on one etcd, one after the other.

    python -m bench.startpair --services 1000000 /path/to/before /path/to/after /path/to/before

Loads a private etcd once with `--services` services (bench/dataset.py) and lists it once with a
throwaway start of this checkout (servers.warm_etcd), then for each checkout in turn, once etcd
has settled (servers.wait_idle: done persisting the load or the burst before), starts its `python -m dnsdisco serve` (its own code: PYTHONPATH is the checkout), waits
until the last-loaded name answers, reads the resident memory of serve and its helper, sends a
burst of 1,000 puts at 1,000/s (bench/live.py: put → served latency) and stops it. Checkouts
measured back to back on the same keys see the same machine within minutes, which the full
scale table, minutes apart per checkout, does not give.

With --snapshot-file, each checkout runs with `--snapshot-file` (one file each, in a temporary
directory): the start above saves its snapshot when it stops, and a second start of the same
checkout is then timed until the last-loaded name answers (from the saved snapshot, before its
listing is built) and until its listing is built (when a name never registered first gets
NXDOMAIN: the saved snapshot answers it SERVFAIL), and its memory is read a second after that
(it held the saved snapshot while it built the listing's). The files are removed at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import dataset, live, probe, servers

NXDOMAIN = 3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.startpair", description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=100_000)
    ap.add_argument("--ready-timeout", type=float, default=180)
    ap.add_argument("--snapshot-file", action="store_true",
                    help="also time a restart of each checkout with the snapshot its first start saved")
    ap.add_argument("trees", nargs="+", help="checkouts of dnsdisco to start, in this order")
    a = ap.parse_args(argv)
    ds = dataset.Dataset(a.services)
    saved_dir = tempfile.mkdtemp(prefix="dnsdisco-startpair-")
    restart = " restart: answering s | restart: listed s | restart: RSS MiB once listed |" if a.snapshot_file else ""
    print(f"| checkout | ready s | RSS MiB | burst p50 ms | burst p99 ms | burst max ms | load average |{restart}")
    print("|---|---|---|---|---|---|---|" + ("---|---|---|" if a.snapshot_file else ""))
    try:
        _pairs(a, ds, saved_dir)
    finally:
        shutil.rmtree(saved_dir, ignore_errors=True)     # a saved snapshot is 50 MiB at 1,000,000 services
    return 0


def _pairs(a, ds, saved_dir: str) -> None:
    with servers.Supervisor(keep=False) as sup:
        etcd = servers.start_etcd(sup, name="etcd-startpair")
        client = live.etcd_client(etcd.extra["endpoint"])
        count, secs = live.load(client, ds.etcd_items())
        print(f"loaded {count:,} keys in {secs:.1f} s", file=sys.stderr)
        servers.wait_idle(etcd.pid)
        print(f"etcd warmed by a throwaway start, ready in "
              f"{servers.warm_etcd(sup, etcd.extra['endpoint'], ds.last_name(), a.ready_timeout):.1f} s", file=sys.stderr)
        for number, tree in enumerate(a.trees):
            servers.REPO_ROOT = Path(tree).resolve()     # start_dnsdisco runs the checkout's code
            extra = ["--snapshot-file", os.path.join(saved_dir, f"{number}.snapshot")] if a.snapshot_file else []
            servers.wait_idle(etcd.pid)         # etcd done persisting the load and the last burst
            srv = servers.start_dnsdisco(sup, etcd.extra["endpoint"], extra_args=extra)
            servers.wait_dns(srv, ds.last_name(), a.ready_timeout)
            ready = time.monotonic() - srv.extra["t0"]
            rss = srv.rss_mib()
            time.sleep(2)
            burst = live.burst(client, srv.port, puts=1000, rate=1000).summary()
            row = (f"| {tree} | {ready:.1f} | {rss:.0f} | {burst['p50']:.2f} | {burst['p99']:.2f} | "
                   f"{burst['max']:.2f} | {os.getloadavg()[0]:.2f} |")
            sup.stop(srv)                       # with --snapshot-file: saves the snapshot
            if a.snapshot_file:
                servers.wait_idle(etcd.pid)
                srv = servers.start_dnsdisco(sup, etcd.extra["endpoint"], extra_args=extra)
                servers.wait_dns(srv, ds.last_name(), a.ready_timeout)
                answering = time.monotonic() - srv.extra["t0"]
                listed = answering + _listed(srv, a.ready_timeout)
                time.sleep(1)                   # the old snapshot's memory handed back (serve trims its heap)
                row += f" {answering:.1f} | {listed:.1f} | {srv.rss_mib():.0f} |"
                sup.stop(srv)
            print(row, flush=True)
        client.close()


def _listed(srv, timeout: float) -> float:
    """Seconds from now until `srv` first answers NXDOMAIN for a name never registered: its
    listing is built (a saved snapshot answers it SERVFAIL)."""
    prober = probe.Prober(srv.port)
    try:
        return servers.wait_until(
            lambda: prober.ask_header(f"never-registered.{dataset.ZONE}", "A", timeout=0.2)[0] == NXDOMAIN,
            timeout, interval=0.01, what=f"{srv.name} to finish its listing")
    finally:
        prober.close()


if __name__ == "__main__":
    sys.exit(main())
