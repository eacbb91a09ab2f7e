"""dnsdisco.etcd.helper: serve's list and watch in a helper process, against a real etcd.

The Syncer's own tests run on ProcessKV too (test_sync.py); these check what is the
helper's alone: batches that arrived together come back as one, a dead helper is an
EtcdUnavailable and is replaced on the next call, errors keep their kind, and the helper
never outlives its parent's socket; check_read (serve's start-up check) answers as the KV's.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from dnsdisco.etcd.settings import StartupError, check_access
from dnsdisco.etcd.client import KV, Compacted, EtcdAuthError, EtcdError, EtcdUnavailable
from dnsdisco.etcd.helper import ProcessKV, _Reader, _send
from dnsdisco.etcd.types import check_settings
from tests.support.etcdproc import EtcdProcess, enable_auth_with_reader
from tests.support.streams import collect


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


def test_a_listing_started_over_by_the_helper_drops_what_came_before(monkeypatch):
    """The protocol alone (the helper played by this test over a socket pair): parts that
    came before a "restart" (etcd compacted the listed revision mid-way) are not kept."""
    parent = ProcessKV({"endpoints": ["http://127.0.0.1:9"]})
    ours, theirs = socket.socketpair()
    ours.settimeout(10)                     # bounded: a helper side that fails ends the wait
    monkeypatch.setattr(parent, "_ensure", lambda: None)
    parent._sock, parent._reader = ours, _Reader(ours)
    lock = threading.Lock()

    def helper_side():
        command = _Reader(theirs).next()
        seq = command[1]
        for message in (("part", seq, [("/p/old", b"1")]), ("restart", seq),
                        ("part", seq, [("/p/a", b"2")]), ("part", seq, [("/p/b", b"3")]),
                        ("list", seq, 42, "http://127.0.0.1:9")):
            _send(theirs, lock, message)

    played = threading.Thread(target=helper_side, daemon=True)
    played.start()
    try:
        assert parent.list_prefix("/p/") == (42, [("/p/a", b"2"), ("/p/b", b"3")])
    finally:
        played.join(5)
        ours.close()
        theirs.close()


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


# ---------------------------------------------------------------- check_read (serve's start-up check)

@pytest.fixture(scope="module")
def auth_etcd():
    """etcd with auth on: user `reader` may read /skydns/ only."""
    with EtcdProcess("kvproc-auth") as proc:
        enable_auth_with_reader(proc)
        yield proc


def raised(call, *args):
    with pytest.raises(Exception) as info:
        call(*args)
    return type(info.value), str(info.value)


def test_check_read_allowed_starts_the_helper(kv, prefix):
    pkv = ProcessKV(check_settings([kv.endpoints[0]], timeout=3))     # as serve builds it: no KV
    try:
        assert pkv._proc is None
        assert pkv.check_read(prefix) is None
        assert pkv._proc.poll() is None and pkv.endpoint_in_use == kv.endpoint_in_use
        kv.put(prefix + "a", b"1")
        assert pkv.list_prefix(prefix)[1] == [(prefix + "a", b"1")]      # the same helper goes on
    finally:
        pkv.close()


def test_check_read_denied_and_rejected_as_the_kv_says(auth_etcd):
    reader = check_settings([auth_etcd.endpoint], timeout=2, user="reader", password="readerpw")
    wrong = dict(reader, password="wrong-pw")
    for settings, prefix, kind in ((reader, "/other", EtcdAuthError), (wrong, "/skydns", EtcdAuthError)):
        pkv = ProcessKV(settings)
        try:
            with KV(**settings) as local:
                expected = raised(local.check_read, prefix)
            assert expected[0] is kind
            assert raised(pkv.check_read, prefix) == expected
        finally:
            pkv.close()
    pkv = ProcessKV(reader)
    try:
        pkv.check_read("/skydns")
        assert check_access(pkv, "/skydns", write=False) is True
        with pytest.raises(StartupError, match=r"denied it to user 'reader'.*role needs read on the prefix"):
            check_access(pkv, "/other", write=False)
    finally:
        pkv.close()
    pkv = ProcessKV(wrong)
    try:
        with pytest.raises(StartupError, match="rejected the credentials") as info:
            check_access(pkv, "/skydns", write=False)
        assert "wrong-pw" not in str(info.value)
    finally:
        pkv.close()


def test_check_read_of_unreachable_etcd_within_the_lowered_timeout(prefix):
    pkv = ProcessKV(check_settings(["127.0.0.1:9"], timeout=30))
    try:
        assert pkv.endpoints == ["http://127.0.0.1:9"]             # as KV.endpoints, for tls_problem
        pkv.timeout = 0.5
        t0 = time.monotonic()
        with pytest.raises(EtcdUnavailable, match=r"read .*no etcd endpoint answers \(http://127.0.0.1:9\)"):
            pkv.check_read(prefix)
        assert time.monotonic() - t0 < 10          # the check's timeout, not the settings' 30 s
        pkv.timeout = 30
        assert check_access(pkv, prefix, write=False, timeout=0.5) is False    # "not reachable yet"
        assert pkv.timeout == 30
    finally:
        pkv.close()


def test_a_helper_that_cannot_load_grpc_says_so(tmp_path, monkeypatch, prefix):
    fake = tmp_path / "grpc"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no gRPC in this test')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    pkv = ProcessKV(check_settings(["127.0.0.1:9"], timeout=1))
    try:
        for call in (pkv.check_read, pkv.list_prefix):
            with pytest.raises(EtcdError, match="cannot load the etcd client.*no gRPC in this test"):
                call(prefix)
        with pytest.raises(StartupError, match="cannot load the etcd client"):
            check_access(pkv, prefix, write=False)
    finally:
        pkv.close()
