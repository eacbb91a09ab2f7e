"""The registrar against a real etcd (lease life cycle, re-grant, health gating). Its pure helpers
are tests/unit/register/test_registrar.py, the register command's argument checks
tests/unit/register/test_command.py, resolve_srv tests/unit/top/test_api.py."""
from __future__ import annotations

import threading
import time

import pytest

from dnsdisco.register import record
from dnsdisco.register import registrar as reg
from tests.support.harness import wait_for


# ---------------------------------------------------------------- the loop against a real etcd

def _value(kv, key):
    return kv.get(key)


def _leases(etcd) -> list[str]:
    return etcd.etcdctl("lease", "list").split()[3:]


def test_register_refresh_and_revoke(kv, prefix):
    key = prefix + "hello/a"
    value = record.record_value("10.0.0.7", 8080)
    r = reg.Registrar(kv, key, value, ttl=2).start()
    try:
        assert r.registered.wait(5)
        assert _value(kv, key) == value
        lease = r.lease
        # the lease outlives several TTLs because it is refreshed
        time.sleep(3)
        assert _value(kv, key) == value and r.lease == lease and r.grants == 1
    finally:
        r.stop(5)
    assert _value(kv, key) is None            # revoked: gone at once, not after the TTL
    assert kv.refresh(lease) == 0


def test_revoked_lease_is_replaced(etcd, kv, prefix):
    key = prefix + "hello/b"
    r = reg.Registrar(kv, key, b'{"host":"10.0.0.8"}', ttl=3).start()
    try:
        assert r.registered.wait(5)
        old = r.lease
        etcd.etcdctl("lease", "revoke", f"{old:x}")
        wait_for(lambda: r.lease != old and _value(kv, key) is not None, 5, what="a new lease and the record")
        assert r.grants == 2
    finally:
        r.stop(5)


def test_key_deleted_behind_its_back_is_written_again(etcd, kv, prefix):
    key = prefix + "hello/c"
    r = reg.Registrar(kv, key, b'{"host":"10.0.0.9"}', ttl=3).start()
    try:
        assert r.registered.wait(5)
        etcd.etcdctl("del", key)
        wait_for(lambda: _value(kv, key) is not None, 5, what="the record written again")
        assert r.grants == 1
    finally:
        r.stop(5)


def test_health_gating_deletes_and_rewrites(kv, prefix):
    key = prefix + "hello/d"
    state = {"ok": False}
    r = reg.Registrar(kv, key, b'{"host":"10.0.0.10"}', ttl=3,
                      check=lambda: (state["ok"], "flag"), check_interval=0.1).start()
    try:
        time.sleep(0.5)
        assert _value(kv, key) is None        # never written while failing
        state["ok"] = True
        wait_for(lambda: _value(kv, key) is not None, 3, what="registered once healthy")
        state["ok"] = False
        wait_for(lambda: _value(kv, key) is None, 3, what="removed when the check fails")
        lease = r.lease
        assert kv.refresh(lease) > 0         # the lease is kept, so coming back is one put
        state["ok"] = True
        wait_for(lambda: _value(kv, key) is not None, 3, what="registered again")
    finally:
        r.stop(5)
    assert _value(kv, key) is None


def test_survives_etcd_down_and_restart(etcd, kv, prefix):
    key = prefix + "hello/e"
    r = reg.Registrar(kv, key, b'{"host":"10.0.0.11"}', ttl=2).start()
    try:
        assert r.registered.wait(5)
        etcd.stop()
        time.sleep(2.5)                      # longer than the TTL: refreshes fail meanwhile
        etcd.start()
        wait_for(lambda: _value(kv, key) is not None and r.registered.is_set(), 10,
                 what="the record after etcd came back")
        # and it keeps being refreshed afterwards
        time.sleep(2.5)
        assert _value(kv, key) is not None
    finally:
        r.stop(5)
    assert _value(kv, key) is None


def test_stop_while_etcd_is_down_returns(etcd, kv, prefix):
    key = prefix + "hello/f"
    r = reg.Registrar(kv, key, b'{"host":"10.0.0.12"}', ttl=2).start()
    try:
        assert r.registered.wait(5)
        etcd.kill()
        t0 = time.monotonic()
        r.stop(15)
        assert not r.group.running
        assert time.monotonic() - t0 < 10    # bounded by the KV timeout, not stuck
    finally:
        etcd.start()


