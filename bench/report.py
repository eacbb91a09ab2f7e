"""Turn measured results into one markdown report (pure, apart from reading the machine facts)."""
from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

from . import dataset as d


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": mem,
            "kernel": platform.release()}


def _f(x, fmt="{:,.0f}", none="–"):
    return none if x is None else fmt.format(x)


def _ms(x):
    return _f(x, "{:.2f}")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def ratio(a, b) -> str:
    if a is None or b in (None, 0):
        return "–"
    return f"{a / b:.2f}"


def _baseline_rounds(rounds: list, tree: str | None) -> str:
    """The rounds of a side-by-side run: dnsdisco, the --baseline checkout and Knot back to back,
    and the median ratio of each to Knot (the goal: this code no worse than the baseline)."""
    rows, mine, base = [], [], []
    for i, r in enumerate(rounds, 1):
        knot = r["knot"]["qps"]
        if knot:
            mine.append(r["dnsdisco"]["qps"] / knot)
            base.append(r["baseline"]["qps"] / knot)
        rows.append([str(i), _f(r["dnsdisco"]["qps"]), _f(r["baseline"]["qps"]), _f(knot),
                     ratio(r["dnsdisco"]["qps"], knot), ratio(r["baseline"]["qps"], knot)])
    text = (f"The mixed file on this checkout, the baseline checkout (`{tree}`) and Knot, back to back, "
            "round after round; drift on the machine hits every run of a round alike.\n\n"
            + _table(["round", "dnsdisco QPS", "baseline QPS", "Knot QPS", "dnsdisco / Knot", "baseline / Knot"], rows))
    if mine:
        text += (f"\n\n**Median over {len(mine)} rounds: dnsdisco / Knot {statistics.median(mine):.2f}, "
                 f"baseline / Knot {statistics.median(base):.2f}.**")
    return text


def throughput_section(res: dict) -> str:
    rows = []
    for row in res["throughput"]:
        p = row.get("perf")
        if p is None:
            rows.append([row["server"], row["file"], row.get("status", "not available"), "", "", "", "", "", "",
                         "", _f(row.get("rss_mib"), "{:.0f}")])
            continue
        rcodes = ", ".join(f"{k} {v * 100 / max(1, p['completed']):.0f}%" for k, v in sorted(p["rcodes"].items()))
        rows.append([row["server"], row["file"], _f(p["qps"]), _f(p["sent"]), _f(p["completed"]),
                     f"{p['lost']:,} ({p['lost'] * 100 / max(1, p['sent']):.2f}%)",
                     _ms(p["avg_latency_ms"]), _ms(p["max_latency_ms"]), rcodes,
                     "{:.1f} / {:.1f}".format(*row["cpu_us"]) if row.get("cpu_us") else "–",
                     _f(row.get("rss_mib"), "{:.0f}")])
    table = _table(["server", "query file", "QPS", "sent", "completed", "lost", "avg ms", "max ms",
                    "rcodes", "server CPU µs/query (user / sys)", "RSS MiB"], rows)
    qps = {(r["server"], r["file"]): (r["perf"] or {}).get("qps") if r.get("perf") else None
           for r in res["throughput"]}
    lost = {(r["server"], r["file"]): r["perf"]["lost"] if r.get("perf") else None for r in res["throughput"]}
    rrows = []
    for f in ("mixed", "single"):
        dd = qps.get(("dnsdisco", f))
        rrows.append([f, ratio(dd, qps.get(("knot", f))), ratio(dd, qps.get(("dnsmasq", f))),
                      ratio(dd, qps.get(("floor", f))),
                      "–" if lost.get(("dnsdisco", f)) is None or lost.get(("knot", f)) is None
                      else f"{lost[('dnsdisco', f)]:,} vs {lost[('knot', f)]:,}"])
    ratios = _table(["query file", "dnsdisco / Knot (goal ≥ 0.8)", "dnsdisco / dnsmasq (goal ≥ 1)",
                     "dnsdisco / dnslib floor", "lost: dnsdisco vs Knot"], rrows)
    rounds = res.get("rounds") or []
    if len(rounds) > 1 and "baseline" in rounds[0]:
        ratios += "\n\n" + _baseline_rounds(rounds, res.get("baseline"))
    elif len(rounds) > 1:
        each = [r["dnsdisco"]["qps"] / r["knot"]["qps"] for r in rounds if r["knot"]["qps"]]
        ratios += ("\n\nThe mixed file on dnsdisco then Knot, back to back, round after round (round 1 "
                   "is the table above); drift on the machine hits both runs of a round alike.\n\n"
                   + _table(["round", "dnsdisco QPS", "Knot QPS", "dnsdisco / Knot", "lost: dnsdisco vs Knot"],
                            [[str(i), _f(r["dnsdisco"]["qps"]), _f(r["knot"]["qps"]),
                              ratio(r["dnsdisco"]["qps"], r["knot"]["qps"]),
                              f"{r['dnsdisco']['lost']:,} vs {r['knot']['lost']:,}"]
                             for i, r in enumerate(rounds, 1)])
                   + f"\n\n**Median dnsdisco / Knot over {len(each)} rounds: {statistics.median(each):.2f}** "
                     f"(goal ≥ 0.8; lowest {min(each):.2f}, highest {max(each):.2f}).")
    notes = "\n".join(f"- {n}" for n in res.get("notes", []))
    return (f"## Throughput\n\n{res['services']:,} services ({res['records']:,} etcd keys), dnsperf "
            f"`-c {res['clients']} -l {res['duration']:g}`, one server at a time on 127.0.0.1, "
            "each after a 2 s warm-up run of the mixed file that is not counted (dnsdisco's cold start "
            "is the scale table's first run). "
            f"`mixed`: {res['query_lines']:,} lines, ~60% A hits across service and instance names, "
            f"15% SRV, 10% AAAA NODATA, 10% NXDOMAIN ({d.NX_POOL:,} distinct names), 5% A hits in random "
            f"letter case. `single`: one name, A.\n\n{table}\n\n### Ratios\n\n{ratios}\n"
            + (f"\n{notes}\n" if notes else ""))


