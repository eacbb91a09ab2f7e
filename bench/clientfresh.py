"""Client-side freshness: how long a client behind a TTL-honouring cache keeps getting the
address of an instance that is gone.

    python -m bench.clientfresh                       # 20 kills per way, default settings
    python -m bench.clientfresh --kills 5 --ways sigkill

A private etcd, `dnsdisco serve` with default settings, and dnsmasq as the cache in front of it
(forwarding svc.local to dnsdisco, keeping answers for their TTL, as systemd-resolved, NodeLocal
DNSCache or a JVM would). `--kills` instances of web.svc.local are registered by real `dnsdisco
register` processes with default settings (lease 10 s, DNS TTL half of it), beside as many that
stay, stopped one every `--gap` seconds, so the instances that go never look like a mass expiry
(a steady stream of stops that shrinks the zone by 30% within 10 s is one, by design). A client asks the cache every
100 ms. Each instance in turn is stopped one way (SIGKILL of its registrar: the lease expires;
SIGTERM: the lease is revoked; SIGUSR1: drained, the registrar keeps running) and the time from
the stop to the last answer through the cache that still holds its address is measured.

Goals (issue 21): after SIGKILL at most lease + DNS TTL, p99 at most 15 s with defaults;
after SIGTERM and after a drain at most the DNS TTL.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

import dns.message
import dns.query
import dns.rdatatype

from . import servers
from .live import percentile

WAYS = {"sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM, "drain": signal.SIGUSR1}
LEASE = 10          # `dnsdisco register`'s default lease TTL
DNS_TTL = 5         # and its default DNS TTL (half the lease)


class Client:
    """Asks the cache for web.svc.local A every 100 ms; remembers when each address was last seen."""

    def __init__(self, port: int):
        self.port = port
        self.last_seen: dict[str, float] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        query = dns.message.make_query("web.svc.local", "A", use_edns=0, payload=4096)
        while not self._stop.is_set():
            try:
                reply, _tcp = dns.query.udp_with_fallback(query, "127.0.0.1", port=self.port, timeout=1)
                now = time.monotonic()
                for rrset in reply.answer:
                    if rrset.rdtype == dns.rdatatype.A:
                        for rdata in rrset:
                            self.last_seen[rdata.address] = now
            except Exception:
                self.errors += 1
            self._stop.wait(0.1)

    def stop(self):
        self._stop.set()
        self._thread.join(5)


def _registrar(etcd: str, address: str, ident: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(servers.REPO_ROOT))
    return subprocess.Popen([sys.executable, "-m", "dnsdisco", "register", "web.svc.local", "--etcd", etcd,
                             "--address", address, "--port", "80", "--id", ident],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _dnsmasq(sup: servers.Supervisor, dns_port: int) -> servers.Server:
    port = servers.free_port()
    wd = sup.workdir("dnsmasq-cache")
    cmd = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
           f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--cache-size=1000",
           f"--server=/svc.local/127.0.0.1#{dns_port}", f"--pid-file={wd / 'dnsmasq.pid'}"]
    return sup.spawn("dnsmasq", cmd, port, wd)


def measure(way: str, kills: int, gap: float, log=print) -> dict:
    with servers.Supervisor() as sup:
        etcd = servers.start_etcd(sup)
        endpoint = etcd.extra["endpoint"]
        serve = servers.start_dnsdisco(sup, endpoint)
        servers.wait_until(lambda: serve.alive() and _answers(serve.port), 30, what="dnsdisco serve")
        cache = _dnsmasq(sup, serve.port)
        servers.wait_until(lambda: cache.alive() and _answers(cache.port), 10, what="the dnsmasq cache")
        going = {f"127.0.30.{i + 1}": _registrar(endpoint, f"127.0.30.{i + 1}", f"g{i}") for i in range(kills)}
        staying = {f"127.0.31.{i + 1}": _registrar(endpoint, f"127.0.31.{i + 1}", f"s{i}") for i in range(kills)}
        client = Client(cache.port)
        try:
            # all of them, the staying ones too: the zone must be whole before the first stop
            servers.wait_until(lambda: set(going) | set(staying) <= set(client.last_seen), 90,
                               what="every instance in answers")
            stopped = {}
            for address, proc in going.items():
                proc.send_signal(WAYS[way])
                stopped[address] = time.monotonic()
                time.sleep(gap)
            limit = LEASE + DNS_TTL + 10
            servers.wait_until(lambda: all(client.last_seen.get(a, 0) < time.monotonic() - DNS_TTL - 1
                                           or time.monotonic() - stopped[a] > limit for a in going),
                               limit + 5 + gap * kills, what="every stopped instance to leave the answers")
            delays = sorted(max(0.0, client.last_seen.get(a, 0) - stopped[a]) for a in going)
        finally:
            client.stop()
            for proc in [*going.values(), *staying.values()]:
                if proc.poll() is None:
                    proc.terminate()
            for proc in [*going.values(), *staying.values()]:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    result = {"way": way, "kills": kills, "p50": percentile(delays, 50), "p99": percentile(delays, 99),
              "max": delays[-1], "client_errors": client.errors}
    log(f"{way}: {kills} stops, last answer holding the address p50 {result['p50']:.2f} s, "
        f"p99 {result['p99']:.2f} s, max {result['max']:.2f} s; client errors {client.errors}")
    return result


def _answers(port: int) -> bool:
    try:
        reply = dns.query.udp(dns.message.make_query("svc.local", "SOA"), "127.0.0.1", port=port, timeout=0.3)
        return reply.rcode() == 0
    except Exception:
        return False


def table(results: list[dict]) -> str:
    goal = {"sigkill": f"≤ {LEASE + DNS_TTL} s (lease + DNS TTL)", "sigterm": f"≤ {DNS_TTL} s (DNS TTL)",
            "drain": f"≤ {DNS_TTL} s (DNS TTL)"}
    lines = ["| stopped by | stops | p50 | p99 | max | goal | client errors |", "|---|---:|---:|---:|---:|---|---:|"]
    for r in results:
        lines.append(f"| {r['way']} | {r['kills']} | {r['p50']:.2f} s | {r['p99']:.2f} s | {r['max']:.2f} s | "
                     f"{goal[r['way']]} | {r['client_errors']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clientfresh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="instances stopped per way (default 20)")
    parser.add_argument("--ways", default="sigkill,sigterm,drain", help="comma list of sigkill, sigterm, drain")
    parser.add_argument("--gap", type=float, default=2.0,
                        help="seconds between two stops (default 2: fewer than 10 within the mass-expiry "
                             "guard's 10 s window, so the guard never holds them)")
    args = parser.parse_args(argv)
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    bad = [w for w in ways if w not in WAYS]
    if bad or not ways:
        parser.error(f"--ways: {', '.join(bad) or 'nothing'} is not one of {', '.join(WAYS)}")
    if not 1 <= args.kills <= 250:
        parser.error("--kills must be 1..250")
    results = [measure(way, args.kills, args.gap) for way in ways]
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
