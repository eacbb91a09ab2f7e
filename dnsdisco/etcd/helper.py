"""The etcd list and watch of `serve`, run by a helper process.

Why: under gevent, gRPC hands each watch message to the event loop through a native thread
pool, one message per round trip. While the loop is busy answering queries every round trip
waits for it, so a burst of puts fell far behind the etcd revision under query load (the
freshness and burst figures of docs/benchmarks.md). The helper runs gRPC in plain threads and writes each batch to a socket the moment it
arrives; the loop reads whatever has arrived in one go and applies it as one batch.

`ProcessKV` is the parent's side, with the KV's `list_prefix`, `watch_prefix` and
`check_read` signatures, results and exceptions, so the Syncer and etcd.settings.check_access are
the same either way. Only the helper (`python -m dnsdisco.etcd.helper FD`) imports gRPC
(etcd.client): the parent's side needs no more than etcd.types, so `serve`'s main process never
loads it (gRPC's memory stays in the helper; docs/benchmarks.md has the breakdown). The helper gets its settings over
its socket, never on the command line or in the environment, and exits when the parent's end
closes. Messages are a 4-octet length and a pickle; both ends are this package.
"""
from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading

from dnsdisco.etcd.heap import trim as trim_heap
from dnsdisco.etcd.types import (Compacted, EtcdAuthError, EtcdConfigError, EtcdError, EtcdTooLarge, EtcdUnavailable,
                      WatchBatch, parse_endpoint)

_LENGTH = struct.Struct("!I")
LIST_CHUNK = 5000            # listed pairs per message: the parent never holds one huge pickle
_ERRORS = {cls.__name__: cls for cls in (EtcdUnavailable, EtcdAuthError, EtcdTooLarge, EtcdConfigError)}


