"""One command for the whole benchmark: `python -m bench.run [--quick] [--write docs/benchmarks.md]`.

Starts a private etcd and loads the records, starts dnsdisco, Knot DNS, dnsmasq and the dnslib
floor on free loopback ports with the same records, checks their answers, runs dnsperf against
each in turn, then measures freshness, scale and UDP under idle TCP connections, and prints
one markdown report. Every process it starts is stopped at exit, also on Ctrl-C.
"""
from __future__ import annotations

import argparse
import datetime
import json
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

from . import dataset, dnsperf, live, probe, report, servers

ALL_SERVERS = ("dnsdisco", "knot", "dnsmasq", "floor")
LIVE_TARGETS = ("dnsdisco", "floor")
SECTIONS = ("throughput", "freshness", "tcp", "scale")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="short smoke run: 3 s dnsperf runs, 200 updates, scales 10,1000")
    ap.add_argument("--services", type=int, default=1000, help="services for the throughput run [1000]")
    ap.add_argument("--duration", type=float, default=None, help="seconds per dnsperf run [10; quick 3]")
    ap.add_argument("--clients", type=int, default=4, help="dnsperf -c [4]")
    ap.add_argument("--rounds", type=int, default=None,
                    help="mixed-file runs of dnsdisco and Knot back to back, and in the scale table repeat "
                         "runs each followed by the reference run; the goal ratios are their medians, "
                         "which a noisy machine moves less than any one run [3; quick 1]")
    ap.add_argument("--query-lines", type=int, default=100_000, help="lines in the mixed query file [100000]")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS),
                    help=f"servers for the throughput table [{','.join(ALL_SERVERS)}]")
    ap.add_argument("--live", default="dnsdisco",
                    help="etcd-fed servers for freshness/scale/tcp: dnsdisco and/or floor [dnsdisco]")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"what to run [{','.join(SECTIONS)}]")
    ap.add_argument("--updates", type=int, default=None, help="freshness puts (plus 30%% deletes) [1000; quick 200]")
    ap.add_argument("--fresh-load-qps", type=int, default=20_000,
                    help="dnsperf -Q background load during freshness [20000]")
    ap.add_argument("--scales", default=None,
                    help="services per scale step [10,1000,10000,100000,1000000; quick 10,1000]")
    ap.add_argument("--no-million", action="store_true",
                    help="leave out scale steps of 1,000,000 services or more (each takes minutes and over 1 GiB)")
    ap.add_argument("--breakdown", action=argparse.BooleanOptionalAction, default=True,
                    help="after the largest scale step of 100,000 services or more: where its first sync spends "
                         "the time and its snapshot the memory (bench/scalebreakdown.py) [on]")
    ap.add_argument("--scale-duration", type=float, default=None,
                    help="seconds per scale dnsperf run; each size has a first (cold) run, then --rounds "
                         "repeats, each followed by the reference run [10; quick 2]")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                    help="scale table: run the server under test and its reference on the first CPU "
                         "this process may use and dnsperf on the others (taskset), so the scheduler "
                         "neither moves the server nor runs dnsperf on its core [on]")
    ap.add_argument("--pin-start", action=argparse.BooleanOptionalAction, default=False,
                    help="scale table: pin the server from its start, so its etcd helper lists on the "
                         "server's core while the server builds; by default a size's server starts "
                         "unpinned (nothing else runs then) and is pinned with its helper once ready [off]")
    ap.add_argument("--idle-tcp", type=int, default=800, help="idle TCP connections to hold [800]")
    ap.add_argument("--ready-timeout", type=float, default=60, help="seconds to wait for a server to be ready [60]")
    ap.add_argument("--dnsdisco-arg", action="append", default=[],
                    help="extra argument for `dnsdisco serve` (repeatable)")
    ap.add_argument("--dnsmasq-auth", action="store_true",
                    help="run dnsmasq in authoritative mode (SOA in negative answers; about 3x slower)")
    ap.add_argument("--baseline", metavar="TREE",
                    help="another checkout of dnsdisco (e.g. `git worktree add /tmp/base COMMIT`): its serve "
                         "runs as `baseline` in the throughput section and in every round after dnsdisco, "
                         "so a change is compared with the code before it in one run")
    ap.add_argument("--write", metavar="FILE", help="also write the report to FILE (e.g. docs/benchmarks.md)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with configs and logs")
    a = ap.parse_args(argv)
    a.duration = a.duration or (3 if a.quick else 10)
    a.updates = a.updates or (200 if a.quick else 1000)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.scale_duration = a.scale_duration or (2 if a.quick else 10)
    a.scales = [int(x) for x in (a.scales or ("10,1000" if a.quick else "10,1000,10000,100000,1000000")).split(",")]
    if a.no_million:
        a.scales = [n for n in a.scales if n < 1_000_000]
    a.servers = [s for s in a.servers.split(",") if s]
    a.live = [s for s in a.live.split(",") if s]
    a.sections = [s for s in a.sections.split(",") if s]
    a.server_cpus, a.load_cpus, a.pinning = scale_cpus(a)
    for s in a.servers:
        if s not in ALL_SERVERS:
            ap.error(f"--servers: unknown server {s!r} (choose from {', '.join(ALL_SERVERS)})")
    for s in a.live:
        if s not in LIVE_TARGETS:
            ap.error(f"--live: unknown server {s!r} (choose from {', '.join(LIVE_TARGETS)})")
    for s in a.sections:
        if s not in SECTIONS:
            ap.error(f"--sections: unknown section {s!r} (choose from {', '.join(SECTIONS)})")
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    if a.baseline:
        if not (Path(a.baseline) / "dnsdisco" / "__init__.py").is_file():
            ap.error(f"--baseline {a.baseline}: not a dnsdisco checkout (no dnsdisco/__init__.py there)")
        if "dnsdisco" in a.servers:
            a.servers.insert(a.servers.index("dnsdisco") + 1, "baseline")
    if a.services < 2 or any(n < 2 for n in a.scales):
        ap.error("--services and --scales need at least 2 services")
    return a


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def dnsdisco_serve_args(a) -> list[str]:
    # a long idle timeout so the held TCP connections stay open through the measurement
    return ["--tcp-idle-timeout", str(max(120, int(a.duration * 6))), *a.dnsdisco_arg]


