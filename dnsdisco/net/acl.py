"""Client networks: who may use us as a recursive resolver, who is never rate limited, who may
transfer a zone (one matcher, `Networks`), and the network a client is counted by
(`client_network`, for RRL).

Forwarding for anyone who can reach the port would make dnsdisco an open resolver
(a reflection amplifier); answers for our own zones do not go through the allow list.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
_MEMO_LIMIT = 65536   # distinct client addresses remembered before the memo starts over

IPV4_PREFIX = 24      # a client network for RRL: the /24 of an IPv4 address...
IPV6_PREFIX = 56      # ...and the /56 of an IPv6 one (a site's usual delegation)


def parse_network(text) -> Network:
    """An address or CIDR block (host bits allowed) as a network; ValueError naming it."""
    if isinstance(text, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return text
    try:
        return ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an address or CIDR block") from None


class Networks:
    """A set of networks; `contains(ip)` answers from a per-address memo after the first
    lookup, because the same few clients ask again and again."""

    def __init__(self, cidrs: Iterable = ()):
        nets = [parse_network(cidr) for cidr in cidrs]
        self.networks: tuple[Network, ...] = tuple(nets)
        self._v4 = tuple(n for n in nets if n.version == 4)
        self._v6 = tuple(n for n in nets if n.version == 6)
        self._memo: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def contains(self, ip) -> bool:
        """True when `ip` (a socket peer address; IPv4-mapped IPv6 and %scope accepted) is in
        one of the networks."""
        known = self._memo.get(ip)
        if known is not None:
            return known
        verdict = self._check(str(ip))
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[ip] = verdict
        return verdict

    def _check(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if addr.version == 6:
            mapped = addr.ipv4_mapped
            if mapped is not None and any(mapped in n for n in self._v4):
                return True
            return any(addr in n for n in self._v6)
        return any(addr in n for n in self._v4)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({[str(n) for n in self.networks]})"


class Acl(Networks):
    """Who may use forwarding: `allows(ip)`; the default is loopback and the private ranges."""

    def __init__(self, cidrs: Iterable | None = None):
        super().__init__(DEFAULT_ALLOW if cidrs is None else cidrs)

    allows = Networks.contains


def client_network(ip: str, v4_bits: int = IPV4_PREFIX, v6_bits: int = IPV6_PREFIX) -> bytes | str:
    """The network a client is counted by, as a dict key: the first `v4_bits` of an IPv4
    address (dotted, "192.0.2" for a /24), the first `v6_bits` of an IPv6 one (packed
    octets); an IPv4-mapped address counts as IPv4. Prefixes are whole octets. RRL counts
    by /24 and /56, the TCP per-client cap by /32 and /64. Cheap on purpose: RRL asks it
    per response."""
    if ":" not in ip:
        if v4_bits == 24:
            return ip.rpartition(".")[0]
        return ip if v4_bits >= 32 else ".".join(ip.split(".")[:v4_bits // 8])
    try:
        packed = socket.inet_pton(socket.AF_INET6, ip.split("%", 1)[0])
    except OSError:
        return ip
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return client_network(socket.inet_ntop(socket.AF_INET, packed[12:]), v4_bits)
    return packed[:v6_bits // 8]
