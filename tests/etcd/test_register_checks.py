"""Health checks of `register` and the Python API (issue 21): TCP connect and grpc.health.v1
against real listeners, rise/fall thresholds, several checks that must all pass."""
from __future__ import annotations

import socket
import threading
from concurrent import futures

import pytest

from dnsdisco.register import registrar as reg

grpc = pytest.importorskip("grpc")
health_mod = pytest.importorskip("grpc_health.v1.health", reason="grpcio-health-checking (the test extra)")
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402


# ---------------------------------------------------------------- pure parts

def test_thresholds_count_rise_and_fall():
    t = reg.Thresholds(rise=2, fall=3)
    assert not t.healthy
    assert [t.feed(x) for x in (True, False, True, True)] == [False, False, False, True]   # 2 in a row
    assert t.healthy
    # a flaky probe, then two: never three in a row, so it stays
    assert [t.feed(x) for x in (False, True, False, False, True)] == [False] * 5 and t.healthy
    assert [t.feed(x) for x in (False, False, False)] == [False, False, True] and not t.healthy
    with pytest.raises(ValueError):
        reg.Thresholds(0, 1)


def test_default_thresholds_survive_one_flaky_probe():
    t = reg.Thresholds()
    assert t.feed(True) and t.healthy          # registered at the first pass
    assert not t.feed(False) and t.healthy     # one failure removes nothing
    assert not t.feed(True)
    assert not t.feed(False) and t.feed(False) and not t.healthy


@pytest.mark.parametrize("service", ["", "hello", "x" * 200, "ü"])
def test_health_messages_match_the_generated_protobuf(service):
    assert reg.health_request(service) == health_pb2.HealthCheckRequest(service=service).SerializeToString()
    for status in (0, 1, 2, 3):
        data = health_pb2.HealthCheckResponse(status=status).SerializeToString()
        assert reg.health_status(data) == status
    with pytest.raises(ValueError):
        reg.health_status(b"\x08")   # a truncated varint


def test_retry_pause_is_a_small_fraction_of_the_lease():
    assert reg.retry_cap(10) == 1.0 and reg.retry_cap(5) == 0.5 and reg.retry_cap(2) == 0.2
    group = reg.LeaseGroup(None, 10, backoff_cap=30)
    delays = [group._backoff.next() for _ in range(20)]
    assert max(delays) <= 1.0


def test_default_dns_ttl_is_half_the_lease():
    assert [reg.default_dns_ttl(t) for t in (2, 3, 10, 11, 60)] == [1, 1, 5, 5, 30]


# ---------------------------------------------------------------- TCP

def test_tcp_check_against_a_real_listener():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    check = reg.TcpCheck(f"127.0.0.1:{port}", timeout=2)
    ok, detail = check()
    assert ok and "connected" in detail
    listener.close()
    ok, detail = check()
    assert not ok and f"127.0.0.1:{port}" in detail


# ---------------------------------------------------------------- gRPC

class HealthServer:
    """A real gRPC server with the standard health service (grpcio-health-checking)."""

    def __init__(self):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.health = health_mod.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def set(self, service: str, status: int) -> None:
        self.health.set(service, status)

    def stop(self) -> None:
        self.server.stop(0).wait(5)


@pytest.fixture
def grpc_health():
    srv = HealthServer()
    yield srv
    srv.stop()


def test_grpc_check_against_a_real_health_service(grpc_health):
    S = health_pb2.HealthCheckResponse
    grpc_health.set("", S.SERVING)
    grpc_health.set("hello", S.NOT_SERVING)
    whole = reg.GrpcCheck(f"127.0.0.1:{grpc_health.port}", timeout=2)
    one = reg.GrpcCheck(f"127.0.0.1:{grpc_health.port}/hello", timeout=2)
    unknown = reg.GrpcCheck(f"127.0.0.1:{grpc_health.port}/nope", timeout=2)
    try:
        assert whole() == (True, f"gRPC health 127.0.0.1:{grpc_health.port}: SERVING")
        ok, detail = one()
        assert not ok and detail.endswith("/hello: NOT_SERVING")
        grpc_health.set("hello", S.SERVING)
        assert one()[0] is True
        ok, detail = unknown()
        assert not ok and "NOT_FOUND" in detail
        grpc_health.stop()
        ok, detail = whole()
        assert not ok and "UNAVAILABLE" in detail
    finally:
        for c in (whole, one, unknown):
            c.close()


def test_grpc_check_of_a_server_without_health_service():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    check = reg.GrpcCheck(f"127.0.0.1:{port}", timeout=2)
    try:
        ok, detail = check()
        assert not ok and "UNIMPLEMENTED" in detail
    finally:
        check.close()
        server.stop(0).wait(5)


@pytest.mark.parametrize("bad", ["localhost", "127.0.0.1:0", "127.0.0.1:70000", "::1:80"])
def test_bad_check_targets_are_refused(bad):
    with pytest.raises(ValueError):
        reg.check_grpc_target(bad)
    with pytest.raises(ValueError):
        reg.check_hostport(bad)


# ---------------------------------------------------------------- gating a real registration

def test_tcp_and_grpc_checks_gate_the_record_all_must_pass(kv, prefix, grpc_health):
    """Both checks through the registrar against a real etcd: the key exists only while both pass."""
    S = health_pb2.HealthCheckResponse
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    tcp_port = listener.getsockname()[1]
    grpc_health.set("web", S.NOT_SERVING)
    check = reg.AllChecks([reg.TcpCheck(f"127.0.0.1:{tcp_port}", 1), reg.GrpcCheck(f"127.0.0.1:{grpc_health.port}/web", 1)])
    key = prefix + "web/a"
    r = reg.Registrar(kv, key, b'{"host":"10.0.0.1"}', ttl=3, check=check, check_interval=0.1, fall=2).start()
    from tests.support.harness import wait_for
    try:
        assert r.removed.wait(1) and kv.get(key) is None
        grpc_health.set("web", S.SERVING)
        wait_for(lambda: kv.get(key) is not None, 5, what="registered once both pass")
        listener.close()                                   # TCP fails, gRPC still passes
        wait_for(lambda: kv.get(key) is None, 5, what="removed when the TCP check fails")
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", tcp_port))
        listener.listen(64)
        wait_for(lambda: kv.get(key) is not None, 5, what="registered again")
        grpc_health.set("web", S.NOT_SERVING)
        wait_for(lambda: kv.get(key) is None, 5, what="removed when the gRPC check fails")
    finally:
        r.stop(5)
        listener.close()
