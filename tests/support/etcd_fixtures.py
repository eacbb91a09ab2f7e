"""The etcd fixtures: one real etcd per test module, a fresh KV per test (the key prefix is
tests/conftest.py's). Loaded by tests/etcd/conftest.py and tests/e2e/conftest.py only, so the
unit tier needs no etcd binary and never imports grpc (dnsdisco.etcd.client does).

    def test_something(etcd, kv, prefix):   # etcd: EtcdProcess, kv: dnsdisco.etcd.client.KV
        kv.put(prefix + "a", b"1")           # prefix: unique per test, e.g. "/t/test_something-3f2a/"

A test may stop or kill `etcd`; the next test's `kv` fixture starts it again (same data).
"""
from __future__ import annotations

import pytest

from dnsdisco.etcd.client import KV
from tests.support.etcdproc import EtcdProcess, start_cluster


@pytest.fixture(scope="module")
def etcd():
    """A single-member etcd on free loopback ports, shared by the tests of one module."""
    proc = EtcdProcess().start()
    yield proc
    proc.cleanup()


@pytest.fixture
def kv(etcd):
    """A fresh KV client on the module's etcd (restarted first if a test stopped it)."""
    if not etcd.running:
        etcd.start()
    client = KV([etcd.endpoint], timeout=3.0)
    yield client
    client.close()


@pytest.fixture(scope="module")
def cluster():
    """A 3-member etcd cluster shared by the tests of one module."""
    members = start_cluster(3)
    yield members
    for m in members:
        m.cleanup()