def _send(sock, lock, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    with lock:
        sock.sendall(_LENGTH.pack(len(data)) + data)


class _Reader:
    """Whole messages from a stream socket; `next()` blocks, `ready()` returns what has
    already arrived without waiting."""

    def __init__(self, sock):
        self._sock = sock
        self._buf = bytearray()
        self._pos = 0

    def _complete(self):
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 4:
            return None
        (size,) = _LENGTH.unpack_from(buf, pos)
        end = pos + 4 + size
        if len(buf) < end:
            return None
        message = pickle.loads(memoryview(buf)[pos + 4:end])
        self._pos = end
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end > 1 << 20:
            del buf[:end]
            self._pos = 0
        return message

    def next(self):
        while True:
            message = self._complete()
            if message is not None:
                return message
            data = self._sock.recv(1 << 20)
            if not data:
                raise EOFError
            self._buf += data

    def poll(self):
        """The next message if it has already arrived in full, else None (never waits)."""
        return self._complete()


def _packed(kvs):
    """A part of a listing as it goes to serve: one `key TAB value` line per pair, joined with
    newlines, when no key or value holds either octet (what dnsdisco's own values and keys
    never do), else (key, value) pairs. One bytes object pickles, travels and is read back in
    one piece, where a list costs two objects and a tuple per pair at each end; serve's
    snapshot.Builder reads the lines (`Builder.page`)."""
    keys = [kv.key for kv in kvs]
    values = [kv.value for kv in kvs]
    lines = b"\n".join(map(b"\t".join, zip(keys, values)))
    if lines.count(b"\n") == len(keys) - 1 and lines.count(b"\t") == len(keys):
        return lines
    return [(key.decode("utf-8", "replace"), value) for key, value in zip(keys, values)]


def _unpacked(part) -> list:
    """(key, value) pairs of a part that `_packed` made."""
    if type(part) is not bytes:
        return part
    return [(key.decode("utf-8", "replace"), value)
            for key, _tab, value in (line.partition(b"\t") for line in part.split(b"\n"))]


def _error_from(kind: str, message: str, compact_revision: int):
    if kind == "Compacted":
        return Compacted(compact_revision, message)
    return _ERRORS.get(kind, EtcdError)(message)


# ---------------------------------------------------------------- the parent's side

class ProcessKV:
    """list_prefix, watch_prefix and check_read answered by the helper process (started on
    first use and again after it exits). One call or watch at a time, as the Syncer makes them.

    `settings` are KV(**settings), checked beforehand (etcd.types.check_settings). `timeout`
    bounds check_read and may be lowered for it, as etcd.settings.check_access does; list and
    watch keep the settings' timeout.
    """

    def __init__(self, settings: dict, *, log: logging.Logger | None = None):
        self._settings = dict(settings)     # KV(**settings): endpoints, timeout, ca, cert, key, user, password
        self.timeout = float(settings.get("timeout", 5.0))
        self._password = settings.get("password")       # etcd.settings removes it from error messages
        self._log = log or logging.getLogger("dnsdisco.etcd")
        self._proc: subprocess.Popen | None = None
        self._sock = None
        self._reader: _Reader | None = None
        self._send_lock = threading.Lock()
        self._seq = 0
        self._answered = False       # the current helper has sent something
        self.endpoint_in_use = list(settings["endpoints"])[0]

    @property
    def endpoints(self) -> list[str]:
        """The endpoint URLs as KV.endpoints gives them (scheme and port explicit)."""
        return [parse_endpoint(e)[0] for e in self._settings["endpoints"]]

    # -- the helper

    def _ensure(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                return
            # once per failure, not once per retry: the Syncer already reports etcd as lost
            level = logging.WARNING if self._answered else logging.DEBUG
            self._log.log(level, "the etcd helper process ended (exit status %s); starting a new one",
                          self._proc.returncode)
        self._answered = False
        self.close()
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "dnsdisco.etcd.helper", str(theirs.fileno())],
                                          pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                          # not in the terminal's process group: Ctrl-C is for
                                          # serve, which closes the socket (the helper's cue)
                                          start_new_session=True)
        except OSError as exc:
            ours.close()
            raise EtcdUnavailable(f"cannot start the etcd helper process: {exc}") from None
        finally:
            theirs.close()
        self._sock = ours
        self._reader = _Reader(ours)
        self._command("init", self._settings)

    def _command(self, *message) -> int:
        self._seq += 1
        try:
            _send(self._sock, self._send_lock, (message[0], self._seq, *message[1:]))
        except OSError as exc:
            raise EtcdUnavailable(f"the etcd helper process is gone: {exc}") from None
        return self._seq

    def _reply(self, seq: int):
        """The next message for command `seq` (older commands' leftovers are skipped)."""
        while True:
            reader = self._reader
            if reader is None:
                raise EtcdUnavailable("the etcd helper process is not running")
            try:
                message = reader.next()
            except (EOFError, OSError):
                self.close()
                raise EtcdUnavailable("the etcd helper process exited") from None
            self._answered = True
            if message[1] == seq:
                return message

    def close(self) -> None:
        """Stop the helper: it exits when its socket closes."""
        sock, proc = self._sock, self._proc
        self._sock = self._reader = self._proc = None
        if sock is not None:
            sock.close()
        if proc is not None:
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(2)

    # -- the KV calls the Syncer makes

    def list_prefix(self, prefix: str, page_size: int = 1000, pages=None) -> tuple[int, list[tuple[str, bytes]]]:
        """KV.list_prefix in the helper. With `pages`, each part goes to `pages(part)` as it
        arrives (the caller builds while the helper still lists): (key, value) pairs, or
        bytes of `key TAB value` lines (`_packed`; snapshot.Builder.page reads both);
        `pages(None)` says the listing started over. The returned list is then empty."""
        self._ensure()
        seq = self._command("list", prefix, page_size)
        items: list = []
        while True:
            message = self._reply(seq)
            kind = message[0]
            if kind == "part":
                if pages is None:
                    items.extend(_unpacked(message[2]))
                else:
                    pages(message[2])
            elif kind == "restart":
                if pages is None:
                    items.clear()
                else:
                    pages(None)
            elif kind == "list":
                self.endpoint_in_use = message[3]
                return message[2], items
            elif kind == "error":
                raise _error_from(*message[2:])

    def check_read(self, prefix: str) -> None:
        """KV.check_read in the helper, within `timeout`: proves these credentials may read
        the range under `prefix`. Raises like the KV (EtcdAuthError when not allowed)."""
        self._ensure()
        seq = self._command("check", prefix, self.timeout)
        while True:
            message = self._reply(seq)
            if message[0] == "checked":
                self.endpoint_in_use = message[2]
                return
            if message[0] == "error":
                raise _error_from(*message[2:])

    def watch_prefix(self, prefix: str, start_revision: int, *, progress_interval: float = 5.0) -> "_Stream":
        self._ensure()
        return _Stream(self, self._command("watch", prefix, start_revision, progress_interval))


class _Stream:
    """WatchBatch items from the helper; batches that arrived together become one."""

    def __init__(self, kv: ProcessKV, seq: int):
        self._kv = kv
        self._seq = seq
        self._done = False
        self._held = None            # a message read while merging, for the next call

    def __iter__(self):
        return self

    def __next__(self) -> WatchBatch:
        if self._done:
            raise StopIteration
        message, self._held = self._held, None
        if message is None:
            message = self._kv._reply(self._seq)
        kind = message[0]
        if kind == "batch":
            revision, events = message[2], list(message[3])
            self._kv.endpoint_in_use = message[4]
            reader = self._kv._reader
            while reader is not None:
                more = reader.poll()
                if more is None:
                    break
                if more[1] != self._seq:
                    continue
                if more[0] != "batch":
                    self._held = more
                    break
                revision = more[2]
                events.extend(more[3])
            return WatchBatch(revision, events)
        self._done = True
        if kind == "error":
            raise _error_from(*message[2:])
        raise StopIteration

    def cancel(self) -> None:
        if self._done:
            return
        try:
            _send(self._kv._sock, self._kv._send_lock, ("cancel", self._seq))
        except (OSError, AttributeError):
            pass

    close = cancel


