"""Response rate limiting (issue 9) in a real `dnsdisco serve --rrl-rate 50` under a
2,000-query UDP flood. The pure RateLimiter tables and the Responder hook are
tests/unit/net/test_rrl.py."""
from __future__ import annotations

import json
import selectors
import socket
import time
import urllib.request

import dns.flags
import dns.message
import dns.rcode
import pytest

from tests.support.harness import ServeProcess, free_port, wait_for


# ---------------------------------------------------------------- a real server

FLOOD = 2000
RATE = 50
ATTACKER, BYSTANDER = "127.0.1.5", "127.0.2.5"


@pytest.fixture(scope="module")
def rrl_server(etcd):
    etcd.start()
    etcd.etcdctl("put", "/rrl/local/svc/hello/a", json.dumps({"host": "10.0.0.7", "port": 80}))
    http_port = free_port()
    with ServeProcess(etcd.endpoint, "--prefix", "/rrl", "--rrl-rate", str(RATE), "--rrl-slip", "2",
                      "--http", f"127.0.0.1:{http_port}") as serve:
        wait_for(lambda: serve.query("hello.svc.local").answer, 10, what="the record to be served")
        serve.http_port = http_port
        yield serve


def udp_client(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    return sock


def test_flood_is_limited_while_other_networks_are_answered(rrl_server):
    port = rrl_server.port
    attacker = udp_client(ATTACKER)
    attacker.setblocking(False)
    bystander = udp_client(BYSTANDER)
    bystander.settimeout(2.0)
    query = dns.message.make_query("hello.svc.local", "A")
    flood = query.to_wire()
    full = slipped = 0
    bystander_ok = 0
    sel = selectors.DefaultSelector()
    sel.register(attacker, selectors.EVENT_READ)

    def drain(wait: float) -> None:
        nonlocal full, slipped
        for _key, _ev in sel.select(wait):
            while True:
                try:
                    data = attacker.recv(4096)
                except BlockingIOError:
                    break
                msg = dns.message.from_wire(data)
                if msg.flags & dns.flags.TC:
                    assert not msg.answer
                    slipped += 1
                else:
                    assert msg.answer and msg.rcode() == dns.rcode.NOERROR
                    full += 1

    started = time.monotonic()
    deadline = started + 20
    for i in range(FLOOD):
        assert time.monotonic() < deadline, "the flood loop took too long"
        attacker.sendto(flood, ("127.0.0.1", port))
        drain(0)
        if i % 100 == 50:           # another network keeps getting normal answers
            q = dns.message.make_query("hello.svc.local", "A")
            bystander.sendto(q.to_wire(), ("127.0.0.1", port))
            reply = dns.message.from_wire(bystander.recv(4096))
            assert reply.id == q.id and not reply.flags & dns.flags.TC
            assert [rd.to_text() for rr in reply.answer for rd in rr] == ["10.0.0.7"]
            bystander_ok += 1
    flood_seconds = time.monotonic() - started
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        drain(0.1)
    print(f"\nflood of {FLOOD} in {flood_seconds:.2f} s: {full} full answers, {slipped} slips (TC)")
    assert bystander_ok == FLOOD // 100
    # the bucket holds one second's worth and refills at RATE per second
    assert 1 <= full <= RATE * (flood_seconds + 1.0) + 5, (full, flood_seconds)
    assert slipped >= (FLOOD - full) // 2 * 0.5, (slipped, full)     # about every second one
    # TCP from the flooding address is answered in full
    tcp = rrl_server.query("hello.svc.local", tcp=True)
    assert [rd.to_text() for rr in tcp.answer for rd in rr] == ["10.0.0.7"]
    with urllib.request.urlopen(f"http://127.0.0.1:{rrl_server.http_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    counts = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith("dnsdisco_rrl_total{")}
    assert counts.get('action="slip"', 0) >= slipped
    assert counts.get('action="drop"', 0) >= 1
