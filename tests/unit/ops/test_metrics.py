"""Metrics, readiness and the HTTP endpoints (real sockets on 127.0.0.1, port 0)."""
from __future__ import annotations

import inspect
import types
import urllib.error
import urllib.request

import gevent
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsdisco.ops.http import readiness, start_http
from dnsdisco.ops.metrics import LATENCY_BUCKETS, Metrics, NullMetrics

A, AAAA, SRV, TXT = 1, 28, 33, 16
NOERROR, NXDOMAIN, REFUSED = 0, 3, 5


def samples(metrics: Metrics | bytes) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from the text format, via prometheus' own parser."""
    text = metrics if isinstance(metrics, bytes) else metrics.render()
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def q(qtype: str, rcode: str, transport: str = "udp") -> tuple:
    return ("dnsdisco_queries_total", tuple(sorted({"qtype": qtype, "rcode": rcode, "transport": transport}.items())))


# ---------------------------------------------------------------- Metrics

def test_query_counts_by_qtype_rcode_transport():
    m = Metrics()
    for _ in range(5):
        m.query(A, NOERROR, "udp", 0.0001, True)
    for _ in range(3):
        m.query(AAAA, NXDOMAIN, "udp", 0.002, False)
    m.query(SRV, NOERROR, "tcp", None, False)
    m.query(65000, REFUSED, "udp", None, False)   # unnamed qtype → other
    m.query(A, 4000, "udp", None, False)          # unnamed rcode → other
    got = samples(m)
    assert got[q("A", "NOERROR")] == 5
    assert got[q("AAAA", "NXDOMAIN")] == 3
    assert got[q("SRV", "NOERROR", "tcp")] == 1
    assert got[q("other", "REFUSED")] == 1
    assert got[q("A", "other")] == 1
    assert q("A", "NOERROR", "tcp") not in got   # no series for what never happened
    assert got["dnsdisco_cache_hits_total", ()] == 5
    assert got["dnsdisco_answer_seconds_count", ()] == 8
    assert got["dnsdisco_answer_seconds_sum", ()] == pytest.approx(5 * 0.0001 + 3 * 0.002)
    assert got["dnsdisco_answer_seconds_bucket", (("le", "0.0001"),)] == 5
    assert got["dnsdisco_answer_seconds_bucket", (("le", "0.0025"),)] == 8
    assert got["dnsdisco_answer_seconds_bucket", (("le", "+Inf"),)] == 8


def test_latency_on_a_bucket_bound_counts_in_that_bucket_and_beyond_the_last_in_inf():
    m = Metrics(process_metrics=False)
    m.query(A, NOERROR, "udp", LATENCY_BUCKETS[0], False)
    m.query(A, NOERROR, "udp", 100.0, False)
    got = samples(m)
    assert got["dnsdisco_answer_seconds_bucket", (("le", "5e-05"),)] == 1
    assert got["dnsdisco_answer_seconds_bucket", (("le", "2.5"),)] == 1
    assert got["dnsdisco_answer_seconds_bucket", (("le", "+Inf"),)] == 2


def test_many_unnamed_qtypes_share_one_series_and_do_not_grow_state():
    m = Metrics(process_metrics=False)
    for qtype in range(300, 2300):
        m.query(qtype, NOERROR, "udp", None, False)
    got = samples(m)
    assert got[q("other", "NOERROR")] == 2000
    assert sum(1 for name, _ in got if name == "dnsdisco_queries_total") == 1
    assert len(m._cells["udp"]) == 1


