"""The mass-expiry guard against real etcd and serve (its pure rules: tests/unit/etcd/test_guard.py)."""
from __future__ import annotations

import json
import time

import dns.message
import dns.query
import dns.rcode


# ---------------------------------------------------------------- against real etcd and serve

def _a_count(port: int, name: str) -> int:
    reply = dns.query.tcp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)
    assert reply.rcode() == dns.rcode.NOERROR
    return sum(len(rrset) for rrset in reply.answer)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_mass_expiry_held_then_released_while_a_single_deletion_goes_at_once(etcd, kv, tmp_path):
    """Half of 200 instances' leases revoked within a second: still answered, and /readyz says
    so; after --hold-max they go. A single deletion before that went at once."""
    import urllib.request

    from tests.support.harness import ServeProcess, free_port

    prefix = "/gd"
    leases = []
    for i in range(200):
        lease = kv.grant(60) if i % 2 == 0 else None
        leases.append(lease)
        kv.put(f"{prefix}/local/svc/web/i{i:03d}", json.dumps({"host": f"10.7.{i // 250}.{i % 250}"}).encode(),
               lease=lease)
    kv.put(f"{prefix}/local/svc/lone/a", b'{"host":"10.8.0.1"}')
    http = free_port()
    with ServeProcess(etcd.endpoint, "--prefix", prefix, "--hold-max", "4", "--hold-window", "1", "--http", f"127.0.0.1:{http}") as serve:
        _wait(lambda: _a_count(serve.port, "web.svc.local") == 200, 20, "all 200 instances")
        kv.delete(f"{prefix}/local/svc/lone/a")
        _wait(lambda: dns.query.tcp(dns.message.make_query("lone.svc.local", "A"), "127.0.0.1", port=serve.port,
                                    timeout=3).rcode() == dns.rcode.NXDOMAIN, 5, "the single deletion")
        time.sleep(1.2)                   # past --hold-window: it no longer counts towards a mass expiry
        started = time.monotonic()
        for lease in leases:
            if lease is not None:
                kv.revoke(lease)
        assert time.monotonic() - started < 5
        time.sleep(1.0)
        assert _a_count(serve.port, "web.svc.local") == 200          # held
        assert "mass expiry" in serve.log()
        body = urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=3).read().decode()
        assert "holding 100 deleted record(s) of svc.local" in body
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=3).read().decode()
        assert "dnsdisco_held_records 100.0" in metrics
        _wait(lambda: _a_count(serve.port, "web.svc.local") == 100, 15, "the hold's release after --hold-max")
        assert "released" in serve.log()
