"""What many registrations in one process cost etcd: CPU of etcd and of the registering process
in steady state (issue 21, "registration at scale").

    python -m bench.registrations                       # 1,000 Registrations, lease TTL 10, 20 s
    python -m bench.registrations --count 300 --ttl 5 --measure 10
    python -m bench.registrations --code /path/to/other/checkout   # the same against other code

A private etcd (temp dir, free loopback port) and one child process holding `--count`
`dnsdisco.Registration`s (from `--code`, default this checkout). Once every one is registered
and `--settle` seconds have passed, CPU seconds of both processes are read from /proc over
`--measure` seconds. Bounded: the whole run stops within about 30 s + settle + measure.

Measured on the 2-core test machine (shared with other work), 1,000 registrations, 20 s:
- before the shared lease (one lease, thread and channel per registration), lease TTL 10:
  etcd 13.9-16.8% of a core, the registering process 37%, 1,008 threads; at lease TTL 5 the
  registering process used 186% (both cores) with 2,292 threads and timed out refreshing.
- with the shared lease: etcd 0.4-0.5% of a core at TTL 10 and 5, the registering process
  0.1-0.3%, 8 threads.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.servers import StartError, Supervisor, cpu_seconds, start_etcd

REPO = Path(__file__).resolve().parent.parent

HOLDER = r"""
import sys, time, dnsdisco
endpoint, count, ttl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
regs = [dnsdisco.Registration(f"s{i % 50}.svc.local", port=8000 + i, address="127.0.0.1", ttl=ttl,
                              etcd=endpoint, id=f"i{i}", wait=0).start() for i in range(count)]
deadline = time.monotonic() + 60
while not all(r.registered for r in regs):
    if time.monotonic() > deadline:
        print("not all registered", flush=True)
        sys.exit(1)
    time.sleep(0.1)
print("ready", flush=True)
sys.stdin.readline()
for r in regs:
    r.stop()
"""


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.registrations", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000, help="registrations in the one process (default 1000)")
    ap.add_argument("--ttl", type=int, default=10, help="lease TTL in seconds (default 10)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after all are registered (default 3)")
    ap.add_argument("--measure", type=float, default=20.0, help="seconds of measurement (default 20)")
    ap.add_argument("--code", default=str(REPO), help="checkout whose dnsdisco the holder runs (default: this one)")
    args = ap.parse_args(argv)
    if args.settle + args.measure > 40:
        ap.error("--settle + --measure must stay within 40 s (runs are bounded)")
    with Supervisor() as sup:
        try:
            etcd = start_etcd(sup)
        except StartError as exc:
            print(f"bench.registrations: {exc}", file=sys.stderr)
            return 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("DNSDISCO_")}
        env["PYTHONPATH"] = args.code
        env["DNSDISCO_LOG_LEVEL"] = "warning"
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, etcd.extra["endpoint"], str(args.count),
                                   str(args.ttl)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, cwd="/")
        try:
            t0 = time.monotonic()
            line = holder.stdout.readline().strip()   # the holder gives up by itself after 60 s
            if line != "ready":
                print(f"bench.registrations: the holder said {line!r}", file=sys.stderr)
                return 1
            started = time.monotonic() - t0
            time.sleep(args.settle)
            e0, h0, w0 = cpu_seconds(etcd.pid), cpu_seconds(holder.pid), time.monotonic()
            time.sleep(args.measure)
            e1, h1, w1 = cpu_seconds(etcd.pid), cpu_seconds(holder.pid), time.monotonic()
            wall = w1 - w0
            etcd_cpu = (sum(e1) - sum(e0)) / wall
            holder_cpu = (sum(h1) - sum(h0)) / wall
            print(f"code {args.code}: {args.count} registrations, lease TTL {args.ttl} s, all registered "
                  f"{started:.1f} s after start; over {wall:.1f} s of steady state: etcd CPU "
                  f"{100 * etcd_cpu:.1f}% of a core, registering process {100 * holder_cpu:.1f}% "
                  f"({threads(holder.pid)} threads)")
        finally:
            if holder.poll() is None:
                try:
                    holder.stdin.close()
                    holder.wait(15)
                except (OSError, subprocess.TimeoutExpired):
                    holder.kill()
                    holder.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
