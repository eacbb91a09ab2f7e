"""Response rate limiting (issue 9): the pure RateLimiter table-tested with a fake clock, and the
Responder hook. A real `dnsdisco serve --rrl-rate 50` under a UDP flood is tests/e2e/test_rrl.py."""
from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import pytest

from dnsdisco.dns.wire import slip_reply
from dnsdisco.net.acl import client_network
from dnsdisco.net.rrl import DROP, PASS, SLIP, RateLimiter
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.responder import Responder


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(limiter: RateLimiter, n: int, ip="10.0.0.1", qname=b"\x05hello\x03svc\x05local\x00", qtype=1):
    return [limiter.check(ip, qname, qtype) for _ in range(n)]


# ---------------------------------------------------------------- pure

@pytest.mark.parametrize("slip, tail", [
    (2, [DROP, SLIP, DROP, SLIP, DROP, SLIP]),      # every second limited response is truncated
    (1, [SLIP] * 6),
    (0, [DROP] * 6),
    (3, [DROP, DROP, SLIP, DROP, DROP, SLIP]),
])
def test_burst_of_rate_then_slip_pattern(slip, tail):
    limiter = RateLimiter(5, slip, clock=Clock())
    assert run(limiter, 11) == [PASS] * 5 + tail


def test_tokens_refill_at_rate_and_burst_is_capped():
    clock = Clock()
    limiter = RateLimiter(10, 2, clock=clock)
    assert run(limiter, 10).count(PASS) == 10
    assert run(limiter, 1) != [PASS]
    clock.now += 0.5                                  # half a second: 5 tokens back
    assert run(limiter, 8).count(PASS) == 5
    clock.now += 3600                                 # a long pause refills only to `rate`
    assert run(limiter, 20).count(PASS) == 10


def test_steady_rate_over_time_is_bounded():
    clock = Clock()
    limiter = RateLimiter(50, 2, clock=clock)
    passed = 0
    for _ in range(10_000):                           # 10 s at 1,000 queries per second
        clock.now += 0.001
        passed += limiter.check("192.0.2.1", b"\x01a\x00", 1) == PASS
    assert 50 * 10 <= passed <= 50 * 11


@pytest.mark.parametrize("other, shared", [
    ("10.0.0.200", True),          # same /24
    ("10.0.1.1", False),           # next /24
    ("::ffff:10.0.0.9", True),     # IPv4-mapped counts as the IPv4 address
])
def test_ipv4_buckets_are_per_24(other, shared):
    limiter = RateLimiter(3, 0, clock=Clock())
    run(limiter, 3, ip="10.0.0.1")
    assert run(limiter, 1, ip=other) == ([DROP] if shared else [PASS])


@pytest.mark.parametrize("other, shared", [
    ("2001:db8:0:1::99", True),    # same /56 (2001:db8:0:00xx::)
    ("2001:db8:0:ff::1", True),
    ("2001:db8:0:100::1", False),  # next /56
    ("2001:db9::1", False),
])
def test_ipv6_buckets_are_per_56(other, shared):
    limiter = RateLimiter(3, 0, clock=Clock())
    run(limiter, 3, ip="2001:db8:0:2::1")
    assert run(limiter, 1, ip=other) == ([DROP] if shared else [PASS])


def test_name_and_type_have_their_own_buckets():
    limiter = RateLimiter(2, 0, clock=Clock())
    run(limiter, 2, qname=b"\x01a\x00", qtype=1)
    assert run(limiter, 1, qname=b"\x01a\x00", qtype=1) == [DROP]
    assert run(limiter, 1, qname=b"\x01a\x00", qtype=28) == [PASS]
    assert run(limiter, 1, qname=b"\x01b\x00", qtype=1) == [PASS]


def test_exempt_networks_are_never_limited():
    limiter = RateLimiter(1, 0, ["10.0.0.5/32", "2001:db8::/32"], clock=Clock())
    assert run(limiter, 50, ip="10.0.0.5") == [PASS] * 50
    assert run(limiter, 50, ip="2001:db8:1::1") == [PASS] * 50
    assert run(limiter, 3, ip="10.0.0.6") == [PASS, DROP, DROP]    # its /24 neighbour is not exempt


