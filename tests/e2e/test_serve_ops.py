"""Issue 7 end to end: /metrics, /healthz, /readyz and JSON logs of a real `dnsdisco serve`."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import dns.rcode
from prometheus_client.parser import text_string_to_metric_families

from tests.support.etcdproc import EtcdProcess, free_port
from tests.support.harness import ServeProcess, wait_for

PREFIX = "/ops"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str, name: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_count_the_queries_sent_by_type_and_rcode(etcd):
    etcd.etcdctl("put", f"{PREFIX}/local/svc/hello/a", json.dumps({"host": "10.0.0.1", "port": 80}))
    http = free_port()
    with ServeProcess(etcd.endpoint, "--prefix", PREFIX, "--http", f"127.0.0.1:{http}") as srv:
        for _ in range(7):
            assert srv.query("hello.svc.local", "A").rcode() == dns.rcode.NOERROR
        for _ in range(3):
            assert srv.query("hello.svc.local", "SRV").rcode() == dns.rcode.NOERROR
        for _ in range(5):
            assert srv.query("missing.svc.local", "A").rcode() == dns.rcode.NXDOMAIN
        srv.query("hello.svc.local", "A", tcp=True)
        status, text = get(http, "/metrics")
        assert status == 200
        queries = samples(text, "dnsdisco_queries_total")

        def count(qtype, rcode, transport="udp"):
            return queries.get((("qtype", qtype), ("rcode", rcode), ("transport", transport)), 0)

        # the harness's readiness probe asked SOA too; only our own queries are counted here
        assert count("A", "NOERROR") == 7
        assert count("SRV", "NOERROR") == 3
        assert count("A", "NXDOMAIN") == 5
        assert count("A", "NOERROR", "tcp") == 1
        assert samples(text, "dnsdisco_records") == {(): 1.0}
        assert samples(text, "dnsdisco_etcd_watch_connected") == {(): 1.0}
        hits = sum(samples(text, "dnsdisco_cache_hits_total").values())
        assert hits >= 7 + 3 + 5 - 3          # everything but the first of each question
        assert get(http, "/healthz")[0] == 200


def test_cache_size_caps_the_cached_questions(etcd):
    """--cache-size bounds the packed-reply cache (and with it the memory): 1,200 distinct
    questions through a 1,000-question cache leave at most 1,000, and answers stay right."""
    etcd.etcdctl("put", f"{PREFIX}/local/svc/capped/a", json.dumps({"host": "10.0.0.9"}))
    http = free_port()
    with ServeProcess(etcd.endpoint, "--prefix", PREFIX, "--http", f"127.0.0.1:{http}",
                      "--cache-size", "1000") as srv:
        for i in range(1200):
            assert srv.query(f"nx{i}.svc.local", "A").rcode() == dns.rcode.NXDOMAIN
        cached = samples(get(http, "/metrics")[1], "dnsdisco_cached_questions")[()]
        assert 1000 * 7 // 8 <= cached <= 1000
        assert srv.query("nx0.svc.local", "A").rcode() == dns.rcode.NXDOMAIN      # evicted, asked again
        assert [rd.to_text() for rr in srv.query("capped.svc.local", "A").answer for rd in rr] == ["10.0.0.9"]


def test_readyz_follows_the_first_sync_and_etcd_staleness(tmp_path):
    etcd = EtcdProcess("ready")            # not started yet: serve comes up without etcd
    http = free_port()
    srv = ServeProcess(etcd.endpoint, "--prefix", PREFIX, "--http", f"127.0.0.1:{http}", "--max-stale", "1",
                       "--log-format", "json", wait=False)
    srv.start()
    try:
        def readyz():
            try:
                return get(http, "/readyz")
            except OSError:              # a slow reply under load: asked again by the wait
                return None

        def ready():
            reply = readyz()
            return reply is not None and reply[0] == 200
        status, body = wait_for(readyz, 15, what="/readyz to listen")
        assert status == 503 and "first full sync" in body
        assert srv.query("hello.svc.local").rcode() == dns.rcode.SERVFAIL   # no false NXDOMAIN
        etcd.start()
        etcd.etcdctl("put", f"{PREFIX}/local/svc/hello/a", json.dumps({"host": "10.0.0.1"}))
        wait_for(ready, 15, what="/readyz 200 after the first sync")
        # The first listing may have run before the put landed; the watch then brings it.
        wait_for(lambda: srv.query("hello.svc.local").answer, 15, what="hello served before etcd stops")
        etcd.stop()
        def stale():
            reply = readyz()
            return reply if reply and reply[0] == 503 else None
        status, body = wait_for(stale, 15, what="/readyz 503 past --max-stale")
        assert "unreachable" in body and "max-stale" in body
        assert srv.query("hello.svc.local").answer                  # still answering from memory
        etcd.start()
        wait_for(ready, 20, what="/readyz 200 again")
    finally:
        srv.stop()
        etcd.cleanup()
    lines = [line for line in srv.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]              # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert any("lost etcd" in r["msg"] for r in records)
    assert sum("lost etcd" in r["msg"] for r in records) == 1     # logged once, not once a query
