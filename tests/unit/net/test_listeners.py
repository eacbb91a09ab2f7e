"""DNSServer over real sockets on loopback, with small stand-in handlers.

The server knows no DNS; the handler here echoes the query with the QR bit set, raises
on a query for `boom.test`, sleeps (gevent) on `slow.test` and answers nothing for
`silent.test`. Clients are gevent sockets, so they share the hub with the server in
this process; every wait is bounded by a socket timeout or a gevent.Timeout.
"""
from __future__ import annotations

import errno
import socket as stdsocket
import struct
import time

import dnslib
import gevent
import pytest
from gevent import socket

from dnsdisco.net.listeners import DNSServer, client_key
from dnsdisco.net.sockets import BindError, bind_error
from tests.support.harness import read_message

SLOW = 0.6


def query(name: str, qid: int = 1234) -> bytes:
    q = dnslib.DNSRecord.question(name)
    q.header.id = qid
    return q.pack()


def echo_handler(data: bytes, transport: str, client: tuple):
    """Echo with QR set; raise / sleep / stay silent on marker names."""
    assert transport in ("udp", "tcp")
    assert isinstance(client, tuple) and len(client) == 2
    if len(data) < 12:
        return None
    if b"\x04boom\x04test" in data:
        raise RuntimeError("stand-in handler failure")
    if b"\x06silent\x04test" in data:
        return None
    if b"\x04slow\x04test" in data:
        gevent.sleep(SLOW)
    return data[:2] + bytes([data[2] | 0x80]) + data[3:]


class Metrics:
    def __init__(self):
        self.handler_errors = 0
        self.connections = 0
        self.dropped_reasons: list[str] = []

    def handler_error(self):
        self.handler_errors += 1

    def tcp_connections(self, delta):
        self.connections += delta

    def dropped(self, reason):
        self.dropped_reasons.append(reason)


def make_server(**kw) -> DNSServer:
    kw.setdefault("tcp_idle_timeout", 5.0)
    kw.setdefault("tcp_read_timeout", 1.0)
    listens = kw.pop("listens", [("127.0.0.1", 0)])
    server = DNSServer(kw.pop("handler", echo_handler), listens, **kw)
    server.start()
    return server


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
def server(metrics):
    srv = make_server(metrics=metrics)
    yield srv
    srv.stop(grace=1.0)