def start_live(sup, name, endpoint, a, ds, cpus=None):
    """Start dnsdisco or the floor on `endpoint` (on `cpus` if given) and wait until it answers
    the last-loaded name. Returns (server, seconds from process start to ready)."""
    if name == "dnsdisco":
        srv = servers.start_dnsdisco(sup, endpoint, extra_args=dnsdisco_serve_args(a), cpus=cpus)
    elif name == "baseline":
        srv = servers.start_dnsdisco(sup, endpoint, extra_args=dnsdisco_serve_args(a), cpus=cpus, name="baseline",
                                     tree=a.baseline)
    else:
        srv = servers.start_floor(sup, endpoint, cpus=cpus)
    servers.wait_dns(srv, ds.last_name(), a.ready_timeout)
    return srv, time.monotonic() - srv.extra["t0"]


def unavailable(name: str, exc: Exception) -> str:
    last = [ln for ln in str(exc).splitlines() if ln.strip()]
    reason = last[-1].strip() if last else exc.__class__.__name__
    return f"{name}: not available ({reason[:160]})"


def write_queries(path: Path, lines: list[str]) -> str:
    path.write_text(dataset.query_file_text(lines))
    return str(path)


WARM_UP_S = 2.0


def throughput(sup, a, ds, endpoint, res, qfiles) -> dict:
    """Start each server, check its answers, dnsperf mixed and single. Returns the live servers."""
    started = {}
    for name in a.servers:
        say(f"starting {name}")
        try:
            if name in LIVE_TARGETS or name == "baseline":
                srv, _ = start_live(sup, name, endpoint, a, ds)
            elif name == "knot":
                srv = servers.start_knot(sup, ds)
            else:
                srv = servers.start_dnsmasq(sup, ds, auth=a.dnsmasq_auth)
        except (servers.StartError, OSError) as exc:
            status = unavailable(name, exc)
            say(status)
            res["throughput"] += [{"server": name, "file": f, "perf": None, "status": status} for f in qfiles]
            continue
        problems = probe.validate(srv.port, ds)
        for p in problems:
            res["notes"].append(f"{name}: {p}")
        bad = probe.fatal(problems)
        if bad:
            status = f"wrong answers, not benchmarked: {bad[0]}"
            say(f"{name}: {status}")
            res["throughput"] += [{"server": name, "file": f, "perf": None, "status": status} for f in qfiles]
            started[name] = srv
            continue
        started[name] = srv
        # not counted: every server answers the mixed file once before it is measured, so the
        # table compares steady states (dnsdisco's cold start is the scale table's first run)
        say(f"dnsperf {name} mixed {WARM_UP_S:g} s warm-up")
        try:
            dnsperf.run(srv.port, qfiles["mixed"], min(WARM_UP_S, a.duration), a.clients)
        except (dnsperf.DnsperfError, subprocess.TimeoutExpired) as exc:
            say(f"  warm-up failed: {exc}"[:200])
        for f, path in qfiles.items():
            say(f"dnsperf {name} {f} {a.duration:g} s")
            try:
                cpu_before = servers.cpu_seconds(srv.proc.pid)
                perf = dnsperf.run(srv.port, path, a.duration, a.clients)
                cpu_after = servers.cpu_seconds(srv.proc.pid)
                row = {"server": name, "file": f, "perf": perf.__dict__ | {}}
                if cpu_before and cpu_after and perf.completed:
                    # server CPU per answered query: what one query costs, apart from dnsperf
                    row["cpu_us"] = [(after - before) * 1e6 / perf.completed
                                     for before, after in zip(cpu_before, cpu_after)]
            except (dnsperf.DnsperfError, subprocess.TimeoutExpired) as exc:
                row = {"server": name, "file": f, "perf": None, "status": f"dnsperf failed: {exc}"[:200]}
            row["rss_mib"] = srv.rss_mib()
            res["throughput"].append(row)
            if row["perf"]:
                say(f"  {row['perf']['qps']:,.0f} qps, lost {row['perf']['lost']}")
    rounds(a, res, started, qfiles["mixed"])
    return started