def test_table_size_is_bounded_and_live_buckets_survive_a_sweep():
    clock = Clock()
    limiter = RateLimiter(2, 0, clock=clock, max_entries=100)
    run(limiter, 2, ip="10.9.9.9")                    # an attacker's bucket, now empty
    for i in range(10_000):                           # a flood of distinct names within 1 s
        limiter.check("10.0.0.1", b"\x04n%03d\x00" % (i % 1000) + bytes([i // 1000]), 1)
        assert len(limiter) <= 100
    clock.now += 5                                    # everything idle: swept, not kept
    for i in range(200):
        limiter.check("10.0.0.2", b"\x01x\x00", i)
    assert len(limiter) <= 100


def test_client_network():
    assert client_network("192.0.2.77") == "192.0.2"
    assert client_network("2001:db8:aa:bbcc::1") == bytes.fromhex("20010db800aabb")
    assert client_network("::ffff:192.0.2.1") == "192.0.2"


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="slip"):
        RateLimiter(5, -1)


def test_slip_reply_is_header_and_question_with_tc():
    query = dns.message.make_query("HeLLo.svc.local", "A", use_edns=True)
    query.id = 4242
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    reply.answer.append(dns.rrset.from_text("hello.svc.local.", 30, "IN", "A", "10.0.0.1"))
    data = query.to_wire()
    qlen = len(b"\x05HeLLo\x03svc\x05local\x00") + 4
    out = dns.message.from_wire(slip_reply(reply.to_wire(), data, 12 + qlen))
    assert out.id == 4242 and out.flags & dns.flags.TC and out.flags & dns.flags.QR
    assert out.flags & dns.flags.AA and out.rcode() == dns.rcode.NOERROR
    assert not out.answer and not out.authority and not out.additional
    assert out.question[0].name.to_text() == "HeLLo.svc.local."


# ---------------------------------------------------------------- the Responder hook

class CountingMetrics:
    def __init__(self):
        self.rrl_actions = []

    def rrl(self, action):
        self.rrl_actions.append(action)

    def __getattr__(self, name):          # every other metrics call is ignored
        return lambda *a, **kw: None


SNAP = Snapshot.build("/skydns", [ZoneConfig("svc.local")], 3,
                      [("/skydns/local/svc/hello/a", b'{"host":"10.0.0.1","port":80}')])


@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_responder_limits_udp_only(cache):
    metrics = CountingMetrics()
    responder = Responder(SNAP, metrics=metrics)
    if cache == "warm":
        responder.handle(dns.message.make_query("hello.svc.local", "A").to_wire(), "udp", ("10.1.1.1", 9))
    responder.rrl = RateLimiter(3, 2, clock=Clock())
    query = dns.message.make_query("Hello.svc.local", "A")
    data = query.to_wire()
    outs = [responder.handle(data, "udp", ("10.0.0.1", 5353)) for _ in range(7)]
    full = [dns.message.from_wire(o) for o in outs[:3]]
    assert all(m.answer and not m.flags & dns.flags.TC for m in full)
    assert outs[3] is None and outs[5] is None
    for slipped in (outs[4], outs[6]):
        m = dns.message.from_wire(slipped)
        assert m.flags & dns.flags.TC and not m.answer and m.id == query.id
        assert m.question[0].name.to_text() == "Hello.svc.local."
    assert metrics.rrl_actions == ["drop", "slip", "drop", "slip"]
    tcp = [responder.handle(data, "tcp", ("10.0.0.1", 5353)) for _ in range(20)]
    assert all(dns.message.from_wire(o).answer for o in tcp)    # TCP is never limited


def test_responder_without_rrl_is_unchanged():
    responder = Responder(SNAP)
    data = dns.message.make_query("hello.svc.local", "A").to_wire()
    assert all(dns.message.from_wire(responder.handle(data, "udp", ("10.0.0.1", 1))).answer
               for _ in range(500))
