"""UDP and TCP listeners on gevent; they move bytes and know nothing of DNS.

Every received message goes to `handler(data, transport, client) -> bytes | None`
(over TCP also a list of messages, sent back to back: a zone transfer)
(`transport` is "udp" or "tcp", `client` is (ip, port); `None` sends nothing). The
handler is called synchronously from the socket loop, so a handler that never yields
keeps the UDP path free of any per-query greenlet switch.

UDP: a few reader greenlets per socket, each draining a raw non-blocking socket and
sleeping on its own libev watcher (measured faster than gevent's socket wrapper, and
several readers keep a handler that yields, e.g. a forwarder, from stalling the port).

TCP (RFC 1035 4.2.2, RFC 7766): 2-byte length framing, pipelined queries answered
concurrently up to `tcp_max_inflight` per connection (replies go out as they finish;
RFC 7766 6.2.1.1 allows any order), an idle timeout, a deadline for receiving one
whole message (slowloris) and for sending one reply (a client that never reads), caps
on open connections in total and per client address (IPv4 address, IPv6 /64). A
zero-length or oversize message closes the connection.

Metrics hooks, when a metrics object is given: `handler_error()`,
`tcp_connections(+1 | -1)`, `dropped(reason)` with reason one of:
  tcp_conn_limit       a new connection beyond tcp_max_conns, closed at once
  tcp_client_limit     a new connection beyond tcp_max_per_client, closed at once
  tcp_idle             closed after tcp_idle_timeout without a query
  tcp_read_timeout     a message not complete within tcp_read_timeout (slowloris)
  tcp_write_timeout    a reply the client did not take within tcp_read_timeout
  tcp_bad_length       a zero-length or oversize message
  tcp_reply_too_large  a reply over 65535 octets cannot be framed
  udp_send_error       sendto failed (buffer full, unreachable, too large)

Opening the sockets (families, buffers, port 0, bind errors) is sockets.py. This module is
longer than 500 lines on purpose: the UDP readers, the accept loop and every TCP connection
share the server's stop state (the stopping flag, the grace deadline, the connection counts)
and its log limiter; one module keeps that state private to the code that moves the bytes.
"""
from __future__ import annotations

import errno
import logging
import socket as _stdsocket
import time
from typing import Callable, Iterable, Optional

import gevent
from gevent import monkey as _monkey
from gevent import socket as gsocket
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.pool import Pool

from dnsdisco.dns.names import format_hostport
from dnsdisco.net.acl import client_network
from dnsdisco.net.sockets import bind_pair

Handler = Callable[[bytes, str, tuple], Optional[bytes]]

# The unpatched socket class: the UDP loop drives non-blocking sockets by hand, even
# when the process has been monkey-patched.
_RawSocket = _monkey.get_original("socket", "socket")

UDP_BURST = 64          # datagrams answered before other greenlets get a turn
UDP_RECV_SIZE = 65535
MAX_TCP_QUERY = 65535          # framing allows no more; a smaller cap may be passed


class _Stop(Exception):
    """Thrown into a waiting reader when the server stops."""


class _LogLimiter:
    """At most `burst` messages per `interval` seconds for each kind; the rest are counted."""

    def __init__(self, log: logging.Logger, interval: float = 10.0, burst: int = 5):
        self.log = log
        self.interval = interval
        self.burst = burst
        self._windows: dict[str, list] = {}   # kind -> [window start, sent, suppressed]

    def __call__(self, level: int, kind: str, msg: str, *args, exc_info=False) -> None:
        now = time.monotonic()
        window = self._windows.get(kind)
        if window is None or now - window[0] >= self.interval:
            if window is not None and window[2]:
                self.log.log(level, "%d more %s messages suppressed in the last %.0f s",
                             window[2], kind, now - window[0])
            window = self._windows[kind] = [now, 0, 0]
        if window[1] < self.burst:
            window[1] += 1
            self.log.log(level, msg, *args, exc_info=exc_info)
        else:
            window[2] += 1


def client_key(ip: str) -> bytes | str:
    """The unit of the per-client TCP cap: an IPv4 address, or an IPv6 /64 (one host's usual
    share of a network)."""
    return client_network(ip, 32, 64)


