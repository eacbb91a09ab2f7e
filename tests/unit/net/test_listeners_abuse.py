"""TCP abuse (issue 9): 800 idle connections and a slowloris client must not delay UDP
or a fresh TCP client, and the server closes the idle ones within its idle timeout.

The server runs in its own process (DNSServer with an echo handler), so the client
load here does not share its event loop; the clients are plain blocking sockets with
timeouts. The idle connections come from 20 loopback source addresses (127.0.0.10-29),
40 each, below the per-client cap.
"""
from __future__ import annotations

import os
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import dnslib
import pytest

from tests.support.harness import read_message

ROOT = Path(__file__).resolve().parents[3]
IDLE_TIMEOUT = 3.0
READ_TIMEOUT = 1.0
IDLE_CONNECTIONS = 800
SOURCES = [f"127.0.0.{i}" for i in range(10, 30)]

SERVER_SCRIPT = r"""
import sys, gevent, signal
from gevent.event import Event
from dnsdisco.net.listeners import DNSServer
idle, read = float(sys.argv[1]), float(sys.argv[2])
def echo(data, transport, client):
    if len(data) < 12:
        return None
    return data[:2] + bytes([data[2] | 0x80]) + data[3:]
server = DNSServer(echo, [("127.0.0.1", 0)], tcp_idle_timeout=idle, tcp_read_timeout=read,
                   tcp_max_conns=1000, tcp_max_per_client=64)
server.start()
stopping = Event()
gevent.signal_handler(signal.SIGTERM, stopping.set)
print(server.addresses[0][1], flush=True)
stopping.wait()
server.stop(2.0)
"""


def query(name: str, qid: int) -> bytes:
    q = dnslib.DNSRecord.question(name)
    q.header.id = qid
    return q.pack()


def answered(reply: bytes | None, qid: int) -> bool:
    return bool(reply) and len(reply) >= 12 and struct.unpack("!H", reply[:2])[0] == qid and reply[2] & 0x80


@pytest.fixture(scope="module")
def enough_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE_CONNECTIONS + 200
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"open-file limit {hard} is below the {need} this test needs (ulimit -n)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def server_port(enough_files):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(IDLE_TIMEOUT), str(READ_TIMEOUT)],
                            stdout=subprocess.PIPE, env=env, text=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=10):
            pytest.fail("the server process did not report its port within 10 s")
        port = int(proc.stdout.readline())
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


def udp_ask(port: int, qid: int, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query("udp.test", qid), ("127.0.0.1", port))
        try:
            return sock.recv(512)
        except socket.timeout:
            return None


def fresh_tcp_ask(port: int, qid: int, timeout: float = 1.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        data = query("tcp.test", qid)
        sock.sendall(struct.pack("!H", len(data)) + data)
        return read_message(sock)


def open_idle(port: int) -> list[socket.socket]:
    conns = []
    for i in range(IDLE_CONNECTIONS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.bind((SOURCES[i % len(SOURCES)], 0))
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        conns.append(sock)
    return conns


def closed_by_peer(sock: socket.socket) -> bool:
    """Non-blocking: has the server closed this connection?"""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_idle_flood_and_slowloris_do_not_delay_udp_or_new_tcp(server_port):
    port, proc = server_port
    start = time.monotonic()
    idle = open_idle(port)
    opened = time.monotonic()
    slow = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        slow.sendall(b"\x00\x40")                         # announces 64 bytes, then dribbles
        slow.setblocking(False)
        next_drip = time.monotonic()
        slow_cut_at = None
        qid = 0
        # while every idle connection is still held: UDP and fresh TCP are answered at once
        while time.monotonic() < opened + IDLE_TIMEOUT - 1.0 or slow_cut_at is None:
            if time.monotonic() > opened + 10:
                break
            qid += 1
            assert answered(udp_ask(port, qid), qid), "a UDP query went unanswered within 1 s"
            qid += 1
            assert answered(fresh_tcp_ask(port, qid), qid), "a fresh TCP client was not answered"
            if slow_cut_at is None and time.monotonic() >= next_drip:
                try:
                    slow.send(b"\x00")
                except OSError:
                    slow_cut_at = time.monotonic()
                if slow_cut_at is None and closed_by_peer(slow):
                    slow_cut_at = time.monotonic()
                next_drip += 0.2
            time.sleep(0.02)
        assert time.monotonic() - start < IDLE_TIMEOUT + 10, "opening 800 connections took far too long"
        assert slow_cut_at is not None, "the slowloris client was never cut"
        assert slow_cut_at - opened < IDLE_TIMEOUT, "slowloris lasted until the idle timeout, not the read deadline"
        assert qid >= 4

        # the server closes every idle connection within its idle timeout (plus slack)
        deadline = opened + IDLE_TIMEOUT + 5.0
        open_now = list(idle)
        sel = selectors.DefaultSelector()
        for sock in open_now:
            sel.register(sock, selectors.EVENT_READ)
        while open_now and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                if closed_by_peer(key.fileobj):
                    sel.unregister(key.fileobj)
                    open_now.remove(key.fileobj)
        assert not open_now, f"{len(open_now)} idle connections still open {IDLE_TIMEOUT + 5} s after opening"
        closed_at = time.monotonic()
        assert closed_at - start >= IDLE_TIMEOUT - 0.5     # closed by the idle timeout, not before
        assert answered(udp_ask(port, 9999), 9999)
    finally:
        slow.close()
        for sock in idle:
            sock.close()

    # graceful stop on SIGTERM, well within the grace bound
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