def rounds(a, res, started, mixed: str) -> None:
    """The mixed file on dnsdisco (then the --baseline checkout) then Knot, back to back,
    `a.rounds` times (the first round is the runs above): drift on a shared machine hits every
    run of a round alike."""
    first = {r["server"]: r["perf"] for r in res["throughput"] if r["file"] == "mixed" and r.get("perf")}
    if "dnsdisco" not in first or "knot" not in first or not all(n in started for n in ("dnsdisco", "knot")):
        return
    names = ("dnsdisco", "baseline", "knot") if "baseline" in first and "baseline" in started else ("dnsdisco", "knot")
    res["rounds"] = [{name: {"qps": first[name]["qps"], "lost": first[name]["lost"]} for name in names}]
    for i in range(2, a.rounds + 1):
        pair = {}
        for name in names:
            say(f"round {i}: dnsperf {name} mixed {a.duration:g} s")
            try:
                perf = dnsperf.run(started[name].port, mixed, a.duration, a.clients)
            except (dnsperf.DnsperfError, subprocess.TimeoutExpired) as exc:
                say(f"  failed: {exc}"[:200])
                return
            pair[name] = {"qps": perf.qps, "lost": perf.lost}
            say(f"  {perf.qps:,.0f} qps, lost {perf.lost}")
        res["rounds"].append(pair)


