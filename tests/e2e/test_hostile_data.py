"""Hostile data in etcd (issue 9) through a real etcd and a real `dnsdisco serve`: an oversize
value and a name past the limits are skipped with one warning each, a name with too many
instances is capped with one warning and a metric. The pure Snapshot tables are
tests/unit/dns/test_hostile_data.py."""
from __future__ import annotations

import json
import urllib.request

import dns.rcode
import pytest

from tests.support.harness import ServeProcess, addresses, free_port, wait_for
from tests.support.values import value_of_size


# ---------------------------------------------------------------- a real etcd and server

CAP = 20


@pytest.fixture(scope="module")
def served(etcd):
    from dnsdisco.etcd.client import KV
    etcd.start()
    kv = KV([etcd.endpoint], timeout=5.0)
    base = "/hostile/local/svc/"
    kv.put(base + "good/a", b'{"host":"10.0.0.1","port":80}')
    kv.put(base + "huge/a", value_of_size(70_000))
    kv.put(base + "a" * 64 + "/x", b'{"host":"10.0.0.3"}')
    for i in range(CAP + 5):
        kv.put(f"{base}many/i{i:03d}", json.dumps({"host": f"10.1.0.{i + 1}"}).encode())
    http_port = free_port()
    with ServeProcess(etcd.endpoint, "--prefix", "/hostile", "--max-records-per-name", str(CAP),
                      "--http", f"127.0.0.1:{http_port}") as serve:
        wait_for(lambda: serve.query("good.svc.local").answer, 10, what="the good record")
        serve.kv = kv
        serve.base = base
        serve.http_port = http_port
        yield serve
    kv.close()


def metric(serve, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{serve.http_port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_serve_skips_oversize_value_with_one_warning(served):
    assert addresses(served.query("good.svc.local")) == ["10.0.0.1"]
    assert served.query("huge.svc.local").rcode() == dns.rcode.NXDOMAIN
    log = served.log()
    lines = [line for line in log.splitlines() if served.base + "huge/a" in line]
    assert len(lines) == 1 and "65536" in lines[0], log
    assert len([line for line in log.splitlines() if served.base + "a" * 64 in line]) == 1, log


def test_serve_caps_instances_with_one_warning_and_a_metric(served):
    reply = served.query("many.svc.local", tcp=True)
    assert addresses(reply) == sorted(f"10.1.0.{i + 1}" for i in range(CAP))
    # another instance under the capped name: still capped, no second warning
    served.kv.put(served.base + "many/zzz", b'{"host":"10.1.9.9"}')
    served.kv.put(served.base + "good/b", b'{"host":"10.0.0.2"}')
    wait_for(lambda: addresses(served.query("good.svc.local")) == ["10.0.0.1", "10.0.0.2"], 10,
             what="a later change to be served")
    assert len(addresses(served.query("many.svc.local", tcp=True))) == CAP
    warnings = [line for line in served.log().splitlines() if "many.svc.local has" in line]
    assert len(warnings) == 1 and "--max-records-per-name" in warnings[0], served.log()
    assert metric(served, "dnsdisco_capped_total") == 1.0
