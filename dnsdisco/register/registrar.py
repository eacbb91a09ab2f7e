"""Keep service instances registered in etcd exactly while they are alive, healthy and not drained.

Every registration of a process that shares (etcd settings, lease TTL) shares one lease and one
keepalive thread, a `LeaseGroup`: a sidecar that registers a thousand containers runs one loop
and asks etcd about one lease, not a thousand. The loop refreshes the lease about every ttl/3;
when the lease is gone (revoked, expired during a pause or a network gap, lost with etcd's
data) it grants a new one and writes every key again. While etcd cannot be reached it retries
with a backoff that stays a small fraction of the TTL, refreshes first thing once etcd answers,
and logs the loss and the recovery once per group.

A `Registrar` is one key in a group. Health checks (checks.py) gate it (present only while
they pass, counted with rise/fall thresholds); `drain()` removes it while the process keeps running; `stop()`
deletes it, and the last registrar of a group revokes the lease, so records disappear at once
rather than after the TTL.

Plain threads only: works with or without gevent monkey-patching. The etcd client is
injected (anything with grant/refresh/put/delete/revoke, optionally get, put_many and
lease_keys), so the loop is testable against a real etcd and against a recording fake alike.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from dnsdisco.register.checks import Thresholds
from dnsdisco.register.record import MIN_TTL

log = logging.getLogger("dnsdisco.register")


class Backoff:
    """Retry delays doubling from `first` up to `cap`, with jitter-free bounds for tests."""

    def __init__(self, first: float = 0.2, cap: float = 5.0):
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first



# ---------------------------------------------------------------- the loop

def retry_cap(ttl: int) -> float:
    """The longest pause between tries while etcd fails: a tenth of the lease (at least 0.2 s),
    so even after many failures the next try comes well before the lease can run out."""
    return max(0.2, ttl / 10.0)


class LeaseGroup:
    """One lease and one keepalive thread for every Registrar that joins it.

    The thread starts with the first member and, once `close()` is called (by the owner
    when the last member has left), revokes the lease, so the keys still under it go at once.
    """

    PUT_BATCH = 100   # keys per transaction; etcd's --max-txn-ops defaults to 128

    def __init__(self, kv, ttl: int, *, backoff_cap: float | None = None, logger: logging.Logger | None = None):
        if ttl < MIN_TTL:
            raise ValueError(f"lease TTL {ttl} is below etcd's minimum of {MIN_TTL} seconds")
        self.kv, self.ttl = kv, int(ttl)
        self.log = logger or log
        self.lease: int | None = None
        self.grants = 0                      # leases granted, for tests and logs
        self._refresh_every = self.ttl / 3.0
        cap = retry_cap(self.ttl) if backoff_cap is None else min(backoff_cap, retry_cap(self.ttl))
        self._backoff = Backoff(min(0.1, cap), cap)
        self._next_refresh = 0.0
        self._outage_since: float | None = None
        self._members: dict[str, Registrar] = {}
        self._leaving: dict[str, Registrar] = {}
        self._lock = threading.Lock()
        # held around start-up checks that lower kv.timeout for a moment (etcd.settings.check_access):
        # two at once would restore each other's lowered value for good
        self.setup_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- membership (any thread)

    def join(self, member: "Registrar") -> None:
        with self._lock:
            if self._closing.is_set():
                raise RuntimeError("this lease group is closed")
            if member.key in self._members:
                raise ValueError(f"{member.key} is already registered by this process")
            self._members[member.key] = member
            earlier = self._leaving.pop(member.key, None)
            if earlier is not None:    # the same key again before its delete: nothing to delete
                earlier.gone.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dnsdisco-lease", daemon=True)
                self._thread.start()
        self._wake.set()

    def leave(self, member: "Registrar") -> None:
        """Remove the member's key (asynchronously: the member's `gone` event tells)."""
        with self._lock:
            if self._members.get(member.key) is member:
                del self._members[member.key]
                self._leaving[member.key] = member
        self._wake.set()

    @property
    def members(self) -> int:
        with self._lock:
            return len(self._members)

    def poke(self) -> None:
        self._wake.set()

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread; it revokes the lease on its way out (every key under it goes)."""
        self._closing.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def reachable(self) -> bool:
        """False while etcd fails (from the first failure until a step succeeds)."""
        return self._outage_since is None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- the thread

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                try:
                    self._step()
                except Exception as exc:  # any etcd failure: retry, never die
                    self._unsure()
                    self._next_refresh = 0.0   # first thing once etcd answers: is the lease alive?
                    self._lost(exc)
                    delay = self._backoff.next()
                else:
                    self._recovered()
                    self._backoff.reset()
                    delay = max(0.0, self._next_refresh - time.monotonic())
                self._wake.wait(delay)
                self._wake.clear()
        finally:
            self._revoke()

    def _step(self) -> None:
        if self.lease is None:
            self._grant()
        elif time.monotonic() >= self._next_refresh:
            remaining = self.kv.refresh(self.lease)
            if remaining <= 0:
                self.log.warning("lease %x is gone (expired or revoked); granting a new one and writing "
                                 "%s again", self.lease, self._what())
                self._lease_lost()
                self._grant()
            else:
                self._next_refresh = time.monotonic() + self._refresh_every
                self._audit()
        self._sync()

    def _what(self) -> str:
        with self._lock:
            keys = list(self._members)
        return keys[0] if len(keys) == 1 else f"its {len(keys)} keys"

    def _grant(self) -> None:
        self.lease = self.kv.grant(self.ttl)
        self.grants += 1
        self._next_refresh = time.monotonic() + self._refresh_every
        with self._lock:
            members = list(self._members.values())
        for m in members:
            m._set_written(False)

    def _lease_lost(self) -> None:
        """Every key under the lease went with it: nothing to delete any more."""
        self.lease = None
        with self._lock:
            members = list(self._members.values())
            leaving, self._leaving = list(self._leaving.values()), {}
        for m in members:
            m._set_written(False)
        for m in leaving:
            m._set_written(False)
            m.gone.set()

    def _audit(self) -> None:
        """Find keys deleted (or overwritten without our lease) behind our back: one question
        about the lease, not one per key."""
        with self._lock:
            written = [m for m in self._members.values() if m._written is True and m._wanted()]
        if not written:
            return
        lease_keys = getattr(self.kv, "lease_keys", None)
        if lease_keys is not None:
            keys = lease_keys(self.lease)
            if keys is None:
                return   # gone since the refresh: the next refresh grants a new one
            missing = [m for m in written if m.key not in keys]
        else:
            get = getattr(self.kv, "get", None)
            missing = [m for m in written if get is not None and get(m.key) != m.value]
        for m in missing:
            self.log.warning("%s was removed behind our back; writing it again", m.key)
            m._set_written(False)

    def _sync(self) -> None:
        """Write the keys that should be there and delete those that should not."""
        with self._lock:
            members = list(self._members.values())
            leaving = list(self._leaving.values())
        put = [m for m in members if m._wanted() and m._written is not True]
        delete = [m for m in members if not m._wanted() and m._written is not False]
        if put:
            self._put(put)
        for m in delete:
            m._written = None
            self.kv.delete(m.key)
            m._set_written(False)
            m._log_removed()
        for m in leaving:
            self.kv.delete(m.key)
            m._set_written(False)
            with self._lock:
                if self._leaving.get(m.key) is m:
                    del self._leaving[m.key]
            m.gone.set()

    def _put(self, members: list) -> None:
        for m in members:
            m._written = None          # a failed call may or may not have applied
        put_many = getattr(self.kv, "put_many", None)
        try:
            self._write(members, put_many)
        except Exception as exc:
            if "lease not found" not in str(exc):
                raise
            self._lease_lost()         # the lease vanished between refresh and put
            self._grant()
            self._write(members, put_many)
        again = len(members) > 3
        for m in members:
            m._set_written(True)
            m._log_registered(self.lease, quiet=again)
        if again:
            self.log.info("registered %d keys (lease %x, ttl %ds)", len(members), self.lease, self.ttl)

    def _write(self, members: list, put_many) -> None:
        if put_many is not None and len(members) > 1 and self.PUT_BATCH > 1:
            try:
                put_many([(m.key, m.value) for m in members], lease=self.lease, batch=self.PUT_BATCH)
                return
            except Exception as exc:
                if "too many operations" not in str(exc):
                    raise
                # an etcd run with --max-txn-ops below our batch: one put at a time from now on
                self.log.warning("etcd refuses %d puts in one transaction (--max-txn-ops); writing one "
                                 "key per request", self.PUT_BATCH)
                self.PUT_BATCH = 1
        for m in members:
            self.kv.put(m.key, m.value, lease=self.lease)

    def _unsure(self) -> None:
        with self._lock:
            members = list(self._members.values())
        for m in members:
            if m._written is None:
                m.registered.clear()

    def _lost(self, exc: Exception) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            kind = "" if "Etcd" in type(exc).__name__ else f"{type(exc).__name__}: "
            self.log.warning("etcd unavailable, %s not refreshed; retrying: %s%s", self._what(), kind, exc)
        else:
            self.log.debug("still unavailable: %s", exc)

    def _recovered(self) -> None:
        if self._outage_since is not None:
            with self._lock:
                members = list(self._members.values())
            up = sum(1 for m in members if m._written is True)
            state = (("registered" if up else "not registered (unhealthy or drained)") if len(members) == 1
                     else f"{up} of {len(members)} keys registered")
            self.log.info("etcd reachable again after %.1fs; %s is %s", time.monotonic() - self._outage_since,
                          self._what(), state)
            self._outage_since = None

    def _revoke(self) -> None:
        with self._lock:
            members = list(self._members.values()) + list(self._leaving.values())
            self._leaving = {}
        for m in members:
            m.registered.clear()
        if self.lease is None:
            for m in members:
                m.gone.set()
            return
        what = self._what() if self._members else (members[0].key if len(members) == 1 else "its keys")
        try:
            self.kv.revoke(self.lease)
            self.log.info("deregistered %s (lease %x revoked)", what, self.lease)
            for m in members:
                m._set_written(False)
                m.gone.set()
        except Exception as exc:
            self.log.warning("could not revoke lease %x (%s); %s expires within %ds",
                             self.lease, exc, what, self.ttl)
        self.lease = None


