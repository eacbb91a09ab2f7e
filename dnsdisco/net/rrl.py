"""Response rate limiting (RRL) for UDP, off by default as in Knot DNS and BIND.

A spoofed-source flood makes an authoritative server an amplifier aimed at the victim
whose address is forged. RRL bounds the identical responses one network receives: one
token bucket per (client /24 or IPv6 /56, lower-case qname, qtype), refilled at `rate`
tokens per second and holding at most `rate` (a one-second burst). A response without
a token is dropped, except that every `slip`-th one goes out truncated (TC, no records)
so a real client behind a forged-looking address retries over TCP, where an address
is proven. TCP is never limited; the caller only asks for UDP.

Pure logic: no sockets, no metrics; the clock is injected so tests can drive it.
Memory is bounded by `max_entries`: when the table is full, buckets idle long enough
to be full again (equivalent to absent ones) are swept, and if that does not free
half the table, the oldest-created half goes.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from dnsdisco.net.acl import Networks, client_network

PASS = "pass"
DROP = "drop"
SLIP = "slip"

MAX_ENTRIES = 100_000


class RateLimiter:
    """`check(ip, qname, qtype)` → "pass" (send), "drop" (send nothing) or "slip" (send TC)."""

    __slots__ = ("rate", "slip", "exempt", "clock", "max_entries", "_table")

    def __init__(self, rate: float, slip: int = 2, exempt: Iterable = (), *,
                 clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_ENTRIES):
        if rate <= 0:
            raise ValueError(f"RRL rate must be above 0 responses per second, got {rate}")
        if slip < 0:
            raise ValueError(f"RRL slip must be 0 (never) or more, got {slip}")
        self.rate = float(rate)
        self.slip = int(slip)
        self.exempt = Networks(exempt)
        self.clock = clock
        self.max_entries = max(2, int(max_entries))
        # (network, qname, qtype) -> [tokens, last refill time, limited responses so far]
        self._table: dict[tuple, list] = {}

    def __len__(self) -> int:
        return len(self._table)

    def check(self, ip: str, qname: bytes, qtype: int) -> str:
        """Spend a token for one response to `ip` for (qname, qtype); say what to send."""
        if self.exempt and self.exempt.contains(ip):
            return PASS
        now = self.clock()
        key = (client_network(ip), qname, qtype)
        table = self._table
        bucket = table.get(key)
        if bucket is None:
            if len(table) >= self.max_entries:
                self._sweep(now)
            table[key] = [self.rate - 1.0, now, 0]
            return PASS
        rate = self.rate
        tokens = bucket[0] + (now - bucket[1]) * rate
        if tokens > rate:
            tokens = rate
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return PASS
        bucket[0] = tokens
        bucket[2] += 1
        if self.slip and bucket[2] % self.slip == 0:
            return SLIP
        return DROP

    def _sweep(self, now: float) -> None:
        """Make room: forget buckets that have refilled, else the oldest half."""
        table = self._table
        full_after = 1.0     # a bucket refills from empty to `rate` tokens in one second
        for key in [k for k, b in table.items() if now - b[1] >= full_after]:
            del table[key]
        keep = self.max_entries // 2
        if len(table) > keep:
            excess = len(table) - keep
            for key in list(table)[:excess]:       # dicts keep insertion order: oldest first
                del table[key]
