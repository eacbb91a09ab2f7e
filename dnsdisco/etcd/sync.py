"""Keeps an immutable Snapshot equal to an etcd prefix: list once, then follow the watch.

The loop: list the prefix (in pages) and swap in a fresh snapshot; watch from the listed
revision + 1 and apply each batch of events to a new snapshot; when the stream breaks,
resume from the last applied revision + 1 (nothing is lost or applied twice) after a
capped backoff; when etcd has compacted that revision away, list again. While etcd is
unreachable the last snapshot keeps being served; the loss and the recovery are logged
once each, not once per retry.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Sequence

from dnsdisco.etcd.types import Compacted, EtcdAuthError, EtcdError
from dnsdisco.dns.names import name_for
from dnsdisco.dns.records import to_value
from dnsdisco.dns.bulk import Builder, no_collection
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig

if TYPE_CHECKING:           # a KV or a helper.ProcessKV; importing etcd.client would load gRPC
    from dnsdisco.etcd.client import KV

BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0


LINES_PER_SECOND = 3      # change lines of their own per second; the rest are summarised
SUMMARY_SERVICES = 8      # services named in one summary line


class ChangeLog:
    """Log lines for the changes each applied batch made to the served names: one info line
    per added, changed or removed record (name, instance, address:port), at most
    LINES_PER_SECOND a second; beyond that the changes are counted per service and written
    as one summary line at the end of the second. So a burst of 1,000 puts costs a few lines,
    and `--log-level warning` silences them all (they are info). A lease that expires and a
    delete look the same in a watch: both are "removed"."""

    def __init__(self, log: logging.Logger, *, clock: Callable[[], float] = time.monotonic,
                 per_second: int = LINES_PER_SECOND, timer=None):
        self._log = log
        self._clock = clock
        self._per_second = per_second
        self._timer = timer or _start_timer     # timer(seconds, fn): fn runs later, once
        self._lock = threading.Lock()
        self._window = -1.0                     # start of the current one-second window
        self._lines = 0                         # own lines written in it
        self._pending: dict[str, list[int]] = {}  # service -> [added, changed, removed]
        self._flush_due = False

    def applied(self, old: Snapshot, new: Snapshot, changes) -> None:
        """Log what `changes` ((key, value|None) pairs) did between snapshots old and new."""
        if not self._log.isEnabledFor(logging.INFO):
            return
        from dnsdisco.dns.names import name_for
        seen: set[str] = set()
        for key, _value in changes:
            if key in seen:
                continue
            seen.add(key)
            name = name_for(new.prefix, key)
            if name is None:
                continue
            before, after = old.record_at(name), new.record_at(name)
            if before is None and after is None:
                continue               # a bad value came or went (warned about elsewhere)
            if before is None:
                self._one("added", name, key, after, None)
            elif after is None:
                self._one("removed", name, key, None, before)
            elif before != after:
                self._one("changed", name, key, after, before)

    def relisted(self, old: Snapshot, new: Snapshot) -> None:
        """Log what a full re-list (after a compaction) changed: the changes the watch could
        not deliver. Walks both snapshots, so only for re-lists, never for the first sync."""
        if not self._log.isEnabledFor(logging.INFO):
            return
        keys = [new.key_of(rec) for name, rec in new.named_records() if old.record_at(name) != rec]
        keys += [old.key_of(rec) for name, rec in old.named_records() if new.record_at(name) is None]
        self.applied(old, new, [(key, None) for key in keys])

    def _one(self, what: str, name: str, key: str, rec, was) -> None:
        from dnsdisco.dns.names import parent
        service = parent(name)
        with self._lock:
            now = self._clock()
            if now - self._window >= 1.0:
                self._window, self._lines = now, 0
            if self._lines < self._per_second and not self._pending:
                self._lines += 1
                write = True
            else:
                counts = self._pending.setdefault(service, [0, 0, 0])
                counts[("added", "changed", "removed").index(what)] += 1
                write = False
                if not self._flush_due:
                    self._flush_due = True
                    self._timer(max(0.05, self._window + 1.0 - now), self.flush)
        if write:
            instance = name[:len(name) - len(service) - 1] if service else name
            if what == "added":
                text = f"added {name}: {_shown(rec)}"
            elif what == "removed":
                text = f"removed {name} (was {_shown(was)})"
            else:
                text = f"changed {name}: {_shown(was)} -> {_shown(rec)}"
            self._log.info(text, extra={"fields": {"change": what, "service": service, "instance": instance,
                                                   "key": key}})

    def flush(self) -> None:
        """Write the summary of the changes counted since the last one (the timer calls it)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._flush_due = False
            self._window, self._lines = self._clock(), 1
        if not pending:
            return
        total = sum(sum(c) for c in pending.values())
        busiest = sorted(pending.items(), key=lambda item: (-sum(item[1]), item[0]))
        parts = []
        for service, (added, changed, removed) in busiest[:SUMMARY_SERVICES]:
            counts = " ".join(f"{sign}{n}" for sign, n in (("+", added), ("~", changed), ("-", removed)) if n)
            parts.append(f"{service or '.'} {counts}")
        if len(busiest) > SUMMARY_SERVICES:
            parts.append(f"and {len(busiest) - SUMMARY_SERVICES} more service(s)")
        self._log.info("%d more change(s) (+added ~changed -removed): %s", total, "; ".join(parts),
                       extra={"fields": {"change": "summary", "changes": total}})