def freshness_section(res: dict) -> str:
    fr = res.get("freshness")
    if not fr:
        return ""
    rows = []
    for target, r in fr.items():
        if "status" in r:
            rows.append([target, r["status"], "", "", "", "", ""])
            continue
        for lat in r["latencies"]:
            rows.append([target, lat["label"], f"{lat['n']:,}", str(lat["timeouts"]),
                         _ms(lat["p50"]), _ms(lat["p99"]), _ms(lat["max"])])
    load = res.get("freshness_load", "")
    return ("## Freshness\n\nFrom an etcd put (or delete) returning to the server answering with the new "
            "data, one update at a time, polled back to back over UDP; lease expiry from etcd's delete "
            "event (seen by the harness's own watch) to NXDOMAIN (below zero when the server answered "
            "NXDOMAIN before the harness's watch thread, which shares the GIL with the poller, noted the "
            "event); then a burst of 1,000 new names put at "
            "1,000/s by 4 writers, followed by a poller in a process of its own that asks every pending "
            "name at once, each again 0.5 ms after a stale answer (bench/poller.py). Background load "
            f"throughout: {load}. Goal p99 ≤ 10 ms (≤ 50 ms for the burst).\n\n"
            + _table(["server", "update", "n", "timeouts", "p50 ms", "p99 ms", "max ms"], rows) + "\n")


def _every(row: dict) -> str:
    if row.get("rss_every_mib") is None:
        return "—"
    return f"{row['rss_every_mib']:.0f} ({row.get('every_sent', 0):,})"


def _repeat_ratio(row: dict, repeat, ref) -> str:
    """The median of the paired repeat/reference ratios, with their range when there are
    several; rows without pairs give repeat ÷ reference."""
    pairs = row.get("repeat_ratios")
    if not pairs:
        return ratio(repeat, ref)
    mid = f"{statistics.median(pairs):.2f}"
    return mid if len(pairs) == 1 else f"{mid} ({min(pairs):.2f}–{max(pairs):.2f})"