class _Listener:
    """One listen address: its UDP socket and TCP listening socket."""

    def __init__(self, host: str, port: int, family: int, udp, tcp):
        self.host, self.port, self.family = host, port, family
        self.udp, self.tcp = udp, tcp


class DNSServer:
    """UDP + TCP listeners on each address, all calling one handler.

    `start()` binds (raising sockets.BindError) and spawns the loops; `stop(grace)` stops
    reading, lets in-flight queries finish and closes TCP connections, all within `grace`
    seconds.
    """

    def __init__(self, handler: Handler, listens: Iterable[tuple[str, int]], *,
                 tcp_idle_timeout: float = 10.0, tcp_max_conns: int = 1000,
                 tcp_max_per_client: int = 64, tcp_read_timeout: float = 2.0,
                 tcp_max_inflight: int = 16, tcp_max_query: int = MAX_TCP_QUERY,
                 udp_readers: int = 2, reuse_port: bool = False,
                 metrics=None, log: logging.Logger | None = None):
        self.handler = handler
        self.listens = [(str(h), int(p)) for h, p in listens]
        if not self.listens:
            raise ValueError("DNSServer needs at least one listen address")
        self.tcp_idle_timeout = float(tcp_idle_timeout)
        self.tcp_max_conns = int(tcp_max_conns)
        self.tcp_max_per_client = int(tcp_max_per_client)   # 0 = no per-client cap
        self.tcp_read_timeout = float(tcp_read_timeout)
        self.tcp_max_inflight = max(1, int(tcp_max_inflight))
        self.tcp_max_query = min(int(tcp_max_query), MAX_TCP_QUERY)
        self.udp_readers = max(1, int(udp_readers))
        self.reuse_port = bool(reuse_port)   # several processes on one port (kernel spreads load)
        self.metrics = metrics
        self.log = log or logging.getLogger("dnsdisco.net.listeners")
        self._limited = _LogLimiter(self.log)
        self._listeners: list[_Listener] = []
        self._udp_greenlets: list[gevent.Greenlet] = []
        self._udp_watchers: list = []
        self._accept_greenlets: list[gevent.Greenlet] = []
        self._connections: set[_TCPConnection] = set()
        self._per_client: dict[str, int] = {}
        self._stopping = False
        self._stop_deadline = 0.0
        self._started = False
        self._stopped = Event()

    # ------------------------------------------------------------ lifecycle

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) of each listen address, in the order given."""
        return [(lst.host, lst.port) for lst in self._listeners]

    def start(self) -> None:
        if self._started:
            return
        try:
            for host, port in self.listens:
                self._listeners.append(self._bind(host, port))
        except BaseException:
            for lst in self._listeners:
                lst.udp.close()
                lst.tcp.close()
            self._listeners = []
            raise
        self._started = True
        hub = gevent.get_hub()
        for lst in self._listeners:
            for _ in range(self.udp_readers):
                watcher = hub.loop.io(lst.udp.fileno(), 1)
                self._udp_watchers.append(watcher)
                self._udp_greenlets.append(gevent.spawn(self._keep_running, self._udp_loop, lst, watcher))
            self._accept_greenlets.append(gevent.spawn(self._keep_running, self._accept_loop, lst))
        self.log.info("answering on %s (UDP and TCP)",
                      ", ".join(format_hostport(h, p) for h, p in self.addresses))

    def _bind(self, host: str, port: int) -> _Listener:
        family, port, udp, tcp = bind_pair(host, port, self.reuse_port, _RawSocket)
        return _Listener(host, port, family, udp, tcp)

    def stop(self, grace: float = 2.0) -> None:
        """Stop reading new queries, answer those in flight, close TCP; within `grace` s.

        Blocks the calling greenlet; called from the hub itself (e.g. straight from
        gevent.signal_handler) it runs in a new greenlet instead.
        """
        if gevent.getcurrent() is gevent.get_hub():
            gevent.spawn(self.stop, grace)
            return
        if not self._started:
            self._stopping = True
            self._stopped.set()
            return
        if self._stopping:
            self._stopped.wait(timeout=grace)
            return
        self._stopping = True
        self._stop_deadline = time.monotonic() + grace
        hub = gevent.get_hub()
        for lst in self._listeners:
            lst.tcp.close()                       # wakes the accept loop with an error
        for watcher in self._udp_watchers:
            hub.cancel_wait(watcher, _Stop())     # only readers that wait; busy ones finish
        for conn in list(self._connections):
            conn.stop_reading()
        everything = self._udp_greenlets + self._accept_greenlets + [c.greenlet for c in self._connections]
        gevent.joinall(everything, timeout=max(0.0, self._stop_deadline - time.monotonic()))
        gevent.killall([g for g in everything if g], block=True, timeout=0.5)
        for conn in list(self._connections):
            conn.abort()
        for lst in self._listeners:
            lst.udp.close()
        for watcher in self._udp_watchers:
            watcher.close()
        self._udp_watchers = []
        self.log.info("stopped answering on %s", ", ".join(format_hostport(h, p) for h, p in self.addresses))
        self._stopped.set()

    def _keep_running(self, loop, lst: _Listener, *args) -> None:
        """Restart a socket loop that an unforeseen error ended; only stop() ends it."""
        while not self._stopping:
            try:
                loop(lst, *args)
            except _Stop:
                return
            except Exception:
                if self._stopping:
                    return
                self._limited(logging.ERROR, "loop", "a socket loop on %s failed; restarting it",
                              format_hostport(lst.host, lst.port), exc_info=True)
                gevent.sleep(0.01)

    # ------------------------------------------------------------ UDP

    def _udp_loop(self, lst: _Listener, watcher) -> None:
        """Drain the socket, answer each datagram inline, sleep on the watcher when empty."""
        sock = lst.udp
        recvfrom, sendto = sock.recvfrom, sock.sendto
        handler = self.handler
        wait = gevent.get_hub().wait
        v6 = lst.family == _stdsocket.AF_INET6
        metrics = self.metrics
        burst = 0
        while not self._stopping:
            burst += 1
            if burst >= UDP_BURST:
                # a socket that never runs dry must not starve TCP clients or the etcd watch:
                # wait on our own watcher, which makes the loop poll every descriptor and comes
                # back at once while datagrams wait. (gevent.sleep(0) only runs the callback
                # queue and checks the clock every 50 callbacks: under load other sockets then
                # waited far longer; docs/benchmarks.md, "Freshness under load".)
                burst = 0
                try:
                    wait(watcher)
                except _Stop:
                    return
            try:
                data, addr = recvfrom(UDP_RECV_SIZE)
            except BlockingIOError:
                try:
                    wait(watcher)
                except _Stop:
                    return
                continue
            except InterruptedError:
                continue
            except OSError as exc:
                if self._stopping:
                    return
                self._limited(logging.WARNING, "udp_recv", "UDP receive on %s failed: %s",
                              format_hostport(lst.host, lst.port), exc)
                gevent.sleep(0)
                continue
            try:
                reply = handler(data, "udp", addr[:2] if v6 else addr)
            except Exception:
                if metrics is not None:
                    metrics.handler_error()
                self._limited(logging.ERROR, "handler", "handler failed on a %d-byte UDP query from %s",
                              len(data), addr[0], exc_info=True)
                continue
            if reply is not None:
                try:
                    sendto(reply, addr)
                except OSError as exc:
                    self._udp_send_failed(lst, reply, addr, exc)
                except Exception:                 # the handler returned something not bytes
                    if metrics is not None:
                        metrics.handler_error()
                    self._limited(logging.ERROR, "handler", "handler returned %s, not bytes or None",
                                  type(reply).__name__)

    def _udp_send_failed(self, lst: _Listener, reply: bytes, addr: tuple, exc: OSError) -> None:
        if isinstance(exc, BlockingIOError):
            # send buffer full: wait briefly for room, try once more, else drop
            try:
                gsocket.wait_write(lst.udp.fileno(), timeout=0.05)
                lst.udp.sendto(reply, addr)
                return
            except Exception as again:
                exc = again if isinstance(again, OSError) else exc
        if self.metrics is not None:
            self.metrics.dropped("udp_send_error")
        self._limited(logging.WARNING, "udp_send", "UDP reply of %d bytes to %s not sent: %s",
                      len(reply), addr[0], exc)

    # ------------------------------------------------------------ TCP

    def _accept_loop(self, lst: _Listener) -> None:
        sock = lst.tcp
        while not self._stopping:
            try:
                conn, addr = sock.accept()
            except OSError as exc:
                if self._stopping:
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._limited(logging.ERROR, "accept", "TCP accept on %s: %s (raise the open-file "
                                  "limit or lower --tcp-max-conns)", format_hostport(lst.host, lst.port), exc)
                    gevent.sleep(0.1)
                else:
                    self._limited(logging.WARNING, "accept", "TCP accept on %s: %s",
                                  format_hostport(lst.host, lst.port), exc)
                    gevent.sleep(0)
                continue
            if self._stopping:
                _reset(conn)
                return
            try:
                self._admit(conn, addr[:2])
            except Exception:
                self._limited(logging.ERROR, "tcp_internal", "TCP connection from %s failed",
                              addr[0], exc_info=True)
                _reset(conn)

    def _admit(self, conn, client: tuple) -> None:
        """Take a new connection, or close it at once when a cap is reached."""
        key = client_key(client[0])
        if len(self._connections) >= self.tcp_max_conns:
            self._refuse(conn, client, "tcp_conn_limit")
            return
        if self.tcp_max_per_client and self._per_client.get(key, 0) >= self.tcp_max_per_client:
            self._refuse(conn, client, "tcp_client_limit")
            return
        try:
            # each reply is one write; do not hold pipelined replies back for an ACK
            conn.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        except OSError:
            pass
        connection = _TCPConnection(self, conn, client, key)
        self._connections.add(connection)
        self._per_client[key] = self._per_client.get(key, 0) + 1
        if self.metrics is not None:
            self.metrics.tcp_connections(+1)
        connection.greenlet = gevent.spawn(connection.run)

    def _refuse(self, conn, client: tuple, reason: str) -> None:
        _reset(conn)
        if self.metrics is not None:
            self.metrics.dropped(reason)
        limit = self.tcp_max_conns if reason == "tcp_conn_limit" else self.tcp_max_per_client
        self._limited(logging.WARNING, reason, "TCP connection from %s refused: %s of %d reached",
                      client[0], reason.replace("_", " "), limit)

    def _connection_closed(self, connection: "_TCPConnection") -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            left = self._per_client.get(connection.key, 1) - 1
            if left > 0:
                self._per_client[connection.key] = left
            else:
                self._per_client.pop(connection.key, None)
            if self.metrics is not None:
                self.metrics.tcp_connections(-1)

    def _drop(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.dropped(reason)


def _reset(conn) -> None:
    """Close at once with RST: no lingering state for a refused connection."""
    try:
        conn.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    except OSError:
        pass
    conn.close()


class _TCPConnection:
    """One client connection: a reader that frames queries and handler greenlets that reply."""

    __slots__ = ("server", "sock", "client", "key", "greenlet", "_pool", "_write_lock",
                 "_reading", "_closed", "_broken", "_last_activity")

    def __init__(self, server: DNSServer, sock, client: tuple, key: str):
        self.server = server
        self.sock = sock
        self.client = client
        self.key = key
        self.greenlet: gevent.Greenlet | None = None
        self._pool = Pool(server.tcp_max_inflight)
        self._write_lock = Semaphore()
        self._reading = True
        self._closed = False
        self._broken = False               # a reply could not be sent: read no more
        self._last_activity = time.monotonic()

    def run(self) -> None:
        server = self.server
        try:
            self._read_queries()
        except (_Stop, gevent.GreenletExit):
            pass
        except OSError:
            pass                                   # reset by peer, closed under us
        except Exception:
            server._limited(logging.ERROR, "tcp_internal", "TCP connection from %s failed",
                            self.client[0], exc_info=True)
        finally:
            self._reading = False
            try:
                # answers already being prepared still go out
                if server._stopping:
                    timeout = max(0.0, server._stop_deadline - time.monotonic())
                else:   # the client closed or was cut: a half-closed client still gets its replies
                    timeout = max(server.tcp_idle_timeout, server.tcp_read_timeout)
                self._pool.join(timeout=timeout)
                self._pool.kill(block=False)
            finally:
                self._close()

    def stop_reading(self) -> None:
        """Graceful stop: interrupt the reader if it is waiting for (more of) a query."""
        if self._reading and self.greenlet is not None:
            self.greenlet.kill(_Stop(), block=False)

    def abort(self) -> None:
        self._pool.kill(block=False)
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.sock.close()
            finally:
                self.server._connection_closed(self)

    def _read_queries(self) -> None:
        """Frame messages out of the byte stream under the idle and read deadlines."""
        server = self.server
        sock = self.sock
        buf = bytearray()
        partial_since = 0.0
        max_query = server.tcp_max_query
        while not server._stopping and not self._broken:
            if len(buf) >= 2:
                size = (buf[0] << 8) | buf[1]
                if size == 0 or size > max_query:
                    server._drop("tcp_bad_length")
                    server._limited(logging.INFO, "tcp_bad_length", "TCP connection from %s closed: "
                                    "message length %d", self.client[0], size)
                    return
                if len(buf) >= 2 + size:
                    message = bytes(buf[2:2 + size])
                    del buf[:2 + size]
                    partial_since = time.monotonic() if buf else 0.0
                    self._pool.spawn(self._answer, message)   # blocks while tcp_max_inflight run
                    continue
            now = time.monotonic()
            if buf:
                timeout = partial_since + server.tcp_read_timeout - now
                if timeout <= 0:
                    server._drop("tcp_read_timeout")
                    server._limited(logging.INFO, "tcp_read_timeout", "TCP connection from %s closed: "
                                    "no whole message within %.1f s", self.client[0], server.tcp_read_timeout)
                    return
            else:
                timeout = self._last_activity + server.tcp_idle_timeout - now
                if timeout <= 0:
                    if len(self._pool):           # replies pending: not idle
                        timeout = server.tcp_idle_timeout
                    else:
                        server._drop("tcp_idle")
                        return
            chunk = None
            with gevent.Timeout(timeout, False):
                chunk = sock.recv(65536)
            if chunk is None:
                continue                           # timed out: the checks above decide
            if not chunk:
                return                             # the client closed
            if not buf:
                partial_since = time.monotonic()
            self._last_activity = time.monotonic()
            buf += chunk

    def _answer(self, message: bytes) -> None:
        server = self.server
        try:
            reply = server.handler(message, "tcp", self.client)
        except Exception:
            if server.metrics is not None:
                server.metrics.handler_error()
            server._limited(logging.ERROR, "handler", "handler failed on a %d-byte TCP query from %s",
                            len(message), self.client[0], exc_info=True)
            return
        if reply is None or self._closed or self._broken:
            return
        if isinstance(reply, list):          # a zone transfer: several messages, in order
            with self._write_lock:           # no other reply may come between them
                for message in reply:
                    if not self._send(message, locked=True):
                        return
            return
        self._send(reply)

    def _send(self, reply, locked: bool = False) -> bool:
        """Frame and send one reply; False when the connection is broken (or the reply bad)."""
        server = self.server
        if not isinstance(reply, (bytes, bytearray, memoryview)):
            if server.metrics is not None:
                server.metrics.handler_error()
            server._limited(logging.ERROR, "handler", "handler returned %s, not bytes or None",
                            type(reply).__name__)
            return False
        reply = bytes(reply)
        if len(reply) > 65535:
            server._drop("tcp_reply_too_large")
            server._limited(logging.ERROR, "tcp_reply_too_large", "TCP reply of %d bytes to %s not sent: "
                            "over 65535", len(reply), self.client[0])
            return False
        frame = len(reply).to_bytes(2, "big") + reply
        sent = False
        if not locked:
            self._write_lock.acquire()
        try:
            if self._closed or self._broken:
                return False
            try:
                with gevent.Timeout(server.tcp_read_timeout, False):
                    self.sock.sendall(frame)
                    sent = True
            except OSError:
                sent = None
        finally:
            if not locked:
                self._write_lock.release()
        if sent:
            self._last_activity = time.monotonic()
            return True
        self._broken = True
        if sent is False:
            server._drop("tcp_write_timeout")
        # the client does not take replies: cut the connection, which ends the reader too
        try:
            self.sock.shutdown(_stdsocket.SHUT_RDWR)
        except OSError:
            pass
        return False
