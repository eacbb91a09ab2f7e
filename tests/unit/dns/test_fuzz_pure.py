"""Issue 9: nothing a client sends can break Responder.handle (hypothesis, bounded to seconds).

Random bytes and mutations of valid queries never raise; every reply parses with dnspython;
the id and the question are echoed whenever the query itself parsed.
"""
from __future__ import annotations

import json

import dns.exception
import dns.message
import dns.rcode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.responder import Responder

ITEMS = [
    ("/skydns/local/svc/hello/a", {"host": "10.0.0.1", "port": 8080, "text": "t"}),
    ("/skydns/local/svc/hello/b", {"host": "fd00::2", "port": 8080, "mail": True}),
    ("/skydns/local/svc/web", {"host": "hello.svc.local"}),
    ("/skydns/local/svc/loop1", {"host": "loop2.svc.local"}),
    ("/skydns/local/svc/loop2", {"host": "loop1.svc.local"}),
    ("/skydns/local/svc/ext", {"host": "www.example.com", "port": 443}),
    ("/skydns/local/svc/dns/ns/ns1", {"host": "10.0.0.53"}),
    ("/skydns/local/svc/deep/_tcp/_http/i", {"host": "10.0.0.9", "port": 80}),
] + [(f"/skydns/local/svc/big/i{i}", {"host": f"10.1.{i // 200}.{i % 200 + 1}", "port": 80}) for i in range(80)]
SNAP = Snapshot.build("/skydns", [ZoneConfig("svc.local"), ZoneConfig("in-addr.arpa")], 9,
                      [(k, json.dumps(v).encode()) for k, v in ITEMS])
NAMES = ["hello.svc.local", "a.hello.svc.local", "HELLO.svc.LOCAL", "web.svc.local", "loop1.svc.local",
         "ext.svc.local", "svc.local", "_tcp.deep.svc.local", "big.svc.local", "nope.svc.local",
         "1.0.0.10.in-addr.arpa", "www.example.com", "."]
TYPES = [1, 28, 33, 16, 5, 15, 12, 6, 2, 255, 252, 251, 65, 0, 65535]


def seed_query(name, qtype, edns, qid, payload):
    q = dns.message.make_query(name, qtype, use_edns=edns, payload=payload)
    q.id = qid
    return q.to_wire()


def check(responder: Responder, data: bytes, transport: str) -> None:
    reply = responder.handle(data, transport, ("127.0.0.1", 5353))
    if len(data) < 12 or data[2] & 0x80:
        assert reply is None
        return
    assert type(reply) is bytes     # the documented contract, on every path (hit, miss, error)
    if transport == "udp":
        assert len(reply) <= 1232
    assert reply[2] & 0x80                                      # QR set
    # every reply is well-formed DNS; the opcode is cleared for the parse because dnspython
    # reads UPDATE messages (opcode 5) with RFC 2136 section rules
    plain = reply[:2] + bytes([reply[2] & 0x87]) + reply[3:]
    msg = dns.message.from_wire(plain, ignore_trailing=False)
    assert (reply[2] >> 3) & 0xF == (data[2] >> 3) & 0xF or msg.rcode() == dns.rcode.FORMERR   # opcode echoed
    assert msg.id == int.from_bytes(data[:2], "big")
    try:
        query = dns.message.from_wire(data[:2] + bytes([data[2] & 0x87]) + data[3:])
    except (dns.exception.DNSException, ValueError, UnicodeError, IndexError):
        return
    if len(query.question) == 1 and msg.rcode() != dns.rcode.FORMERR:
        assert msg.question[0].name.to_text() == query.question[0].name.to_text()   # case kept
        assert msg.question[0].rdtype == query.question[0].rdtype


RESPONDER = Responder(SNAP)      # one shared cache, so hits are fuzzed too

_valid = st.builds(seed_query, st.sampled_from(NAMES), st.sampled_from(TYPES), st.sampled_from([False, 0, 1]),
                   st.integers(0, 0xFFFF), st.integers(0, 65535))


@st.composite
def _mutated(draw):
    data = bytearray(draw(_valid))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if how == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif how == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            data[pos] = draw(st.integers(0, 255))
    return bytes(data)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.binary(max_size=80), st.sampled_from(["udp", "tcp"]))
def test_random_bytes(data, transport):
    check(RESPONDER, data, transport)


@SETTINGS
@given(_valid, st.sampled_from(["udp", "tcp"]))
def test_valid_queries(data, transport):
    check(RESPONDER, data, transport)


@SETTINGS
@given(_mutated(), st.sampled_from(["udp", "tcp"]))
def test_mutated_queries(data, transport):
    check(RESPONDER, data, transport)
    check(Responder(SNAP), data, transport)      # and on a cold cache