def _cold(row: dict) -> str:
    """The cold pass: QPS of questions never asked before, its repeat, and their ratio."""
    if row.get("cold_qps") is None:
        return "–"
    return (f"{_f(row['cold_qps'])} / {_f(row['cold_repeat_qps'])} = "
            f"{ratio(row['cold_qps'], row['cold_repeat_qps'])} ({row.get('cold_sent', 0):,})")


def scale_section(res: dict) -> str:
    sc = res.get("scale")
    if not sc:
        return ""
    rows = []
    for r in sc:
        if "status" in r:
            rows.append([r["target"], f"{r['services']:,}", r["status"]] + [""] * 14)
            continue
        ref = r.get("qps_reference")
        repeat = r.get("qps_repeat")
        rows.append([r["target"], f"{r['services']:,}", _f(r["qps"]), _f(repeat), _f(ref),
                     ratio(r["qps"], repeat), ratio(r["qps"], ref), _repeat_ratio(r, repeat, ref),
                     _cold(r),
                     f"{r.get('lost', 0):,}/{r.get('lost_repeat', 0):,}",
                     f"{r['ready_s']:.2f}", _f(r["rss_mib"], "{:.0f}"), _every(r), _ms(r["burst"]["p99"]),
                     f"{r['burst']['n']:,}/{r['burst']['timeouts']}",
                     _f(r["burst"].get("rate"))])
    smallest = min((r["services"] for r in sc), default=0)
    return ("## Scale\n\nPer number of services (2 instances each): QPS on the mixed file for that size "
            f"(`-l {res.get('scale_duration', '?')}`), run again and again on one server: the first run starts with "
            "nothing cached, so at 100,000 services most of its ~85,000 distinct questions are answered "
            "for the first time; then the repeats ask the same file again, each followed at once by the same "
            f"run on a reference server holding {smallest:,} services (already asked everything once), so "
            "each size is compared with runs made seconds apart rather than minutes. QPS repeat and "
            "reference are medians; repeat / reference is the median of the paired ratios (range in "
            "brackets), and the first run is compared with the repeat and the median reference. The cold "
            "pass asks A (AAAA for IPv6 instances) of service and instance names none of the runs before "
            "asked, up to 50,000 (half the reply cache's default size), once through, then the same "
            "pass again: first answers against their repeats with nothing else in the file (n: questions "
            "answered in the first pass). Then start → ready "
            "(process start until the last-loaded name is answered), resident memory (VmRSS of the server and its etcd "
            "helper process after the runs; then again after every question of the zone asked once, "
            "A, SRV and AAAA of every name, more distinct questions than the reply cache's default "
            "100,000: the most any query mix can make it hold), and put → served p99 under a burst of 1,000 puts per second (followed as in the freshness section). "
            f"CPUs: {res.get('scale_pinning', 'not pinned')} (`--pin`, the default; `--no-pin` lets the "
            "scheduler move the server and run dnsperf's threads on its core, which costs it CPU time and "
            "the reply table's place in the caches: see \"Sharing cores with dnsperf\" below). "
            + ("Each server was pinned from its start, so its etcd helper listed on the server's core (`--pin-start`). "
               if res.get("scale_pin_start") else
               "Each size's server starts unpinned, since nothing else runs while it lists and builds, and is "
               "pinned with its etcd helper once ready (`--pin-start` pins it from the start instead). "
               if res.get("scale_pinning", "").startswith("pinned") else "")
            + "Before the first server of a size, a throwaway start of this checkout lists the keys once: the first "
              "listing after a load is slower than the later ones, and a restart meets an etcd that has served "
              "before. Every server starts once etcd has settled (under 5% of a CPU for a second, at most 60 s: done "
              "persisting the load or the last server's burst), so its start is not measured against etcd's own work. "
            + (f"Rows `baseline` are the checkout `{res['baseline']}` (`--baseline`), started and measured right "
               "after dnsdisco at each size on the same etcd. " if res.get("baseline") else "")
            + "Goals (issue 23): "
            "at 1,000,000 services ready ≤ 10 s, RSS ≤ 600 MiB (≤ 700 after every question), first / repeat ≥ 0.9, "
            f"cold pass ≥ 0.5 of its repeat, repeat ≥ 0.95 of the {smallest:,}-service reference, burst p99 ≤ 10 ms; "
            "at 100,000 ready ≤ 2 s, RSS ≤ 160 MiB, first / repeat ≥ 0.95.\n\n"
            + _table(["server", "services", "QPS first run", "QPS repeat", f"QPS {smallest:,} services (reference)",
                      "first / repeat", "first / reference", "repeat / reference",
                      "cold pass / its repeat QPS (n)", "lost first/repeat", "ready s", "RSS MiB",
                      "RSS MiB after every question (n)",
                      "burst p99 ms", "burst n/timeouts", "puts/s achieved"], rows) + "\n")


