"""dnsdisco.etcd.client against real etcd processes: paging, watches, compaction, leases, failover."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from dnsdisco.etcd.client import KV, Compacted, EtcdAuthError, EtcdConfigError, EtcdUnavailable, WatchBatch
from tests.support.etcdproc import EtcdProcess, enable_auth_with_reader, endpoints, leader, make_tls
from tests.support.streams import collect

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wait_for(pred, timeout=5.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ------------------------------------------------------------------ list

def test_list_prefix_pages_and_excludes_neighbours(kv, prefix):
    for i in range(23):
        kv.put(f"{prefix}k{i:03d}", f"v{i}".encode())
    kv.put(prefix.rstrip("/") + "X", b"outside")       # shares the prefix minus the slash
    kv.put(prefix.rstrip("/"), b"the prefix itself")
    rev, items = kv.list_prefix(prefix, page_size=4)
    assert [k for k, _ in items] == [f"{prefix}k{i:03d}" for i in range(23)]
    assert items[5] == (f"{prefix}k005", b"v5")
    assert rev == kv.revision()


def test_list_prefix_is_one_consistent_revision_under_writes(etcd, kv, prefix):
    for i in range(40):
        kv.put(f"{prefix}a{i:03d}", b"x")
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 2000:
            kv.put(f"{prefix}a{i % 40:03d}", str(i).encode())
            kv.put(f"{prefix}b{i:04d}", b"new")
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.05)
        rev, items = kv.list_prefix(prefix, page_size=3)
    finally:
        stop.set()
        t.join(10)
    out = etcd.etcdctl("get", "--prefix", f"--rev={rev}", prefix)
    lines = out.splitlines()
    expected = list(zip(lines[0::2], [v.encode() for v in lines[1::2]]))
    assert items == expected


def test_list_pages_handed_over_start_again_after_a_compaction(kv, prefix):
    """The serve helper's mode: pages go to a callback as they arrive; a compaction of the
    listed revision mid-way says so (None) and the listing starts over at a new revision."""
    for i in range(10):
        kv.put(f"{prefix}k{i:02d}", b"old")
    got, compacted_at = [], []

    def take(page):
        if page is None:
            got.append(None)
            return
        if not got:                           # after the first page: move on and compact
            for i in range(10):
                kv.put(f"{prefix}k{i:02d}", b"new")
            compacted_at.append(kv.put(prefix + "zz", b"last"))
            kv.compact(compacted_at[0])
        got.append(list(page))

    rev, rest = kv.list_prefix(prefix, page_size=3, pages=take)
    assert rest == []
    restart = got.index(None)
    assert restart == 1 and len(got[0]) == 3                 # one page, then the restart
    listed = [pair for page in got[restart + 1:] for pair in page]
    assert listed == [(f"{prefix}k{i:02d}", b"new") for i in range(10)] + [(prefix + "zz", b"last")]
    assert rev == compacted_at[0]


def test_list_empty_prefix(kv, prefix):
    rev, items = kv.list_prefix(prefix)
    assert items == [] and rev > 0


# ------------------------------------------------------------------ watch

def test_watch_delivers_puts_and_deletes_in_order(kv, prefix):
    start = kv.revision() + 1
    stream = kv.watch_prefix(prefix, start)
    first = next(stream)
    assert first == WatchBatch(start - 1, [])          # the watch is established
    r1 = kv.put(prefix + "a", b"1")
    kv.put(prefix.rstrip("/") + "Z", b"not ours")
    kv.put(prefix + "b", b"2")
    kv.delete(prefix + "a")
    r4 = kv.put(prefix + "b", b"3")
    events, batches = collect(stream, 4)
    assert events == [(prefix + "a", b"1"), (prefix + "b", b"2"), (prefix + "a", None),
                      (prefix + "b", b"3")]
    revs = [b.revision for b in batches if b.events]
    assert revs == sorted(revs) and revs[0] == r1 and revs[-1] == r4


def test_watch_from_revision_replays_history(kv, prefix):
    r1 = kv.put(prefix + "x", b"1")
    kv.put(prefix + "x", b"2")
    kv.delete(prefix + "x")
    r3 = kv.revision()
    kv.put(prefix + "y", b"3")
    events, batches = collect(kv.watch_prefix(prefix, r1 + 1), 3)
    assert events == [(prefix + "x", b"2"), (prefix + "x", None), (prefix + "y", b"3")]
    # Resuming after a revision gives exactly what came later.
    rest, _ = collect(kv.watch_prefix(prefix, r3 + 1), 1)
    assert rest == [(prefix + "y", b"3")]


def test_watch_progress_batches_on_an_idle_stream(kv, prefix):
    stream = kv.watch_prefix(prefix, 0, progress_interval=0.2)
    got = []
    deadline = time.monotonic() + 5
    try:
        for batch in stream:
            got.append(batch)
            if len(got) >= 4 or time.monotonic() > deadline:
                break
    finally:
        stream.cancel()
    assert len(got) >= 4 and all(b.events == [] for b in got)
    assert got[-1].revision >= got[0].revision


def test_watch_raises_compacted(kv, prefix):
    r1 = kv.put(prefix + "a", b"1")
    kv.put(prefix + "a", b"2")
    r3 = kv.put(prefix + "a", b"3")
    kv.compact(r3)
    stream = kv.watch_prefix(prefix, r1)
    with pytest.raises(Compacted) as info:
        for _ in stream:
            pass
    assert info.value.compact_revision >= r3
    kv.compact(r3)                                   # compacting again is not an error
    # From the compacted revision on, the watch works.
    kv.put(prefix + "a", b"4")
    events, _ = collect(kv.watch_prefix(prefix, r3), 2)
    assert events == [(prefix + "a", b"3"), (prefix + "a", b"4")]


def test_watch_cancel_from_another_thread_ends_iteration_without_leaking_threads(kv, prefix):
    baseline = threading.active_count()
    stream = kv.watch_prefix(prefix, 0, progress_interval=0.2)
    got = []
    reader = threading.Thread(target=lambda: got.extend(stream))
    reader.start()
    wait_for(lambda: got, what="first batch")
    stream.cancel()
    reader.join(5)
    assert not reader.is_alive()
    kv.close()
    wait_for(lambda: threading.active_count() <= baseline, what=f"threads back to {baseline}: "
             f"{threading.enumerate()}")


def test_stopped_etcd_raises_unavailable_for_calls_and_watches(etcd, prefix):
    client = KV([etcd.endpoint], timeout=1.0)
    try:
        stream = client.watch_prefix(prefix, 0, progress_interval=0.5)
        assert next(stream).events == []
        etcd.stop()
        t0 = time.monotonic()
        with pytest.raises(EtcdUnavailable) as info:
            client.put(prefix + "a", b"1")
        assert etcd.endpoint in str(info.value)
        assert time.monotonic() - t0 < 5
        with pytest.raises(EtcdUnavailable):
            for _ in stream:
                pass
        with pytest.raises(EtcdUnavailable):
            next(client.watch_prefix(prefix, 0))
        etcd.start()
        # the same client reconnects on its own once etcd is back
        wait_for(lambda: _try(lambda: client.put(prefix + "b", b"2")), timeout=10,
                 what="put after restart")
    finally:
        client.close()
        if not etcd.running:
            etcd.start()


def _try(fn):
    try:
        return fn() or True
    except EtcdUnavailable:
        return False


# ------------------------------------------------------------------ leases

def test_lease_grant_refresh_revoke(kv, prefix):
    lease = kv.grant(10)
    kv.put(prefix + "a", b"1", lease=lease)
    assert 0 < kv.refresh(lease) <= 10
    kv.revoke(lease)
    assert kv.list_prefix(prefix)[1] == []
    assert kv.refresh(lease) == 0
    kv.revoke(lease)                                  # already gone: fine


def test_lease_expiry_removes_keys(kv, prefix):
    lease = kv.grant(1)
    kv.put(prefix + "a", b"1", lease=lease)
    assert kv.get(prefix + "a") == b"1"
    wait_for(lambda: kv.get(prefix + "a") is None, timeout=8, what="lease expiry")
    assert kv.refresh(lease) == 0


# ------------------------------------------------------------------ configuration errors

def test_bad_endpoints_and_tls_files_are_named(tmp_path):
    with pytest.raises(EtcdConfigError, match="ftp://x"):
        KV(["ftp://x:1"])
    with pytest.raises(EtcdConfigError, match="no etcd endpoint"):
        KV([])
    with pytest.raises(EtcdConfigError, match=r"/nonexistent/ca.pem.*No such file"):
        KV(["https://127.0.0.1:1"], ca="/nonexistent/ca.pem")
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate")
    with pytest.raises(EtcdConfigError, match="not a PEM file"):
        KV(["https://127.0.0.1:1"], ca=str(junk))
    with pytest.raises(EtcdConfigError, match="together"):
        KV(["https://127.0.0.1:1"], cert=str(junk))
    pem = tmp_path / "pem.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(EtcdConfigError, match="not https"):
        KV(["http://127.0.0.1:1"], ca=str(pem))
    with pytest.raises(EtcdConfigError, match="password"):
        KV(["http://127.0.0.1:1"], user="root")


def test_auth_wrong_password_and_permissions():
    with EtcdProcess("auth", extra_args=["--auth-token-ttl=1"]) as proc:
        enable_auth_with_reader(proc)
        proc.etcdctl("--user=root:rootpw", "put", "/skydns/a", "1")

        with KV([proc.endpoint], timeout=2, user="reader", password="wrong") as bad:
            with pytest.raises(EtcdAuthError) as info:
                bad.list_prefix("/skydns/")
            assert "reader" in str(info.value) and "wrong" not in str(info.value)
        with KV([proc.endpoint], timeout=2) as anonymous:
            with pytest.raises(EtcdAuthError, match="requires authentication"):
                anonymous.list_prefix("/skydns/")
        with KV([proc.endpoint], timeout=2, user="reader", password="readerpw") as reader:
            assert reader.list_prefix("/skydns/")[1] == [("/skydns/a", b"1")]
            stream = reader.watch_prefix("/skydns/", 0)
            assert next(stream).events == []
            proc.etcdctl("--user=root:rootpw", "put", "/skydns/b", "2")
            events, _ = collect(stream, 1)
            assert events == [("/skydns/b", b"2")]
            with pytest.raises(EtcdAuthError, match="denied"):
                reader.put("/skydns/c", b"3")
            with pytest.raises(EtcdAuthError, match="denied"):
                next(reader.watch_prefix("/other/", 0))
            # Tokens expire (--auth-token-ttl=1 here); etcd then denies a new watch as if the
            # user lacked permission. The client logs in again, for watches and other calls.
            time.sleep(2.5)
            stream = reader.watch_prefix("/skydns/", 0)
            assert next(stream).events == []
            stream.cancel()
            time.sleep(2.5)
            assert len(reader.list_prefix("/skydns/")[1]) == 2


# ------------------------------------------------------------------ gevent

GEVENT_SCRIPT = r"""
import sys
from dnsdisco.etcd import client as kvmod
kvmod.init_gevent(); kvmod.init_gevent()          # idempotent
import gevent
kv = kvmod.KV([sys.argv[1]], timeout=3)
stream = kv.watch_prefix("/gevent/", 0, progress_interval=0.2)
assert next(stream).events == []
got = []
def reader():
    for batch in stream:
        got.extend(batch.events)
        if len(got) >= 3:
            return
