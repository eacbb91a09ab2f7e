"""A snapshot of 1,000,000 services (about 2,100,000 keys) built in one go, the way serve
builds its first sync (etcd helper parts of `key TAB value` lines read by snapshot.Builder),
answers a seeded sample of questions exactly as a snapshot whose sampled services came one key
at a time through `Snapshot.apply`.

The second snapshot is the bulk build of every key except those of the sampled services, then
those keys applied one by one: applying all two million singly would copy the layered maps'
base thousands of times, and what a sampled question's answer depends on (its name, its
instances, the names sharing its addresses, its zone's apex) is all in its own keys or in both
snapshots alike. The keys mix the plain shape the short path reads with every kind the long
path handles: extra fields, text, name hosts, IPv6, upper-case keys, bad values, shared
addresses, keys under a service's own record. Not timed (bench/scalebreakdown.py measures).
Pure, but in this tier rather than tests/unit: it takes about a minute and 1.5 GiB.
"""
from __future__ import annotations

import gc
import json
import random

import pytest
from dnslib import DNSRecord

from dnsdisco.dns.responder import Responder
from dnsdisco.dns.bulk import Builder
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.etcd.helper import LIST_CHUNK, _packed

SERVICES = 1_000_000
PREFIX = "/skydns"
ZONES = (ZoneConfig("svc.local"), ZoneConfig("in-addr.arpa"))
SAMPLE = 400


def address(n: int) -> bytes:
    return b"10.%d.%d.%d" % (n >> 16, n >> 8 & 255, n & 255)


def keys_of(i: int) -> list[tuple[str, bytes]]:
    """The keys of service i: two plain instances, and every so often one of the other kinds."""
    svc = f"/skydns/local/svc/s{i:07d}"
    out = [(f"{svc}/i0", b'{"host":"%s","port":%d}' % (address(2 * i + 1), 8000 + i % 1000)),
           (f"{svc}/i1", b'{"host": "%s", "port": 80}' % address(2 * i + 2))]
    if i % 50 == 0:
        out.append((f"{svc}/v6", json.dumps({"host": f"fd00::{i:x}", "port": 443}).encode()))
    if i % 97 == 0:
        out.append((f"{svc}/i2", json.dumps({"host": f"10.200.{i % 256}.1", "port": 81, "ttl": 60,
                                             "priority": 5, "weight": 7}).encode()))
    if i % 101 == 0:
        out.append((svc, json.dumps({"text": f"service {i}"}).encode()))
    if i % 103 == 0:
        out.append((f"{svc}/db", json.dumps({"host": "db.example.com", "port": 5432}).encode()))
    if i % 107 == 0:
        out.append((f"{svc}/bad", b'{"host": "10.0.0.300", "port": 1}'))
    if i % 109 == 0:       # an address shared with the previous service's first instance (two PTR owners)
        out.append((f"{svc}/twin", b'{"host":"%s","port":9}' % address(2 * (i - 1) + 1)))
    if i % 113 == 0:       # upper case: the same name as i0, and the larger key wins
        out.append((f"{svc}/I0", b'{"host":"10.250.0.1","port":1}'))
    if i % 127 == 0:
        out.append((f"{svc}/_tcp/_http/x", b'{"host":"10.251.0.1","port":80}'))
    return sorted(out)


def questions(i: int, snap: Snapshot) -> list[tuple[str, str]]:
    name = f"s{i:07d}.svc.local"
    asked = [(name, t) for t in ("A", "AAAA", "SRV", "TXT", "MX", "CNAME")]
    asked += [(f"i0.{name}", "A"), (f"i1.{name}", "AAAA"), (f"I0.{name}", "A"), (f"db.{name}", "A"),
              (f"v6.{name}", "AAAA"), (f"bad.{name}", "A"), (f"twin.{name}", "A"), (f"nx.{name}", "A"),
              (f"_http._tcp.{name}", "SRV"), (f"_tcp.{name}", "A"), (f"x._http._tcp.{name}", "A")]
    for child in snap.instance_names(name):
        rec = snap.record_at(child)
        if rec is not None and rec.host_kind == "ipv4":
            asked.append((".".join(reversed(rec.host.split("."))) + ".in-addr.arpa", "PTR"))
    return asked


