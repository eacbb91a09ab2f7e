"""The query path and snapshot changes make no cyclic garbage.

serve makes the collector's full passes rare (app._freezing): each walks every reply the cache
holds and, by this test, would find nothing to free there. Everything is reclaimed by reference
counting, so a cycle added to the responder, the caches or the snapshot fails here.
"""
from __future__ import annotations

import gc
import json
import struct

from dnsdisco.dns.responder import Responder
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig

CLIENT = ("127.0.0.1", 5353)


def _query(name: str, qtype: int = 1, *, rd: bool = True, edns: int | None = None, qid: int = 7) -> bytes:
    opt = b"" if edns is None else b"\x00" + struct.pack("!HHIH", 41, edns, 0, 0)
    return (struct.pack("!HHHHHH", qid, 0x0100 if rd else 0, 1, 0, 0, 0 if edns is None else 1)
            + b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
            + struct.pack("!HH", qtype, 1) + opt)


def _value(i: int, **more) -> bytes:
    return json.dumps({"host": f"10.3.{i // 250}.{i % 250 + 1}", "port": 80 + i % 3, **more}).encode()


def test_answering_and_changing_leave_no_cyclic_garbage():
    items = [(f"/skydns/local/svc/s{i}/i{j}", _value(i * 2 + j)) for i in range(300) for j in range(2)]
    items += [("/skydns/local/svc/w/x", _value(1, weight=5, text="t")), ("/skydns/local/svc/c", b'{"host": "s1.svc.local"}'),
              ("/skydns/local/svc/v6", b'{"host": "2001:db8::7"}'), ("/skydns/local/svc/bad", b"{not json")]
    snap = Snapshot.build("/skydns", (ZoneConfig("svc.local"),), 3, items)
    responder = Responder(snap, cache_size=256)     # small: entries are evicted and tables emptied too
    questions = []
    for i in range(300):
        name = f"s{i}.svc.local"
        questions += [_query(name), _query(name, 33), _query(f"i0.{name}", 28), _query(f"I1.{name.upper()}"),
                      _query(name, rd=False), _query(name, edns=1232), _query(f"nx{i}.svc.local"),
                      _query(f"{i % 250 + 1}.0.3.10.in-addr.arpa", 12)]
    questions += [_query("w.svc.local", 16), _query("c.svc.local"), _query("v6.svc.local", 28), b"\x00\x01junk"]
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for rounds in range(3):
            for at, packet in enumerate(questions):
                responder.handle(packet, "udp", CLIENT)
                responder.handle(packet, "tcp", CLIENT)
                if at % 40 == 0:                     # a put, then a delete, between the questions
                    i = at // 40
                    changed, touched, _ = responder.snapshot.apply(
                        responder.snapshot.revision + 1,
                        [(f"/skydns/local/svc/s{i}/i0", _value(i + 7) if rounds != 1 else None)])
                    responder.on_swap(changed, touched)
            responder.on_swap(responder.snapshot, None)   # a full sync: everything dropped
        assert gc.collect() == 0
    finally:
        if collecting:
            gc.enable()
