"""Graceful stop (issue 9): SIGTERM stops reading, answers the queries in flight, closes TCP
connections, stops an embedded etcd cleanly and exits 0 within 2 s.

Queries are kept "in flight" for certain by forwarding them to a test upstream that holds
its answer back until after the SIGTERM has been sent.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import dns.message
import dns.rcode
import dnslib
import pytest

from tests.support.etcdproc import port_is_free
from tests.support.harness import ServeProcess, addresses, read_message, wait_for

STOP_LIMIT = 2.0
UPSTREAM_DELAY = 0.3


class SlowUpstream:
    """A UDP resolver on loopback that answers every query with 192.0.2.1 after a delay,
    and tells the test when a query has arrived."""

    def __init__(self, delay: float):
        self.delay = delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = threading.Semaphore(0)
        self.closing = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.closing:
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.received.release()
            threading.Timer(self.delay, self._reply, (data, addr)).start()

    def _reply(self, data, addr):
        query = dnslib.DNSRecord.parse(data)
        reply = query.reply()
        reply.add_answer(dnslib.RR(query.q.qname, dnslib.QTYPE.A, rdata=dnslib.A("192.0.2.1"), ttl=60))
        try:
            self.sock.sendto(reply.pack(), addr)
        except OSError:
            pass

    def close(self):
        self.closing = True
        self.thread.join(2)
        self.sock.close()


def tcp_frame(msg: dns.message.Message) -> bytes:
    wire = msg.to_wire()
    return struct.pack("!H", len(wire)) + wire


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def wait_exit(proc: subprocess.Popen, sent_at: float) -> tuple[int | None, float]:
    try:
        code = proc.wait(STOP_LIMIT + 3)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - sent_at
    return code, time.monotonic() - sent_at


def test_sigterm_answers_in_flight_closes_tcp_and_exits_0(etcd):
    etcd.start()
    etcd.etcdctl("put", "/stop/local/svc/hello/a", json.dumps({"host": "10.0.0.7", "port": 80}))
    upstream = SlowUpstream(UPSTREAM_DELAY)
    serve = ServeProcess(etcd.endpoint, "--prefix", "/stop", "--forward", f"127.0.0.1:{upstream.port}")
    try:
        serve.start()
        wait_for(lambda: addresses(serve.query("hello.svc.local")) == ["10.0.0.7"], 10, what="the record")

        idle = socket.create_connection(("127.0.0.1", serve.port), timeout=2)
        idle.sendall(tcp_frame(dns.message.make_query("hello.svc.local", "A")))
        assert addresses(dns.message.from_wire(read_message(idle))) == ["10.0.0.7"]
        half = socket.create_connection(("127.0.0.1", serve.port), timeout=2)
        half.sendall(b"\x00\x40\x12\x34")              # a message begun, never finished

        # UDP traffic right up to the signal: every reply that comes is right
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(1.0)
        for _ in range(200):
            q = dns.message.make_query("hello.svc.local", "A")
            udp.sendto(q.to_wire(), ("127.0.0.1", serve.port))
            reply = dns.message.from_wire(udp.recv(4096))
            assert reply.id == q.id and addresses(reply) == ["10.0.0.7"]

        # two queries in flight at the upstream: one over TCP, one over UDP
        busy = socket.create_connection(("127.0.0.1", serve.port), timeout=3)
        tcp_q = dns.message.make_query("www.example.org", "A")
        busy.sendall(tcp_frame(tcp_q))
        assert upstream.received.acquire(timeout=3), "the TCP query never reached the upstream"
        udp_q = dns.message.make_query("ftp.example.org", "A")
        udp.sendto(udp_q.to_wire(), ("127.0.0.1", serve.port))
        assert upstream.received.acquire(timeout=3), "the UDP query never reached the upstream"

        sent_at = time.monotonic()
        serve.proc.send_signal(signal.SIGTERM)

        busy.settimeout(3)
        tcp_reply = dns.message.from_wire(read_message(busy))
        assert tcp_reply.id == tcp_q.id and addresses(tcp_reply) == ["192.0.2.1"]
        udp.settimeout(3)
        udp_reply = dns.message.from_wire(udp.recv(4096))
        assert udp_reply.id == udp_q.id and addresses(udp_reply) == ["192.0.2.1"]

        code, took = wait_exit(serve.proc, sent_at)
        assert code == 0 and took < STOP_LIMIT, f"exit {code} after {took:.2f}s\n{serve.log()}"
        for sock in (idle, half, busy):
            assert closed_by_server(sock, 1.0)
        log = serve.log()
        assert "stopping" in log and "Traceback" not in log, log
    finally:
        serve.stop()
        upstream.close()


def etcd_pid_from_log(log: str) -> int | None:
    for line in log.splitlines():
        if "started embedded etcd" in line and "pid " in line:
            return int(line.split("pid ", 1)[1].split(")")[0].split(",")[0])
    return None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_stops_the_embedded_etcd(tmp_path):
    if not (port_is_free(2379) and port_is_free(2380)):
        pytest.skip("127.0.0.1:2379 or :2380 is in use on this machine: serve would reuse that etcd "
                    "instead of starting (and stopping) its own")
    state = tmp_path / "state"
    serve = ServeProcess(None, "--state-dir", str(state), env={"XDG_STATE_HOME": str(tmp_path)})
    try:
        serve.start()
        pid = etcd_pid_from_log(serve.log())
        if pid is None:
            pytest.skip("another etcd took 127.0.0.1:2379 first; serve did not start its own:\n" + serve.log())
        assert alive(pid)
        conn = socket.create_connection(("127.0.0.1", serve.port), timeout=2)
        sent_at = time.monotonic()
        serve.proc.send_signal(signal.SIGTERM)
        code, took = wait_exit(serve.proc, sent_at)
        assert code == 0 and took < STOP_LIMIT, f"exit {code} after {took:.2f}s\n{serve.log()}"
        assert not alive(pid), f"the embedded etcd (pid {pid}) outlived serve"
        assert closed_by_server(conn, 1.0)
        assert "stopped embedded etcd" in serve.log()
        assert port_is_free(2379)
    finally:
        serve.stop()
        pid = etcd_pid_from_log(serve.log()) if serve.proc else None
        if pid and alive(pid):                      # never leave an etcd behind on 2379
            os.kill(pid, signal.SIGKILL)