def test_put_many_and_lease_keys(kv, prefix):
    """The two KV calls a shared lease needs: many puts in few transactions, and the keys a
    lease holds (None once it is gone)."""
    lease = kv.grant(5)
    items = [(f"{prefix}k{i:03d}", f'{{"host":"10.0.1.{i % 250 + 1}"}}'.encode()) for i in range(250)]
    kv.put_many(items, lease=lease, batch=100)            # three transactions
    assert kv.lease_keys(lease) == {k for k, _ in items}
    assert kv.get(items[249][0]) == items[249][1]
    kv.delete(items[0][0])
    assert items[0][0] not in kv.lease_keys(lease)
    kv.revoke(lease)
    assert kv.lease_keys(lease) is None and kv.get(items[1][0]) is None


def test_group_writes_one_key_per_request_when_etcd_allows_few_txn_ops(prefix):
    """An etcd run with --max-txn-ops below our batch of puts: the group notices and goes on."""
    from tests.support.etcdproc import EtcdProcess
    from dnsdisco.etcd.client import KV
    small = EtcdProcess("smalltxn", extra_args=["--max-txn-ops", "8"]).start()
    client = KV([small.endpoint], timeout=3.0)
    group = reg.LeaseGroup(client, 3)
    keys = [f"{prefix}i{i}" for i in range(20)]
    try:
        rs = [reg.Registrar(None, k, b'{"host":"10.0.0.1"}', group=group).start() for k in keys]
        wait_for(lambda: all(r.registered.is_set() for r in rs), 10, what="all registered")
        small.etcdctl("lease", "revoke", f"{group.lease:x}")   # all 20 to write again at once
        wait_for(lambda: all(client.get(k) is not None for k in keys), 10, what="all 20 keys")
        assert group.PUT_BATCH == 1
    finally:
        group.close(5)
        client.close()
        small.cleanup()


def test_shared_group_one_lease_regranted_and_every_key_written_again(etcd, kv, prefix):
    """Fifty registrars on one LeaseGroup: one lease; revoked behind their backs, a new one is
    granted and every key written again; a key deleted alone is found by one lease query."""
    group = reg.LeaseGroup(kv, 3)
    keys = [f"{prefix}svc/i{i}" for i in range(50)]
    rs = [reg.Registrar(None, k, b'{"host":"10.0.0.1"}', group=group).start() for k in keys]
    present = lambda: sum(1 for k in keys if kv.get(k) is not None)  # noqa: E731
    try:
        wait_for(lambda: all(r.registered.is_set() for r in rs), 5, what="all registered")
        assert present() == 50 and group.grants == 1
        old = group.lease
        etcd.etcdctl("lease", "revoke", f"{old:x}")
        wait_for(lambda: group.lease != old and present() == 50, 5, what="a new lease and every key")
        assert group.grants == 2
        etcd.etcdctl("del", keys[7])
        wait_for(lambda: kv.get(keys[7]) is not None, 5, what="the deleted key written again")
        rs[3].stop(5)                                  # one leaves: its key goes, the others stay
        assert kv.get(keys[3]) is None and present() == 49 and kv.refresh(group.lease) > 0
        last = group.lease
    finally:
        for r in rs:
            r.stop(5)
        group.close(5)
    assert present() == 0 and kv.refresh(last) == 0    # closing the group revoked its lease


def test_same_key_twice_in_one_process_is_refused_and_can_come_back(etcd, prefix):
    import dnsdisco
    name = "twice.svc.local"
    a = dnsdisco.Registration(name, port=80, address="127.0.0.1", ttl=3, etcd=etcd.endpoint, id="same").start()
    try:
        with pytest.raises(ValueError, match="already registered by this process"):
            dnsdisco.Registration(name, port=80, address="127.0.0.1", ttl=3, etcd=etcd.endpoint, id="same").start()
        assert a.registered
    finally:
        a.stop()
    b = dnsdisco.Registration(name, port=80, address="127.0.0.1", ttl=3, etcd=etcd.endpoint, id="same").start()
    try:
        assert b.registered
    finally:
        b.stop()
    # the last one out ended the shared lease thread
    wait_for(lambda: not any(t.name == "dnsdisco-lease" for t in threading.enumerate()), 5,
             what="the lease thread to end")
