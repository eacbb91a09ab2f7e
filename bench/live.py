"""Measurements that involve etcd writes: loading, freshness, lease expiry, update bursts,
and UDP throughput while idle TCP connections are held.

Every loop is bounded in count and in time; all traffic goes to 127.0.0.1.
"""
from __future__ import annotations

import json
import math
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from . import dataset as d
from . import probe
from .servers import REPO_ROOT


def etcd_client(endpoint: str, timeout: float = 30):
    import pyetcd
    u = urlparse(endpoint)
    return pyetcd.client(host=u.hostname, port=u.port or 2379, timeout=timeout)


def loaded_etcd(sup, items, name: str):
    """(etcd, keys, seconds): a private etcd started under `sup` and loaded with `items` (the
    benches' first step)."""
    from .servers import start_etcd
    etcd = start_etcd(sup, name=name)
    client = etcd_client(etcd.extra["endpoint"])
    try:
        count, secs = load(client, items)
    finally:
        client.close()
    return etcd, count, secs


def load(client, items, batch: int = 1000) -> tuple[int, float]:
    """Put (key, value) items in transactions of `batch` puts; return (count, seconds)."""
    t0 = time.monotonic()
    n = 0
    ops = []
    put = client.transactions.put
    for key, value in items:
        ops.append(put(key, value))
        if len(ops) >= batch:
            client.transaction(compare=[], success=ops, failure=[])
            n += len(ops)
            ops = []
    if ops:
        client.transaction(compare=[], success=ops, failure=[])
        n += len(ops)
    return n, time.monotonic() - t0


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


@dataclass
class Latencies:
    """Put-returned → served latencies in ms, and the updates never seen within the timeout."""
    label: str
    ms: list[float] = field(default_factory=list)
    timeouts: int = 0
    rate: float | None = None      # puts per second actually achieved (bursts)

    def summary(self) -> dict:
        return {
            "label": self.label, "n": len(self.ms), "timeouts": self.timeouts,
            "p50": percentile(self.ms, 50), "p99": percentile(self.ms, 99),
            "max": max(self.ms) if self.ms else None,
            "mean": statistics.fmean(self.ms) if self.ms else None,
            "rate": self.rate,
        }


def poll_until(prober: probe.Prober, qname: str, qtype: str, check, t_start: float,
               timeout: float, pause: float = 0.0) -> float | None:
    """Ask until `check(reply)`, `pause` s apart (0: back to back); ms since t_start, or None
    after `timeout` s."""
    deadline = t_start + timeout
    while True:
        now = time.perf_counter()
        if now > deadline:
            return None
        reply = prober.ask(qname, qtype, timeout=min(0.2, max(0.001, deadline - now)))
        if reply is not None and check(reply):
            return (time.perf_counter() - t_start) * 1000
        if pause:
            time.sleep(pause)


# --- freshness: one update at a time under a bounded query load ---------------------------

FRESH_BASE = 1 << 23   # new/changed addresses from 10.128.0.0 up: distinct from the dataset's