def shown(responder: Responder, qname: str, qtype: str):
    """The reply as a client gets it (through the one answer path), RRs sorted: the two
    responders rotate alike, but the comparison is about content."""
    query = DNSRecord.question(qname, qtype)
    query.header.id = 4321
    reply = DNSRecord.parse(responder.handle(bytes(query.pack()), "tcp", ("127.0.0.1", 5300)))
    return (reply.header.rcode, reply.header.aa, sorted(map(str, reply.rr)), sorted(map(str, reply.auth)),
            sorted(map(str, reply.ar)))


class _KeyValue:
    __slots__ = ("key", "value")

    def __init__(self, key: bytes, value: bytes):
        self.key, self.value = key, value


@pytest.fixture(scope="module")
def snapshots():
    rng = random.Random(23)
    sample = sorted(rng.sample(range(SERVICES), SAMPLE)) + [0, 50 * 97 * 101, 109 * 113, 127 * 103]
    wanted = set(sample)
    collecting = gc.isenabled()
    gc.disable()
    try:
        bulk = Builder(PREFIX, ZONES)
        rest = Builder(PREFIX, ZONES)
        singles: list[tuple[str, bytes]] = []
        part: list[_KeyValue] = []
        for i in range(SERVICES):
            pairs = keys_of(i)
            part.extend(_KeyValue(k.encode(), v) for k, v in pairs)
            if len(part) >= LIST_CHUNK:
                bulk.page(_packed(part))         # serve's path: the helper's lines
                part = []
            if i in wanted:
                singles.extend(pairs)
            else:
                rest.add(pairs)                  # the (key, value) path
        bulk.page(_packed(part))
        full = bulk.finish(7)
        del bulk
        partial = rest.finish(7)
        del rest
        for key, value in singles:
            partial, _touched, _rejected = partial.apply(7, [(key, value)])
    finally:
        if collecting:
            gc.enable()
    return full, partial, sample


def test_a_million_services_answer_as_applied_one_by_one(snapshots):
    full, partial, sample = snapshots
    assert full.record_count == partial.record_count > 2 * SERVICES
    one, other = Responder(full), Responder(partial)
    asked = answered = 0
    for i in sample:
        for qname, qtype in questions(i, full):
            got = shown(one, qname, qtype)
            assert got == shown(other, qname, qtype), (qname, qtype)
            asked += 1
            answered += bool(got[2])
    for qname, qtype in (("svc.local", "SOA"), ("svc.local", "NS"), ("nx.svc.local", "A"), ("local", "A"),
                         ("in-addr.arpa", "SOA"), ("10.in-addr.arpa", "PTR")):
        assert shown(one, qname, qtype) == shown(other, qname, qtype), (qname, qtype)
    assert asked > 10 * len(sample) and answered > 5 * len(sample)     # most questions have answers


def test_the_sample_holds_every_kind_of_key(snapshots):
    """The comparison above means something only if the sample met the long path's cases."""
    full, _partial, _sample = snapshots
    assert full.record_at("i2.s0000000.svc.local").ttl == 60
    assert full.record_at("s0000000.svc.local").text == "service 0"
    # 109 * 113: keys /I0 and /i0 are one name; /i0 is listed later (the larger key) and wins
    assert full.record_at("i0.s0012317.svc.local").host == address(2 * 12317 + 1).decode()
    assert full.record_at("bad.s0000000.svc.local") is None
    assert any("10.0.0.300" in message for _key, message in full.rejected)
    twin = full.record_at("twin.s0012317.svc.local")
    owners = full.ptr_names(".".join(reversed(twin.host.split("."))) + ".in-addr.arpa")
    assert owners == ("i0.s0012316.svc.local", "twin.s0012317.svc.local")
