"""Responder.provisional: while serve answers from a snapshot saved at its last stop
(etcd/saved.py), positive answers are given as the snapshot holds them and every answer that
says a name or record is not there is SERVFAIL (it may have been registered since); nothing
is cached. Once the listing is built (provisional off) the same questions get their usual
answers and are cached again."""
from __future__ import annotations

import json
import struct

import pytest

from dnsdisco.dns.constants import (NOERROR, NXDOMAIN, REFUSED, SERVFAIL, T_A, T_AAAA, T_MX, T_PTR, T_SOA, T_SRV,
                                    T_TXT)
from dnsdisco.dns.responder import Responder
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.dns.wire import encode_name

PREFIX = "/skydns"
CLIENT = ("127.0.0.1", 5353)


def snapshot() -> Snapshot:
    items = [(f"{PREFIX}/local/svc/web/i{i}", json.dumps({"host": f"10.0.0.{i + 1}", "port": 80}).encode())
             for i in range(2)]
    items.append((f"{PREFIX}/local/svc/text", json.dumps({"text": "hi"}).encode()))
    return Snapshot.build(PREFIX, [ZoneConfig("svc.local")], 10, items)


def ask(responder: Responder, name: str, qtype: int, *, edns: bool = False, rd: bool = True, tcp: bool = False):
    header = struct.pack("!HHHHHH", 0x1234, 0x0100 if rd else 0, 1, 0, 0, 1 if edns else 0)
    data = header + encode_name(name) + struct.pack("!HH", qtype, 1)
    if edns:
        data += b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    reply = responder.handle(data, "tcp" if tcp else "udp", CLIENT)
    return reply[3] & 0xF, struct.unpack("!H", reply[6:8])[0], reply


CASES = [
    # name, qtype, usual rcode, whether it has an answer: a saved snapshot keeps the positives
    ("web.svc.local", T_A, NOERROR, True),
    ("i0.web.svc.local", T_A, NOERROR, True),
    ("web.svc.local", T_SRV, NOERROR, True),
    ("text.svc.local", T_TXT, NOERROR, True),
    ("svc.local", T_SOA, NOERROR, True),
    ("1.0.0.10.in-addr.arpa", T_PTR, NOERROR, True),
    ("new.svc.local", T_A, NXDOMAIN, False),             # registered since, maybe
    ("i0.web.svc.local", T_AAAA, NOERROR, False),         # NODATA
    ("web.svc.local", T_MX, NOERROR, False),
    ("9.9.0.10.in-addr.arpa", T_PTR, REFUSED, False),     # an address a record may hold by now
    ("example.org", T_A, REFUSED, False),                 # not ours either way
]


@pytest.mark.parametrize("name, qtype, usual, answered", CASES)
@pytest.mark.parametrize("spelling", [{}, {"edns": True}, {"rd": False}, {"tcp": True}])
def test_a_saved_snapshot_answers_its_positives_and_never_a_negative(name, qtype, usual, answered, spelling):
    responder = Responder(snapshot())
    responder.provisional = True
    for _ in range(3):                                    # a repeat is not served from a cache
        rcode, ancount, _reply = ask(responder, name, qtype, **spelling)
        if answered:
            assert (rcode, ancount > 0) == (NOERROR, True)
        elif usual == REFUSED and qtype != T_PTR:
            assert rcode == REFUSED                       # outside our zones: the same answer
        else:
            assert rcode == SERVFAIL
    assert not responder.cache.entries and not responder.cache.exact["udp"] and not responder.cache.exact["tcp"]
    responder.provisional = False                         # the listing is built
    rcode, ancount, _reply = ask(responder, name, qtype, **spelling)
    assert (rcode, ancount > 0) == (usual, answered)


def test_the_usual_first_answer_ways_are_not_taken_while_provisional(monkeypatch):
    responder = Responder(snapshot())
    responder.provisional = True
    taken = []
    monkeypatch.setattr(Responder, "_plain_first", lambda self, *a: taken.append("lane"))
    monkeypatch.setattr(Responder, "_packed_first", lambda self, *a: taken.append("packed"))
    assert ask(responder, "web.svc.local", T_A)[:2] == (NOERROR, 2)
    assert ask(responder, "web.svc.local", T_A, edns=True)[:2] == (NOERROR, 2)
    assert taken == []
    assert responder.prepare(encode_name("web.svc.local"), T_A) is None      # nor packed ahead


def test_a_truncated_reply_is_not_taken_for_a_negative_one():
    from dnsdisco.dns.responder import _unsure
    header = struct.pack("!HHHHHH", 1, 0x8300, 1, 0, 0, 0)     # QR, TC, RD; NOERROR, no answer
    assert not _unsure(header, T_A)
    assert _unsure(struct.pack("!HHHHHH", 1, 0x8100, 1, 0, 0, 0), T_A)
    assert _unsure(struct.pack("!HHHHHH", 1, 0x8103, 1, 0, 0, 0), T_A)
    assert not _unsure(struct.pack("!HHHHHH", 1, 0x8100, 1, 1, 0, 0), T_A)
    assert _unsure(struct.pack("!HHHHHH", 1, 0x8105, 1, 0, 0, 0), T_PTR)
    assert not _unsure(struct.pack("!HHHHHH", 1, 0x8105, 1, 0, 0, 0), T_A)
