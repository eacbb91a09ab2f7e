"""Changes in the log (issue 22): serve logs each applied change to the served names at info
(name, instance, address:port; added, changed or removed), summarises bursts per service so a
burst costs a few lines a second, logs the first full sync as one line, and says nothing of
it at --log-level warning. The ChangeLog of dnsdisco.etcd.sync with a fake clock; the run in a
real `dnsdisco serve` is tests/e2e/test_change_log.py."""
from __future__ import annotations

import logging

from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.etcd.sync import ChangeLog

ZONES = [ZoneConfig("svc.local")]


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _changelog(caplog, clock):
    timers = []
    log = logging.getLogger("test.changes")
    caplog.set_level(logging.INFO, logger="test.changes")
    return ChangeLog(log, clock=clock, timer=lambda seconds, fn: timers.append((seconds, fn))), timers


def _apply(snap, changes):
    new, _touched, _rejected = snap.apply(snap.revision + 1, changes)
    return new


def test_each_change_is_one_line_naming_name_instance_and_address(caplog):
    changes, _timers = _changelog(caplog, Clock())
    s0 = Snapshot.build("/skydns", ZONES, 1, [])
    s1 = _apply(s0, [("/skydns/local/svc/hello/a", b'{"host":"10.0.0.7","port":8080}')])
    changes.applied(s0, s1, [("/skydns/local/svc/hello/a", b"")])
    s2 = _apply(s1, [("/skydns/local/svc/hello/a", b'{"host":"10.0.0.8","port":8080}')])
    changes.applied(s1, s2, [("/skydns/local/svc/hello/a", b"")])
    s3 = _apply(s2, [("/skydns/local/svc/hello/a", None)])
    changes.applied(s2, s3, [("/skydns/local/svc/hello/a", None)])
    # a bad value is not a change of what is served (it is warned about by the sync loop)
    s4 = _apply(s3, [("/skydns/local/svc/hello/b", b'{"host":"10.0.0.300"}')])
    changes.applied(s3, s4, [("/skydns/local/svc/hello/b", b"")])
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["added a.hello.svc.local: 10.0.0.7:8080",
                     "changed a.hello.svc.local: 10.0.0.7:8080 -> 10.0.0.8:8080",
                     "removed a.hello.svc.local (was 10.0.0.8:8080)"]
    fields = [r.fields for r in caplog.records]
    assert fields[0] == {"change": "added", "service": "hello.svc.local", "instance": "a",
                         "key": "/skydns/local/svc/hello/a"}
    assert [f["change"] for f in fields] == ["added", "changed", "removed"]


def test_a_burst_is_summarised_per_service(caplog):
    clock = Clock()
    changes, timers = _changelog(caplog, clock)
    snap = Snapshot.build("/skydns", ZONES, 1, [])
    for i in range(1000):
        key = f"/skydns/local/svc/{'web' if i % 4 else 'api'}/i{i}"
        new = _apply(snap, [(key, b'{"host":"10.0.0.1"}')])
        changes.applied(snap, new, [(key, b"")])
        snap = new
        clock.now += 0.0005          # 1,000 puts in half a second
    assert len(caplog.records) == 3 and len(timers) == 1
    clock.now += 1
    timers[0][1]()                   # the end of the second
    summary = caplog.records[-1].getMessage()
    assert summary.startswith("997 more change(s)"), summary
    assert "web.svc.local +748; api.svc.local +249" in summary      # 750 and 250, less the 3 lines
    assert len(caplog.records) == 4


def test_a_relist_logs_what_the_watch_missed(caplog):
    changes, _timers = _changelog(caplog, Clock())
    old = Snapshot.build("/skydns", ZONES, 5, [("/skydns/local/svc/hello/a", b'{"host":"10.0.0.7"}'),
                                              ("/skydns/local/svc/hello/b", b'{"host":"10.0.0.8"}'),
                                              ("/skydns/local/svc/same/x", b'{"host":"10.0.0.1"}')])
    new = Snapshot.build("/skydns", ZONES, 9, [("/skydns/local/svc/hello/a", b'{"host":"10.0.0.9"}'),
                                              ("/skydns/local/svc/hello/c", b'{"host":"10.0.0.3"}'),
                                              ("/skydns/local/svc/same/x", b'{"host":"10.0.0.1"}')])
    changes.relisted(old, new)
    assert sorted(r.getMessage() for r in caplog.records) == [
        "added c.hello.svc.local: 10.0.0.3",
        "changed a.hello.svc.local: 10.0.0.7 -> 10.0.0.9",
        "removed b.hello.svc.local (was 10.0.0.8)"]


def test_nothing_at_warning_level():
    log = logging.getLogger("test.changes.quiet")
    log.setLevel(logging.WARNING)
    calls = []
    changes = ChangeLog(log, timer=lambda *a: calls.append(a))
    s0 = Snapshot.build("/skydns", ZONES, 1, [])
    s1 = _apply(s0, [("/skydns/local/svc/hello/a", b'{"host":"10.0.0.7"}')])
    changes.applied(s0, s1, [("/skydns/local/svc/hello/a", b"")])
    assert not calls


def test_an_adopted_snapshot_is_served_until_the_first_listing_replaces_it():
    """serve --snapshot-file: the snapshot saved at the last stop is swapped in before the
    first listing, is not `ready` (readiness is the listing, which ends serve's provisional
    answers), and the listing's snapshot replaces it whole."""
    from dnsdisco.etcd.sync import Syncer

    class ListingKV:
        def list_prefix(self, prefix, page_size, pages=None):
            pages([("/skydns/local/svc/new/a", b'{"host":"10.0.0.9"}')])
            return 7, []

    swaps = []
    syncer = Syncer(ListingKV(), "/skydns", ZONES, on_swap=lambda snap, touched: swaps.append((snap, touched)))
    saved = Snapshot.build("/skydns", ZONES, 3, [("/skydns/local/svc/old/a", b'{"host":"10.0.0.1"}')])
    syncer.adopt(saved)
    assert syncer.current is saved and swaps == [(saved, None)]
    assert not syncer.ready.is_set() and syncer.state.last_contact is None
    syncer._full_sync("")
    assert syncer.ready.is_set() and syncer.current.revision == 7 and syncer.state.last_contact is not None
    assert syncer.current.record_at("a.new.svc.local") is not None
    assert syncer.current.record_at("a.old.svc.local") is None
    assert [touched for _snap, touched in swaps] == [None, None]
