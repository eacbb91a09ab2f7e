"""Who may use us as a recursive resolver: an allow list of CIDR blocks.

Forwarding for anyone who can reach the port would make dnsdisco an open resolver
(a reflection amplifier); answers for our own zones do not go through this list.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
_CACHE_LIMIT = 65536   # distinct client addresses remembered before the cache starts over


def default_networks() -> list[Network]:
    return [ipaddress.ip_network(c) for c in DEFAULT_ALLOW]


class Acl:
    """`allows(ip)` answers from a per-address cache after the first lookup."""

    def __init__(self, cidrs: Iterable[str | Network] | None = None):
        if cidrs is None:
            cidrs = DEFAULT_ALLOW
        nets = []
        for cidr in cidrs:
            if isinstance(cidr, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                nets.append(cidr)
                continue
            try:
                nets.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
            except ValueError:
                raise ValueError(f"{cidr!r} is not an address or CIDR block") from None
        self.networks: tuple[Network, ...] = tuple(nets)
        self._v4 = tuple(n for n in nets if n.version == 4)
        self._v6 = tuple(n for n in nets if n.version == 6)
        self._cache: dict[str, bool] = {}

    def allows(self, ip: str) -> bool:
        """True when `ip` (a socket peer address; IPv4-mapped IPv6 and %scope accepted) is listed."""
        known = self._cache.get(ip)
        if known is not None:
            return known
        verdict = self._check(ip)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[ip] = verdict
        return verdict

    def _check(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(str(ip).split("%", 1)[0])
        except ValueError:
            return False
        if addr.version == 6:
            mapped = addr.ipv4_mapped
            if mapped is not None:
                # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
                return any(mapped in n for n in self._v4) or any(addr in n for n in self._v6)
            return any(addr in n for n in self._v6)
        return any(addr in n for n in self._v4)

    def __repr__(self) -> str:
        return f"Acl({[str(n) for n in self.networks]})"