def freshness(sup, a, ds, endpoint, res, live_srv, qfiles):
    client = live.etcd_client(endpoint)
    res["freshness_load"] = f"dnsperf -Q {a.fresh_load_qps} -c {a.clients} on the mixed file"
    res["freshness"] = {}
    for name in a.live:
        srv = live_srv.get(name)
        if srv is None or not srv.alive():
            res["freshness"][name] = {"status": "not available"}
            continue
        budget = 120 + a.updates * 0.05
        say(f"freshness {name}: {a.updates} puts + deletes under load")
        load = dnsperf.start(srv.port, qfiles["mixed"], budget, a.clients, max_qps=a.fresh_load_qps)
        try:
            lats = live.freshness(client, srv.port, a.updates, budget_s=budget)
            say(f"lease expiry {name}")
            lease = live.lease_expiry(client, srv.port, count=5, ttl=2)
            say(f"burst {name}: 1,000 puts at 1,000/s under the same load")
            burst = live.burst(client, srv.port, puts=1000, rate=1000)
            burst.label = "burst of 1,000 puts at 1,000/s"
        finally:
            dnsperf.stop(load)
        res["freshness"][name] = {"latencies": [x.summary() for x in (*lats.values(), lease, burst)]}
        for x in (*lats.values(), lease, burst):
            s = x.summary()
            say(f"  {s['label']}: n {s['n']} p50 {s['p50']} p99 {s['p99']} timeouts {s['timeouts']}")
    client.close()


def idle_tcp(sup, a, ds, res, live_srv, qfiles):
    res["idle_tcp"] = {}
    for name in a.live:
        srv = live_srv.get(name)
        if srv is None or not srv.alive():
            res["idle_tcp"][name] = {"status": "not available"}
            continue
        say(f"idle TCP {name}: QPS without, with {a.idle_tcp} idle connections, without again")
        before = dnsperf.run(srv.port, qfiles["mixed"], a.duration, a.clients)
        held = live.IdleTcp(srv.port, a.idle_tcp)
        opened = len(held.socks)
        try:
            time.sleep(0.5)   # let the server accept them all
            with_ = dnsperf.run(srv.port, qfiles["mixed"], a.duration, a.clients)
            open_after = held.still_open()
        finally:
            held.close()
        time.sleep(0.5)
        after = dnsperf.run(srv.port, qfiles["mixed"], a.duration, a.clients)
        without_qps = (before.qps + after.qps) / 2   # A-B-A: drift on a busy machine averages out
        res["idle_tcp"][name] = {"qps_without": without_qps, "qps_with": with_.qps, "wanted": a.idle_tcp,
                                 "qps_before": before.qps, "qps_after": after.qps,
                                 "opened": opened, "open_after": open_after}
        say(f"  {before.qps:,.0f} / {with_.qps:,.0f} / {after.qps:,.0f} qps")


COLD_PASS = 50_000        # questions in the cold pass: half the reply cache's default size, so
                          # the pass and its repeat fit beside what the mixed file's runs left
COLD_PASS_MIN = 1_000
EVERY_LIMIT_S = 60        # bound on the every-question pass (100,000 services: ~700,000 queries)


def scale_cpus(a) -> tuple[str | None, str | None, str]:
    """(server CPUs, dnsperf CPUs, what was done) for the scale table. Unpinned, the scheduler
    moves the server and runs dnsperf's threads on its core, which takes CPU time from it and
    leaves its caches holding dnsperf's data (which, judging by the ratios, costs a bigger
    reply table more)."""
    if not a.pin:
        return None, None, "not pinned (--no-pin)"
    if not shutil.which("taskset"):
        return None, None, "not pinned (no taskset on PATH)"
    server, load = servers.split_cpus()
    if server is None:
        return None, None, "not pinned (only one CPU)"
    return server, load, f"pinned: servers on CPU {server}, dnsperf on CPU {load}"


def scale_targets(a) -> list[str]:
    """The servers of the scale table: --live, and the --baseline checkout right after dnsdisco,
    so each size holds the code before a change beside the code after it."""
    names = list(a.live)
    if a.baseline and "dnsdisco" in names:
        names.insert(names.index("dnsdisco") + 1, "baseline")
    return names