def freshness(client, port: int, updates: int, *, timeout: float = 2.0, budget_s: float = 300,
              give_up_after: int = 20) -> dict[str, Latencies]:
    """Sequential puts of new records, changed records and deletes; each timed from the put
    returning until the server answers accordingly. Stops early after `give_up_after`
    consecutive timeouts or when `budget_s` is spent."""
    prober = probe.Prober(port)
    new, changed, deleted = Latencies("put (new name)"), Latencies("put (changed address)"), Latencies("delete")
    end = time.monotonic() + budget_s
    misses = 0
    n_new = updates // 2
    n_changed = updates - n_new
    n_deleted = max(1, updates * 3 // 10)
    plan = []
    for i in range(n_new):
        plan.append(("new", i))
    for i in range(n_changed):
        plan.append(("changed", i))
    for i in range(n_deleted):
        plan.append(("delete", i))
    try:
        for kind, i in plan:
            if time.monotonic() > end or misses >= give_up_after:
                break
            svc = f"fresh{i:06d}"
            if kind == "new":
                inst = d.Instance(svc, "i0", d.ipv4_for(2 * i, FRESH_BASE), 9000)
                client.put(inst.key, inst.value)
                t = time.perf_counter()
                ms = poll_until(prober, inst.service_name, "A", probe.has_address(inst.host), t, timeout)
                bucket = new
            elif kind == "changed":
                inst = d.Instance(svc, "i0", d.ipv4_for(2 * i + 1, FRESH_BASE), 9001)
                client.put(inst.key, inst.value)
                t = time.perf_counter()
                ms = poll_until(prober, inst.name, "A", probe.has_address(inst.host), t, timeout)
                bucket = changed
            else:
                inst = d.Instance(svc, "i0", "", 0)
                client.delete(inst.key)
                t = time.perf_counter()
                ms = poll_until(prober, inst.name, "A", probe.is_nxdomain, t, timeout)
                bucket = deleted
            if ms is None:
                bucket.timeouts += 1
                misses += 1
            else:
                bucket.ms.append(ms)
                misses = 0
    finally:
        prober.close()
        # leave the dataset as loaded
        client.delete_prefix(f"{d.ZONE_KEY}/fresh")
    return {"new": new, "changed": changed, "delete": deleted}


def lease_expiry(client, port: int, count: int = 5, ttl: int = 2, timeout: float = 15.0) -> Latencies:
    """Leased records left to expire: time from etcd's delete event (seen by our own watch)
    until the server answers NXDOMAIN for the instance name."""
    from pyetcd.events import DeleteEvent
    lat = Latencies(f"lease expiry (ttl {ttl} s)")
    prober = probe.Prober(port)
    prefix = f"{d.ZONE_KEY}/leased"
    expired: dict[str, float] = {}
    events, cancel = client.watch_prefix(prefix)

    def watch():
        try:
            for ev in events:
                if isinstance(ev, DeleteEvent):
                    expired[ev.key.decode()] = time.perf_counter()
        except Exception:  # noqa: BLE001 - stream cancelled at the end
            pass
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    insts = []
    try:
        for i in range(count):
            inst = d.Instance(f"leased{i}", "i0", d.ipv4_for(i, FRESH_BASE + (1 << 20)), 9100)
            lease = client.lease(ttl)
            client.put(inst.key, inst.value, lease=lease)
            insts.append(inst)
        for inst in insts:   # make sure each was served before it expires
            poll_until(prober, inst.name, "A", probe.has_address(inst.host), time.perf_counter(), 2.0)
        pending = {inst.key: inst for inst in insts}
        seen_nx: dict[str, float] = {}
        deadline = time.monotonic() + ttl + timeout
        while pending and time.monotonic() < deadline:
            for key, inst in list(pending.items()):
                reply = prober.ask(inst.name, "A", timeout=0.2)
                if reply is not None and probe.is_nxdomain(reply):
                    seen_nx[key] = time.perf_counter()
                    del pending[key]
        # let the watch deliver the last delete events (bounded)
        t_end = time.monotonic() + 2
        while len(expired) < len(seen_nx) and time.monotonic() < t_end:
            time.sleep(0.01)
        for key, t_nx in seen_nx.items():
            if key in expired:
                lat.ms.append((t_nx - expired[key]) * 1000)
        lat.timeouts = len(pending) + sum(1 for k in seen_nx if k not in expired)
    finally:
        cancel()
        prober.close()
        client.delete_prefix(prefix)
    return lat


# --- burst: puts at a fixed rate, each timed until served ----------------------------------

BURST_POLL_PAUSE = 0.0005


def burst(client, port: int, puts: int = 1000, rate: float = 1000.0, timeout: float = 2.0,
          writers: int = 4) -> Latencies:
    """`puts` new-name puts at `rate`/s from `writers` threads, each timed from its put
    returning to being served by a poller in its own process (bench/poller.py), which asks
    every pending name at once, each again 0.5 ms after a stale answer."""
    lat = Latencies(f"burst {puts} puts at {rate:.0f}/s")
    budget = puts / rate + timeout + 30
    poller = subprocess.Popen(
        [sys.executable, "-m", "bench.poller", str(port), "--pause", str(BURST_POLL_PAUSE),
         "--timeout", str(timeout), "--budget", str(budget)],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
    errors = []
    put_times: list[float] = []
    tell = threading.Lock()

    def writer(indices):
        for i in indices:
            due = t_begin + i / rate
            while True:
                wait = due - time.monotonic()
                if wait <= 0:
                    break
                time.sleep(min(wait, 0.01))
            inst = d.Instance(f"burst{i:06d}", "i0", d.ipv4_for(i, FRESH_BASE + (1 << 21)), 9200)
            try:
                client.put(inst.key, inst.value)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
                continue
            t_put = time.monotonic()
            put_times.append(t_put)
            try:
                with tell:
                    poller.stdin.write(f"{i} {inst.name} {inst.host} {t_put!r}\n".encode())
                    poller.stdin.flush()
            except (OSError, ValueError):                # the poller is gone: its result says so
                pass

    try:
        if _read_line(poller.stdout, 30) != b"ready":
            raise RuntimeError("bench.poller did not start")
        t_begin = time.monotonic() + 0.05
        threads = [threading.Thread(target=writer, args=(list(range(w, puts, writers)),), daemon=True)
                   for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(budget)
        try:
            poller.stdin.write(b"end\n")
        except (OSError, ValueError):
            pass
        out, _ = poller.communicate(timeout=budget)     # flushes and closes stdin
        if poller.returncode != 0 or not out.strip():
            raise RuntimeError(f"bench.poller failed (exit {poller.returncode})")
        result = json.loads(out)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait(5)
        client.delete_prefix(f"{d.ZONE_KEY}/burst")
    lat.ms = list(result["ms"].values())
    lat.timeouts = len(result["timeouts"]) + len(errors)
    times = sorted(put_times)
    if len(times) > 1 and times[-1] > times[0]:
        lat.rate = (len(times) - 1) / (times[-1] - times[0])
    return lat


def _read_line(stream, timeout: float) -> bytes:
    """One line from a pipe, waiting at most `timeout` s; b"" if none came."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline().strip() if ready else b""


# --- idle TCP connections ------------------------------------------------------------------

class IdleTcp:
    """Hold `count` idle TCP connections to 127.0.0.1:port, one per source address
    127.1.x.y so a per-client cap does not refuse them."""

    def __init__(self, port: int, count: int, connect_timeout: float = 2.0, budget_s: float = 30):
        self.port, self.count = port, count
        self.socks: list[socket.socket] = []
        self.failed = 0
        end = time.monotonic() + budget_s
        for i in range(count):
            if time.monotonic() > end:
                self.failed += count - i
                break
            src = f"127.1.{i // 250}.{i % 250 + 1}"
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(connect_timeout)
            try:
                s.bind((src, 0))
                s.connect(("127.0.0.1", port))
                s.setblocking(False)
                self.socks.append(s)
            except OSError:
                s.close()
                self.failed += 1

    def still_open(self) -> int:
        """Connections the server has not closed (a closed one reads EOF)."""
        n = 0
        for s in self.socks:
            try:
                data = s.recv(1, socket.MSG_PEEK)
                if data:
                    n += 1
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []
