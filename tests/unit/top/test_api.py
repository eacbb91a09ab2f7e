"""The Python API (dnsdisco.api): SRV ordering, nameservers from resolv.conf, resolve_srv
against a small DNS server on a real socket, and `import dnsdisco` staying light."""
from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import pytest

from dnsdisco.api import ResolveError, nameservers, order_srv, resolve_srv
from tests.support.harness import child_env


# ---------------------------------------------------------------- SRV order, nameservers

def test_order_srv_priority_first_then_weighted():
    rng = random.Random(7)
    firsts = Counter()
    for _ in range(2000):
        order = order_srv([(20, 100, "backup"), (10, 300, "big"), (10, 100, "small"), (10, 0, "zero")], rng)
        assert order[-1] == "backup" and sorted(order[:3]) == ["big", "small", "zero"]
        firsts[order[0]] += 1
    # weights 300:100:0 → "big" first about 3/4 of the time, "zero" almost never
    assert firsts["big"] > 2 * firsts["small"] > 0
    assert firsts["zero"] < 40


def test_nameservers_from_resolv_conf(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch svc.local\nnameserver 10.0.0.53\nnameserver ::1\noptions ndots:2\n")
    assert nameservers(str(conf)) == [("10.0.0.53", 53), ("::1", 53)]
    assert nameservers(str(tmp_path / "missing")) == [("127.0.0.1", 53)]


# ---------------------------------------------------------------- resolve_srv on a real socket

class _SrvServer:
    """A tiny dnslib server on 127.0.0.1 with fixed answers (UDP and TCP)."""

    def __init__(self, handler):
        from dnslib.server import BaseResolver, DNSServer

        class Resolver(BaseResolver):
            def resolve(self, request, _handler):
                return handler(request)

        for attempt in range(10):   # the UDP port's number may be taken for TCP: pick again
            self.udp = DNSServer(Resolver(), address="127.0.0.1", port=0)
            self.port = self.udp.server.server_address[1]
            try:
                self.tcp = DNSServer(Resolver(), address="127.0.0.1", port=self.port, tcp=True)
                break
            except OSError:
                self.udp.server.server_close()
                if attempt == 9:
                    raise
        self.udp.start_thread()
        self.tcp.start_thread()

    def close(self):
        self.udp.stop()
        self.tcp.stop()


def _srv_reply(request, n=2, with_additional=True):
    from dnslib import QTYPE, RR, SRV, A
    reply = request.reply()
    qname = str(request.q.qname)
    for i in range(n):
        target = f"i{i}.{qname}"
        reply.add_answer(RR(qname, QTYPE.SRV, rdata=SRV(10, 100, 8000 + i, target), ttl=5))
        if with_additional:
            reply.add_ar(RR(target, QTYPE.A, rdata=A(f"10.0.0.{i + 1}"), ttl=5))
    return reply


def test_resolve_srv_uses_additional_addresses():
    srv = _SrvServer(lambda req: _srv_reply(req))
    try:
        got = resolve_srv("hello.svc.local", nameserver=("127.0.0.1", srv.port))
        assert sorted(got) == [("10.0.0.1", 8000), ("10.0.0.2", 8001)]
    finally:
        srv.close()


def test_resolve_srv_target_name_without_additional_and_tcp_on_truncation():
    srv = _SrvServer(lambda req: _srv_reply(req, n=30, with_additional=False))
    try:  # 30 SRV records do not fit 512 octets: dnslib truncates, we retry over TCP
        got = resolve_srv("hello.svc.local", nameserver=f"127.0.0.1:{srv.port}")
        assert len(got) == 30
        assert ("i0.hello.svc.local", 8000) in got
    finally:
        srv.close()


def test_resolve_srv_nxdomain_is_empty_and_servfail_is_an_error():
    from dnslib import RCODE

    def nx(req):
        reply = req.reply()
        reply.header.rcode = RCODE.NXDOMAIN
        return reply

    def servfail(req):
        reply = req.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return reply

    a, b = _SrvServer(nx), _SrvServer(servfail)
    try:
        assert resolve_srv("nothing.svc.local", nameserver=("127.0.0.1", a.port)) == []
        with pytest.raises(ResolveError, match="SERVFAIL"):
            resolve_srv("hello.svc.local", nameserver=("127.0.0.1", b.port))
    finally:
        a.close()
        b.close()


def test_resolve_srv_timeout_is_an_error():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(ResolveError, match="no nameserver answered"):
            resolve_srv("hello.svc.local", nameserver=silent.getsockname(), timeout=0.3)


def test_package_import_stays_light():
    code = ("import sys, dnsdisco; dnsdisco.resolve_srv; "
            "print(any(m.startswith(('grpc', 'gevent', 'pyetcd')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "False", out.stderr
