"""Shared fixtures: one real etcd per test module, a fresh KV and key prefix per test.

    def test_something(etcd, kv, prefix):   # etcd: EtcdProcess, kv: dnsdisco.etcd.client.KV
        kv.put(prefix + "a", b"1")           # prefix: unique per test, e.g. "/t/test_something-3f2a/"

A test may stop or kill `etcd`; the next test's `kv` fixture starts it again (same data).
"""
from __future__ import annotations

import uuid

import pytest

from dnsdisco.etcd.client import KV
from etcdproc import EtcdProcess, start_cluster


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


@pytest.fixture
def prefix(request) -> str:
    """A key prefix no other test uses, ending in '/'."""
    return f"/t/{request.node.name[:40]}-{uuid.uuid4().hex[:6]}/"


@pytest.fixture(scope="module")
def cluster():
    """A 3-member etcd cluster shared by the tests of one module."""
    members = start_cluster(3)
    yield members
    for m in members:
        m.cleanup()