ticks = []
def ticker():                                       # the hub keeps running while we wait
    for _ in range(20):
        ticks.append(1); gevent.sleep(0.01)
g = gevent.spawn(reader); t = gevent.spawn(ticker)
for i in range(3):
    kv.put("/gevent/k%d" % i, b"v")
g.join(timeout=5); t.join(timeout=5)
stream.cancel()
assert [k for k, _ in got] == ["/gevent/k0", "/gevent/k1", "/gevent/k2"], got
assert len(ticks) == 20
# The sync loop in a greenlet, as `dnsdisco serve` runs it.
from dnsdisco.dns.snapshot import ZoneConfig
from dnsdisco.etcd.sync import Syncer
syncer = Syncer(kv, "/gevent", [ZoneConfig("svc.local")], lambda snap, touched: None)
sg = gevent.spawn(syncer.run)
assert syncer.ready.wait(5)
kv.put("/gevent/local/svc/hello/1", b'{"host": "10.9.9.9"}')
with gevent.Timeout(5):
    while not syncer.current.records_for("hello.svc.local"):
        gevent.sleep(0.01)
syncer.stop(); sg.join(timeout=5)
assert sg.dead
kv.close()
print("ok")
"""


def test_works_under_gevent(etcd):
    res = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT, etcd.endpoint],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


# ------------------------------------------------------------------ cluster failover



def test_failover_when_members_die(cluster, prefix):
    with KV(endpoints(cluster), timeout=5) as client:
        first = leader(cluster)
        # make the leader the member in use, then kill it
        client._current = [m.endpoint for m in cluster].index(first.endpoint)
        rev = client.put(prefix + "a", b"1")
        assert client.endpoint_in_use == first.endpoint
        stream = client.watch_prefix(prefix, rev + 1, progress_interval=0.5)
        assert next(stream).events == []
        first.kill()
        r2 = client.put(prefix + "b", b"2")                # moves on to a live member
        assert client.endpoint_in_use != first.endpoint
        with pytest.raises(EtcdUnavailable):              # the stream on the dead member broke
            for _ in stream:
                pass
        events, _ = collect(client.watch_prefix(prefix, rev + 1), 1)
        assert events == [(prefix + "b", b"2")]
        lease = client.grant(30)
        assert client.refresh(lease) > 0
        assert client.list_prefix(prefix)[1] == [(prefix + "a", b"1"), (prefix + "b", b"2")]
        assert r2 > rev
        # Kill a second member: no quorum. Calls fail with a clear error, in bounded time.
        survivor = [m for m in cluster if m.running]
        survivor[0].kill()
        client.timeout = 2
        with pytest.raises(EtcdUnavailable) as info:
            client.put(prefix + "c", b"3")
        assert all(m.endpoint in str(info.value) for m in cluster)


# ------------------------------------------------------------------ TLS

def test_mutual_tls(tmp_path):
    tls = make_tls(str(tmp_path / "pki"))
    with EtcdProcess("tls", tls=tls) as proc:
        assert proc.endpoint.startswith("https://")
        proc.etcdctl("put", "/skydns/a", "1")
        with KV([proc.endpoint], timeout=3, ca=tls.ca, cert=tls.cert, key=tls.key) as client:
            assert client.list_prefix("/skydns/")[1] == [("/skydns/a", b"1")]
            stream = client.watch_prefix("/skydns/", 0)
            assert next(stream).events == []
            client.put("/skydns/b", b"2")
            assert collect(stream, 1)[0] == [("/skydns/b", b"2")]
        # Without a client certificate the server refuses: a clear EtcdUnavailable.
        with KV([proc.endpoint], timeout=1, ca=tls.ca) as anonymous:
            with pytest.raises(EtcdUnavailable, match=proc.endpoint):
                anonymous.list_prefix("/skydns/")


def test_list_pages_grow_and_shrink_under_the_receive_limit(etcd, prefix, monkeypatch):
    """Pages grow past the first page's size; a page over the receive limit is asked again
    smaller, so every key still arrives."""
    import dnsdisco.etcd.client as kvmod
    monkeypatch.setattr(kvmod, "CHANNEL_OPTIONS", [("grpc.max_receive_message_length", 100_000)]
                        + [o for o in kvmod.CHANNEL_OPTIONS if o[0] != "grpc.max_receive_message_length"])
    small = kvmod.KV([etcd.endpoint], timeout=10.0)
    try:
        for i in range(40):
            small.put(f"{prefix}big{i:02d}", b"x" * 20_000)          # 800 kB in all
        for i in range(300):
            small.put(f"{prefix}tiny{i:03d}", b"y")
        calls = []
        real = small._call
        monkeypatch.setattr(small, "_call", lambda what, fn, **kw: calls.append(what) or real(what, fn, **kw))
        revision, items = small.list_prefix(prefix, page_size=10)
        assert len(items) == 340 and revision > 0
        assert [k for k, _ in items] == sorted(k for k, _ in items)
        assert len(calls) < 340 / 10          # pages grew past the first page's 10 keys
    finally:
        small.close()
