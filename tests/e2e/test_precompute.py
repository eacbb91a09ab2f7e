"""serve --precompute-budget against a real etcd (issue 23, cold answers): after the first full
sync, serve packs the answers of every service and instance ahead in idle time; the metrics say
when it is done, a first query is then a cache hit, the bytes are those of a server that packs
nothing ahead, and a put made while it packs is served without waiting for it."""
from __future__ import annotations

import json
import socket
import urllib.request

import dns.flags
import dns.message
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsdisco.etcd.client import KV
from tests.support.etcdproc import free_port
from tests.support.harness import ServeProcess, addresses, wait_for

PREFIX = "/precompute"
SERVICES = 20_000                     # two instances each: 80,000 answers to pack
ANSWERS = SERVICES * (1 + 1 + 2)      # A and SRV of each service, A of each instance


def host(i: int, j: int) -> str:
    return f"10.{i // 250 % 256}.{i % 250}.{j + 1}"


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in /metrics")


def raw(port: int, name: str, rdtype: str, qid: int, rd: bool = True) -> bytes:
    """The reply bytes to a query without EDNS, as glibc (RD set) and dnsperf (RD clear) send it."""
    msg = dns.message.make_query(name, rdtype, use_edns=False)
    msg.id = qid
    if not rd:
        msg.flags &= ~dns.flags.RD
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(msg.to_wire(), ("127.0.0.1", port))
        return sock.recvfrom(65535)[0]


@pytest.fixture(scope="module")
def loaded(etcd):
    items = [(f"{PREFIX}/local/svc/s{i:05d}/i{j}",
              json.dumps({"host": host(i, j), "port": 8000 + j}))
             for i in range(SERVICES) for j in range(2)]
    with KV([etcd.endpoint], timeout=10.0) as kv:
        kv.put_many(items)
    return etcd


def serve(etcd, budget: str, http: int | None = None, **kw) -> ServeProcess:
    extra = ["--prefix", PREFIX, "--precompute-budget", budget, "--cache-size", "200000"]
    if http:
        extra += ["--http", f"127.0.0.1:{http}"]
    return ServeProcess(etcd.endpoint, *extra, **kw)


def done(http: int) -> bool:
    return metric(http, "dnsdisco_precompute_running") == 0 and metric(http, "dnsdisco_precomputed_answers") > 0


def test_packed_ahead_answers_are_cache_hits_and_the_same_bytes(loaded):
    http = free_port()
    with serve(loaded, "256", http) as warm, serve(loaded, "0") as cold:
        wait_for(lambda: done(http), 120, 0.2, f"the packing ahead to finish\n{warm.log()}")
        assert metric(http, "dnsdisco_precomputed_answers") == ANSWERS
        assert metric(http, "dnsdisco_cached_questions") >= ANSWERS
        assert 0 < metric(http, "dnsdisco_precomputed_bytes") <= 256 << 20
        assert "packed 80000 answers ahead" in warm.log()
        hits = metric(http, "dnsdisco_cache_hits_total")
        reply = raw(warm.port, "s12345.svc.local", "A", 7)           # never asked before
        assert metric(http, "dnsdisco_cache_hits_total") == hits + 1
        assert sorted(addresses(dns.message.from_wire(reply))) == [host(12345, 0), host(12345, 1)]
        samples = [(f"s{i:05d}.svc.local", t) for i in (0, 7, 19_999) for t in ("A", "SRV")]
        samples += [(f"i{j}.s{i:05d}.svc.local", "A") for i in (3, 15_000) for j in (0, 1)]
        for name, rdtype in samples:
            for turn in range(3):                                   # the rotation too
                rd = turn != 1
                assert raw(warm.port, name, rdtype, turn, rd) == raw(cold.port, name, rdtype, turn, rd), \
                    (name, rdtype, rd)


def test_a_put_while_packing_ahead_is_served_at_once(loaded):
    http = free_port()
    with serve(loaded, "256", http, wait=False) as srv:
        srv.wait_ready(60)
        wait_for(lambda: metric(http, "dnsdisco_precompute_running") == 1, 30, 0.01,
                 "the packing ahead to run")
        with KV([loaded.endpoint], timeout=5.0) as kv:
            kv.put(f"{PREFIX}/local/svc/late/a", json.dumps({"host": "10.200.0.1"}).encode())
            running_at_put = metric(http, "dnsdisco_precompute_running")
        reply = wait_for(lambda: addresses(srv.query("late.svc.local")) or None, 5, 0.005,
                         "the put to be served")
        assert reply == ["10.200.0.1"]
        assert running_at_put == 1, "the packing ahead ended before the put: the test saw nothing"
        wait_for(lambda: done(http), 120, 0.2, "the packing ahead to finish")
        assert srv.stop() == 0                  # a clean stop, also of the packing greenlet