def udp_ask(addr, data: bytes, timeout: float = 2.0, family=socket.AF_INET):
    """Send one datagram; the reply or None after `timeout`."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        sock.sendto(data, addr)
        try:
            return sock.recv(65535)
        except socket.timeout:
            return None
    finally:
        sock.close()


def tcp_connect(addr, source: str | None = None, timeout: float = 3.0, family=socket.AF_INET):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source:
        sock.bind((source, 0))
    sock.connect(addr)
    return sock


def frame(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


read_reply = read_message


def tcp_ask(sock, data: bytes) -> bytes:
    sock.sendall(frame(data))
    return read_reply(sock)


def wait_closed(sock, within: float) -> float:
    """Seconds until the peer closes (EOF or reset); fails if it stays open `within` s."""
    start = time.monotonic()
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(4096):
                break
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        pytest.fail(f"connection still open after {within} s")
    return time.monotonic() - start


def is_answer_to(reply: bytes | None, qid: int) -> bool:
    return reply is not None and len(reply) >= 12 and struct.unpack("!H", reply[:2])[0] == qid \
        and reply[2] & 0x80


def wait_until(predicate, within: float, what: str):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        gevent.sleep(0.02)
    pytest.fail(f"not within {within} s: {what}")


# ------------------------------------------------------------------ UDP


def test_udp_query_is_answered(server):
    addr = server.addresses[0]
    assert addr[0] == "127.0.0.1" and addr[1] > 0
    reply = udp_ask(addr, query("hello.svc.local", 4321))
    assert is_answer_to(reply, 4321)
    assert reply[3:] == query("hello.svc.local", 4321)[3:]


def test_port_zero_gives_one_port_for_udp_and_tcp(server):
    addr = server.addresses[0]
    assert is_answer_to(udp_ask(addr, query("a.test", 1)), 1)
    with tcp_connect(addr) as sock:
        assert is_answer_to(tcp_ask(sock, query("a.test", 2)), 2)


def test_handler_returning_none_sends_nothing(server):
    addr = server.addresses[0]
    assert udp_ask(addr, query("silent.test", 5), timeout=0.3) is None
    with tcp_connect(addr) as sock:
        sock.sendall(frame(query("silent.test", 6)) + frame(query("after.test", 7)))
        assert is_answer_to(read_reply(sock), 7)


def _ipv6_loopback_works() -> bool:
    if not stdsocket.has_ipv6:
        return False
    try:
        with stdsocket.socket(stdsocket.AF_INET6, stdsocket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback_works(), reason="IPv6 loopback ::1 is not available on this host")
def test_ipv6_loopback_udp_and_tcp(metrics):
    srv = make_server(listens=[("127.0.0.1", 0), ("::1", 0)], metrics=metrics)
    try:
        (v4, v6) = srv.addresses
        assert v6[0] == "::1" and v6[1] > 0
        assert is_answer_to(udp_ask(v6, query("six.test", 66), family=socket.AF_INET6), 66)
        assert is_answer_to(udp_ask(v4, query("four.test", 44)), 44)
        with tcp_connect(v6, family=socket.AF_INET6) as sock:
            assert is_answer_to(tcp_ask(sock, query("six.test", 67)), 67)
    finally:
        srv.stop(grace=1.0)


def test_garbage_and_empty_udp_packets_do_not_stop_the_server(server):
    addr = server.addresses[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for junk in (b"", b"\x00", b"\xff" * 11, b"\x12\x34" + b"\xff" * 3000, bytes(range(256)) * 200):
            sock.sendto(junk, addr)
    finally:
        sock.close()
    assert is_answer_to(udp_ask(addr, query("still.test", 99)), 99)


def test_handler_exception_is_counted_and_the_loops_go_on(server, metrics):
    addr = server.addresses[0]
    for i in range(20):
        assert udp_ask(addr, query("boom.test", i), timeout=0.05) is None
    assert is_answer_to(udp_ask(addr, query("fine.test", 100)), 100)
    with tcp_connect(addr) as sock:
        sock.sendall(frame(query("boom.test", 101)))
        assert is_answer_to(tcp_ask(sock, query("fine.test", 102)), 102)
    wait_until(lambda: metrics.handler_errors == 21, 2, "21 handler errors counted")


def test_a_slow_handler_does_not_hold_up_other_udp_queries(server):
    addr = server.addresses[0]
    slow_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    slow_sock.settimeout(SLOW * 5)
    try:
        slow_sock.sendto(query("slow.test", 1), addr)
        gevent.sleep(0.05)
        start = time.monotonic()
        assert is_answer_to(udp_ask(addr, query("fast.test", 2)), 2)
        fast_took = time.monotonic() - start
        assert is_answer_to(slow_sock.recv(512), 1)
        assert fast_took < SLOW, "the fast query waited for the slow handler"
    finally:
        slow_sock.close()


# ------------------------------------------------------------------ TCP


def test_tcp_pipelined_queries_on_one_connection(server):
    with tcp_connect(server.addresses[0]) as sock:
        ids = list(range(1, 41))
        sock.sendall(b"".join(frame(query(f"q{i}.test", i)) for i in ids))
        got = [read_reply(sock) for _ in ids]
        assert sorted(struct.unpack("!H", r[:2])[0] for r in got) == ids
        assert all(r[2] & 0x80 for r in got)
        # and the connection keeps serving
        assert is_answer_to(tcp_ask(sock, query("again.test", 77)), 77)


def test_tcp_pipelined_queries_are_answered_concurrently(server):
    """RFC 7766 6.2.1.1: a fast query behind a slow one is not held up."""
    with tcp_connect(server.addresses[0]) as sock:
        sock.sendall(frame(query("slow.test", 1)) + frame(query("fast.test", 2)))
        first = read_reply(sock)
        second = read_reply(sock)
        assert struct.unpack("!H", first[:2])[0] == 2
        assert struct.unpack("!H", second[:2])[0] == 1


def test_tcp_half_closed_client_still_gets_its_replies(server):
    """A client may send its queries, shut its sending side and then read (RFC 7766)."""
    with tcp_connect(server.addresses[0]) as sock:
        sock.sendall(frame(query("slow.test", 1)) + frame(query("b.test", 2)))
        sock.shutdown(socket.SHUT_WR)
        got = sorted(struct.unpack("!H", read_reply(sock)[:2])[0] for _ in range(2))
        assert got == [1, 2]
        wait_closed(sock, within=2.0)


def test_a_handler_returning_the_wrong_type_does_not_stop_the_loops(metrics):
    def wrong(data, transport, client):
        if b"\x05wrong\x04test" in data:
            return "not bytes"
        return echo_handler(data, transport, client)

    srv = make_server(handler=wrong, metrics=metrics)
    try:
        addr = srv.addresses[0]
        for i in range(5):
            assert udp_ask(addr, query("wrong.test", i), timeout=0.05) is None
        assert is_answer_to(udp_ask(addr, query("fine.test", 10)), 10)
        with tcp_connect(addr) as sock:
            sock.sendall(frame(query("wrong.test", 11)))
            assert is_answer_to(tcp_ask(sock, query("fine.test", 12)), 12)
        wait_until(lambda: metrics.handler_errors == 6, 2, "6 bad replies counted")
    finally:
        srv.stop(grace=1.0)


def test_tcp_message_split_across_sends(server):
    data = frame(query("split.test", 555))
    with tcp_connect(server.addresses[0]) as sock:
        sock.sendall(data[:1])             # half of the length
        gevent.sleep(0.05)
        sock.sendall(data[1:5])
        gevent.sleep(0.05)
        for i in range(5, len(data), 7):
            sock.sendall(data[i:i + 7])
            gevent.sleep(0.01)
        assert is_answer_to(read_reply(sock), 555)
        # a frame and a half, then the rest
        two = frame(query("a.test", 1)) + frame(query("b.test", 2))
        cut = len(two) - 5
        sock.sendall(two[:cut])
        gevent.sleep(0.05)
        sock.sendall(two[cut:])
        assert sorted(struct.unpack("!H", read_reply(sock)[:2])[0] for _ in range(2)) == [1, 2]


def test_tcp_idle_connection_is_closed(metrics):
    srv = make_server(tcp_idle_timeout=0.5, metrics=metrics)
    try:
        with tcp_connect(srv.addresses[0]) as sock:
            assert is_answer_to(tcp_ask(sock, query("x.test", 1)), 1)
            took = wait_closed(sock, within=3.0)
            assert took >= 0.3
        assert "tcp_idle" in metrics.dropped_reasons
        wait_until(lambda: metrics.connections == 0, 2,
                   "connection count back to 0")
    finally:
        srv.stop(grace=1.0)


def test_tcp_slowloris_is_cut_by_the_read_deadline(metrics):
    srv = make_server(tcp_idle_timeout=10.0, tcp_read_timeout=0.5, metrics=metrics)
    try:
        with tcp_connect(srv.addresses[0]) as sock:
            sock.sendall(b"\x00\x40")          # announces 64 bytes, then dribbles
            start = time.monotonic()
            closed = False
            for _ in range(60):                # at most ~6 s of dribbling
                try:
                    sock.sendall(b"\x00")
                except OSError:
                    closed = True
                    break
                sock.settimeout(0.1)
                try:
                    if sock.recv(16) == b"":
                        closed = True
                        break
                except socket.timeout:
                    pass
                except OSError:
                    closed = True
                    break
            took = time.monotonic() - start
        assert closed, "a client dribbling one byte per 0.1 s was never cut"
        assert took < 5.0, "cut by the idle timeout, not by the read deadline"
        assert "tcp_read_timeout" in metrics.dropped_reasons
        # a well-behaved client is still served
        with tcp_connect(srv.addresses[0]) as sock:
            assert is_answer_to(tcp_ask(sock, query("ok.test", 3)), 3)
    finally:
        srv.stop(grace=1.0)


def test_tcp_zero_length_message_closes_the_connection(server, metrics):
    with tcp_connect(server.addresses[0]) as sock:
        assert is_answer_to(tcp_ask(sock, query("x.test", 1)), 1)
        sock.sendall(b"\x00\x00" + frame(query("never.test", 2)))
        wait_closed(sock, within=2.0)
    assert "tcp_bad_length" in metrics.dropped_reasons


def test_tcp_oversize_message_closes_the_connection(metrics):
    srv = make_server(tcp_max_query=512, metrics=metrics)
    try:
        with tcp_connect(srv.addresses[0]) as sock:
            sock.sendall(struct.pack("!H", 1000) + b"\x00" * 100)
            wait_closed(sock, within=2.0)
        assert "tcp_bad_length" in metrics.dropped_reasons
    finally:
        srv.stop(grace=1.0)


def _refused_at_once(addr, source=None) -> bool:
    """Connect; True when the server closes it without an answer."""
    sock = tcp_connect(addr, source=source)
    try:
        try:
            sock.sendall(frame(query("over.test", 9)))
        except OSError:
            return True
        sock.settimeout(2.0)
        try:
            return sock.recv(512) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
    finally:
        sock.close()


def test_tcp_total_connection_cap(metrics):
    srv = make_server(tcp_max_conns=5, tcp_max_per_client=0, metrics=metrics)
    try:
        addr = srv.addresses[0]
        held = [tcp_connect(addr) for _ in range(5)]
        wait_until(lambda: metrics.connections == 5, 2, "5 connections accepted")
        assert _refused_at_once(addr)
        assert "tcp_conn_limit" in metrics.dropped_reasons
        for i, sock in enumerate(held):          # the held ones keep working
            assert is_answer_to(tcp_ask(sock, query("held.test", i)), i)
        assert is_answer_to(udp_ask(addr, query("udp.test", 50)), 50)
        held.pop().close()
        wait_until(lambda: metrics.connections == 4, 2, "a closed connection frees its slot")
        with tcp_connect(addr) as sock:
            assert is_answer_to(tcp_ask(sock, query("new.test", 60)), 60)
        for sock in held:
            sock.close()
    finally:
        srv.stop(grace=1.0)


def test_tcp_per_client_cap(metrics):
    srv = make_server(tcp_max_conns=100, tcp_max_per_client=3, metrics=metrics)
    try:
        addr = srv.addresses[0]
        held = [tcp_connect(addr, source="127.0.0.1") for _ in range(3)]
        wait_until(lambda: metrics.connections == 3, 2, "3 connections accepted")
        assert _refused_at_once(addr, source="127.0.0.1")
        assert "tcp_client_limit" in metrics.dropped_reasons
        with tcp_connect(addr, source="127.0.0.2") as other:   # another client is not limited
            assert is_answer_to(tcp_ask(other, query("other.test", 8)), 8)
        for i, sock in enumerate(held):
            assert is_answer_to(tcp_ask(sock, query("held.test", i)), i)
            sock.close()
    finally:
        srv.stop(grace=1.0)


def test_client_key_groups_ipv6_by_64():
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1")
    assert client_key("2001:db8::1") != client_key("2001:db8:0:1::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"


def test_tcp_client_that_never_reads_is_cut(metrics):
    """Replies pile up unread: the write deadline closes the connection, others go on."""
    big = b"\x00" * 60000

    def big_reply(data, transport, client):
        return data[:2] + big if transport == "tcp" else echo_handler(data, transport, client)

    srv = make_server(handler=big_reply, tcp_read_timeout=0.5, metrics=metrics)
    try:
        addr = srv.addresses[0]
        sock = tcp_connect(addr)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        payload = b"".join(frame(query(f"q{i}.test", i)) for i in range(300))
        with gevent.Timeout(5, False):
            try:
                sock.sendall(payload)
            except OSError:
                pass
        wait_until(lambda: "tcp_write_timeout" in metrics.dropped_reasons, 5, "write deadline hit")
        wait_until(lambda: metrics.connections == 0, 5, "the stuck connection closed")
        sock.close()
        assert is_answer_to(udp_ask(addr, query("ok.test", 1)), 1)
    finally:
        srv.stop(grace=1.0)


# ------------------------------------------------------------------ stop


def test_graceful_stop_answers_in_flight_and_stops_reading(metrics):
    srv = make_server(metrics=metrics)
    addr = srv.addresses[0]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(3)
    tcp = tcp_connect(addr)
    idle = tcp_connect(addr)
    try:
        udp.sendto(query("slow.test", 11), addr)
        tcp.sendall(frame(query("slow.test", 12)))
        gevent.sleep(0.1)                       # both are in the handler now
        start = time.monotonic()
        stopper = gevent.spawn(srv.stop, 3.0)
        assert is_answer_to(udp.recv(512), 11)
        assert is_answer_to(read_reply(tcp), 12)
        wait_closed(tcp, within=3.0)
        wait_closed(idle, within=3.0)
        stopper.join(timeout=5)
        assert stopper.dead and stopper.successful()
        assert time.monotonic() - start < 3.0
        assert metrics.connections == 0
        # nothing is read any more
        assert udp_ask(addr, query("late.test", 13), timeout=0.3) is None
        with pytest.raises(OSError):
            tcp_connect(addr, timeout=1.0)
    finally:
        udp.close()
        tcp.close()
        idle.close()


def test_stop_is_bounded_by_grace_even_with_a_stuck_handler():
    def stuck(data, transport, client):
        gevent.sleep(30)

    srv = make_server(handler=stuck)
    addr = srv.addresses[0]
    sock = tcp_connect(addr)
    try:
        sock.sendall(frame(query("x.test", 1)))
        udp_ask(addr, query("y.test", 2), timeout=0.1)
        start = time.monotonic()
        srv.stop(grace=0.5)
        assert time.monotonic() - start < 2.0
        wait_closed(sock, within=2.0)
    finally:
        sock.close()




# ------------------------------------------------------------------ bind errors


def test_bind_error_names_the_address_in_use():
    holder = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        with pytest.raises(BindError) as info:
            DNSServer(echo_handler, [("127.0.0.1", port)]).start()
        msg = str(info.value)
        assert f"127.0.0.1:{port}" in msg and "UDP" in msg and "already in use" in msg
        assert "python" in msg or "pid" in msg    # who holds it (this test process)
    finally:
        holder.close()


def test_bind_error_for_tcp_in_use_releases_the_udp_socket():
    holder = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        with pytest.raises(BindError, match=rf"127\.0\.0\.1:{port} \(TCP\).*already in use"):
            DNSServer(echo_handler, [("127.0.0.1", port)]).start()
        # the UDP socket opened before the failure was closed again
        probe = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", port))
        probe.close()
    finally:
        holder.close()


def test_bind_error_for_a_privileged_port_suggests_the_fixes():
    msg = str(bind_error(OSError(errno.EACCES, "Permission denied"), "0.0.0.0", 53, "udp"))
    assert "0.0.0.0:53 (UDP)" in msg and "permission denied" in msg
    assert "--listen 0.0.0.0:5353" in msg
    assert "setcap cap_net_bind_service=+ep" in msg and "AmbientCapabilities=CAP_NET_BIND_SERVICE" in msg
    msg6 = str(bind_error(OSError(errno.EACCES, "Permission denied"), "::1", 53, "tcp"))
    assert "[::1]:53 (TCP)" in msg6 and "--listen [::1]:5353" in msg6


def test_bind_error_for_an_address_not_on_this_host():
    with pytest.raises(BindError, match=r"192\.0\.2\.1:0.*no interface"):
        DNSServer(echo_handler, [("192.0.2.1", 0)]).start()


def test_bind_error_for_a_name_that_is_not_an_address():
    with pytest.raises(BindError, match="not-an-address.invalid"):
        DNSServer(echo_handler, [("not-an-address.invalid", 0)]).start()


def test_stop_called_from_the_hub_runs_in_its_own_greenlet():
    """gevent.signal_handler callbacks run in the hub, where blocking is not allowed."""
    srv = DNSServer(echo_handler, [("127.0.0.1", 0)])
    srv.start()
    gevent.get_hub().loop.run_callback(srv.stop, 0.5)
    wait_until(lambda: udp_ask(srv.addresses[0], query("late.test", 1), timeout=0.2) is None, 3,
               "stopped from the hub")


# ------------------------------------------------------------------ a UDP socket that never runs dry

FLOOD = """
import socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
packet = bytes.fromhex(sys.argv[4])
end, sent = time.monotonic() + seconds, 0
while time.monotonic() < end and sent < 2_000_000:      # bounded in time and count
    try:
        s.sendto(packet, (host, port))
        sent += 1
    except BlockingIOError:
        pass
"""


def busy_handler(data: bytes, transport: str, client: tuple):
    """40 µs of CPU per flood query: a Python sender outruns it, so the socket never drains."""
    if b"\x05flood\x04test" in data:
        until = time.perf_counter() + 0.00004
        while time.perf_counter() < until:
            pass
    return echo_handler(data, transport, client)


def test_udp_saturation_does_not_starve_tcp_clients():
    import subprocess
    import sys
    srv = make_server(handler=busy_handler)
    host, port = srv.addresses[0]
    flood = subprocess.Popen([sys.executable, "-c", FLOOD, host, str(port), "4", query("flood.test", 9).hex()])
    try:
        gevent.sleep(0.5)                                   # the flood is under way
        assert flood.poll() is None
        with gevent.Timeout(3, AssertionError("a TCP client starved behind the UDP flood")):
            sock = tcp_connect((host, port))
            try:
                assert is_answer_to(tcp_ask(sock, query("tcp.test", 77)), 77)
            finally:
                sock.close()
    finally:
        flood.kill()
        flood.wait(5)
        srv.stop(grace=1.0)
