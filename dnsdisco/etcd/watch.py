"""KV's watch: an iterator of WatchBatch over one etcd Watch stream, with failover on open.

Apart from client.py (the KV, its calls and failover) because the stream is a machine of its
own: a request thread that sends progress requests and notices a silent stream, the reading
side that turns etcd responses into batches whose revision is safe to resume from.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Iterator

import grpc
from pyetcd import etcdrpc
from pyetcd.etcdrpc import kv_pb2

from dnsdisco.etcd.types import Compacted, EtcdAuthError, EtcdUnavailable, WatchBatch, range_end

if TYPE_CHECKING:
    from dnsdisco.etcd.client import KV, _Endpoint


def _key_str(key: bytes) -> str:
    return key.decode("utf-8", errors="replace")


def _details(exc: grpc.RpcError) -> str:
    try:
        return exc.details() or exc.code().name
    except Exception:  # not a call object
        return str(exc)


class WatchStream:
    """An iterator of WatchBatch over one etcd Watch stream; `cancel()` from any thread.

    The first batch of a stream has no events and confirms the watch is established.
    Then: a batch per etcd response with events (revision = the last event's revision,
    never etcd's header revision, which can run ahead while a catch-up is still being
    sent), progress batches from etcd's periodic progress notifications, and liveness
    batches (revision unchanged) answering our progress requests every progress_interval.
    A stream silent for 3 intervals is treated as broken.
    """

    def __init__(self, kv: KV, prefix: str, start_revision: int, progress_interval: float):
        self._kv = kv
        self._prefix = prefix
        self._start = start_revision
        self._interval = progress_interval
        key = prefix.encode() or b"\0"
        self._create = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=key, range_end=range_end(prefix.encode()) if prefix else b"\0",
            start_revision=start_revision, progress_notify=True))
        self._progress = etcdrpc.WatchRequest(progress_request=etcdrpc.WatchProgressRequest())
        self._outbox: queue.Queue = queue.Queue()
        self._call = None
        self._endpoint: _Endpoint | None = None
        self._watch_id: int | None = None
        self._safe_revision = start_revision - 1 if start_revision > 0 else 0
        self._last_response = time.monotonic()
        self._cancelled = False
        self._silent = False
        self._done = False
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str | None:
        return self._endpoint.url if self._endpoint else None

    def __iter__(self) -> Iterator[WatchBatch]:
        return self

    def __next__(self) -> WatchBatch:
        if self._done:
            raise StopIteration
        try:
            if self._call is None:
                return self._open()
            return self._read()
        except BaseException:
            self._finish()
            raise

    def cancel(self) -> None:
        """End the stream; a reader blocked in next() gets StopIteration. Idempotent."""
        with self._lock:
            self._cancelled = True
            call = self._call
        self._outbox.put(None)
        if call is not None:
            call.cancel()

    close = cancel

    def __enter__(self) -> "WatchStream":
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()

    # ---- internals

    def _requests(self, outbox: queue.Queue, holder: list):
        """The request side of one stream, run by gRPC in its own thread: the create request,
        then a progress request every interval; cancels a stream that stopped answering."""
        yield self._create
        while True:
            try:
                item = outbox.get(timeout=self._interval)
            except queue.Empty:
                if time.monotonic() - self._last_response > 3 * self._interval:
                    self._silent = True
                    if holder:
                        holder[0].cancel()
                    return
                yield self._progress
                continue
            if item is None:
                return

    def _open(self) -> WatchBatch:
        """Open the stream on the first member that confirms the watch (with failover)."""
        def attempt(ep: _Endpoint, timeout: float, md):
            with self._lock:
                if self._cancelled:
                    raise StopIteration
                self._outbox = queue.Queue()
                self._last_response = time.monotonic()
                # hasleader: etcd ends the stream when this member loses its leader, instead
                # of keeping a watch open that no longer receives anything.
                metadata = (md or ()) + (("hasleader", "true"),)
                holder: list = []
                self._call = ep.watch.Watch(self._requests(self._outbox, holder), metadata=metadata)
                holder.append(self._call)
                self._endpoint = ep
            timer = threading.Timer(timeout, self._call.cancel)
            timer.daemon = True
            timer.start()
            try:
                resp = next(self._call)
            except grpc.RpcError as exc:
                self._call.cancel()
                self._outbox.put(None)
                if self._cancelled:
                    raise StopIteration from None
                if exc.code() == grpc.StatusCode.CANCELLED and not self._cancelled:
                    raise _TimedOut(grpc.StatusCode.DEADLINE_EXCEEDED, "watch not confirmed in time")
                raise
            except StopIteration:
                self._outbox.put(None)
                raise _TimedOut(grpc.StatusCode.UNAVAILABLE, "watch stream closed") from None
            finally:
                timer.cancel()
            return resp

        for retry in (True, False):
            try:
                resp = self._kv._call(f"watch {self._prefix!r} from revision {self._start}", attempt)
            except grpc.RpcError as exc:  # cancelled while opening
                if self._cancelled:
                    raise StopIteration from None
                raise self._unavailable(_details(exc)) from None
            if (retry and resp.canceled and "permission denied" in resp.cancel_reason
                    and self._kv._user):
                # etcd reports an expired auth token on a watch as "permission denied":
                # log in again and retry once before calling it a real denial.
                self._finish_call()
                self._kv._token = None
                continue
            break
        return self._handle(resp) or self._read()

    def _read(self) -> WatchBatch:
        while True:
            try:
                resp = next(self._call)
            except grpc.RpcError as exc:
                if self._cancelled:
                    raise StopIteration from None
                if self._silent:
                    raise self._unavailable(f"no answer for {3 * self._interval:g}s") from None
                raise self._unavailable(_details(exc)) from None
            except StopIteration:
                if self._cancelled:
                    raise
                raise self._unavailable("the server closed the stream") from None
            self._last_response = time.monotonic()
            if resp.events:
                events: list[tuple[str, bytes | None]] = []
                last_rev = 0
                for ev in resp.events:
                    value = None if ev.type == kv_pb2.Event.DELETE else ev.kv.value
                    events.append((_key_str(ev.kv.key), value))
                    last_rev = max(last_rev, ev.kv.mod_revision)
                self._safe_revision = max(self._safe_revision, last_rev)
                return WatchBatch(last_rev, events)
            batch = self._handle(resp)
            if batch is not None:
                return batch

    def _handle(self, resp) -> WatchBatch | None:
        """A response without events: confirmation, cancellation or progress."""
        if resp.compact_revision:
            raise Compacted(resp.compact_revision,
                            f"watch {self._prefix!r} from revision {self._start}: etcd history "
                            f"is compacted up to revision {resp.compact_revision}")
        if resp.canceled:
            reason = resp.cancel_reason or "watch cancelled by etcd"
            if "permission denied" in reason:
                raise EtcdAuthError(f"watch {self._prefix!r}: etcd at {self.endpoint} denied it: {reason}")
            raise self._unavailable(reason)
        if resp.created:
            self._watch_id = resp.watch_id
            if self._start <= 0:
                self._safe_revision = resp.header.revision
            return WatchBatch(self._safe_revision, [])
        if resp.watch_id == self._watch_id:
            # etcd's periodic progress notification: sent only to a watcher that has caught
            # up, so everything up to the header revision has been delivered.
            self._safe_revision = max(self._safe_revision, resp.header.revision)
        # else: the answer to our progress request (watch id -1). Its revision may run ahead
        # of events still queued for us (etcd < 3.5.8), so it proves liveness only.
        return WatchBatch(self._safe_revision, [])

    def _unavailable(self, why: str) -> EtcdUnavailable:
        return EtcdUnavailable(f"watch {self._prefix!r} on {self.endpoint or 'etcd'} broke: {why}")

    def _finish(self) -> None:
        self._done = True
        self._finish_call()

    def _finish_call(self) -> None:
        self._outbox.put(None)
        call = self._call
        if call is not None:
            call.cancel()


class _TimedOut(grpc.RpcError):
    """A watch that could not be opened on one member; makes KV._call try the next one."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details
