"""Issue 20: a Knot DNS secondary of dnsdisco, fed by NOTIFY + IXFR (TSIG-signed).

    python -m bench.secondary                 # about 45 s: 1,000 services, 200 updates, a 5 s burst at 1,000 puts/s
    python -m bench.secondary --quick         # about 20 s: 200 services, 100 updates, a 1 s burst

Measures, all on 127.0.0.1 with a private etcd:
1. how long Knot takes to load the zone by AXFR;
2. put -> answered by the Knot secondary, p50/p99 over `--updates` sequential puts (new names,
   changed addresses, deletes) under a bounded dnsperf load on Knot (`--load-qps`);
3. a burst of puts at `--burst-rate` for `--burst-seconds`: every name's put -> answered by Knot
   (the largest is how long after the burst's end the secondary had converged at most), with
   the NOTIFYs dnsdisco sent, the transfers Knot asked and their total size (dnsdisco's metrics
   and its one log line per transfer);
4. the mixed query file on the Knot secondary and on dnsdisco, `--duration` s each.
Prints a markdown section for docs/benchmarks.md. Every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import base64
import os
import re
import sys
import time
import urllib.request
from pathlib import Path

from . import dataset, dnsperf, live, servers

KNOT_SECONDARY = """\
server:
    listen: 127.0.0.1@{port}
    rundir: "{wd}"
database:
    storage: "{wd}/db"
log:
  - target: stderr
    any: info
key:
  - id: k1
    algorithm: hmac-sha256
    secret: {secret}
remote:
  - id: primary
    address: 127.0.0.1@{primary}
    key: k1
acl:
  - id: from_primary
    address: 127.0.0.1
    key: k1
    action: notify
template:
  - id: default
    storage: "{wd}"
zone:
  - domain: {zone}
    master: primary
    acl: from_primary
    file: "{wd}/{zone}.zone"
    zonefile-sync: -1
    journal-content: none
"""


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.secondary", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a run of under a minute")
    ap.add_argument("--services", type=int, default=None, help="services loaded first [1000; quick 200]")
    ap.add_argument("--updates", type=int, default=None, help="sequential puts timed [200; quick 100]")
    ap.add_argument("--load-qps", type=int, default=None, help="dnsperf -Q on Knot meanwhile [20000; quick 5000]")
    ap.add_argument("--burst-rate", type=int, default=1000, help="puts per second in the burst [1000]")
    ap.add_argument("--burst-seconds", type=float, default=None, help="length of the burst [5; quick 1]")
    ap.add_argument("--duration", type=float, default=None, help="dnsperf seconds per server [5; quick 3]")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) for a post-mortem")
    a = ap.parse_args(argv)
    quick = a.quick
    a.services = a.services or (200 if quick else 1000)
    a.updates = a.updates or (100 if quick else 200)
    a.load_qps = a.load_qps or (5000 if quick else 20000)
    a.burst_seconds = a.burst_seconds or (1.0 if quick else 5.0)
    a.duration = a.duration or (3.0 if quick else 5.0)
    return a


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def transfers_in_log(log: Path) -> list[tuple[str, int]]:
    """(kind, octets) of every transfer dnsdisco logged."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        m = re.search(r"(AXFR|IXFR|IXFR_FULL|IXFR_CURRENT) of \S+ to .* message\(s\), (\d+) octets", line)
        if m:
            out.append((m.group(1), int(m.group(2))))
    return out


