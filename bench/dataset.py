"""The benchmark's records, and the same records written for each server and for dnsperf.

Pure: no I/O beyond returning strings. One `Dataset` of N services drives the etcd keys
(for dnsdisco and the floor), the Knot zone file, the dnsmasq config and the query files,
so every server answers the same questions from the same records.
"""
from __future__ import annotations

import ipaddress
import json
import random
import struct
from dataclasses import dataclass
from typing import Iterator

ZONE = "svc.local"
PREFIX = "/skydns"
ZONE_KEY = "/skydns/local/svc"
TTL = 30
NEG_TTL = 5
V6_EVERY = 50          # every 50th service also has an IPv6 instance ("v6")
NX_POOL = 1000         # distinct NXDOMAIN names in the mixed file


@dataclass(frozen=True)
class Instance:
    service: str      # e.g. "s00042"
    id: str           # e.g. "i0", "v6"
    host: str         # IPv4 or IPv6 address
    port: int

    @property
    def name(self) -> str:
        return f"{self.id}.{self.service}.{ZONE}"

    @property
    def service_name(self) -> str:
        return f"{self.service}.{ZONE}"

    @property
    def key(self) -> str:
        return f"{ZONE_KEY}/{self.service}/{self.id}"

    @property
    def value(self) -> bytes:
        return json.dumps({"host": self.host, "port": self.port}, separators=(",", ":")).encode()

    @property
    def is_v6(self) -> bool:
        return ":" in self.host


def service_label(i: int) -> str:
    return f"s{i:06d}"


def ipv4_for(k: int, base: int = 0) -> str:
    """A distinct 10.x.y.z for each k (k < 2**24 - base)."""
    return str(ipaddress.IPv4Address((10 << 24) + base + k))


def ipv6_for(k: int) -> str:
    return str(ipaddress.IPv6Address((0xFD00 << 112) + k))


def instances_of(i: int) -> list[Instance]:
    """Service i: two IPv4 instances, plus an IPv6 one for every V6_EVERY-th service."""
    svc = service_label(i)
    port = 8000 + i % 1000
    out = [Instance(svc, f"i{j}", ipv4_for(2 * i + j + 1), port) for j in (0, 1)]
    if i % V6_EVERY == 0:
        out.append(Instance(svc, "v6", ipv6_for(i + 1), port))
    return out


@dataclass(frozen=True)
class Dataset:
    services: int

    def service_names(self) -> list[str]:
        return [f"{service_label(i)}.{ZONE}" for i in range(self.services)]

    def instances(self) -> Iterator[Instance]:
        for i in range(self.services):
            yield from instances_of(i)

    def etcd_items(self) -> Iterator[tuple[str, bytes]]:
        for inst in self.instances():
            yield inst.key, inst.value

    def last_name(self) -> str:
        """The service loaded last: the one to ask for when checking a server is ready."""
        return f"{service_label(self.services - 1)}.{ZONE}"


# --- the same records as resource records -------------------------------------------------

def rrs_of(inst: Instance) -> list[tuple[str, str, str]]:
    """(owner, type, rdata) rows that dnsdisco serves for one instance."""
    addr_type = "AAAA" if inst.is_v6 else "A"
    return [
        (inst.service_name, addr_type, inst.host),
        (inst.name, addr_type, inst.host),
        (inst.service_name, "SRV", f"10 100 {inst.port} {inst.name}."),
    ]


def apex_rrs() -> list[tuple[str, str, str]]:
    return [
        (ZONE, "SOA", f"ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 {NEG_TTL}"),
        (ZONE, "NS", f"ns.dns.{ZONE}."),
        (f"ns.dns.{ZONE}", "A", "127.0.0.1"),
    ]


def zone_file(ds: Dataset) -> str:
    """RFC 1035 zone file for Knot (and the dnslib floor) with the dataset's records."""
    lines = [f"$ORIGIN {ZONE}.", f"$TTL {TTL}"]
    for owner, rtype, rdata in apex_rrs():
        lines.append(f"{owner}. {TTL} IN {rtype} {rdata}")
    for inst in ds.instances():
        for owner, rtype, rdata in rrs_of(inst):
            lines.append(f"{owner}. {TTL} IN {rtype} {rdata}")
    return "\n".join(lines) + "\n"


