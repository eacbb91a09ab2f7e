"""DNS queries built with dnslib, as a client would send them (tests/unit/net/test_forwarder.py,
tests/e2e/test_forward.py)."""
from __future__ import annotations

from dnslib import EDNS0, DNSRecord


def query(name: str, qtype: str = "A", *, qid: int = 4321, edns: int | None = None, do: bool = False,
          rd: bool = True, options=()) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    q.header.rd = int(rd)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns, flags="do" if do else "", opts=list(options)))
    return q.pack()