def test_other_events():
    m = Metrics(process_metrics=False)
    m.dropped("garbage"); m.dropped("garbage"); m.dropped("response")
    m.handler_error()
    m.bad_value("/skydns/local/svc/bad")
    m.records(42)
    m.watch(True, 1234)
    m.resync("compacted")
    m.tcp_connections(3); m.tcp_connections(-1)
    m.forwarded("9.9.9.9:53", True); m.forwarded("9.9.9.9:53", False)
    m.upstream_failure("9.9.9.9:53")
    m.rrl("drop"); m.rrl("slip")
    m.capped("value_bytes")
    got = samples(m)
    assert got["dnsdisco_dropped_total", (("reason", "garbage"),)] == 2
    assert got["dnsdisco_dropped_total", (("reason", "response"),)] == 1
    assert got["dnsdisco_handler_errors_total", ()] == 1
    assert got["dnsdisco_bad_values_total", ()] == 1
    assert got["dnsdisco_records", ()] == 42
    assert got["dnsdisco_etcd_watch_connected", ()] == 1
    assert got["dnsdisco_etcd_revision", ()] == 1234
    assert got["dnsdisco_resyncs_total", (("reason", "compacted"),)] == 1
    assert got["dnsdisco_tcp_connections", ()] == 2
    assert got["dnsdisco_forwarded_total", (("result", "ok"), ("upstream", "9.9.9.9:53"))] == 1
    assert got["dnsdisco_forwarded_total", (("result", "error"), ("upstream", "9.9.9.9:53"))] == 1
    assert got["dnsdisco_upstream_failures_total", (("upstream", "9.9.9.9:53"),)] == 1
    assert got["dnsdisco_rrl_total", (("action", "drop"),)] == 1
    assert got["dnsdisco_rrl_total", (("action", "slip"),)] == 1
    assert got["dnsdisco_capped_total", (("kind", "value_bytes"),)] == 1
    m.watch(False, 1240)
    got = samples(m)
    assert got["dnsdisco_etcd_watch_connected", ()] == 0
    assert got["dnsdisco_etcd_revision", ()] == 1240


def test_each_metrics_object_has_its_own_registry():
    a, b = Metrics(process_metrics=False), Metrics(process_metrics=False)
    a.query(A, NOERROR, "udp", None, False)
    assert q("A", "NOERROR") in samples(a)
    assert q("A", "NOERROR") not in samples(b)


def test_null_metrics_has_the_same_public_methods_and_signatures():
    def public(cls):
        return {name: inspect.signature(fn) for name, fn in inspect.getmembers(cls, inspect.isfunction)
                if not name.startswith("_")}
    assert public(Metrics) == public(NullMetrics)
    n = NullMetrics()
    n.query(A, NOERROR, "udp", 0.1, True)
    n.watch(True, 1)


# ---------------------------------------------------------------- readiness (pure)

@pytest.mark.parametrize("ready, connected, last_contact, now, max_stale, ok, words", [
    (False, False, None, 100.0, 30, False, "first full sync"),
    (False, True, 99.0, 100.0, 30, False, "first full sync"),
    (True, True, 0.0, 1000.0, 30, True, "ok"),              # connected: age of contact does not matter
    (True, False, 90.0, 100.0, 30, True, "within max-stale"),
    (True, False, 70.0, 100.0, 30, True, "within max-stale"),  # exactly at the limit: still ready
    (True, False, 69.0, 100.0, 30, False, "unreachable for 31s"),
    (True, False, 0.0, 100.0, 30, False, "longer than max-stale 30s"),
    (True, False, 99.5, 100.0, 0, False, "unreachable"),   # max-stale 0: any loss is unready
    (True, False, None, 100.0, 30, False, "unreachable"),
])
def test_readiness_table(ready, connected, last_contact, now, max_stale, ok, words):
    got_ok, reason = readiness(ready, connected, last_contact, now, max_stale)
    assert got_ok is ok
    assert words in reason
    assert "\n" not in reason
    if not ok and ready:
        assert "last snapshot" in reason  # says that answers continue


# ---------------------------------------------------------------- HTTP over a real socket

def http_get(port: int, path: str, method: str = "GET") -> tuple[int, bytes, str]:
    """GET from a real OS thread so the gevent hub in this thread keeps serving."""
    def fetch():
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return gevent.get_hub().threadpool.spawn(fetch).get(timeout=10)


@pytest.fixture
def served():
    metrics = Metrics()
    state = types.SimpleNamespace(ready=False, connected=False, last_contact=None)
    server = start_http(("127.0.0.1", 0), metrics, lambda: state, max_stale=30)
    yield server, metrics, state
    server.stop()


def test_port_zero_binds_and_reports_the_port(served):
    server, _, _ = served
    host, port = server.address
    assert host == "127.0.0.1" and port > 0 and server.port == port


def test_healthz(served):
    server, _, _ = served
    status, body, _ = http_get(server.port, "/healthz")
    assert (status, body) == (200, b"ok\n")


