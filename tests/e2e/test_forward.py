"""Forwarding against a real upstream (dnsmasq on a free 127.0.0.1 port), and the ACL in a forwarding
Responder. The pure parts are tests/unit/net/test_forwarder.py and test_acl.py."""
from __future__ import annotations

import socket
import struct
import subprocess

import gevent
import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from dnsdisco.net.acl import Acl
from dnsdisco.net.forwarder import Forwarder
from dnsdisco.net.upstream_wire import WireError
from dnsdisco.net.upstreams import parse_upstreams
from tests.support.netns import dnsmasq_command, free_port, wait_dns
from tests.support.queries import query

BIG_TXT = [f"big.test,{chr(ord('a') + i) * 200}" for i in range(20)]        # ~4.3 KB answer
MEDIUM_TXT = [f"medium.test,{chr(ord('a') + i) * 200}" for i in range(3)]   # ~700 B answer
TTL = 60


class Upstream:
    """One dnsmasq process serving example.test and the auth zone `test`."""

    def __init__(self, workdir):
        self.port = free_port()
        cmd = dnsmasq_command(port=self.port, workdir=workdir, ttl=TTL, auth_zone="test",
                              records=["example.test,192.0.2.10,2001:db8::10"], txt=BIG_TXT + MEDIUM_TXT)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_dns("127.0.0.1", self.port, proc=self.proc)

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    up = Upstream(tmp_path_factory.mktemp("dnsmasq"))
    yield up
    up.stop()


@pytest.fixture
def own_upstream(tmp_path):
    """A dnsmasq that the test may stop."""
    up = Upstream(tmp_path)
    yield up
    up.stop()


@pytest.fixture
def dead_addr():
    """A loopback port nobody listens on: UDP gets 'connection refused' at once."""
    return ("127.0.0.1", free_port())


