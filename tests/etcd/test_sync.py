"""dnsdisco.etcd.sync against a real etcd: list + watch, restarts, compaction, bad values."""
from __future__ import annotations

import json
import logging
import threading
import time


import pytest

from dnsdisco.etcd.client import KV
from dnsdisco.etcd.helper import ProcessKV
from dnsdisco.dns.snapshot import ZoneConfig
from dnsdisco.etcd.sync import Syncer

ZONES = (ZoneConfig("svc.local"),)


def wait_for(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Recorder:
    """Metrics hooks that remember every call."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))

    def of(self, name):
        return [c[1:] for c in self.calls if c[0] == name]


HOW = {"kv": "in-process"}


@pytest.fixture(autouse=True, params=["in-process", "helper"])
def syncer_kv(request):
    """Every test twice: the Syncer on the KV itself, and on serve's helper process
    (kvproc.ProcessKV) opened with the same settings."""
    HOW["kv"] = request.param
    yield request.param
    HOW["kv"] = "in-process"


class Running:
    """A Syncer running in a thread, with its swaps and metrics recorded; stopped on exit."""

    def __init__(self, kv, prefix, **kw):
        self.swaps = []
        self.metrics = Recorder()
        self.helper = ProcessKV(kv.settings) if HOW["kv"] == "helper" else None
        self.syncer = Syncer(self.helper or kv, prefix, ZONES, self._on_swap, metrics=self.metrics,
                             progress_interval=kw.pop("progress_interval", 0.5), **kw)
        self.hold = threading.Event()     # set: on_swap blocks until released
        self.release = threading.Event()

    def _on_swap(self, snap, touched):
        self.swaps.append((snap.revision, touched))
        if self.hold.is_set():
            self.release.wait(20)

    def __enter__(self):
        self.thread = self.syncer.start()
        assert self.syncer.ready.wait(10), "no first sync"
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.syncer.stop()
        self.thread.join(5)
        if self.helper is not None:
            self.helper.close()
        assert not self.thread.is_alive(), "Syncer.run did not end after stop()"

    def hosts(self, name):
        return sorted(r.host for r in self.syncer.current.records_for(name))


def record(host, **extra):
    return json.dumps({"host": host, **extra}).encode()


def test_initial_list_then_live_puts_and_deletes(kv, prefix):
    kv.put(prefix + "local/svc/hello/a", record("10.0.0.1"))
    kv.put(prefix + "local/svc/hello/b", record("10.0.0.2"))
    kv.put(prefix.rstrip("/") + "X/local/svc/hello/c", record("10.0.0.9"))   # a sibling prefix
    with Running(kv, prefix) as run:
        assert run.hosts("hello.svc.local") == ["10.0.0.1", "10.0.0.2"]
        assert run.swaps[0][1] is None                       # first swap: everything changed
        assert run.syncer.state.connected
        rev = kv.put(prefix + "local/svc/hello/c", record("10.0.0.3"))
        wait_for(lambda: "10.0.0.3" in run.hosts("hello.svc.local"), what="put seen")
        assert run.syncer.current.revision == rev
        assert "hello.svc.local" in run.swaps[-1][1]          # touched names
        kv.delete(prefix + "local/svc/hello/a")
        wait_for(lambda: run.hosts("hello.svc.local") == ["10.0.0.2", "10.0.0.3"], what="delete seen")
        wait_for(lambda: run.syncer.state.revision >= kv.revision(), what="state.revision")
        assert ("records", 2) in run.metrics.calls
        assert run.metrics.of("watch")[-1][0] is True


def test_etcd_restart_loses_no_event(etcd, kv, prefix, caplog):
    caplog.set_level(logging.INFO, logger="dnsdisco.etcd.sync")
    with Running(kv, prefix) as run:
        kv.put(prefix + "local/svc/a/1", record("10.1.0.1"))
        kv.put(prefix + "local/svc/b/1", record("10.1.0.2"))   # just before the stop
        etcd.stop()
        wait_for(lambda: not run.syncer.state.connected, what="loss noticed")
        time.sleep(1.0)                                         # several reconnect attempts
        etcd.start()
        with KV([etcd.endpoint], timeout=5) as writer:         # just after the restart
            writer.put(prefix + "local/svc/c/1", record("10.1.0.3"))
            writer.delete(prefix + "local/svc/a/1")
        wait_for(lambda: (run.hosts("a.svc.local"), run.hosts("b.svc.local"), run.hosts("c.svc.local"))
                 == ([], ["10.1.0.2"], ["10.1.0.3"]), timeout=10, what="all changes")
        wait_for(lambda: run.syncer.state.connected, what="reconnected")
    lost = [r for r in caplog.records if "lost etcd" in r.getMessage()]
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.WARNING
    assert len(back) == 1
    assert run.syncer.state.resyncs == 0                        # resumed, not re-listed


def test_served_from_last_snapshot_while_etcd_is_down(etcd, kv, prefix):
    kv.put(prefix + "local/svc/keep/1", record("10.2.0.1"))
    with Running(kv, prefix) as run:
        before = run.syncer.current
        etcd.kill()
        wait_for(lambda: not run.syncer.state.connected, what="loss noticed")
        assert run.syncer.current is before
        assert run.hosts("keep.svc.local") == ["10.2.0.1"]
        assert run.metrics.of("watch")[-1][0] is False
        etcd.start()
        wait_for(lambda: run.syncer.state.connected, timeout=10, what="reconnected")


def test_compaction_past_the_watch_forces_a_relist(etcd, kv, prefix, caplog):
    caplog.set_level(logging.INFO, logger="dnsdisco.etcd.sync")
    kv.put(prefix + "local/svc/x/1", record("10.3.0.1"))
    with Running(kv, prefix) as run:
        run.hold.set()                                    # the next swap blocks the loop
        kv.put(prefix + "local/svc/x/2", record("10.3.0.2"))
        wait_for(lambda: len(run.swaps) == 2, what="loop blocked in on_swap")
        etcd.restart()                                    # the stream breaks meanwhile
        with KV([etcd.endpoint], timeout=5) as writer:
            writer.delete(prefix + "local/svc/x/1")
            for i in range(20):
                writer.put(prefix + "local/svc/y/1", record(f"10.3.1.{i}"))
            writer.put(prefix + "local/svc/z/1", record("10.3.2.1"))
            writer.compact(writer.revision())             # history before now is gone
        run.hold.clear()
        run.release.set()
        wait_for(lambda: (run.hosts("x.svc.local"), run.hosts("y.svc.local"), run.hosts("z.svc.local"))
                 == (["10.3.0.2"], ["10.3.1.19"], ["10.3.2.1"]), timeout=10, what="convergence")
        assert run.syncer.state.resyncs == 1
        assert run.metrics.of("resync") == [("compacted",)]
        assert run.swaps[-1][1] is None                   # a re-list swaps everything
        # and it keeps following the watch afterwards
        kv.put(prefix + "local/svc/after/1", record("10.3.3.1"))
        wait_for(lambda: run.hosts("after.svc.local") == ["10.3.3.1"], what="watch after re-list")
    assert any("listing" in r.getMessage() for r in caplog.records)


def test_bad_value_is_skipped_with_one_warning_naming_the_key(kv, prefix, caplog):
    caplog.set_level(logging.WARNING, logger="dnsdisco.etcd.sync")
    bad_key = prefix + "local/svc/bad/1"
    kv.put(bad_key, b"{not json")
    kv.put(prefix + "local/svc/good/1", record("10.4.0.1"))
    with Running(kv, prefix) as run:
        assert run.hosts("good.svc.local") == ["10.4.0.1"]
        kv.put(bad_key, b'{"host": 7}')                   # still bad: no second warning
        kv.put(prefix + "local/svc/good/2", record("10.4.0.2"))
        wait_for(lambda: len(run.hosts("good.svc.local")) == 2, what="later put")
        warnings = [r.getMessage() for r in caplog.records if bad_key in r.getMessage()]
        assert len(warnings) == 1 and all(r.levelno == logging.WARNING for r in caplog.records)
        assert run.syncer.state.bad_values == 1
        # good, then bad again: reported again
        kv.put(bad_key, record("10.4.0.3"))
        wait_for(lambda: run.hosts("bad.svc.local") == ["10.4.0.3"], what="fixed value")
        kv.put(bad_key, b"[]")
        wait_for(lambda: run.syncer.state.bad_values == 2, what="second report")
        assert run.hosts("bad.svc.local") == []
        assert run.metrics.of("bad_value") == [(bad_key,), (bad_key,)]
        assert len([r for r in caplog.records if bad_key in r.getMessage()]) == 2


def test_stop_ends_run_promptly_even_while_etcd_is_down(etcd, prefix):
    client = KV([etcd.endpoint], timeout=1)
    helper = ProcessKV(client.settings) if HOW["kv"] == "helper" else None
    etcd.stop()
    try:
        syncer = Syncer(helper or client, prefix, ZONES, lambda s, t: None)
        thread = syncer.start()
        wait_for(lambda: syncer.state.error, what="first failed list")
        assert not syncer.ready.is_set() and not syncer.state.connected
        assert etcd.endpoint in syncer.state.error
        syncer.stop()
        thread.join(3)
        assert not thread.is_alive()
    finally:
        client.close()
        if helper is not None:
            helper.close()
        etcd.start()


def test_reload_zones_swaps_everything(kv, prefix):
    kv.put(prefix + "local/svc/r/1", record("10.5.0.1"))
    with Running(kv, prefix) as run:
        run.syncer.reload_zones((ZoneConfig("svc.local", ttl=99),))
        assert run.swaps[-1][1] is None
        assert run.syncer.current.zones[0].ttl == 99
        assert run.hosts("r.svc.local") == ["10.5.0.1"]


def test_leader_killed_under_a_running_syncer():
    """3-member cluster, the watch on the leader (listed first): SIGKILL it. The watch moves to
    a live member and resumes; writes before and after the kill are all applied."""
    from tests.support.etcdproc import endpoints, leader, start_cluster
    members = start_cluster(3)
    try:
        first = leader(members)
        ordered = [first.endpoint] + [e for e in endpoints(members) if e != first.endpoint]
        with KV(ordered, timeout=5) as client:
            with Running(client, "/skydns/") as run:
                client.put("/skydns/local/svc/before/1", record("10.7.0.1"))
                wait_for(lambda: run.hosts("before.svc.local") == ["10.7.0.1"], what="first put")
                first.kill()
                client.put("/skydns/local/svc/after/1", record("10.7.0.2"))
                client.delete("/skydns/local/svc/before/1")
                wait_for(lambda: (run.hosts("before.svc.local"), run.hosts("after.svc.local"))
                         == ([], ["10.7.0.2"]), timeout=10, what="changes after the kill")
                assert client.endpoint_in_use != first.endpoint
                assert run.syncer.state.connected and run.syncer.state.resyncs == 0
    finally:
        for m in members:
            m.cleanup()
