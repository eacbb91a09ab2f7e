"""dnsdisco.kvproc: serve's list and watch in a helper process, against a real etcd.

The Syncer's own tests run on ProcessKV too (test_sync.py); these check what is the
helper's alone: batches that arrived together come back as one, a dead helper is an
EtcdUnavailable and is replaced on the next call, errors keep their kind, and the helper
never outlives its parent's socket.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from dnsdisco.kv import KV, Compacted, EtcdUnavailable
from dnsdisco.kvproc import ProcessKV
from test_kv import collect


@pytest.fixture
def helper(kv):
    pkv = ProcessKV(kv.settings)
    yield pkv
    pkv.close()


def test_list_gives_the_same_as_the_kv(kv, helper, prefix):
    for i in range(12):
        kv.put(f"{prefix}k{i:02d}", f"v{i}".encode())
    assert helper.list_prefix(prefix, page_size=5) == kv.list_prefix(prefix, page_size=5)
    assert helper.endpoint_in_use == kv.endpoint_in_use


def test_batches_that_arrived_together_come_back_as_one_in_order(kv, helper, prefix):
    start, _ = kv.list_prefix(prefix)
    stream = helper.watch_prefix(prefix, start + 1, progress_interval=5)
    first = next(stream)                                   # the watch is established
    assert first.events == []
    revisions = [kv.put(f"{prefix}k{i}", str(i).encode()) for i in range(50)]
    time.sleep(0.5)                                        # all 50 wait in the socket now
    events, batches = collect(stream, 50, timeout=10)
    assert events == [(f"{prefix}k{i}", str(i).encode()) for i in range(50)]
    assert len(batches) < 50                               # merged, not one per revision
    assert batches[-1].revision == revisions[-1]


def test_a_killed_helper_is_unavailable_then_replaced(kv, helper, prefix):
    kv.put(prefix + "a", b"1")
    helper.list_prefix(prefix)
    start = kv.revision()
    stream = helper.watch_prefix(prefix, start + 1, progress_interval=5)
    next(stream)
    os.kill(helper._proc.pid, signal.SIGKILL)
    with pytest.raises(EtcdUnavailable, match="helper process exited"):
        next(stream)
    kv.put(prefix + "b", b"2")
    assert helper.list_prefix(prefix)[1] == [(prefix + "a", b"1"), (prefix + "b", b"2")]   # a new helper


def test_compacted_keeps_its_kind_and_revision(kv, helper, prefix):
    kv.put(prefix + "a", b"1")
    old = kv.revision()
    kv.put(prefix + "a", b"2")
    kv.compact(kv.revision())
    stream = helper.watch_prefix(prefix, old, progress_interval=5)
    with pytest.raises(Compacted) as caught:
        list(stream)
    assert caught.value.compact_revision == kv.revision()


def test_unreachable_etcd_is_unavailable_naming_the_endpoint(prefix):
    with KV(["http://127.0.0.1:9"], timeout=0.5) as dead:
        pkv = ProcessKV(dead.settings)
        try:
            with pytest.raises(EtcdUnavailable, match="127.0.0.1:9"):
                pkv.list_prefix(prefix)
        finally:
            pkv.close()


def test_cancel_ends_a_waiting_stream_and_the_helper_goes_on(kv, helper, prefix):
    start = kv.revision()
    stream = helper.watch_prefix(prefix, start + 1, progress_interval=5)
    next(stream)
    threading.Timer(0.3, stream.cancel).start()
    assert list(stream) == []                               # ended, without events
    kv.put(prefix + "x", b"1")
    assert helper.list_prefix(prefix)[1] == [(prefix + "x", b"1")]


def test_the_helper_exits_when_its_parent_closes(kv, prefix):
    pkv = ProcessKV(kv.settings)
    pkv.list_prefix(prefix)
    proc = pkv._proc
    pkv._sock.close()                                       # as if the parent died
    assert proc.wait(10) == 0
    pkv.close()
