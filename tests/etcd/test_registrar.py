"""The registrar against a real etcd (lease life cycle, re-grant, health gating), its pure
helpers, the register command's argument checks, and resolve_srv against a real DNS socket."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from dnsdisco.register import registrar as reg
from dnsdisco.api import ResolveError, nameservers, order_srv, resolve_srv
from tests.support.harness import child_env, dnsdisco_cmd, wait_for


# ---------------------------------------------------------------- pure helpers

def test_record_value_has_only_the_fields_that_are_set():
    assert json.loads(reg.record_value("10.0.0.7", 8080)) == {"host": "10.0.0.7", "port": 8080}
    assert json.loads(reg.record_value("10.0.0.7", 0)) == {"host": "10.0.0.7"}
    assert json.loads(reg.record_value("10.0.0.7", 80, priority=0, weight=5, text="v=1")) == {
        "host": "10.0.0.7", "port": 80, "priority": 0, "weight": 5, "text": "v=1"}


@pytest.mark.parametrize("text, label", [
    ("Web1-8080", "web1-8080"), ("my_host.example.com-80", "my-host-example-com-80"),
    ("--x--", "x"), ("", "instance"), ("a" * 100, "a" * 63), ("ü-1", "1"),
])
def test_sanitize_label(text, label):
    assert reg.sanitize_label(text) == label


def test_default_id_is_stable_and_a_label():
    assert reg.default_id(8080, "Web1.example.com") == "web1-8080"
    assert reg.default_id(8080) == reg.default_id(8080)


@pytest.mark.parametrize("bad", ["a.b", "-a", "x" * 64, "a b", ""])
def test_check_id_rejects_non_labels(bad):
    with pytest.raises(ValueError, match="not a DNS label"):
        reg.check_id(bad)


def test_lease_ttl_minimum():
    assert reg.lease_ttl("2") == 2
    with pytest.raises(ValueError, match="minimum lease TTL"):
        reg.lease_ttl("1")


def test_check_host_accepts_addresses_and_names():
    assert reg.check_host("10.0.0.7") == "10.0.0.7"
    assert reg.check_host("FD00::0007") == "fd00::7"
    assert reg.check_host("Web.Example.") == "web.example"
    with pytest.raises(ValueError):
        reg.check_host("not an address")


def test_backoff_doubles_up_to_its_cap():
    b = reg.Backoff(0.2, 1.0)
    assert [b.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next() == 0.2


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


def test_command_check_passes_fails_and_times_out(tmp_path):
    flag = tmp_path / "up"
    check = reg.CommandCheck(f"test -e {flag}", timeout=2)
    assert check()[0] is False
    flag.touch()
    assert check()[0] is True
    ok, detail = reg.CommandCheck("sleep 30", timeout=0.3)()
    assert not ok and "no exit" in detail


def test_http_check(tmp_path):
    import http.server
    codes = {"/ok": 200, "/bad": 503}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(codes.get(self.path, 404))
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        assert reg.HttpCheck(base + "/ok", 2)()[0] is True
        ok, detail = reg.HttpCheck(base + "/bad", 2)()
        assert not ok and "503" in detail
    finally:
        srv.shutdown()
        srv.server_close()
    ok, detail = reg.HttpCheck(base + "/ok", 1)()
    assert not ok


# ---------------------------------------------------------------- the loop against a real etcd

def _value(kv, key):
    return kv.get(key)


def _leases(etcd) -> list[str]:
    return etcd.etcdctl("lease", "list").split()[3:]


def test_register_refresh_and_revoke(kv, prefix):
    key = prefix + "hello/a"
    value = reg.record_value("10.0.0.7", 8080)
    r = reg.Registrar(kv, key, value, ttl=2).start()
    try:
        assert r.registered.wait(5)
        assert _value(kv, key) == value
        lease = r.lease
        # the lease outlives several TTLs because it is refreshed
        time.sleep(3)
        assert _value(kv, key) == value and r.lease == lease and r.grants == 1
    finally:
        r.stop(5)
    assert _value(kv, key) is None            # revoked: gone at once, not after the TTL
    assert kv.refresh(lease) == 0


def test_revoked_lease_is_replaced(etcd, kv, prefix):
    key = prefix + "hello/b"
    r = reg.Registrar(kv, key, b'{"host":"10.0.0.8"}', ttl=3).start()
    try:
        assert r.registered.wait(5)
        old = r.lease
        etcd.etcdctl("lease", "revoke", f"{old:x}")
        wait_for(lambda: r.lease != old and _value(kv, key) is not None, 5, what="a new lease and the record")
        assert r.grants == 2
    finally:
        r.stop(5)


def test_key_deleted_behind_its_back_is_written_again(etcd, kv, prefix):
    key = prefix + "hello/c"
    r = reg.Registrar(kv, key, b'{"host":"10.0.0.9"}', ttl=3).start()
    try:
        assert r.registered.wait(5)
        etcd.etcdctl("del", key)
        wait_for(lambda: _value(kv, key) is not None, 5, what="the record written again")
        assert r.grants == 1
    finally:
        r.stop(5)


def test_health_gating_deletes_and_rewrites(kv, prefix):
    key = prefix + "hello/d"
    state = {"ok": False}
    r = reg.Registrar(kv, key, b'{"host":"10.0.0.10"}', ttl=3,
                      check=lambda: (state["ok"], "flag"), check_interval=0.1).start()
    try:
        time.sleep(0.5)
        assert _value(kv, key) is None        # never written while failing
        state["ok"] = True
        wait_for(lambda: _value(kv, key) is not None, 3, what="registered once healthy")
        state["ok"] = False
        wait_for(lambda: _value(kv, key) is None, 3, what="removed when the check fails")
        lease = r.lease
        assert kv.refresh(lease) > 0         # the lease is kept, so coming back is one put
        state["ok"] = True
        wait_for(lambda: _value(kv, key) is not None, 3, what="registered again")
    finally:
        r.stop(5)
    assert _value(kv, key) is None


def test_survives_etcd_down_and_restart(etcd, kv, prefix):
    key = prefix + "hello/e"
    r = reg.Registrar(kv, key, b'{"host":"10.0.0.11"}', ttl=2).start()
    try:
        assert r.registered.wait(5)
        etcd.stop()
        time.sleep(2.5)                      # longer than the TTL: refreshes fail meanwhile
        etcd.start()
        wait_for(lambda: _value(kv, key) is not None and r.registered.is_set(), 10,
                 what="the record after etcd came back")
        # and it keeps being refreshed afterwards
        time.sleep(2.5)
        assert _value(kv, key) is not None
    finally:
        r.stop(5)
    assert _value(kv, key) is None


def test_stop_while_etcd_is_down_returns(etcd, kv, prefix):
    key = prefix + "hello/f"
    r = reg.Registrar(kv, key, b'{"host":"10.0.0.12"}', ttl=2).start()
    try:
        assert r.registered.wait(5)
        etcd.kill()
        t0 = time.monotonic()
        r.stop(15)
        assert not r.group.running
        assert time.monotonic() - t0 < 10    # bounded by the KV timeout, not stuck
    finally:
        etcd.start()


def test_put_many_and_lease_keys(kv, prefix):
    """The two KV calls a shared lease needs: many puts in few transactions, and the keys a
    lease holds (None once it is gone)."""
    lease = kv.grant(5)
    items = [(f"{prefix}k{i:03d}", f'{{"host":"10.0.1.{i % 250 + 1}"}}'.encode()) for i in range(250)]
    kv.put_many(items, lease=lease, batch=100)            # three transactions
    assert kv.lease_keys(lease) == {k for k, _ in items}
    assert kv.get(items[249][0]) == items[249][1]
    kv.delete(items[0][0])
    assert items[0][0] not in kv.lease_keys(lease)
    kv.revoke(lease)
    assert kv.lease_keys(lease) is None and kv.get(items[1][0]) is None


def test_group_writes_one_key_per_request_when_etcd_allows_few_txn_ops(prefix):
    """An etcd run with --max-txn-ops below our batch of puts: the group notices and goes on."""
    from tests.support.etcdproc import EtcdProcess
    from dnsdisco.etcd.client import KV
    small = EtcdProcess("smalltxn", extra_args=["--max-txn-ops", "8"]).start()
    client = KV([small.endpoint], timeout=3.0)
    group = reg.LeaseGroup(client, 3)
    keys = [f"{prefix}i{i}" for i in range(20)]
    try:
        rs = [reg.Registrar(None, k, b'{"host":"10.0.0.1"}', group=group).start() for k in keys]
        wait_for(lambda: all(r.registered.is_set() for r in rs), 10, what="all registered")
        small.etcdctl("lease", "revoke", f"{group.lease:x}")   # all 20 to write again at once
        wait_for(lambda: all(client.get(k) is not None for k in keys), 10, what="all 20 keys")
        assert group.PUT_BATCH == 1
    finally:
        group.close(5)
        client.close()
        small.cleanup()


def test_shared_group_one_lease_regranted_and_every_key_written_again(etcd, kv, prefix):
    """Fifty registrars on one LeaseGroup: one lease; revoked behind their backs, a new one is
    granted and every key written again; a key deleted alone is found by one lease query."""
    group = reg.LeaseGroup(kv, 3)
    keys = [f"{prefix}svc/i{i}" for i in range(50)]
    rs = [reg.Registrar(None, k, b'{"host":"10.0.0.1"}', group=group).start() for k in keys]
    present = lambda: sum(1 for k in keys if kv.get(k) is not None)  # noqa: E731
    try:
        wait_for(lambda: all(r.registered.is_set() for r in rs), 5, what="all registered")
        assert present() == 50 and group.grants == 1
        old = group.lease
        etcd.etcdctl("lease", "revoke", f"{old:x}")
        wait_for(lambda: group.lease != old and present() == 50, 5, what="a new lease and every key")
        assert group.grants == 2
        etcd.etcdctl("del", keys[7])
        wait_for(lambda: kv.get(keys[7]) is not None, 5, what="the deleted key written again")
        rs[3].stop(5)                                  # one leaves: its key goes, the others stay
        assert kv.get(keys[3]) is None and present() == 49 and kv.refresh(group.lease) > 0
        last = group.lease
    finally:
        for r in rs:
            r.stop(5)
        group.close(5)
    assert present() == 0 and kv.refresh(last) == 0    # closing the group revoked its lease


# ---------------------------------------------------------------- command line errors

@pytest.mark.parametrize("args, message", [
    (["hello.svc.local"], "--port is required"),
    (["hello.svc.local", "--port", "70000"], "--port: port 70000 is outside 0..65535"),
    (["hello.svc.local", "--port", "80", "--ttl", "1"], "etcd's minimum lease TTL"),
    (["hello..svc.local", "--port", "80"], "empty label"),
    (["hello", "--port", "80"], "full service name"),
    (["hello.svc.local", "--port", "80", "--id", "a.b"], "not a DNS label"),
    (["hello.svc.local", "--port", "80", "--check-http", "localhost:80"], "not an http"),
    (["hello.svc.local", "--port", "80", "--address", "10.0.0.1/24"], "neither an address nor a host name"),
])
def test_usage_errors_are_one_clear_line(args, message):
    out = subprocess.run(dnsdisco_cmd("register", *args, "--etcd", "http://127.0.0.1:9"), env=child_env(),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_wrapped_command_that_does_not_exist():
    out = subprocess.run(dnsdisco_cmd("register", "hello.svc.local", "--port", "80", "--address", "127.0.0.1",
                                      "--etcd", "http://127.0.0.1:9", "--", "/nonexistent/cmd"),
                         env=child_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 127 and "cannot run '/nonexistent/cmd'" in out.stderr


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


def test_same_key_twice_in_one_process_is_refused_and_can_come_back(etcd, prefix):
    import dnsdisco
    name = "twice.svc.local"
    a = dnsdisco.Registration(name, port=80, address="127.0.0.1", ttl=3, etcd=etcd.endpoint, id="same").start()
    try:
        with pytest.raises(ValueError, match="already registered by this process"):
            dnsdisco.Registration(name, port=80, address="127.0.0.1", ttl=3, etcd=etcd.endpoint, id="same").start()
        assert a.registered
    finally:
        a.stop()
    b = dnsdisco.Registration(name, port=80, address="127.0.0.1", ttl=3, etcd=etcd.endpoint, id="same").start()
    try:
        assert b.registered
    finally:
        b.stop()
    # the last one out ended the shared lease thread
    wait_for(lambda: not any(t.name == "dnsdisco-lease" for t in threading.enumerate()), 5,
             what="the lease thread to end")
