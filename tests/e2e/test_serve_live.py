"""Live updates through a real serve process while its etcd goes away and comes back.

(Put/delete/lease expiry timing is in test_serve_e2e.py; compaction during a partition
in test_partition.py; the same cases at the Syncer level in test_sync.py.)
"""
from __future__ import annotations

import json

import dns.rcode

from tests.support.harness import ServeProcess, addresses, wait_for

PREFIX = "/live"


def put(etcd, rel: str, host: str) -> None:
    etcd.etcdctl("put", f"{PREFIX}/local/svc/{rel}", json.dumps({"host": host}))


def test_etcd_restart_loses_no_event_and_answers_throughout(etcd):
    put(etcd, "before/a", "10.1.0.1")
    with ServeProcess(etcd.endpoint, "--prefix", PREFIX) as srv:
        wait_for(lambda: addresses(srv.query("before.svc.local")) == ["10.1.0.1"], 2, what="the first record")
        put(etcd, "before/b", "10.1.0.2")          # written just before the stop
        etcd.stop()
        # etcd is gone: the last snapshot keeps being served
        for _ in range(20):
            assert srv.query("before.svc.local").rcode() == dns.rcode.NOERROR
        etcd.start()
        put(etcd, "after/a", "10.2.0.1")            # written just after the restart
        wait_for(lambda: addresses(srv.query("before.svc.local")) == ["10.1.0.1", "10.1.0.2"], 10,
                 what="the record written just before the stop")
        wait_for(lambda: addresses(srv.query("after.svc.local")) == ["10.2.0.1"], 10,
                 what="the record written just after the restart")
        log = srv.log()
    assert log.count("etcd") >= 1
    assert "Traceback" not in log