def test_readyz_follows_the_sync_state(served):
    import time
    server, _, state = served
    status, body, _ = http_get(server.port, "/readyz")
    assert status == 503 and b"first full sync" in body
    state.ready, state.connected, state.last_contact = True, True, time.monotonic()
    status, body, _ = http_get(server.port, "/readyz")
    assert (status, body) == (200, b"ok\n")
    state.connected = False                               # etcd just went away
    status, body, _ = http_get(server.port, "/readyz")
    assert status == 200 and b"within max-stale" in body
    state.last_contact = time.monotonic() - 31            # away longer than --max-stale 30
    status, body, _ = http_get(server.port, "/readyz")
    assert status == 503 and b"longer than max-stale 30s" in body
    state.connected, state.last_contact = True, time.monotonic()   # back
    assert http_get(server.port, "/readyz")[0] == 200


def test_readyz_is_503_when_the_state_cannot_be_read():
    def broken():
        raise RuntimeError("boom")
    server = start_http(("127.0.0.1", 0), NullMetrics(), broken, max_stale=30)
    try:
        status, body, _ = http_get(server.port, "/readyz")
        assert status == 503 and b"cannot be read" in body
        assert http_get(server.port, "/healthz")[0] == 200
    finally:
        server.stop()


def test_readyz_reads_an_event_by_is_set_not_by_truth():
    import threading
    import time
    state = types.SimpleNamespace(ready=threading.Event(), connected=True, last_contact=time.monotonic())
    server = start_http(("127.0.0.1", 0), NullMetrics(), lambda: state, max_stale=30)
    try:
        assert http_get(server.port, "/readyz")[0] == 503
        state.ready.set()
        assert http_get(server.port, "/readyz")[0] == 200
    finally:
        server.stop()


def test_metrics_endpoint_shows_the_queries_fed(served):
    server, metrics, _ = served
    for _ in range(7):
        metrics.query(A, NOERROR, "udp", 0.00003, True)
    metrics.query(TXT, NXDOMAIN, "tcp", 0.0004, False)
    status, body, content_type = http_get(server.port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    got = samples(body)
    assert got[q("A", "NOERROR")] == 7
    assert got[q("TXT", "NXDOMAIN", "tcp")] == 1
    assert got["dnsdisco_cache_hits_total", ()] == 7
    assert got["dnsdisco_answer_seconds_count", ()] == 8
    assert any(name == "process_resident_memory_bytes" for name, _ in got)


def test_unknown_path_and_method(served):
    server, _, _ = served
    assert http_get(server.port, "/nope")[0] == 404
    assert http_get(server.port, "/metrics", method="POST")[0] == 405
    assert http_get(server.port, "/healthz", method="HEAD")[0] == 200


def test_address_in_use_names_the_flag(served):
    server, _, _ = served
    with pytest.raises(OSError, match=r"--http 127\.0\.0\.1:\d+: cannot listen"):
        start_http(("127.0.0.1", server.port), NullMetrics(), lambda: None, max_stale=30)


SERVE_SCRIPT = r"""
from gevent import monkey; monkey.patch_all()
import sys, time, types, gevent
from dnsdisco.ops.http import start_http
from dnsdisco.ops.metrics import Metrics
metrics = Metrics()
for _ in range(11):
    metrics.query(1, 0, "udp", 0.00002, True)
state = types.SimpleNamespace(ready=False, connected=False, last_contact=None)
server = start_http(("127.0.0.1", 0), metrics, lambda: state, max_stale=0.5)
print(server.port, flush=True)
gevent.sleep(0.5)
state.ready, state.connected, state.last_contact = True, True, time.monotonic()
gevent.sleep(1.0)
state.connected = False          # etcd lost; max-stale 0.5 s passes
gevent.sleep(20)
"""


def test_endpoints_in_a_monkey_patched_process():
    """As `dnsdisco serve` runs them: gevent.monkey.patch_all() first, then start_http."""
    import os
    import subprocess
    import sys
    import time
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    proc = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT], stdout=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=root), text=True)
    try:
        port = int(proc.stdout.readline())

        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()

        def wait_for(path, status, deadline=10.0):
            end = time.monotonic() + deadline
            while True:
                got = get(path)
                if got[0] == status or time.monotonic() > end:
                    return got
                time.sleep(0.05)

        assert get("/healthz") == (200, b"ok\n")
        assert samples(get("/metrics")[1])[q("A", "NOERROR")] == 11
        assert wait_for("/readyz", 200)[0] == 200
        status, body = wait_for("/readyz", 503)
        assert status == 503 and b"longer than max-stale 0.5s" in body
    finally:
        proc.kill()
        proc.wait(timeout=10)