def tcp_section(res: dict) -> str:
    tc = res.get("idle_tcp")
    if not tc:
        return ""
    rows = []
    for target, r in tc.items():
        if "status" in r:
            rows.append([target, r["status"], "", "", "", ""])
            continue
        rows.append([target, _f(r["qps_without"]), _f(r["qps_with"]), ratio(r["qps_with"], r["qps_without"]),
                     f"{r['opened']}/{r['wanted']}", str(r["open_after"])])
    return ("## UDP with idle TCP connections held\n\nUDP QPS (mixed file) while idle TCP connections are "
            "held open, one per source address 127.1.x.y, as a ratio of the QPS without them "
            "(the mean of a run before and a run after) (goal ≥ 0.9).\n\n"
            + _table(["server", "QPS without", "QPS with", "ratio", "connections opened", "still open after"],
                     rows) + "\n")


LIMITS_PLACEHOLDER = """## What limits the figure

Profiled on this machine (2026-11-24/25) with the server-CPU column above, `line_profiler` and
`cProfile` of `Responder.handle` and the packer replaying the same query files in-process,
`py-spy` sampling `dnsdisco serve` under dnsperf, dnsperf's `-S 0.5` per-interval rates, and
`/proc/<pid>/stat`. The machine is shared: the same run of the same code moves by ±10%, which
is why the goal ratio is a median of rounds run back to back.

- **The kernel, equally for everyone.** A UDP query on loopback costs about 5.3 µs of system
  time in the server (one `recvfrom`, one `sendto`), the same for dnsdisco and Knot. py-spy puts
  47% of the serving process's samples in `sendto` and 16% in `recvfrom`. With dnsperf busy on
  the other core, that alone caps one serving core near 190,000 qps.
- **dnsdisco's own time per query** is about 2.0 µs (one name) to 2.8 µs (mixed file) of user
  time, against Knot's 0.7 to 1.3 µs. In-process, `Responder.handle` takes 0.47 µs for one name
  and 0.77 µs on the mixed file at 1,000 services (1.21 µs before this session's exact-query
  table of slotted `_Exact` objects, which touch less memory per repeat); a 0x20 spelling of a
  question already in the table takes 1.6 µs (was 3.6 µs through the patching path). The rest
  is the gevent socket loop. The socket is found empty on 0.3% of reads under dnsperf, so the
  loop is saturated: the Python cost per packet is the limit.
- **What would move it, and what was tried:** `recvmmsg`/`sendmmsg` through ctypes, prototyped
  against the same plain loop in three alternating runs: 100,000-120,000 qps against 101,000-
  112,000, not enough to carry C structures into the hot path. Several processes with
  SO_REUSEPORT need cores that dnsperf is not using (measured before: no gain on 2 cores). The
  exact-query lookup and id write in C would remove most of the remaining user time.
- **Scale.** At 100,000 services the mixed file holds ~85,000 distinct questions, so the first
  run answers most of them for the first time. A first answer costs, in-process at 100,000
  services: 5 µs for an instance's A, 7.6 µs for a service's A (two records, two orders), 5 µs
  for NODATA or NXDOMAIN, 14 µs for an SRV with its glue (18 to 20 µs before this session),
  plus ~4 µs of cache and table bookkeeping (13.6 µs in all on the mixed file's first pass, 14.5-
  15.3 µs before the cache entries were slimmed); under load about twice that, as the kernel's work
  between packets evicts the CPU caches. Repeats cost the same dict lookup at any size, but from
  10,000 services on the table's entries (~30,000 questions there, ~85,000 at 100,000) no longer
  stay in the CPU caches: in-process a repeat costs 1.02 µs at both sizes against 0.51 µs at 10
  services, every kind of answer alike (NXDOMAIN, drawn from 1,000 names at every size, only
  0.62 → 0.77 µs). It is the data, not the page tables: the same replay with the heap collapsed
  into 2 MiB pages (`MADV_COLLAPSE`) cost 0.91-0.98 µs against 0.93-0.94 µs. Under load, unpinned, that is
  ~1 µs more user time per query (2.0 → 2.8-3.3 µs at 10,000 services). Replayed through
  `Responder.handle` under `valgrind --tool=cachegrind --cache-sim=yes --D1=2097152,16,64` (a
  simulated 2 MiB data cache, this machine's L2 per core), a repeat misses
  1.2 lines at 10 services and 8.4 at 10,000: the dict's slot and entry, the stored key, the
  `_Exact`, its replies tuple and the reply, each a Python object of its own, plus the reference
  counts written on them. Keeping the turn counter below the number of orders and unwrapping
  single replies saved 0.5 of those 8.4 misses, too little to keep the extra code. Knot compiles the
  whole zone before it answers; packing all ~700,000 possible answers at sync time would take
  ~7 s of CPU and ~170 MB, past the ready and memory goals. The every-question pass of the
  scale table (~700,000 distinct questions at 100,000 services) runs at ~25,000 qps for that
  reason: nearly every question is a first answer, and the cache keeps only the last 100,000.
- **Sharing cores with dnsperf.** With both CPUs open to it, the scheduler moves the server
  and runs dnsperf's threads on its core. Read from `/proc/<pid>/sched` over 6 s runs
  (2026-11-25): unpinned, 3 to 565 migrations and 2,000 to 43,000 involuntary switches per run,
  and the server busy 0.89-0.98 of a core; pinned, no migrations, ~500 switches, busy
  0.98-0.99 in every run. User time per query stayed about the same (2.6-3.1 µs at 10,000
  services either way), so a bad unpinned run mostly loses CPU time; that a bigger reply table
  also pays more for the caches dnsperf filled meanwhile is read from the ratios below, not
  measured directly. Back to back, the scale table unpinned
  (`python -m bench.run --sections scale --no-pin --scales 10,10000,100000`) gave repeat /
  reference 0.89 (0.82-0.90) at 10,000 and 0.90 (0.84-0.93) at 100,000, and first runs 0.84 and
  0.72. Three earlier unpinned runs gave 0.81-0.90 at 10,000 and 0.86-0.88 at 100,000. Pinned,
  as above, the same sizes give 0.91-0.99, and the references run at about the same rate either
  way (130,000-143,000 qps pinned, 130,000-132,000 not). In production, give the server a core
  of its own (`taskset -c 2 dnsdisco serve`, systemd `CPUAffinity=`, docker `--cpuset-cpus`).
- **Freshness under load.** Until this session the watch ran on gRPC's gevent integration,
  which hands each watch message to the event loop through a native thread pool, one round
  trip per message; with the loop busy answering queries, a burst of 1,000 puts/s arrived in
  the server 1.7-2.2 s late (p50) at 60,000 qps and 50-545 ms late at 20,000 qps. Two changes:
  the list and watch run in a helper process (`dnsdisco/etcd/helper.py`) that forwards each batch
  over a socket, and the loop reads what has arrived and applies it as one batch; and a busy
  UDP loop now yields by waiting on its own socket's watcher instead of `gevent.sleep(0)`,
  which only runs gevent's callback queue (checking the clock every 50 callbacks), so under
  load any other socket waited 8 ms typically and up to 230 ms for the loop to poll it.
  Measured server-side (batch arrival after the put returned) under 20,000 qps during a burst:
  p50 0.5-2 ms, max 10-12 ms, against p50 50-90 ms and max 160-290 ms with the helper alone.
  The burst figure used to count the harness's own lag too: its poller shared the GIL with the
  4 writer threads and asked one name at a time, so it fell behind puts arriving at 1,000/s.
  Traced put by put in 12 runs (the helper's and the server's receive and apply times against
  each put's return), the server applied every put within 6-32 ms (p99 3-27 ms) while that
  poller reported p99 5-600 ms. The burst is now followed by `bench/poller.py` in a process of
  its own, with every pending name in flight at once.
- **Start to ready at 100,000 services** is the etcd listing (200,000 keys in 0.5 to 0.7 s:
  etcd counts the whole range on every page, so pages are sized by bytes), its transfer from
  the helper process in chunks of 5,000 pairs, sent as each page arrives (~0.5 s with the
  helper's start), the snapshot build (about 2 s in one pass) and the interpreter start.
- **Memory at 100,000 services** (server and helper together): the records as Python objects,
  their names and addresses (~70 MB for 200,000; a record read from its name's own key holds
  no copy of the key, which saved 15.6 MB) with their children and
  empty-non-terminal indexes (~20 MB); the PTR index (~30 MB) is kept only while a reverse
  zone is served; after the full sync the pages the listing used are handed back
  (`malloc_trim`). Then the reply cache with the exact-query table: 0.6 to 1 KB per cached
  question (bytes keys, slotted entries; it was ~1.2 KB and the exact table kept dead replies
  until its own eviction), ~50 MB for the mixed file's ~82,000 questions, at most
  `--cache-size` questions (default 100,000, was a fixed 200,000, which let a broad query mix
  take the server past 400 MiB). The interpreter with gevent, dnslib and prometheus-client
  (~35 MB; the serving process no longer loads gRPC, which cost ~20 MB); the etcd helper
  process with gRPC (~40 MB idle, ~48 MB after listing 200,000 keys: it forwards each page as
  it arrives instead of holding the listing, which left it at ~54 MB).
"""