def scale(sup, a, res, tmp: Path):
    """Each size on a fresh etcd, a first run then repeats, each repeat followed by the same
    dnsperf run on a reference server holding the smallest size, so every size is compared
    with runs made moments apart rather than minutes."""
    res["scale"] = []
    res["scale_duration"] = a.scale_duration
    res["scale_pinning"] = a.pinning
    res["scale_pin_start"] = bool(a.server_cpus) and a.pin_start
    say(f"scale: {a.pinning}")
    smallest = min(a.scales)
    reference = {}                                   # live target -> (server, query file)
    ref_ds = dataset.Dataset(smallest)
    say(f"scale: reference etcd with {smallest:,} services")
    ref_etcd = servers.start_etcd(sup, name="etcd-reference")
    ref_client = live.etcd_client(ref_etcd.extra["endpoint"])
    live.load(ref_client, ref_ds.etcd_items())
    ref_client.close()
    ref_queries = write_queries(tmp / "mixed-reference.txt", dataset.mixed_queries(ref_ds, a.query_lines))
    for name in scale_targets(a):
        try:
            srv, _ = start_live(sup, name, ref_etcd.extra["endpoint"], a, ref_ds, cpus=a.server_cpus)
            dnsperf.run(srv.port, ref_queries, min(2.0, a.scale_duration), a.clients,   # everything asked once
                        cpus=a.load_cpus)
            reference[name] = srv
        except (servers.StartError, OSError, dnsperf.DnsperfError, subprocess.TimeoutExpired) as exc:
            say(f"  reference {unavailable(name, exc)}")
    try:
        for n in a.scales:
            scale_size(sup, a, res, tmp, n, reference, ref_queries,
                       breakdown=a.breakdown and n == max(a.scales) and n >= 100_000)
    finally:
        for srv in reference.values():
            sup.stop(srv)
        sup.stop(ref_etcd)


