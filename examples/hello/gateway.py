#!/usr/bin/env python3
"""Gateway: finds hello instances by SRV through dnsdisco and spreads calls across them.

It asks DNS for the SRV records of --name again when the answer's TTL has run out (as a cache
in front of it would; at least every --refresh-max seconds): new instances join the
round-robin, instances that left DNS are dropped. An instance that does not answer a call is
dropped at once (the call is retried on the next one) and only comes back if DNS still lists
it after --retry-after seconds. One line per event, prefixed with the wall-clock time:

    1700000000.123 OK 127.0.0.1:8081 hello from a
    1700000000.456 FAIL 127.0.0.1:8082 connection refused
    1700000000.456 DROP 127.0.0.1:8082 not answering
    1700000001.000 ADD 127.0.0.1:8083
    1700000002.000 GONE 127.0.0.1:8082 left DNS          (its lease expired)
"""
from __future__ import annotations

import argparse
import http.client
import sys
import time
import urllib.request
from pathlib import Path

try:
    import dnsdisco
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import dnsdisco


def say(*parts) -> None:
    print(f"{time.time():.3f}", *parts, flush=True)


class Gateway:
    def __init__(self, name: str, nameserver, timeout: float, retry_after: float):
        self.name, self.nameserver = name, nameserver
        self.timeout, self.retry_after = timeout, retry_after
        self.rotation: list[tuple[str, int]] = []     # round-robin order, first seen first
        self.suspended: dict[tuple[str, int], float] = {}  # instance -> when it may come back
        self.next = 0
        self.dns_down = False

    def refresh(self) -> float:
        """Ask DNS; returns the seconds the answer may be used (its TTL)."""
        try:
            found, ttl = dnsdisco.lookup_srv(self.name, nameserver=self.nameserver, timeout=self.timeout)
        except dnsdisco.ResolveError as exc:
            if not self.dns_down:
                say("DNS", f"unavailable, keeping {len(self.rotation)} instance(s): {exc}")
            self.dns_down = True
            return 1.0
        if self.dns_down:
            say("DNS", "answering again")
        self.dns_down = False
        listed = set(found)
        now = time.monotonic()
        for inst in list(self.rotation):
            if inst not in listed:
                self.rotation.remove(inst)
                say("DROP", show(inst), "gone from DNS")
        for inst in list(self.suspended):
            if inst not in listed:
                del self.suspended[inst]
                say("GONE", show(inst), "left DNS")
        for inst in found:
            if inst in self.rotation:
                continue
            until = self.suspended.get(inst)
            if until is not None and now < until:
                continue
            self.suspended.pop(inst, None)
            self.rotation.append(inst)
            say("ADD", show(inst))
        # with no instance to call, a cached "none" helps nobody: ask again within a second
        return ttl if self.rotation else min(ttl, 1.0)

    def call(self) -> bool:
        """One request, retried on the next instance if the chosen one fails."""
        for _ in range(max(1, len(self.rotation))):
            if not self.rotation:
                break
            inst = self.rotation[self.next % len(self.rotation)]
            self.next += 1
            try:
                with urllib.request.urlopen(f"http://{show(inst)}/", timeout=self.timeout) as resp:
                    say("OK", show(inst), resp.read().decode().strip())
                    return True
            except (OSError, http.client.HTTPException) as exc:
                say("FAIL", show(inst), getattr(exc, "reason", exc))
                self.rotation.remove(inst)
                self.suspended[inst] = time.monotonic() + self.retry_after
                say("DROP", show(inst), "not answering")
        say("NONE", "no instance answered")
        return False


def show(inst: tuple[str, int]) -> str:
    host, port = inst
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", default="hello.svc.local", help="service to call")
    ap.add_argument("--dns", default=None, metavar="HOST:PORT",
                    help="DNS server to ask (default: the nameservers of /etc/resolv.conf)")
    ap.add_argument("--refresh-max", type=float, default=30.0,
                    help="ask DNS again after the answer's TTL, but at least this often (seconds)")
    ap.add_argument("--rate", type=float, default=5.0, help="calls per second")
    ap.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: run until killed)")
    ap.add_argument("--timeout", type=float, default=0.5, help="seconds per call and per DNS query")
    ap.add_argument("--retry-after", type=float, default=3.0,
                    help="seconds before an instance that failed a call may rejoin (if still in DNS)")
    args = ap.parse_args()
    nameserver = None
    if args.dns:
        host, _, port = args.dns.rpartition(":")
        nameserver = (host.strip("[]"), int(port))
    gw = Gateway(args.name, nameserver, args.timeout, args.retry_after)
    start = time.monotonic()
    next_refresh = 0.0
    try:
        while not args.duration or time.monotonic() - start < args.duration:
            now = time.monotonic()
            if now >= next_refresh:
                ttl = gw.refresh()
                next_refresh = now + min(max(ttl, 0.5), args.refresh_max)
            gw.call()
            time.sleep(1.0 / args.rate)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
