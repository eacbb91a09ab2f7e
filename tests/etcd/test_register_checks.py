"""Health checks of `register` and the Python API (issue 21): grpc.health.v1 against real
listeners, several checks that must all pass in a real registration. The parts without gRPC
(thresholds, TCP connect, bad targets) are tests/unit/register/test_register_checks.py."""
from __future__ import annotations

import socket
from concurrent import futures

import pytest

from dnsdisco.register import checks
from dnsdisco.register import registrar as reg

grpc = pytest.importorskip("grpc")
health_mod = pytest.importorskip("grpc_health.v1.health", reason="grpcio-health-checking (the test extra)")
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402


# ---------------------------------------------------------------- health messages against the generated protobuf

@pytest.mark.parametrize("service", ["", "hello", "x" * 200, "ü"])
def test_health_messages_match_the_generated_protobuf(service):
    assert checks.health_request(service) == health_pb2.HealthCheckRequest(service=service).SerializeToString()
    for status in (0, 1, 2, 3):
        data = health_pb2.HealthCheckResponse(status=status).SerializeToString()
        assert checks.health_status(data) == status
    with pytest.raises(ValueError):
        checks.health_status(b"\x08")   # a truncated varint


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
    whole = checks.GrpcCheck(f"127.0.0.1:{grpc_health.port}", timeout=2)
    one = checks.GrpcCheck(f"127.0.0.1:{grpc_health.port}/hello", timeout=2)
    unknown = checks.GrpcCheck(f"127.0.0.1:{grpc_health.port}/nope", timeout=2)
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
    check = checks.GrpcCheck(f"127.0.0.1:{port}", timeout=2)
    try:
        ok, detail = check()
        assert not ok and "UNIMPLEMENTED" in detail
    finally:
        check.close()
        server.stop(0).wait(5)


# ---------------------------------------------------------------- gating a real registration

def test_tcp_and_grpc_checks_gate_the_record_all_must_pass(kv, prefix, grpc_health):
    """Both checks through the registrar against a real etcd: the key exists only while both pass."""
    S = health_pb2.HealthCheckResponse
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    tcp_port = listener.getsockname()[1]
    grpc_health.set("web", S.NOT_SERVING)
    check = checks.AllChecks([checks.TcpCheck(f"127.0.0.1:{tcp_port}", 1), checks.GrpcCheck(f"127.0.0.1:{grpc_health.port}/web", 1)])
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