def main(argv=None) -> int:
    a = parse_args(argv)
    ds = dataset.Dataset(a.services)
    secret = base64.b64encode(os.urandom(32)).decode()
    res: dict = {}
    with servers.Supervisor(keep=a.keep) as sup:
        say(f"working in {sup.root}")
        etcd = servers.start_etcd(sup)
        endpoint = etcd.extra["endpoint"]
        client = live.etcd_client(endpoint)
        count, seconds = live.load(client, ds.etcd_items())
        say(f"loaded {count} keys in {seconds:.1f} s")

        knot_port, http_port = servers.free_port(), servers.free_port()
        keys = sup.root / "tsig.keys"
        keys.write_text(f"k1 hmac-sha256 {secret}\n")
        keys.chmod(0o600)
        disco = servers.start_dnsdisco(sup, endpoint, extra_args=[
            "--transfer-allow", "127.0.0.1/32", "--transfer-require-tsig", "--tsig-key-file", str(keys),
            "--notify", f"127.0.0.1:{knot_port}", "--http", f"127.0.0.1:{http_port}"])
        servers.wait_dns(disco, ds.last_name(), 60)

        wd = sup.workdir("knot-secondary")
        (wd / "db").mkdir()
        (wd / "knot.conf").write_text(KNOT_SECONDARY.format(wd=wd, port=knot_port, primary=disco.port,
                                                            zone=dataset.ZONE, secret=secret))
        t0 = time.monotonic()
        knot = sup.spawn("knot", ["knotd", "-c", str(wd / "knot.conf")], knot_port, wd)
        servers.wait_dns(knot, ds.last_name(), 120)
        res["axfr_load_s"] = time.monotonic() - t0
        say(f"Knot loaded the zone by AXFR in {res['axfr_load_s']:.2f} s")
        # dnsdisco's first NOTIFY went out before Knot was started, unanswered; the next one may
        # follow it only a timeout (1 s) later. Measure the steady state after that.
        time.sleep(1.5)

        qdir = sup.workdir("queries")
        mixed = str(qdir / "mixed.txt")
        Path(mixed).write_text(dataset.query_file_text(dataset.mixed_queries(ds, 100_000)))

        budget = 60 + a.updates * 0.05
        say(f"{a.updates} puts, each timed until Knot answers it, under dnsperf -Q {a.load_qps} on Knot")
        load = dnsperf.start(knot.port, mixed, budget, 4, max_qps=a.load_qps)
        try:
            lats = live.freshness(client, knot.port, a.updates, budget_s=budget)
        finally:
            dnsperf.stop(load)
        res["freshness"] = [x.summary() for x in lats.values()]

        puts = int(a.burst_rate * a.burst_seconds)
        before_sent = metric(http_port, 'dnsdisco_notifies_total{result="sent"}')
        before = len(transfers_in_log(disco.log))
        say(f"burst: {puts} puts at {a.burst_rate}/s")
        burst = live.burst(client, knot.port, puts=puts, rate=a.burst_rate, timeout=10.0)
        time.sleep(1.0)
        during = transfers_in_log(disco.log)[before:]
        res["burst"] = burst.summary()
        res["burst_notifies"] = metric(http_port, 'dnsdisco_notifies_total{result="sent"}') - before_sent
        res["burst_transfers"] = {kind: sum(1 for k, _ in during if k == kind) for kind in {k for k, _ in during}}
        res["burst_octets"] = sum(octets for _, octets in during)

        res["notifies"] = {r: metric(http_port, f'dnsdisco_notifies_total{{result="{r}"}}')
                           for r in ("sent", "acked", "failed")}
        say(f"mixed file, {a.duration:.0f} s each: the Knot secondary, then dnsdisco")
        res["qps_knot"] = dnsperf.run(knot.port, mixed, a.duration, 4).qps
        res["qps_dnsdisco"] = dnsperf.run(disco.port, mixed, a.duration, 4).qps
        client.close()
    print(report(a, res))
    return 0


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def report(a, res: dict) -> str:
    lines = ["## Secondaries: Knot fed by NOTIFY + IXFR (issue 20)", "",
             f"`python -m bench.secondary{' --quick' if a.quick else ''}`: {a.services} services, a Knot "
             f"secondary with a TSIG key, dnsdisco `--notify` to it.", "",
             f"- Knot loaded the zone by AXFR in {res['axfr_load_s']:.2f} s.",
             f"- put -> answered by Knot, under `dnsperf -Q {a.load_qps}` on Knot:", "",
             "| change | n | p50 ms | p99 ms | max ms | timeouts |", "|---|---|---|---|---|---|"]
    for s in res["freshness"]:
        lines.append(f"| {s['label']} | {s['n']} | {_ms(s['p50'])} | {_ms(s['p99'])} | {_ms(s['max'])} | "
                     f"{s['timeouts']} |")
    b = res["burst"]
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(res["burst_transfers"].items())) or "none"
    lines += ["", f"- burst of {int(a.burst_rate * a.burst_seconds)} puts at {a.burst_rate}/s "
              f"(achieved {b['rate'] or 0:.0f}/s): put -> answered by Knot p50 {_ms(b['p50'])} ms, p99 "
              f"{_ms(b['p99'])} ms, max {_ms(b['max'])} ms (so Knot had every name at most that long after "
              f"the burst's end), {b['timeouts']} not seen within 10 s; {res['burst_notifies']:.0f} NOTIFYs, "
              f"transfers: {kinds}, {res['burst_octets']} octets in all.",
              f"- NOTIFYs over the whole run: {res['notifies']['sent']:.0f} sent, {res['notifies']['acked']:.0f} "
              f"acknowledged, {res['notifies']['failed']:.0f} given up (the first goes out before Knot runs).",
              f"- mixed file: Knot secondary {res['qps_knot']:.0f} qps, dnsdisco {res['qps_dnsdisco']:.0f} qps "
              f"(ratio {res['qps_dnsdisco'] / res['qps_knot']:.2f}; {a.duration:.0f} s each, one round)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