def scale_size(sup, a, res, tmp: Path, n: int, reference: dict, ref_queries: str, breakdown: bool = False) -> None:
    ds = dataset.Dataset(n)
    say(f"scale {n:,} services: fresh etcd, loading")
    etcd = servers.start_etcd(sup, name=f"etcd-{n}")
    client = live.etcd_client(etcd.extra["endpoint"])
    count, secs = live.load(client, ds.etcd_items())
    say(f"  loaded {count:,} keys in {secs:.1f} s")
    mixed = dataset.mixed_queries(ds, a.query_lines)
    qpath = write_queries(tmp / f"mixed-{n}.txt", mixed)
    cold_lines = dataset.cold_questions(ds, COLD_PASS, mixed)
    # too few names left unasked at small sizes for a pass that measures anything
    cold = write_queries(tmp / f"cold-{n}.txt", cold_lines) if len(cold_lines) >= COLD_PASS_MIN else None
    every = write_queries(tmp / f"every-{n}.txt", list(dataset.every_question(ds)))
    servers.wait_idle(etcd.pid)
    try:
        say(f"  etcd warmed by a throwaway start, ready in "
            f"{servers.warm_etcd(sup, etcd.extra['endpoint'], ds.last_name(), a.ready_timeout):.2f} s")
    except (servers.StartError, OSError, subprocess.SubprocessError) as exc:
        say(f"  the throwaway start failed, so the first server lists a cold etcd: {exc}")
    for name in scale_targets(a):
        row = {"target": name, "services": n}
        # a start measured while etcd still persists the load (or the last server's burst)
        # would count etcd's own work as the server's
        settled = servers.wait_idle(etcd.pid)
        if settled > 1.5:
            say(f"  etcd settled in {settled:.1f} s before {name} started")
        try:
            srv, ready = start_live(sup, name, etcd.extra["endpoint"], a, ds,
                                    cpus=a.server_cpus if a.pin_start else None)
            if a.server_cpus and not a.pin_start:
                servers.pin_running(srv, a.server_cpus)
        except (servers.StartError, OSError, subprocess.SubprocessError) as exc:
            row["status"] = unavailable(name, exc)
            res["scale"].append(row)
            say(row["status"])
            continue
        try:
            # first run: every question is new to the server; then `a.rounds` repeats of the
            # same file, each followed at once by the reference run it is compared with
            perf = dnsperf.run(srv.port, qpath, a.scale_duration, a.clients, cpus=a.load_cpus)
            repeats, refs = [], []
            for _ in range(a.rounds):
                again = dnsperf.run(srv.port, qpath, a.scale_duration, a.clients, cpus=a.load_cpus)
                repeats.append(again)
                if name in reference:
                    refs.append(reference_run(reference[name], ref_queries, a))
            row.update(qps=perf.qps, lost=perf.lost, qps_repeat=statistics.median(r.qps for r in repeats),
                       lost_repeat=max(r.lost for r in repeats), ready_s=ready, rss_mib=srv.rss_mib())
            refs_ok = [q for q in refs if q is not None]
            if refs_ok:
                row["qps_reference"] = statistics.median(refs_ok)
            if refs and None not in refs:
                row["repeat_ratios"] = [r.qps / q for r, q in zip(repeats, refs)]
            # a pass over names never asked before, then the same pass again: what a first answer
            # costs against a repeat, with nothing else in the file
            if cold:
                first_pass = dnsperf.run(srv.port, cold, EVERY_LIMIT_S, a.clients, passes=1, cpus=a.load_cpus)
                second_pass = dnsperf.run(srv.port, cold, EVERY_LIMIT_S, a.clients, passes=1, cpus=a.load_cpus)
                row.update(cold_qps=first_pass.qps, cold_repeat_qps=second_pass.qps, cold_sent=first_pass.sent)
            burst = live.burst(client, srv.port, puts=1000, rate=1000)
            row["burst"] = burst.summary()
            # then every question of the zone once: more than the reply cache holds, so the
            # memory after it is the most any query mix can make the server hold
            swept = dnsperf.run(srv.port, every, EVERY_LIMIT_S, a.clients, passes=1, cpus=a.load_cpus)
            row.update(every_sent=swept.sent, every_qps=swept.qps, rss_every_mib=srv.rss_mib())
        except Exception as exc:  # noqa: BLE001 - one step failing must not lose the others
            row["status"] = f"failed: {exc.__class__.__name__}: {exc}"[:200]
        finally:
            sup.stop(srv)
        if "status" not in row:
            say(f"  {name}: ready {ready:.2f} s, {row['qps']:,.0f} qps first run, {row['qps_repeat']:,.0f} "
                f"repeated, {row.get('qps_reference', 0):,.0f} reference, cold pass {row.get('cold_qps', 0):,.0f} against "
                f"{row.get('cold_repeat_qps', 0):,.0f} repeated, rss {row['rss_mib']:.0f} MiB "
                f"({row['rss_every_mib']:.0f} after {row['every_sent']:,} questions), "
                f"burst p99 {row['burst']['p99']}")
        res["scale"].append(row)
    client.close()
    if breakdown:     # the servers are stopped: the phases below have the machine to themselves
        from . import scalebreakdown
        say(f"  breakdown of the first sync and memory at {n:,} services")
        try:
            res["scale_breakdown"] = (f"### First sync and memory at {n:,} services (`--breakdown`, "
                                      f"bench/scalebreakdown.py)\n\n"
                                      + scalebreakdown.markdown(ds, etcd.extra["endpoint"], etcd.pid, 100_000))
        except Exception as exc:  # noqa: BLE001 - the table without it
            say(f"  breakdown failed: {exc!r}"[:200])
    sup.stop(etcd)