def markdown(res: dict) -> str:
    m = res["machine"]
    v = res["versions"]
    head = (f"# Benchmarks\n\nLatest run: {res['date']}\n\n"
            f"- Command: `{res['command']}`\n"
            f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} memory, Linux {m['kernel']}\n"
            f"- Versions: dnsdisco {res['dnsdisco_version']}; {v['knotd']}; {v['dnsmasq']}; {v['dnsperf']}; "
            f"{v['etcd']}; Python {v['python']}\n"
            f"- Load average before the run: {res.get('loadavg_before', 'unknown')} (anything else running "
            "on the machine lowers every figure; compare ratios within one run)\n"
            f"- Servers and dnsperf share the same {m['nproc']} CPUs (except in the scale table, which says "
            "where each ran); Knot runs with its default worker "
            "threads, dnsmasq is single-threaded, the floor is dnslib's threaded `DNSServer`.\n")
    parts = [head, throughput_section(res), freshness_section(res), scale_section(res), tcp_section(res),
             LIMITS_PLACEHOLDER, OTHER_PAGES]
    return "\n".join(p for p in parts if p)


# the benchmarks with pages of their own, listed on every rewrite of this page
OTHER_PAGES = """
## Other benchmarks

- In-process costs of the answer path, side by side with another checkout:
  [benchmarks-micro.md](benchmarks-micro.md), `python -m bench.micro --tree PATH --write docs/benchmarks-micro.md`.
- Secondaries fed by NOTIFY + IXFR (Knot): [benchmarks-secondaries.md](benchmarks-secondaries.md),
  `python -m bench.secondary`.
- What a client behind a TTL-honouring cache feels when an instance goes:
  [benchmarks-clients.md](benchmarks-clients.md), `python -m bench.clientfresh`.
- Registrations at scale (1,000 in one process, etcd's CPU): `python -m bench.registrations`.
"""
