"""The one adapter over the etcd v3 API: everything dnsdisco asks of etcd goes through KV.

Built on the gRPC stubs of pyetcd (etcd-sdk-python), not on its client objects, because:
- failover: one gRPC channel per endpoint; a call that meets an unavailable member (or a
  member without a leader) moves on to the next one until a deadline, so a killed member
  costs nothing once its channel is known dead;
- watches: pyetcd's callback Watcher drops stream errors silently and deadlocks when a watch
  is added inside a callback; here a watch is a plain iterator that raises `Compacted` or
  `EtcdUnavailable` and can be cancelled from any thread;
- auth tokens are re-fetched when etcd says they expired.

Works in plain threads and under gevent; a gevent program calls `init_gevent()` first.
The watch stream is in watch.py and the windowed listing in listing.py; KV gives both.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Callable

import grpc
from pyetcd import etcdrpc

from dnsdisco.etcd import listing
from dnsdisco.etcd.watch import WatchStream, _details, _key_str
# the gRPC-free part, re-exported: `from dnsdisco.etcd.client import EtcdError` keeps working
from dnsdisco.etcd.types import (Compacted, EtcdAuthError, EtcdConfigError, EtcdError, EtcdTooLarge,  # noqa: F401
                      EtcdUnavailable, WatchBatch, check_settings, checked_settings, parse_endpoint,
                      range_end, read_pem)

log = logging.getLogger(__name__)

# gRPC's default receive limit is 4 MiB. Lists are paged anyway; a watch catch-up batch or a
# large transaction can still exceed it (pyetcd's protos predate watch fragmentation).
MAX_RECEIVE_BYTES = 64 * 1024 * 1024

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
    # Find dead connections under an idle watch. etcd refuses pings more often than 5 s
    # and pings without an open call.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect to a restarted member within about 2 s instead of gRPC's 120 s cap.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]

# One try of a small request (put, delete, lease, status, watch open) gives up after this and
# is retried, on the next member if there are several: a write sent to a follower while the
# leader dies hangs until the client gives up, although a new leader is elected in about
# a second. Lists and compactions may legitimately take longer and get the whole timeout.
QUICK_TRY = 1.0

# Status codes after which another member (or a later try) may succeed.
_RETRY_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# etcd messages that mean "this member cannot serve right now", whatever the code.
_RETRY_MESSAGES = ("no leader", "leader changed", "request timed out", "deadline exceeded",
                   "too many requests", "not capable", "stopped")


# --------------------------------------------------------------------- gevent

_gevent_initialized = False
_gevent_lock = threading.Lock()


def init_gevent() -> None:
    """Make the process gevent-cooperative: monkey-patch, then switch gRPC to gevent.

    Call first thing in a gevent program, before any KV exists. Idempotent.
    """
    global _gevent_initialized
    with _gevent_lock:
        if _gevent_initialized:
            return
        from gevent import monkey
        if not monkey.is_module_patched("socket"):
            monkey.patch_all()
        import grpc.experimental.gevent as grpc_gevent
        grpc_gevent.init_gevent()
        _gevent_initialized = True


# --------------------------------------------------------------------- helpers

class _Endpoint:
    """One member: its URL, its gRPC channel and the stubs on it."""

    def __init__(self, url: str, credentials: grpc.ChannelCredentials | None):
        self.url, self.target = parse_endpoint(url)
        if self.url.startswith("https://"):
            self.channel = grpc.secure_channel(self.target, credentials, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self.kv = etcdrpc.KVStub(self.channel)
        self.watch = etcdrpc.WatchStub(self.channel)
        self.lease = etcdrpc.LeaseStub(self.channel)
        self.maintenance = etcdrpc.MaintenanceStub(self.channel)
        self.auth = etcdrpc.AuthStub(self.channel)

    def close(self) -> None:
        self.channel.close()


# --------------------------------------------------------------------- KV

class KV:
    """etcd access with failover between endpoints.

    `timeout` bounds every call, failover and retries included: a call that finds no member
    able to answer within it raises EtcdUnavailable.
    """

    def __init__(self, endpoints: list[str] | str, *, timeout: float = 5.0,
                 ca: str | None = None, cert: str | None = None, key: str | None = None,
                 user: str | None = None, password: str | None = None):
        # what another process needs to open the same KV (serve's watch helper, etcd/helper.py)
        self.settings, pems = checked_settings(endpoints, timeout=timeout, ca=ca, cert=cert, key=key,
                                               user=user, password=password)
        endpoints, self.timeout = self.settings["endpoints"], self.settings["timeout"]
        credentials = None
        if pems is not None:
            root, private_key, chain = pems
            credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=private_key,
                                                       certificate_chain=chain)
        self._user, self._password = user, password
        self._endpoints = [_Endpoint(e, credentials) for e in endpoints]
        self._current = 0
        self._token: str | None = None
        self._auth_lock = threading.Lock()
        self._watches: weakref.WeakSet[WatchStream] = weakref.WeakSet()
        self._closed = False

    # ---- public API

    @property
    def endpoints(self) -> list[str]:
        return [ep.url for ep in self._endpoints]

    @property
    def endpoint_in_use(self) -> str:
        """The endpoint that answered last (calls start there)."""
        return self._endpoints[self._current].url

    def list_prefix(self, prefix: str, page_size: int = 1000, pages=None,
                    threads: int = listing.LIST_THREADS, raw: bool = False) -> tuple[int, list[tuple[str, bytes]]]:
        """Every (key, value) under prefix as of one revision, read in pages (listing.py).

        Pages after the first are read at the first page's revision, so the result is one
        consistent snapshot. If that revision is compacted mid-way, the list starts over.
        A large prefix is read in windows, `threads` of them at once.

        With `pages`, each page's pairs go to `pages(items)` as they arrive instead of into
        the returned list (which is then empty), one call at a time but windows in any order,
        and `pages(None)` says a compaction started the listing over: the serve helper
        forwards pages so it never holds the whole listing. `raw` hands `pages` etcd's
        KeyValue messages instead of (key, value) pairs.
        """
        start, end = listing.prefix_range(prefix)

        def rng(key, stop, limit, revision, keys_only):
            req = etcdrpc.RangeRequest(key=key, range_end=stop, limit=limit, revision=revision,
                                       keys_only=keys_only)
            return self._call(f"list {prefix!r}", lambda ep, t, md: ep.kv.Range(req, timeout=t, metadata=md),
                              slow=True)

        kwargs = {"decode": None} if raw and pages is not None else {}
        return listing.list_range(rng, start, end, page_size, pages, threads if end != b"\0" else 1, **kwargs)

    def watch_prefix(self, prefix: str, start_revision: int, *,
                     progress_interval: float = 5.0) -> WatchStream:
        """Changes under prefix from start_revision on (0 = from now), as WatchBatch items.

        Raises Compacted when start_revision is compacted away, EtcdUnavailable when the
        stream breaks; `cancel()` on the returned stream ends it from any thread.
        """
        stream = WatchStream(self, prefix, start_revision, progress_interval)
        self._watches.add(stream)
        return stream

    def get(self, key: str) -> bytes | None:
        """The value at key, None if absent."""
        req = etcdrpc.RangeRequest(key=key.encode())
        resp = self._call(f"get {key!r}", lambda ep, t, md: ep.kv.Range(req, timeout=t, metadata=md))
        return resp.kvs[0].value if resp.kvs else None

    def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        """Write value at key (attached to lease if given); return the new revision."""
        if isinstance(value, str):
            value = value.encode()
        req = etcdrpc.PutRequest(key=key.encode(), value=value, lease=lease or 0)
        resp = self._call(f"put {key!r}", lambda ep, t, md: ep.kv.Put(req, timeout=t, metadata=md))
        return resp.header.revision

    def delete(self, key: str) -> None:
        req = etcdrpc.DeleteRangeRequest(key=key.encode())
        self._call(f"delete {key!r}", lambda ep, t, md: ep.kv.DeleteRange(req, timeout=t, metadata=md))

    def delete_prefix(self, prefix: str) -> None:
        if not prefix:
            raise ValueError("refusing to delete the whole key space")
        req = etcdrpc.DeleteRangeRequest(key=prefix.encode(), range_end=range_end(prefix.encode()))
        self._call(f"delete {prefix!r}*",
                   lambda ep, t, md: ep.kv.DeleteRange(req, timeout=t, metadata=md))

    def grant(self, ttl: int) -> int:
        """A new lease of ttl seconds; returns its id."""
        req = etcdrpc.LeaseGrantRequest(TTL=int(ttl))
        resp = self._call(f"grant a {ttl}s lease",
                          lambda ep, t, md: ep.lease.LeaseGrant(req, timeout=t, metadata=md))
        if resp.error:
            raise EtcdError(f"grant a {ttl}s lease: {resp.error}")
        return resp.ID

    def refresh(self, lease_id: int) -> int:
        """Keep a lease alive once; returns its TTL after the refresh, 0 if the lease is gone."""
        req = etcdrpc.LeaseKeepAliveRequest(ID=lease_id)

        def keepalive(ep, t, md):
            call = ep.lease.LeaseKeepAlive(iter([req]), timeout=t, metadata=md)
            try:
                return next(call)
            except StopIteration:
                raise EtcdUnavailable(f"{ep.url} closed the keepalive stream") from None
            finally:
                call.cancel()

        return self._call(f"refresh lease {lease_id:x}", keepalive).TTL

    def put_many(self, items: list[tuple[str, bytes]], lease: int | None = None, batch: int = 100) -> None:
        """Write several keys, `batch` per transaction (etcd refuses more than --max-txn-ops,
        default 128, in one): re-writing a thousand registrations after a lost lease is ten
        requests, not a thousand."""
        for start in range(0, len(items), batch):
            ops = [etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
                key=key.encode(), value=value.encode() if isinstance(value, str) else value, lease=lease or 0))
                for key, value in items[start:start + batch]]
            req = etcdrpc.TxnRequest(success=ops)
            self._call(f"put {len(ops)} keys", lambda ep, t, md: ep.kv.Txn(req, timeout=t, metadata=md))

    def lease_keys(self, lease_id: int) -> set[str] | None:
        """The keys attached to a lease now; None if the lease is gone."""
        req = etcdrpc.LeaseTimeToLiveRequest(ID=lease_id, keys=True)
        resp = self._call(f"keys of lease {lease_id:x}",
                          lambda ep, t, md: ep.lease.LeaseTimeToLive(req, timeout=t, metadata=md))
        if resp.TTL <= 0:
            return None
        return {_key_str(k) for k in resp.keys}

    def revoke(self, lease_id: int) -> None:
        """Revoke a lease (its keys go with it); a lease that is already gone is fine."""
        req = etcdrpc.LeaseRevokeRequest(ID=lease_id)
        try:
            self._call(f"revoke lease {lease_id:x}",
                       lambda ep, t, md: ep.lease.LeaseRevoke(req, timeout=t, metadata=md))
        except EtcdError as exc:
            if "lease not found" not in str(exc):
                raise

    def compact(self, revision: int) -> None:
        """Drop history before revision (waits until applied). Already compacted is fine."""
        req = etcdrpc.CompactionRequest(revision=revision, physical=True)
        try:
            self._call(f"compact to {revision}",
                       lambda ep, t, md: ep.kv.Compact(req, timeout=t, metadata=md), slow=True)
        except Compacted:
            pass

    def check_read(self, prefix: str) -> None:
        """Read one key of the range under `prefix`: proves these credentials may read it.
        Raises like any call (EtcdAuthError when not allowed)."""
        start = (prefix.rstrip("/") + "/").encode()
        req = etcdrpc.RangeRequest(key=start, range_end=range_end(start), keys_only=True, limit=1)
        self._call(f"read {start.decode()}", lambda ep, t, md: ep.kv.Range(req, timeout=t, metadata=md))

    def check_write(self, key: str) -> None:
        """A transaction whose condition never holds: etcd checks the permission of its put
        on `key` but never applies it."""
        raw = key.encode()
        never = etcdrpc.Compare(key=raw, result=etcdrpc.Compare.LESS, target=etcdrpc.Compare.VERSION, version=0)
        req = etcdrpc.TxnRequest(
            compare=[never],
            success=[etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=raw, value=b""))],
            failure=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=raw, keys_only=True))])
        self._call(f"write {key}", lambda ep, t, md: ep.kv.Txn(req, timeout=t, metadata=md))

    def revision(self) -> int:
        """The current revision of the key space (as the answering member knows it)."""
        req = etcdrpc.StatusRequest()
        resp = self._call("status", lambda ep, t, md: ep.maintenance.Status(req, timeout=t, metadata=md))
        return resp.header.revision

    def close(self) -> None:
        """Cancel open watches and close every channel. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for w in list(self._watches):
            w.cancel()
        for ep in self._endpoints:
            ep.close()

    def __enter__(self) -> "KV":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- calls with failover

    def _rotation(self) -> list[int]:
        n = len(self._endpoints)
        return [(self._current + i) % n for i in range(n)]

    def _metadata(self) -> tuple | None:
        if self._user is None:
            return None
        token = self._token or self._authenticate()
        return (("token", token),) if token else None

    def _call(self, what: str, fn: Callable, *, authenticate: bool = True, slow: bool = False):
        """Run fn(endpoint, timeout, metadata) on the current member, failing over to the
        others and retrying with a short pause until self.timeout has passed. Each try is
        bounded by QUICK_TRY unless the request is `slow`."""
        if self._closed:
            raise EtcdError(f"{what}: the etcd client is closed")
        deadline = time.monotonic() + self.timeout
        per_try = self.timeout if slow else min(self.timeout, QUICK_TRY)
        pause = 0.05
        last = "no answer"
        reauthenticated = False
        while True:
            for i in self._rotation():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                ep = self._endpoints[i]
                try:
                    md = self._metadata() if authenticate else None
                    result = fn(ep, min(per_try, remaining), md)
                except ValueError:
                    if self._closed:  # closed by another thread while we were calling
                        raise EtcdError(f"{what}: the etcd client is closed") from None
                    raise
                except grpc.RpcError as exc:
                    code, details = exc.code(), _details(exc)
                    if code == grpc.StatusCode.UNAUTHENTICATED and self._user and not reauthenticated:
                        # Simple tokens expire (--auth-token-ttl): fetch a new one and retry.
                        self._token = None
                        reauthenticated = True
                        break
                    if code in _RETRY_CODES or any(m in details for m in _RETRY_MESSAGES):
                        last = f"{ep.url}: {details}"
                        continue
                    raise self._error(what, ep, code, details) from None
                self._current = i
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EtcdUnavailable(f"{what}: no etcd endpoint answers "
                                      f"({', '.join(self.endpoints)}); last error {last}")
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.5)

    def _authenticate(self) -> str | None:
        with self._auth_lock:
            if self._token:
                return self._token
            req = etcdrpc.AuthenticateRequest(name=self._user, password=self._password)
            try:
                resp = self._call(f"log in to etcd as {self._user!r}",
                                  lambda ep, t, md: ep.auth.Authenticate(req, timeout=t),
                                  authenticate=False)
            except EtcdError as exc:
                if "authentication is not enabled" in str(exc):
                    log.warning("etcd has authentication disabled; ignoring user %r", self._user)
                    self._user = None
                    return None
                raise
            self._token = resp.token
            return self._token

    def _error(self, what: str, ep: _Endpoint, code: grpc.StatusCode, details: str) -> EtcdError:
        """A clear exception for a gRPC error that retrying will not fix."""
        if "compacted" in details:
            return Compacted(0, f"{what}: {details}")
        if "authentication failed" in details or "invalid user ID or password" in details:
            return EtcdAuthError(f"etcd at {ep.url} rejected the credentials of user "
                                 f"{self._user!r}: {details}")
        if "user name is empty" in details or code == grpc.StatusCode.UNAUTHENTICATED:
            return EtcdAuthError(f"{what}: etcd at {ep.url} requires authentication "
                                 f"(give an etcd user and password): {details}")
        if code == grpc.StatusCode.PERMISSION_DENIED or "permission denied" in details:
            return EtcdAuthError(f"{what}: etcd at {ep.url} denied it to user {self._user!r}: {details}")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return EtcdTooLarge(f"{what}: the answer is over the receive limit: {details}")
        return EtcdError(f"{what}: etcd at {ep.url} answered {code.name}: {details}")