# ---------------------------------------------------------------- the helper

def _describe(exc: Exception) -> tuple:
    kind = type(exc).__name__ if isinstance(exc, EtcdError) else "EtcdUnavailable"
    return kind, str(exc) or kind, getattr(exc, "compact_revision", 0)


def _reported(sock, lock, message) -> bool:
    """Send an error to the parent; False when the parent is gone (nobody to tell)."""
    try:
        _send(sock, lock, message)
    except OSError:
        return False
    return True


def serve(sock) -> None:
    """Answer the parent's commands until its end of the socket closes."""
    lock = threading.Lock()
    reader = _Reader(sock)
    kv = None
    unusable: Exception = EtcdUnavailable("the etcd helper has no settings")
    try:
        from dnsdisco.etcd.client import KV           # gRPC: here, in the helper, never in the parent
    except ImportError as exc:       # a broken install: one clear error for every command
        KV, unusable = None, EtcdError(f"cannot load the etcd client (gRPC, pyetcd): {exc}")
    stream = None
    watcher = None

    def follow(seq: int, stream) -> None:
        try:
            for batch in stream:
                _send(sock, lock, ("batch", seq, batch.revision, batch.events, kv.endpoint_in_use))
            _send(sock, lock, ("end", seq))
        except EtcdError as exc:
            _send(sock, lock, ("error", seq, *_describe(exc)))
        except OSError:
            pass                                     # the parent is gone
        except Exception as exc:  # noqa: BLE001 - the parent retries; it must hear of it
            _send(sock, lock, ("error", seq, "EtcdUnavailable", f"watch failed: {exc!r}", 0))

    while True:
        try:
            message = reader.next()
        except (EOFError, OSError):
            break
        kind, seq = message[0], message[1]
        try:
            if kind == "init":
                try:
                    if KV is not None:
                        kv = KV(**message[2])
                except EtcdError as exc:
                    unusable = exc
            elif kv is None and kind in ("list", "watch", "check"):
                raise unusable
            elif kind == "check":
                # the parent's timeout for this call alone (a start-up check may be shorter);
                # nothing else runs on the KV before serve's check
                saved, kv.timeout = kv.timeout, message[3]
                try:
                    kv.check_read(message[2])
                finally:
                    kv.timeout = saved
                _send(sock, lock, ("checked", seq, kv.endpoint_in_use))
            elif kind == "list":
                def forward(kvs, seq=seq):
                    if kvs is None:             # compacted mid-way: the listing starts over
                        _send(sock, lock, ("restart", seq))
                        return
                    for start in range(0, len(kvs), LIST_CHUNK):
                        _send(sock, lock, ("part", seq, _packed(kvs[start:start + LIST_CHUNK])))
                # pages go out as they arrive, so this process never holds the whole listing
                revision, _none = kv.list_prefix(message[2], message[3], pages=forward, raw=True)
                _send(sock, lock, ("list", seq, revision, kv.endpoint_in_use))
                trim_heap()                  # the listing is the parent's now: give its pages back
            elif kind == "watch":
                if stream is not None:
                    stream.cancel()
                    watcher.join(10)
                stream = kv.watch_prefix(message[2], message[3], progress_interval=message[4])
                watcher = threading.Thread(target=follow, args=(seq, stream), daemon=True)
                watcher.start()
            elif kind == "cancel":
                if stream is not None:
                    stream.cancel()
        except (BrokenPipeError, ConnectionResetError):
            break                    # the parent closed its end mid-reply (it is stopping): done
        except EtcdError as exc:
            if not _reported(sock, lock, ("error", seq, *_describe(exc))):
                break
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            if not _reported(sock, lock, ("error", seq, "EtcdUnavailable", f"etcd helper: {exc!r}", 0)):
                break
    if stream is not None:
        stream.cancel()
    if kv is not None:
        kv.close()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Ctrl-C and a terminal hangup reach the whole process group: stopping is serve's call,
    # which closes the socket (and a dead serve closes it too). SIGTERM sent to the helper
    # itself ends it at once, quietly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: os._exit(0))
    logging.basicConfig(level=logging.WARNING, format="dnsdisco etcd helper: %(message)s")
    # as etcd.settings does for the other commands: no gRPC core line per failed TLS handshake
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sock = socket.socket(fileno=int(argv[0]))
    sock.setblocking(True)        # a gevent parent made the shared descriptor non-blocking
    try:
        serve(sock)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    os._exit(main())