def reference_run(srv, queries: str, a) -> float | None:
    """QPS of the reference server on its own query file; None (said) if the run failed."""
    try:
        return dnsperf.run(srv.port, queries, a.scale_duration, a.clients, cpus=a.load_cpus).qps
    except (dnsperf.DnsperfError, subprocess.TimeoutExpired) as exc:
        say(f"  reference run failed: {exc}"[:200])
        return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4096))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))   # 800 held connections; children inherit it

    ds = dataset.Dataset(a.services)
    res = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python -m bench.run " + shlex.join(argv),
        "machine": report.machine(), "loadavg_before": load_average(), "versions": servers.versions(),
        "dnsdisco_version": dnsdisco_version(),
        "services": a.services, "records": sum(1 for _ in ds.instances()), "clients": a.clients,
        "duration": a.duration, "query_lines": a.query_lines, "baseline": a.baseline,
        "throughput": [], "notes": [
            "dnsmasq serves the records from `host-record`/`srv-host` lines; "
            + ("authoritative mode (`--dnsmasq-auth`): its own SOA fields, an NS RRset in every authority "
               "section, no A records for SRV targets in the additional section."
               if a.dnsmasq_auth else
               "with `local=/svc.local/` (its fast, usual mode) it cannot put the zone SOA in negative "
               "answers (NXDOMAIN/NODATA carry no authority section) nor A records for SRV targets in the "
               "additional section; `--dnsmasq-auth` adds the SOA but measured about 3x slower."),
        ],
    }
    with servers.Supervisor(keep=a.keep) as sup:
        try:
            tmp = sup.workdir("queries")
            qfiles = {"mixed": write_queries(tmp / "mixed.txt", dataset.mixed_queries(ds, a.query_lines)),
                      "single": write_queries(tmp / "single.txt", dataset.single_queries(ds))}
            live_srv = {}
            if {"throughput", "freshness", "tcp"} & set(a.sections):
                say(f"etcd: loading {a.services:,} services")
                etcd = servers.start_etcd(sup)
                endpoint = etcd.extra["endpoint"]
                client = live.etcd_client(endpoint)
                count, secs = live.load(client, ds.etcd_items())
                client.close()
                say(f"  loaded {count:,} keys in {secs:.1f} s")
                if "throughput" in a.sections:
                    live_srv = throughput(sup, a, ds, endpoint, res, qfiles)
                for name in a.live:
                    if name not in live_srv and ("throughput" not in a.sections or name not in a.servers):
                        try:
                            live_srv[name], _ = start_live(sup, name, endpoint, a, ds)
                        except (servers.StartError, OSError) as exc:
                            say(unavailable(name, exc))
                for name in ("knot", "dnsmasq"):   # idle servers out of the way of the live runs
                    if name in live_srv:
                        sup.stop(live_srv.pop(name))
                for name in [n for n in live_srv if n not in a.live]:
                    sup.stop(live_srv.pop(name))
                if "freshness" in a.sections:
                    run_step("freshness", freshness, sup, a, ds, endpoint, res, live_srv, qfiles)
                if "tcp" in a.sections:
                    run_step("idle TCP", idle_tcp, sup, a, ds, res, live_srv, qfiles)
                for srv in list(live_srv.values()):
                    sup.stop(srv)
                sup.stop(etcd)
            if "scale" in a.sections:
                run_step("scale", scale, sup, a, res, tmp)
        except KeyboardInterrupt:
            say("interrupted; stopping every process started")
            return 130
    text = report.markdown(res)
    if res.get("scale_breakdown"):
        text += "\n" + res["scale_breakdown"]
    print(text)
    save(res, text, a)
    return 0


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run_step(label, fn, *args):
    try:
        fn(*args)
    except KeyboardInterrupt:
        raise
    except Exception:  # noqa: BLE001 - report the failed step, keep the others
        say(f"{label} failed:\n{traceback.format_exc()}")


def dnsdisco_version() -> str:
    try:
        out = subprocess.run([sys.executable, "-m", "dnsdisco", "--version"], capture_output=True, text=True,
                             timeout=20, cwd=servers.REPO_ROOT, env=None)
        v = out.stdout.strip().split()[-1] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        v = "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=servers.REPO_ROOT, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return f"{v} ({commit})" if commit else v


def save(res: dict, text: str, a) -> None:
    out_dir = servers.REPO_ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out_dir / f"{stamp}.json").write_text(json.dumps(res, indent=1, default=str))
    if a.write:
        Path(a.write).parent.mkdir(parents=True, exist_ok=True)
        Path(a.write).write_text(text)
        say(f"wrote {a.write}")


if __name__ == "__main__":
    sys.exit(main())
