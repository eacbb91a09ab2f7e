"""A TCP relay on loopback that a test can cut and heal, to stage a network partition.

    relay = Relay(("127.0.0.1", etcd.client_port)).start()
    client connects to 127.0.0.1:relay.port ...
    relay.cut()          # every open connection closed; new ones held silently (blackhole)
    relay.cut("refuse")  # ... or accepted and reset at once
    relay.heal()         # held connections are dropped (the client reconnects); relaying resumes
    relay.close()

One thread accepts; two threads per connection copy bytes. Every socket is closed by
close(), and every thread ends when its sockets do.
"""
from __future__ import annotations

import socket
import struct
import threading


class Relay:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1"):
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._held: set[socket.socket] = set()
        self._mode: str | None = None      # None: relaying; "blackhole" | "refuse": cut
        self._closed = False
        self.accepted = 0                  # connections accepted, for tests
        self._thread = threading.Thread(target=self._accept_loop, name="relay-accept", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._mode is not None

    def start(self) -> "Relay":
        self._thread.start()
        return self

    def cut(self, mode: str = "blackhole") -> None:
        """Close every relayed connection; from now on hold (blackhole) or reset (refuse) new ones."""
        if mode not in ("blackhole", "refuse"):
            raise ValueError(mode)
        with self._lock:
            self._mode = mode
            pairs, self._pairs = self._pairs, set()
        _close_all(s for pair in pairs for s in pair)

    def heal(self) -> None:
        """Relay again; connections held during the cut are dropped so their clients reconnect."""
        with self._lock:
            self._mode = None
            held, self._held = self._held, set()
        _close_all(held)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pairs, self._pairs = self._pairs, set()
            held, self._held = self._held, set()
        _close(self._listener)
        _close_all(s for pair in pairs for s in pair)
        _close_all(held)
        self._thread.join(5)

    def __enter__(self) -> "Relay":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return                      # listener closed
            with self._lock:
                if self._closed:
                    _close(client)
                    return
                self.accepted += 1
                mode = self._mode
                if mode == "blackhole":
                    self._held.add(client)
                    continue
            if mode == "refuse":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            pair = (client, upstream)
            with self._lock:
                if self._mode is not None or self._closed:   # cut while we were connecting
                    _close(client)
                    _close(upstream)
                    continue
                self._pairs.add(pair)
            for src, dst in (pair, pair[::-1]):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True,
                                 name="relay-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._pairs.discard(pair)
        _close(src)
        _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def _close_all(socks) -> None:
    for s in socks:
        _close(s)


def _reset(s: socket.socket) -> None:
    """Close with RST instead of FIN: the client sees 'connection reset'."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