def dnsmasq_conf(ds: Dataset, port: int, address: str = "127.0.0.1", auth: bool = False) -> str:
    """dnsmasq config with the same records (host-record and srv-host lines).

    Default (`auth=False`): `local=/svc.local/`, the fast and common way to run dnsmasq; it
    cannot put the zone SOA in negative answers (NXDOMAIN/NODATA come without authority).
    `auth=True`: authoritative mode (auth-server/auth-zone), negative answers carry an SOA, but
    it measured about 3x slower here, and it still cannot express our SOA fields, puts an NS
    RRset in every answer's authority section and sends no A records for SRV targets.
    """
    lines = [
        "no-resolv", "no-hosts", "no-poll", "keep-in-foreground", "bind-interfaces",
        f"listen-address={address}", f"port={port}", "user=root", "group=root",
        f"local-ttl={TTL}", f"neg-ttl={NEG_TTL}", "cache-size=0", "log-facility=-",
    ]
    if auth:
        lines += [f"auth-server=ns.dns.{ZONE},{address}", f"auth-zone={ZONE}", f"auth-ttl={TTL}",
                  f"auth-soa=1,hostmaster.{ZONE},7200,1800,86400"]
    else:
        lines.append(f"local=/{ZONE}/")
    for inst in ds.instances():
        lines.append(f"host-record={inst.service_name},{inst.name},{inst.host}")
        lines.append(f"srv-host={inst.service_name},{inst.name},{inst.port},10,100")
    return "\n".join(lines) + "\n"


# --- query files -------------------------------------------------------------------------

MIX = (("a", 0.60), ("srv", 0.15), ("aaaa_nodata", 0.10), ("nx", 0.10), ("a_case", 0.05))


def random_case(name: str, rng: random.Random) -> str:
    out = "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in name)
    if out == name:  # make sure at least one letter differs
        out = name[0].upper() + name[1:]
    return out


def mixed_queries(ds: Dataset, count: int, seed: int = 6) -> list[str]:
    """dnsperf lines: ~60% A hits across many names, 15% SRV, 10% AAAA NODATA, 10% NXDOMAIN,
    5% A hits in random letter case. Deterministic for a seed."""
    rng = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    n = ds.services

    def a_name() -> str:
        i = rng.randrange(n)
        if rng.random() < 0.5:
            return f"{service_label(i)}.{ZONE}"
        return f"i{rng.randrange(2)}.{service_label(i)}.{ZONE}"

    lines = []
    for kind in rng.choices(kinds, weights, k=count):
        if kind == "a":
            lines.append(f"{a_name()} A")
        elif kind == "srv":
            lines.append(f"{service_label(rng.randrange(n))}.{ZONE} SRV")
        elif kind == "aaaa_nodata":
            # instance names of IPv4 instances never have AAAA
            lines.append(f"i{rng.randrange(2)}.{service_label(rng.randrange(n))}.{ZONE} AAAA")
        elif kind == "nx":
            lines.append(f"nx{rng.randrange(NX_POOL)}.{ZONE} A")
        else:
            lines.append(f"{random_case(a_name(), rng)} A")
    return lines


def every_question(ds: Dataset) -> Iterator[str]:
    """Every positive question of the dataset once, and AAAA of every name (mostly NODATA):
    more distinct questions than any reply cache holds, so the server's memory after them is
    the worst a query mix can make it."""
    for i in range(ds.services):
        svc = service_label(i)
        yield f"{svc}.{ZONE} A"
        yield f"{svc}.{ZONE} SRV"
        yield f"{svc}.{ZONE} AAAA"
        for inst in instances_of(i):
            yield f"{inst.name} {'AAAA' if inst.is_v6 else 'A'}"
            if not inst.is_v6:
                yield f"{inst.name} AAAA"


def cold_questions(ds: Dataset, count: int, asked: list[str]) -> list[str]:
    """Up to `count` questions for the names of the dataset, service by service (the service
    name, then each instance's name, with the type its address has) and none of `asked` (in
    any letter case): a pass that is all first answers even after the mixed file's runs."""
    seen = {line.lower() for line in asked}
    out = []
    for i in range(ds.services):
        svc = service_label(i)
        lines = [f"{svc}.{ZONE} A"]
        lines += [f"{inst.name} {'AAAA' if inst.is_v6 else 'A'}" for inst in instances_of(i)]
        for line in lines:
            if line.lower() not in seen:
                out.append(line)
                if len(out) == count:
                    return out
    return out


def single_queries(ds: Dataset) -> list[str]:
    return [f"{service_label(0)}.{ZONE} A"]


def query_file_text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


QUERY_TYPES = {"A": 1, "AAAA": 28, "SRV": 33}      # the types the query files ask


def wire_name(name: str) -> bytes:
    """A name of the dataset (plain ASCII labels) in wire form."""
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


def query_packet(line: str, qid: int) -> bytes:
    """The query dnsperf sends for a line of a query file: RD set, no EDNS."""
    name, qtype = line.split()
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire_name(name) + struct.pack("!HH", QUERY_TYPES[qtype], 1)