def _shown(rec) -> str:
    from dnsdisco.dns.records import shown_value
    return shown_value(rec)


def _start_timer(seconds: float, fn) -> None:
    # a Timer is a thread, or a greenlet once gevent has patched threading (serve)
    timer = threading.Timer(seconds, fn)
    timer.daemon = True
    timer.start()


@dataclass(frozen=True)
class SyncState:
    """What the sync loop knows, for health checks and `status`."""
    connected: bool = False            # a watch (or list) is currently answered by etcd
    revision: int = 0                  # everything up to this etcd revision is applied
    last_contact: float | None = None  # time.monotonic() of etcd's last answer
    resyncs: int = 0                   # full re-lists after the first (compaction)
    bad_values: int = 0                # warnings for values skipped as invalid
    error: str = ""                    # why etcd is unreachable, while it is


class Syncer:
    """The list + watch loop for one prefix; `run()` blocks until `stop()`.

    on_swap(snapshot, touched) is called after every swap, in order, from the loop's
    thread (or greenlet); touched None means "anything may have changed".
    metrics, if given, has watch(connected, revision), resync(reason), bad_value(key) and
    records(n).
    """

    def __init__(self, kv: KV, prefix: str, zones: Sequence[ZoneConfig],
                 on_swap: Callable[[Snapshot, frozenset | None], None],
                 metrics=None, log: logging.Logger | None = None, *,
                 page_size: int = 1000, progress_interval: float = 5.0, guard=None):
        self.kv = kv
        self.prefix = prefix.rstrip("/")
        # Watch "<prefix>/" so that a sibling such as /skydnsX is not ours.
        self.watch_prefix = self.prefix + "/"
        self._zones = tuple(zones)
        self._on_swap = on_swap
        self._metrics = metrics
        self._log = log or logging.getLogger("dnsdisco.etcd.sync")
        self._page_size = page_size
        self._progress_interval = progress_interval

        self.current: Snapshot = Snapshot.empty(self.prefix, self._zones)
        self.ready = threading.Event()
        self._state = SyncState()
        self._applied = 0                 # resume point: watch from _applied + 1
        self._bad_keys: set[str] = set()  # keys whose bad value was already reported
        self.skipped: dict[str, str] = {}  # key -> why, of every value skipped now (catalogue page)
        self._swap_lock = threading.Lock()
        self._stopping = threading.Event()
        self._stream = None
        self._lost_logged = False
        self.guard = guard                # a guard.ExpiryGuard, or None
        if guard is not None:
            guard._zone_of = self._zone_of_key
        self.changes = ChangeLog(logging.getLogger("dnsdisco.changes"))

    # ------------------------------------------------------------ public

    @property
    def state(self) -> SyncState:
        return self._state

    def run(self) -> None:
        """List, then follow the watch, until stop(). Never raises for etcd trouble."""
        if self.guard is not None and self.guard.enabled:
            # ends holds at --hold-max even when no batch arrives (a greenlet under serve's gevent)
            threading.Thread(target=self._release_loop, name="dnsdisco-expiry-guard", daemon=True).start()
        delay = BACKOFF_MIN
        need_list, reason = True, ""
        compactions_in_a_row = 0
        while not self._stopping.is_set():
            try:
                if need_list:
                    self._full_sync(reason)
                    need_list = False
                for _ in self._follow():
                    delay = BACKOFF_MIN
                    compactions_in_a_row = 0
                if self._stopping.is_set():
                    break
            except Compacted as exc:
                self._log.info("etcd compacted past revision %d (%s); listing %s again",
                               self._applied + 1, exc, self.watch_prefix)
                need_list, reason = True, "compacted"
                compactions_in_a_row += 1
                if compactions_in_a_row == 1:
                    continue  # re-list at once; back off only if it keeps happening
            except EtcdError as exc:
                self._lost(exc)
            except Exception as exc:  # a bug must not end the loop that keeps DNS current
                self._log.exception("sync loop error; retrying")
                self._lost(exc)
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, BACKOFF_MAX)

    def start(self) -> threading.Thread:
        """run() in a daemon thread (a greenlet once gevent has patched threading)."""
        thread = threading.Thread(target=self.run, name="dnsdisco-sync", daemon=True)
        thread.start()
        return thread

    def hold_notes(self) -> list[str]:
        """One line per zone the mass-expiry guard holds now (for /readyz's body)."""
        guard = self.guard
        if guard is None:
            return []
        return [f"holding {len(hold.held)} deleted record(s) of {zone} (mass expiry guard, since "
                f"{time.monotonic() - hold.started:.0f} s)" for zone, hold in list(guard.holds.items())]

    def stop(self) -> None:
        """End run() soon: the watch is cancelled and no backoff wait continues."""
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()

    def adopt(self, snapshot: Snapshot) -> None:
        """Before run(): serve `snapshot` (etcd/saved.py) until the first listing, which stays readiness."""
        self._swap(snapshot, None)

    def reload_zones(self, zones: Sequence[ZoneConfig]) -> None:
        """Serve the same records with new zone settings (SIGHUP)."""
        with self._swap_lock:
            self._zones = tuple(zones)
            self._swap(self.current.with_zones(self._zones), None)

    # ------------------------------------------------------------ the loop

    def _full_sync(self, reason: str) -> None:
        # pages are parsed as they arrive, while the helper is still listing, and the listing
        # is never held whole. The collector stays off meanwhile: every collection would walk
        # the millions of new records again, and none of them is garbage.
        builder = Builder(self.prefix, self._zones)
        with no_collection():
            revision, items = self.kv.list_prefix(self.watch_prefix, self._page_size, pages=builder.page)
            builder.add(_consumed(items))
            self._contact()
            with self._swap_lock:
                old = self.current
                snap = builder.finish(revision)
                del builder
                rejected = snap.rejected
                if snap.zones != self._zones:       # reloaded (SIGHUP) while the listing ran
                    snap = snap.with_zones(self._zones)
                self._report_rejected(rejected, None)
                if self.guard is not None:
                    if self.guard.holds:
                        self._log.info("mass expiry guard: the re-listing ends the hold of %s",
                                       ", ".join(sorted(self.guard.holds)))
                    self.guard.reset({z.name: snap.count_below(z.name) + (snap.record_at(z.name) is not None)
                                      for z in snap.zones})
                    self._held_metric(0)
                self._swap(snap, None)
                self._applied = revision
        if self.ready.is_set():
            try:
                self.changes.relisted(old, snap)
            except Exception:   # a log line must never stop the sync
                self._log.exception("logging the changes of the re-list at revision %d failed", revision)
        if reason:
            self._state = replace(self._state, resyncs=self._state.resyncs + 1)
            if self._metrics is not None:
                self._metrics.resync(reason)
        self._set_revision(revision)
        if not self.ready.is_set():
            # a service is a name with records one label below it: one node each (parent_count)
            # (walking two million names for their parents held readiness back by seconds)
            self._log.info("synced %d record(s) of %d service(s) from %s at revision %d%s",
                           snap.record_count, snap.parent_count, self.watch_prefix, revision,
                           f" ({len(self._bad_keys)} bad value(s) skipped)" if self._bad_keys else "")
            self.ready.set()
        else:
            self._log.info("re-listed %d record(s) at revision %d", snap.record_count, revision)

    def _follow(self):
        """Apply watch batches from _applied + 1 until the stream ends; yields per batch."""
        stream = self.kv.watch_prefix(self.watch_prefix, self._applied + 1,
                                      progress_interval=self._progress_interval)
        self._stream = stream
        if self._stopping.is_set():
            stream.cancel()
        try:
            for batch in stream:
                self._contact()
                if batch.events:
                    with self._swap_lock:
                        events = batch.events
                        if self.guard is not None and self.guard.enabled:
                            events = self._guarded(events)
                        old = self.current
                        new, touched, rejected = old.apply(batch.revision, events)
                        self._report_rejected(rejected, events)
                        self._swap(new, touched)
                    try:
                        self.changes.applied(old, new, events)
                    except Exception:   # a log line must never stop the sync
                        self._log.exception("logging the changes of revision %d failed", batch.revision)
                    if self.guard is not None and self.guard.holds:
                        self._release_holds()
                self._applied = max(self._applied, batch.revision)
                self._set_revision(self._applied)
                yield batch
        finally:
            stream.cancel()
            self._stream = None
        if not self._stopping.is_set():
            raise EtcdError(f"watch on {self.watch_prefix} ended")

    # ------------------------------------------------------------ the mass-expiry guard

    def _zone_of_key(self, key) -> str | None:
        name = name_for(self.prefix, key.decode("utf-8", "replace") if isinstance(key, bytes) else key)
        zone = self.current.zone_of(name) if name is not None else None
        return zone.name if zone is not None else None

    def _served_value(self, key) -> bytes | None:
        name = name_for(self.prefix, key.decode("utf-8", "replace") if isinstance(key, bytes) else key)
        rec = self.current.record_at(name) if name is not None else None
        return to_value(rec) if rec is not None else None

    def _guarded(self, events):
        guard = self.guard
        events, begun = guard.batch(list(events), self._served_value, time.monotonic())
        for zone in begun:
            hold = guard.holds[zone]
            self._log.warning("mass expiry in %s: %d of its %d record(s) deleted within %g s, more than %g; "
                              "serving them for up to %g s more, or until the fleet registers again "
                              "(--hold-fraction, --hold-window, --hold-max)", zone, len(hold.held), hold.zone_size,
                              guard.window, guard.fraction, guard.hold_max)
        self._held_metric(len(begun))
        return events

    def _release_holds(self) -> None:
        guard = self.guard
        with self._swap_lock:
            ended = guard.release(time.monotonic())
            for hold, deletions, why in ended:
                if deletions:
                    old = self.current
                    new, touched, _rejected = old.apply(old.revision, deletions)
                    self._swap(new, touched)
                    try:
                        self.changes.applied(old, new, deletions)
                    except Exception:   # a log line must never stop the sync
                        self._log.exception("logging the released hold of %s failed", hold.zone)
                self._log.warning("mass expiry guard: released %s, %d held record(s) deleted: %s",
                                  hold.zone, len(deletions), why)
            if ended:
                self._held_metric(0)

    def _release_loop(self) -> None:
        """Ends holds at --hold-max even when no watch batch arrives."""
        while not self._stopping.wait(0.5):
            if self.guard.holds:
                try:
                    self._release_holds()
                except Exception:
                    self._log.exception("mass expiry guard: releasing failed; retrying")

    def _held_metric(self, begun: int) -> None:
        if self._metrics is not None and hasattr(self._metrics, "expiry_hold"):
            self._metrics.expiry_hold(self.guard.held_count, begun)

    # ------------------------------------------------------------ bookkeeping

    def _swap(self, snap: Snapshot, touched: frozenset | None) -> None:
        self.current = snap
        try:
            self._on_swap(snap, touched)
        except Exception:
            self._log.exception("on_swap failed for revision %d", snap.revision)
        if self._metrics is not None:
            self._metrics.records(snap.record_count)

    def _report_rejected(self, rejected, changes) -> None:
        """Warn once per bad key; a key is reported again only after it was good (or gone)."""
        bad = {}
        for key, message in rejected:
            bad.setdefault(key, message)
        if changes is None:        # a full listing: forget keys that are no longer bad
            self._bad_keys &= set(bad)
        else:
            for key, _ in changes:
                if key not in bad:
                    self._bad_keys.discard(key)
        self._track_skipped(bad, changes)
        for key, message in bad.items():
            if key in self._bad_keys:
                continue
            self._bad_keys.add(key)
            self._log.warning("skipping bad value: %s", message if key in message else f"{key}: {message}")
            self._state = replace(self._state, bad_values=self._state.bad_values + 1)
            if self._metrics is not None:
                self._metrics.bad_value(key)

    def _track_skipped(self, bad: dict, changes) -> None:
        """Keep `skipped` equal to the values skipped now: a change to a key ends its entry
        unless the new value is bad too. Updated in place, in the loop's greenlet; readers copy."""
        if changes is None:
            self.skipped = dict(bad)
            return
        skipped = self.skipped
        for key, _ in changes:
            skipped.pop(key.decode("utf-8", "replace") if isinstance(key, bytes) else key, None)
        skipped.update(bad)

    def _contact(self) -> None:
        now = time.monotonic()
        if self._state.connected:
            self._state = replace(self._state, last_contact=now)
            return
        self._state = replace(self._state, connected=True, last_contact=now, error="")
        if self._lost_logged:
            self._log.info("etcd reachable again (%s); resuming from revision %d",
                           self._endpoint(), self._applied + 1)
            self._lost_logged = False
        if self._metrics is not None:
            self._metrics.watch(True, self._applied)

    def _lost(self, exc: Exception) -> None:
        was_connected = self._state.connected
        self._state = replace(self._state, connected=False, error=str(exc))
        if not self._lost_logged:
            if self.ready.is_set():
                self._log.warning("lost etcd: %s; answering from the last snapshot (revision %d) "
                                  "until it is back", exc, self.current.revision)
            elif isinstance(exc, EtcdAuthError):
                self._log.error("cannot read %s from etcd: %s", self.watch_prefix, exc)
            else:
                self._log.warning("cannot reach etcd yet: %s; retrying", exc)
            self._lost_logged = True
        else:
            self._log.debug("etcd still unreachable: %s", exc)
        if was_connected and self._metrics is not None:
            self._metrics.watch(False, self._applied)

    def _set_revision(self, revision: int) -> None:
        if revision != self._state.revision:
            self._state = replace(self._state, revision=revision)
            if self._metrics is not None:
                self._metrics.watch(self._state.connected, revision)

    def _endpoint(self) -> str:
        return getattr(self.kv, "endpoint_in_use", "etcd")


def _consumed(items: list):
    """Yield the listed (key, value) pairs, freeing each as it goes: at 200,000 keys the
    listing and the snapshot being built need not both be held in full at the peak."""
    items.reverse()
    pop = items.pop
    while items:
        yield pop()
