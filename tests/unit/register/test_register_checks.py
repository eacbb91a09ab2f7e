"""Health checks of `register` and the Python API (issue 21), the parts without gRPC or etcd:
rise/fall thresholds, retry pauses, the default DNS TTL, a TCP check against a real listener,
and bad check targets. grpc.health.v1 and gating a real registration are
tests/etcd/test_register_checks.py."""
from __future__ import annotations

import socket

import pytest

from dnsdisco.register import checks
from dnsdisco.register import record
from dnsdisco.register import registrar as reg


def test_thresholds_count_rise_and_fall():
    t = checks.Thresholds(rise=2, fall=3)
    assert not t.healthy
    assert [t.feed(x) for x in (True, False, True, True)] == [False, False, False, True]   # 2 in a row
    assert t.healthy
    # a flaky probe, then two: never three in a row, so it stays
    assert [t.feed(x) for x in (False, True, False, False, True)] == [False] * 5 and t.healthy
    assert [t.feed(x) for x in (False, False, False)] == [False, False, True] and not t.healthy
    with pytest.raises(ValueError):
        checks.Thresholds(0, 1)


def test_default_thresholds_survive_one_flaky_probe():
    t = checks.Thresholds()
    assert t.feed(True) and t.healthy          # registered at the first pass
    assert not t.feed(False) and t.healthy     # one failure removes nothing
    assert not t.feed(True)
    assert not t.feed(False) and t.feed(False) and not t.healthy


def test_retry_pause_is_a_small_fraction_of_the_lease():
    assert reg.retry_cap(10) == 1.0 and reg.retry_cap(5) == 0.5 and reg.retry_cap(2) == 0.2
    group = reg.LeaseGroup(None, 10, backoff_cap=30)
    delays = [group._backoff.next() for _ in range(20)]
    assert max(delays) <= 1.0


def test_default_dns_ttl_is_half_the_lease():
    assert [record.default_dns_ttl(t) for t in (2, 3, 10, 11, 60)] == [1, 1, 5, 5, 30]


def test_tcp_check_against_a_real_listener():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    check = checks.TcpCheck(f"127.0.0.1:{port}", timeout=2)
    ok, detail = check()
    assert ok and "connected" in detail
    listener.close()
    ok, detail = check()
    assert not ok and f"127.0.0.1:{port}" in detail


@pytest.mark.parametrize("bad", ["localhost", "127.0.0.1:0", "127.0.0.1:70000", "::1:80"])
def test_bad_check_targets_are_refused(bad):
    with pytest.raises(ValueError):
        checks.check_grpc_target(bad)
    with pytest.raises(ValueError):
        checks.check_hostport(bad)