class Registrar:
    """Holds `key` = `value` in etcd under a lease while running (and healthy, and not drained).

    With `group`, it joins that shared LeaseGroup; otherwise it makes a group of its own on
    `kv` (closed, and its lease revoked, by `stop()`). `start()` joins; `stop()` removes the
    key and leaves. `registered` is set while the record is known to be written.
    """

    def __init__(self, kv, key: str, value: bytes, ttl: int | None = None, *, group: LeaseGroup | None = None,
                 check: Callable[[], tuple[bool, str]] | None = None, check_interval: float = 5.0,
                 rise: int = 1, fall: int = 2, backoff_cap: float | None = None,
                 logger: logging.Logger | None = None):
        if group is None:
            if ttl is None:
                raise ValueError("give a lease TTL or a LeaseGroup")
            group = LeaseGroup(kv, ttl, backoff_cap=backoff_cap, logger=logger)
            self._own_group = True
        else:
            self._own_group = False
        self.group = group
        self.kv, self.key, self.value, self.ttl = group.kv, key, value, group.ttl
        self.check, self.check_interval = check, float(check_interval)
        self.thresholds = Thresholds(rise, fall)
        self.log = logger or log
        self.registered = threading.Event()
        self.removed = threading.Event()      # set while the key is known to be absent
        self.removed.set()
        self.gone = threading.Event()         # set once the key is deleted after stop()
        self._written: bool | None = False    # None: unknown after a failed call
        self._announced = False
        self._healthy = check is None
        self._draining = False
        self._stopping = threading.Event()
        self._checker: threading.Thread | None = None
        self._started = False

    # ---- state the group reads and writes

    def _wanted(self) -> bool:
        return self._healthy and not self._draining and not self._stopping.is_set()

    def _set_written(self, written: bool) -> None:
        self._written = written
        if written:
            self.removed.clear()
            self.registered.set()
        else:
            self.registered.clear()
            self.removed.set()

    def _log_registered(self, lease: int, quiet: bool = False) -> None:
        (self.log.debug if quiet else self.log.info)(
            "%s %s = %s (lease %x, ttl %ds)", "registered again" if self._announced else "registered",
            self.key, self.value.decode(), lease, self.ttl)
        self._announced = True

    def _log_removed(self) -> None:
        if self._draining:
            self.log.info("drained: removed %s; the process keeps running", self.key)
        else:
            self.log.info("removed %s while the health check fails", self.key)

    # ---- control

    @property
    def lease(self) -> int | None:
        return self.group.lease

    @property
    def grants(self) -> int:
        return self.group.grants

    def start(self) -> "Registrar":
        if self._started:
            return self
        self.group.join(self)          # raises for a key this process registers already
        self._started = True
        if self.check is not None:
            self._checker = threading.Thread(target=self._check_loop, name="dnsdisco-health", daemon=True)
            self._checker.start()
        return self

    def drain(self, timeout: float | None = None) -> bool:
        """Remove the record but keep running: new clients stop coming while those that still
        hold the answer (for its DNS TTL) are served. Returns whether the removal is confirmed
        within `timeout` (None: do not wait)."""
        if not self._draining:
            self._draining = True
            self.log.debug("draining %s", self.key)
            self.group.poke()
        if timeout is None:
            return self.removed.is_set()
        return self.removed.wait(timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Remove the key; with a group of its own, revoke the lease and end its thread."""
        self._stopping.set()
        if not self._started:
            return
        if self._own_group:
            self.group.close(timeout)
        else:
            self.group.leave(self)
            if timeout and self.group.reachable:   # etcd down: the delete waits for it, we need not
                self.gone.wait(timeout)
        if self._checker is not None and self._checker is not threading.current_thread():
            self._checker.join(1.0)
        close = getattr(self.check, "close", None)
        if close is not None:
            close()

    # ---- health

    def _check_loop(self) -> None:
        first = True
        while not self._stopping.is_set():
            try:
                ok, detail = self.check()
            except Exception as exc:  # a broken check is a failing check
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            t = self.thresholds
            if t.feed(ok):
                self._healthy = t.healthy
                if t.healthy:
                    self.log.info("health check passes%s (%s); registering %s",
                                  f" {t.passes} times in a row" if t.rise > 1 else "", detail, self.key)
                else:
                    self.log.warning("health check failed %d times in a row (%s); removing %s",
                                     t.fails, detail, self.key)
                self.group.poke()
            elif first and not ok:
                self.log.warning("health check fails (%s); %s is not registered until it passes", detail, self.key)
            elif not ok and t.healthy:
                self.log.debug("health check failed (%s), %d of %d before removal", detail, t.fails, t.fall)
            first = False
            self._stopping.wait(self.check_interval)


# ---------------------------------------------------------------- sharing in a process

_groups: dict[tuple, list] = {}     # signature -> [LeaseGroup, members]
_groups_lock = threading.Lock()


def shared_group(signature: tuple, ttl: int, connect: Callable[[], object]) -> LeaseGroup:
    """The process's LeaseGroup for (etcd settings, lease TTL), made with a client from
    `connect()` on first use; every call is matched by one `release_group`."""
    key = (signature, int(ttl))
    with _groups_lock:
        entry = _groups.get(key)
        if entry is None:
            entry = _groups[key] = [LeaseGroup(connect(), ttl), 0]
        entry[1] += 1
        return entry[0]


def release_group(group: LeaseGroup, timeout: float | None = None) -> None:
    """One user fewer; the last one closes the group (revoking its lease) and its client."""
    with _groups_lock:
        for key, entry in list(_groups.items()):
            if entry[0] is group:
                entry[1] -= 1
                if entry[1] > 0:
                    return
                del _groups[key]
                break
        else:
            return
    group.close(timeout)
    close = getattr(group.kv, "close", None)
    if close is not None:
        close()