@pytest.fixture
def blackhole():
    """A UDP socket that receives queries and never answers: the try times out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()
    sock.close()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Metrics:
    def __init__(self):
        self.tries: list[tuple[str, bool]] = []
        self.failures: list[str] = []

    def forwarded(self, upstream: str, ok: bool) -> None:
        self.tries.append((upstream, ok))

    def upstream_failure(self, upstream: str) -> None:
        self.failures.append(upstream)


def label(addr) -> str:
    return f"{addr[0]}:{addr[1]}"


# ---------------------------------------------------------------- forwarding

def test_forwards_a_with_the_clients_id_and_question_case(upstream):
    fwd = Forwarder([upstream.addr], timeout=1)
    reply = DNSRecord.parse(fwd.forward(query("ExAmple.TEST", qid=4321)))
    assert reply.header.id == 4321
    assert reply.header.rcode == RCODE.NOERROR
    assert str(reply.q.qname) == "ExAmple.TEST."
    assert [str(rr.rdata) for rr in reply.rr] == ["192.0.2.10"]
    assert reply.header.ra == 1 and reply.header.qr == 1
    assert reply.header.aa == 0          # relayed data is not authoritative, whatever the upstream says


def test_edns_and_do_are_passed_and_no_opt_without_edns(upstream):
    fwd = Forwarder([upstream.addr], timeout=1)
    with_edns = DNSRecord.parse(fwd.forward(query("example.test", "AAAA", edns=1232, do=True)))
    assert [str(rr.rdata) for rr in with_edns.rr] == ["2001:db8::10"]
    assert [rr.rtype for rr in with_edns.ar] == [QTYPE.OPT]
    assert with_edns.ar[0].edns_do == 1
    plain = DNSRecord.parse(fwd.forward(query("example.test", "AAAA")))
    assert [str(rr.rdata) for rr in plain.rr] == ["2001:db8::10"]
    assert plain.ar == []


def test_fails_over_to_the_second_upstream_and_then_asks_it_first(upstream, dead_addr):
    metrics = Metrics()
    fwd = Forwarder([dead_addr, upstream.addr], timeout=1, metrics=metrics)
    reply = DNSRecord.parse(fwd.forward(query("example.test", qid=7)))
    assert reply.header.id == 7 and [str(rr.rdata) for rr in reply.rr] == ["192.0.2.10"]
    assert metrics.failures == [label(dead_addr)]
    assert metrics.tries == [(label(dead_addr), False), (label(upstream.addr), True)]
    # the dead one is not tried first again (different name: no cache hit)
    reply = DNSRecord.parse(fwd.forward(query("example.test", "AAAA")))
    assert [str(rr.rdata) for rr in reply.rr] == ["2001:db8::10"]
    assert metrics.failures == [label(dead_addr)]


def test_ipv6_upstream(tmp_path):
    port = free_port("::1")
    proc = subprocess.Popen(dnsmasq_command(port=port, listen="::1", workdir=tmp_path,
                                            records=["example.test,192.0.2.10"]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_dns("::1", port, proc=proc)
        fwd = Forwarder(parse_upstreams([f"[::1]:{port}"]), timeout=1)
        reply = DNSRecord.parse(fwd.forward(query("example.test", qid=6)))
        assert reply.header.id == 6 and [str(rr.rdata) for rr in reply.rr] == ["192.0.2.10"]
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        proc.stderr.close()


def test_fails_over_after_a_timeout(upstream, blackhole):
    metrics = Metrics()
    fwd = Forwarder([blackhole, upstream.addr], timeout=0.2, metrics=metrics)
    reply = DNSRecord.parse(fwd.forward(query("example.test")))
    assert [str(rr.rdata) for rr in reply.rr] == ["192.0.2.10"]
    assert metrics.failures == [label(blackhole)]


def test_servfail_when_every_upstream_is_down(dead_addr, blackhole):
    fwd = Forwarder([dead_addr, blackhole], timeout=0.2)
    raw = fwd.forward(query("Example.Test", qid=99, edns=1232, do=True))
    reply = DNSRecord.parse(raw)
    assert reply.header.id == 99
    assert reply.header.rcode == RCODE.SERVFAIL
    assert reply.header.ra == 1 and reply.header.rd == 1 and reply.header.qr == 1
    assert str(reply.q.qname) == "Example.Test." and reply.q.qtype == QTYPE.A
    assert [rr.rtype for rr in reply.ar] == [QTYPE.OPT] and reply.ar[0].edns_do == 1
    assert fwd.stats["servfail"] == 1
    assert len(fwd.cache) == 0


def test_upstream_refusal_is_not_passed_on_or_cached(upstream):
    # dnsmasq without upstreams REFUSEs names outside its data
    fwd = Forwarder([upstream.addr], timeout=1)
    reply = DNSRecord.parse(fwd.forward(query("elsewhere.invalid")))
    assert reply.header.rcode == RCODE.SERVFAIL
    assert len(fwd.cache) == 0


def test_truncated_udp_reply_is_retried_over_tcp(upstream):
    fwd = Forwarder([upstream.addr], timeout=1, cache_size=0)
    reply = DNSRecord.parse(fwd.forward(query("big.test", "TXT", qid=55), client_tcp=True))
    assert reply.header.id == 55 and reply.header.tc == 0
    assert len(reply.rr) == 20
    assert fwd.stats["tcp_retries"] == 1


def test_reply_larger_than_the_clients_udp_size_comes_back_truncated(upstream):
    fwd = Forwarder([upstream.addr], timeout=1)
    for q, kwargs in ((query("medium.test", "TXT", qid=1), {}),                   # 512 without EDNS
                      (query("big.test", "TXT", qid=2, edns=1232), {})):          # above 1232
        raw = fwd.forward(q, client_tcp=False, **kwargs)
        reply = DNSRecord.parse(raw)
        assert reply.header.tc == 1 and reply.rr == [] and reply.header.id == DNSRecord.parse(q).header.id
        assert str(reply.q.qname) in ("medium.test.", "big.test.")
    # the same query over TCP gets everything (here from the cache)
    reply = DNSRecord.parse(fwd.forward(query("medium.test", "TXT"), client_tcp=True))
    assert reply.header.tc == 0 and len(reply.rr) == 3
    # and a client with room for it gets it over UDP
    reply = DNSRecord.parse(fwd.forward(query("medium.test", "TXT", edns=4096)))
    assert reply.header.tc == 0 and len(reply.rr) == 3


def test_answers_from_cache_with_decremented_ttl_until_expiry(own_upstream):
    clock = Clock()
    fwd = Forwarder([own_upstream.addr], timeout=0.3, clock=clock)
    first = DNSRecord.parse(fwd.forward(query("example.test", qid=1)))
    assert first.rr[0].ttl == TTL
    own_upstream.stop()
    clock.now += 10
    second = DNSRecord.parse(fwd.forward(query("EXAMPLE.test", qid=2)))
    assert second.header.id == 2 and str(second.q.qname) == "EXAMPLE.test."
    assert [str(rr.rdata) for rr in second.rr] == ["192.0.2.10"]
    assert second.rr[0].ttl == TTL - 10
    assert fwd.stats["cache_hits"] == 1
    clock.now += TTL - 10
    expired = DNSRecord.parse(fwd.forward(query("example.test", qid=3)))
    assert expired.header.rcode == RCODE.SERVFAIL


def test_negative_answers_are_cached_up_to_the_soa_minimum(own_upstream):
    clock = Clock()
    fwd = Forwarder([own_upstream.addr], timeout=0.3, clock=clock)
    nx = DNSRecord.parse(fwd.forward(query("missing.test")))
    nodata = DNSRecord.parse(fwd.forward(query("example.test", "MX")))
    assert nx.header.rcode == RCODE.NXDOMAIN and nodata.header.rcode == RCODE.NOERROR and nodata.rr == []
    own_upstream.stop()
    clock.now += 5
    nx = DNSRecord.parse(fwd.forward(query("missing.test")))
    nodata = DNSRecord.parse(fwd.forward(query("example.test", "MX")))
    assert nx.header.rcode == RCODE.NXDOMAIN
    assert nodata.header.rcode == RCODE.NOERROR and nodata.rr == []
    assert [rr.rtype for rr in nx.auth] == [QTYPE.SOA]
    assert nx.auth[0].ttl <= TTL - 5
    assert fwd.stats["cache_hits"] == 2
    clock.now += TTL
    assert DNSRecord.parse(fwd.forward(query("missing.test"))).header.rcode == RCODE.SERVFAIL


def test_upstream_key_keeps_do_rd_and_edns_apart(upstream):
    fwd = Forwarder([upstream.addr], timeout=1)
    fwd.forward(query("example.test", edns=1232, do=True))
    assert fwd.stats["cache_misses"] == 1
    fwd.forward(query("example.test", edns=1232))
    fwd.forward(query("example.test"))
    fwd.forward(query("example.test", rd=False))
    assert fwd.stats["cache_misses"] == 4 and fwd.stats["cache_hits"] == 0
    fwd.forward(query("EXAMPLE.TEST", edns=4096, do=True))   # the buffer size is not part of the key
    assert fwd.stats["cache_hits"] == 1


def test_cache_is_bounded_lru(upstream):
    fwd = Forwarder([upstream.addr], timeout=1, cache_size=2)
    for qtype in ("A", "AAAA", "TXT"):
        name = "example.test" if qtype != "TXT" else "medium.test"
        fwd.forward(query(name, qtype), client_tcp=True)
    assert len(fwd.cache) == 2
    fwd.forward(query("example.test", "A"))       # the oldest was dropped
    assert fwd.stats["cache_hits"] == 0


def test_identical_queries_in_flight_share_one_upstream_exchange(upstream, blackhole):
    # the silent first upstream keeps the first exchange in flight while the others arrive
    metrics = Metrics()
    fwd = Forwarder([blackhole, upstream.addr], timeout=0.3, cache_size=0, metrics=metrics)
    jobs = [gevent.spawn(fwd.forward, query("example.test", qid=i)) for i in range(20)]
    gevent.joinall(jobs, timeout=5, raise_error=True)
    replies = [DNSRecord.parse(job.value) for job in jobs]
    assert [r.header.id for r in replies] == list(range(20))
    assert all(str(r.rr[0].rdata) == "192.0.2.10" for r in replies)
    assert fwd.stats["coalesced"] == 19
    assert metrics.tries == [(label(blackhole), False), (label(upstream.addr), True)]


def test_garbage_gets_formerr_or_is_refused_to_the_caller(upstream):
    fwd = Forwarder([upstream.addr], timeout=1)
    with pytest.raises(WireError):
        fwd.forward(b"\x00\x01")
    reply = DNSRecord.parse(fwd.forward(struct.pack(">HHHHHH", 77, 0x0100, 1, 0, 0, 0) + b"\x05abc"))
    assert reply.header.id == 77 and reply.header.rcode == RCODE.FORMERR


# ---------------------------------------------------------------- CNAME chains that leave our zones

def _alias_responder(upstream, acl=None):
    """A Responder for svc.local holding `alias -> example.test` (answered by the dnsmasq upstream)."""
    import json

    from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
    from dnsdisco.dns.responder import Responder
    items = [("/skydns/local/svc/alias", json.dumps({"host": "example.test"}).encode()),
             ("/skydns/local/svc/gone", json.dumps({"host": "nothing-here.test"}).encode())]
    snap = Snapshot.build("/skydns", [ZoneConfig("svc.local")], 5, items)
    fwd = Forwarder([upstream.addr], timeout=1.0)
    return Responder(snap, forwarder=fwd, acl=acl)


@pytest.mark.parametrize("qtype,expected", [("A", "192.0.2.10"), ("AAAA", "2001:db8::10")])
def test_cname_leaving_our_zones_is_finished_through_the_forwarder(upstream, qtype, expected):
    """Stub resolvers never chase a CNAME: with forwarding on and RD set, the target's records
    of the asked type follow the CNAME, AA as for the first owner, RA set."""
    responder = _alias_responder(upstream)
    for _ in range(2):                       # the second answer must not be a bare cached CNAME
        reply = DNSRecord.parse(responder.handle(bytes(query("alias.svc.local", qtype, edns=1232)), "udp", ("127.0.0.1", 1)))
        assert reply.header.rcode == RCODE.NOERROR and reply.header.aa and reply.header.ra
        assert [(str(rr.rname), QTYPE[rr.rtype]) for rr in reply.rr][0] == ("alias.svc.local.", "CNAME")
        assert [str(rr.rdata) for rr in reply.rr[1:]] == [expected]
        assert str(reply.rr[1].rname) == "example.test."


def test_cname_chain_not_finished_without_rd_or_for_clients_that_may_not_forward(upstream):
    responder = _alias_responder(upstream, acl=Acl(["10.99.0.0/16"]))
    outsider = DNSRecord.parse(responder.handle(bytes(query("alias.svc.local")), "udp", ("127.0.0.1", 1)))
    assert [QTYPE[rr.rtype] for rr in outsider.rr] == ["CNAME"] and outsider.header.rcode == RCODE.NOERROR
    responder = _alias_responder(upstream)
    no_rd = DNSRecord.parse(responder.handle(bytes(query("alias.svc.local", rd=False)), "udp", ("127.0.0.1", 1)))
    assert [QTYPE[rr.rtype] for rr in no_rd.rr] == ["CNAME"]
    with_rd = DNSRecord.parse(responder.handle(bytes(query("alias.svc.local")), "udp", ("127.0.0.1", 1)))
    assert [QTYPE[rr.rtype] for rr in with_rd.rr] == ["CNAME", "A"]


def test_cname_chain_to_a_missing_or_unreachable_name(upstream, dead_addr):
    responder = _alias_responder(upstream)
    missing = DNSRecord.parse(responder.handle(bytes(query("gone.svc.local")), "udp", ("127.0.0.1", 1)))
    assert missing.header.rcode == RCODE.NXDOMAIN and [QTYPE[rr.rtype] for rr in missing.rr] == ["CNAME"]

    class Down:
        addr = dead_addr
    responder = _alias_responder(Down)
    failed = DNSRecord.parse(responder.handle(bytes(query("alias.svc.local")), "udp", ("127.0.0.1", 1)))
    assert failed.header.rcode == RCODE.NOERROR and [QTYPE[rr.rtype] for rr in failed.rr] == ["CNAME"]


def test_no_recursion_desired_is_not_forwarded(upstream):
    """RD=0 asks for no recursion: a name outside our zones is REFUSED, the upstream not asked."""
    responder = _alias_responder(upstream)
    reply = DNSRecord.parse(responder.handle(bytes(query("example.test", rd=False)), "udp", ("127.0.0.1", 1)))
    assert reply.header.rcode == RCODE.REFUSED and not reply.rr
    forwarded = DNSRecord.parse(responder.handle(bytes(query("example.test")), "udp", ("127.0.0.1", 1)))
    assert forwarded.header.rcode == RCODE.NOERROR and [str(rr.rdata) for rr in forwarded.rr] == ["192.0.2.10"]
    again = DNSRecord.parse(responder.handle(bytes(query("example.test", rd=False)), "udp", ("127.0.0.1", 1)))
    assert again.header.rcode == RCODE.REFUSED        # the forwarded answer is not handed out without RD
