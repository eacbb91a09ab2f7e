"""Hostile packets against a real server (issue 9): a real `dnsdisco serve` on a real etcd
gets 40,000 mutated UDP packets and 300 malformed TCP streams, interleaved with valid
queries that must all be answered correctly. Every packet with a parseable header gets a
well-formed reply no larger than the query's allowance; the process's memory grows by
less than 64 MiB; it keeps answering afterwards.

UDP is pipelined: up to WINDOW packets are outstanding, each with its own id (written over
whatever the mutation left there) so replies can be matched to the packet that caused them.
"""
from __future__ import annotations

import json
import os
import random
import selectors
import socket
import struct
import time

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import pytest

from tests.support.harness import ServeProcess, addresses, wait_for

SEED = int(os.environ.get("DNSDISCO_FUZZ_SEED", "9"))   # another seed explores further
UDP_PACKETS = 40_000
TCP_STREAMS = 300
VALID_EVERY = 40              # one valid query among this many packets / streams
WINDOW = 32
TIME_LIMIT = 50.0             # the whole test, well under a minute
RSS_GROWTH_LIMIT = 64 * 1024 * 1024
MAX_UDP = 1232

RECORDS = {
    "hello/a": {"host": "10.0.0.7", "port": 8080},
    "hello/b": {"host": "10.0.0.8", "port": 8081},
    "v6/a": {"host": "fd00::7", "port": 80},
    "alias": {"host": "hello.svc.local"},
    "loop1": {"host": "loop2.svc.local"},
    "loop2": {"host": "loop1.svc.local"},
    "notes": {"text": "x" * 300},
    **{f"big/i{i:02d}": {"host": f"10.9.0.{i}", "port": 1000 + i} for i in range(1, 91)},
}
VALID = [  # (name, type, EDNS payload or None, expected addresses or None = just NOERROR)
    ("hello.svc.local", "A", None, ["10.0.0.7", "10.0.0.8"]),
    ("HeLLo.svc.local", "A", 1232, ["10.0.0.7", "10.0.0.8"]),
    ("a.hello.svc.local", "A", None, ["10.0.0.7"]),
    ("v6.svc.local", "AAAA", 4096, None),
    ("hello.svc.local", "SRV", 1232, None),
    ("big.svc.local", "A", None, None),       # truncated to 512 with TC
    ("notes.svc.local", "TXT", None, None),
    ("svc.local", "SOA", 1232, None),
]
NAMES = ["hello.svc.local", "a.hello.svc.local", "big.svc.local", "alias.svc.local", "loop1.svc.local",
         "notes.svc.local", "svc.local", "nope.svc.local", "7.0.0.10.in-addr.arpa", "www.example.com", "."]
TYPES = ["A", "AAAA", "SRV", "TXT", "CNAME", "MX", "PTR", "SOA", "NS", "ANY", "AXFR", "IXFR", "OPT", 65280]


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(etcd):
    etcd.start()
    from dnsdisco.etcd.client import KV
    kv = KV([etcd.endpoint], timeout=5.0)
    for rel, value in RECORDS.items():
        kv.put(f"/fuzz/local/svc/{rel}", json.dumps(value).encode())
    kv.close()
    with ServeProcess(etcd.endpoint, "--prefix", "/fuzz", "--zone", "svc.local", "--zone", "in-addr.arpa",
                      "--tcp-read-timeout", "0.5") as serve:
        wait_for(lambda: len(serve.query("big.svc.local", tcp=True).answer) > 0, 10, what="records")
        yield serve


# ---------------------------------------------------------------- packet makers

def seed_query(rng: random.Random) -> bytes:
    payload = rng.choice([None, 0, 512, 1232, 4096, 65535])
    msg = dns.message.make_query(rng.choice(NAMES), rng.choice(TYPES), use_edns=payload is not None,
                                 payload=payload or 512, want_dnssec=rng.random() < 0.2)
    return msg.to_wire()


def opt_rr(payload=1232, version=0, flags=0, rdata=b"", rdlen=None, name=b"\x00") -> bytes:
    rdlen = len(rdata) if rdlen is None else rdlen
    return name + struct.pack("!HHBBHH", 41, payload, 0, version, flags, rdlen) + rdata


def header(qid=0, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QUESTION = b"\x05hello\x03svc\x05local\x00\x00\x01\x00\x01"


def crafted(rng: random.Random) -> bytes:
    """Hand-made hostile shapes: compression loops, bad OPT records, oversize lengths."""
    kind = rng.randrange(16)
    if kind == 0:      # the question name is a pointer to itself
        return header() + b"\xc0\x0c\x00\x01\x00\x01"
    if kind == 1:      # a label, then a pointer back to the start: a loop
        return header() + b"\x01a\xc0\x0c\x00\x01\x00\x01"
    if kind == 2:      # two pointers to each other, in an answer record
        return header(an=1) + QUESTION + b"\xc0\x21\xc0\x1f" + b"\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00"
    if kind == 3:      # a pointer past the end
        return header() + b"\xc0\xff\x00\x01\x00\x01"
    if kind == 4:      # OPT whose rdlength runs past the packet
        return header(ar=1) + QUESTION + opt_rr(rdlen=rng.choice([1, 100, 65535]))
    if kind == 5:      # an EDNS option whose length runs past the rdata
        return header(ar=1) + QUESTION + opt_rr(rdata=struct.pack("!HH", 10, 200) + b"abc")
    if kind == 6:      # EDNS version above 0 (BADVERS) or odd payloads
        return header(ar=1) + QUESTION + opt_rr(payload=rng.choice([0, 1, 511, 65535]),
                                                version=rng.choice([0, 1, 255]), flags=0x8000)
    if kind == 7:      # two OPT records
        return header(ar=2) + QUESTION + opt_rr() + opt_rr(payload=4096)
    if kind == 8:      # OPT not at the root
        return header(ar=1) + QUESTION + opt_rr(name=b"\x01a\x00")
    if kind == 9:      # OPT in the answer section
        return header(an=1) + QUESTION + opt_rr()
    if kind == 10:     # a label length with too few octets after it
        return header() + b"\x3fabc"
    if kind == 11:     # reserved label types (0x40, 0x80)
        return header() + bytes([rng.choice([0x40, 0x41, 0x80, 0xbf])]) + b"abcdef\x00\x00\x01\x00\x01"
    if kind == 12:     # a name longer than 255 octets
        return header() + b"\x01a" * 140 + b"\x00\x00\x01\x00\x01"
    if kind == 13:     # counts that promise far more than is there
        return header(qd=rng.choice([0, 2, 0xFFFF]), an=rng.randrange(0x10000), ns=rng.randrange(0x10000),
                      ar=rng.randrange(0x10000)) + QUESTION
    if kind == 14:     # a big packet: a valid question with a lot of junk after it
        return header(ar=1) + QUESTION + opt_rr(payload=65535) + rng.randbytes(rng.randrange(1000, 4000))
    return header(flags=rng.randrange(0x10000) & ~0x8000) + QUESTION     # every opcode and flag


def mutated(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.1:
        return rng.randbytes(rng.randrange(0, 600))
    if roll < 0.3:
        return crafted(rng)
    data = bytearray(seed_query(rng))
    for _ in range(rng.randint(1, 4)):
        how = rng.randrange(5)
        pos = rng.randrange(len(data)) if data else 0
        if how == 0 and data:                            # bit flip
            data[pos] ^= 1 << rng.randrange(8)
        elif how == 1:                                   # truncation
            del data[rng.randrange(len(data) + 1):]
        elif how == 2 and len(data) >= 12:              # bad counts
            field = rng.randrange(4)
            data[4 + 2 * field:6 + 2 * field] = struct.pack("!H", rng.choice([0, 2, 255, 0xFFFF]))
        elif how == 3:                                   # insertion
            data[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif data:                                       # random octet
            data[pos] = rng.randrange(256)
    return bytes(data)


def allowance(data: bytes) -> int:
    """The largest UDP reply this query may get: 512 without EDNS, else its size up to 1232."""
    if len(data) < 12 or struct.unpack_from("!H", data, 10)[0] == 0:
        return 512
    try:
        msg = dns.message.from_wire(data[:2] + bytes([data[2] & 0x87]) + data[3:])
    except Exception:
        return MAX_UDP
    if msg.edns < 0:
        return 512
    return max(512, min(msg.payload, MAX_UDP))


def check_reply(reply: bytes, data: bytes, transport: str) -> None:
    assert len(reply) >= 12 and reply[2] & 0x80, reply
    assert reply[:2] == data[:2]
    if transport == "udp":
        assert len(reply) <= allowance(data), (len(reply), allowance(data), data)
    plain = reply[:2] + bytes([reply[2] & 0x87]) + reply[3:]
    dns.message.from_wire(plain, ignore_trailing=False)     # well-formed DNS


def check_valid(reply: bytes, case, transport: str = "udp") -> None:
    name, rdtype, payload, expect = case
    msg = dns.message.from_wire(reply)
    assert msg.rcode() == dns.rcode.NOERROR, (case, msg)
    assert msg.question[0].name.to_text() == name.rstrip(".") + "."
    if expect is not None:
        assert addresses(msg) == expect, (case, msg)
    if transport == "tcp":
        assert not msg.flags & dns.flags.TC
        return
    if payload is None:
        assert len(reply) <= 512
    if name.startswith("big"):
        assert msg.flags & dns.flags.TC


def valid_query(rng: random.Random):
    case = rng.choice(VALID)
    name, rdtype, payload, _ = case
    msg = dns.message.make_query(name, rdtype, use_edns=payload is not None, payload=payload or 512)
    return msg.to_wire(), case


# ---------------------------------------------------------------- the test

def test_hostile_udp_and_tcp_traffic(server):
    rng = random.Random(SEED)
    started = time.monotonic()
    deadline = started + TIME_LIMIT
    pid = server.proc.pid
    for _ in range(300):                                   # warm up caches before measuring
        data, case = valid_query(rng)
        check_valid(dns.message.from_wire(data) and server_query(server.port, data), case)
    rss_before = rss(pid)

    stats = udp_phase(server.port, rng, deadline)
    tcp_stats = tcp_phase(server.port, rng, deadline)

    growth = rss(pid) - rss_before
    assert server.proc.poll() is None, server.log()
    assert addresses(server.query("hello.svc.local")) == ["10.0.0.7", "10.0.0.8"]
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert "Traceback" not in server.log(), server.log()[-3000:]
    print(f"\nUDP: {stats}; TCP: {tcp_stats}; RSS growth {growth / 2**20:.1f} MiB; "
          f"{time.monotonic() - started:.1f} s")


def server_query(port: int, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(data, ("127.0.0.1", port))
        return sock.recv(65535)


def udp_phase(port: int, rng: random.Random, deadline: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", port))
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    pending: dict[int, tuple] = {}             # id -> (packet, valid case or None, sent at)
    stats = {"mutated": 0, "valid": 0, "replies": 0, "no_reply_expected": 0}
    next_id = 0
    sent = 0

    def receive(wait: float) -> None:
        for _ in sel.select(wait):
            while True:
                try:
                    reply = sock.recv(65535)
                except BlockingIOError:
                    return
                except ConnectionRefusedError:
                    raise AssertionError("the server's UDP port went away")
                qid = struct.unpack_from("!H", reply)[0] if len(reply) >= 2 else -1
                assert qid in pending, f"a reply nobody is waiting for: {reply[:40]!r}"
                data, case, _ = pending.pop(qid)
                stats["replies"] += 1
                check_reply(reply, data, "udp")
                if case is not None:
                    check_valid(reply, case)

    while stats["mutated"] < UDP_PACKETS:
        assert time.monotonic() < deadline, f"UDP phase too slow: {stats}"
        if len(pending) >= WINDOW:
            receive(0.5)
            stale = [q for q, (_, _, at) in pending.items() if time.monotonic() - at > 2.0]
            assert not stale, f"no reply within 2 s to {[pending[q][0][:40] for q in stale][:3]}"
            continue
        if sent % VALID_EVERY == 0:
            data, case = valid_query(rng)
        else:
            data, case = mutated(rng), None
        sent += 1
        if len(data) >= 12:
            next_id = (next_id + 1) & 0xFFFF
            while next_id in pending:
                next_id = (next_id + 1) & 0xFFFF
            data = struct.pack("!H", next_id) + data[2:]
        if case is not None:
            stats["valid"] += 1
        else:
            stats["mutated"] += 1
        sock.send(data)
        if len(data) < 12 or data[2] & 0x80:
            stats["no_reply_expected"] += 1        # no header, or a response: dropped silently
        else:
            pending[next_id] = (data, case, time.monotonic())
        receive(0)
    end = time.monotonic() + 3.0
    while pending and time.monotonic() < end:
        receive(0.2)
    assert not pending, f"{len(pending)} packets with a header got no reply, e.g. {next(iter(pending.values()))[0][:60]!r}"
    assert stats["mutated"] >= UDP_PACKETS
    sock.close()
    return stats


def frame(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def malformed_stream(rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 2000))                        # noise
    if kind == 1:
        return b"\x00\x00" + frame(seed_query(rng))                         # zero length first
    if kind == 2:
        return struct.pack("!H", rng.randrange(100, 65536)) + rng.randbytes(rng.randrange(0, 50))  # short
    if kind == 3:
        return b"\x00"                                                      # half a length
    if kind == 4:                                                           # pipelined mutations
        return b"".join(frame(mutated(rng)) for _ in range(rng.randint(2, 20)) if True)
    if kind == 5:                                                           # huge frame of junk
        return frame(rng.randbytes(65535))
    if kind == 6:                                                           # crafted shapes
        return b"".join(frame(crafted(rng)) for _ in range(rng.randint(1, 10)))
    return frame(mutated(rng)) + frame(seed_query(rng)) + rng.randbytes(rng.randrange(1, 30))


def read_frames(sock: socket.socket, deadline: float) -> list[bytes]:
    buf = b""
    while True:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except socket.timeout:
            raise AssertionError("the server neither answered nor closed a TCP stream within 5 s")
        if not chunk:
            break
        buf += chunk
    frames = []
    while len(buf) >= 2:
        size = struct.unpack_from("!H", buf)[0]
        if len(buf) < 2 + size:
            raise AssertionError("a TCP reply frame was cut short")
        frames.append(buf[2:2 + size])
        buf = buf[2 + size:]
    assert not buf, "a stray octet after the last TCP reply"
    return frames


def tcp_phase(port: int, rng: random.Random, deadline: float) -> dict:
    stats = {"streams": 0, "valid": 0, "replies": 0}
    for i in range(TCP_STREAMS + TCP_STREAMS // VALID_EVERY + 1):
        assert time.monotonic() < deadline, f"TCP phase too slow: {stats}"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            if i % VALID_EVERY == 0:
                data, case = valid_query(rng)
                sock.sendall(frame(data))
                sock.shutdown(socket.SHUT_WR)
                [reply] = read_frames(sock, time.monotonic() + 5)
                check_valid(reply, case, "tcp")
                stats["valid"] += 1
                continue
            stream = malformed_stream(rng)
            try:
                sock.sendall(stream)
                sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass                       # the server cut the stream at a bad length: fine
            for reply in read_frames(sock, time.monotonic() + 5):
                assert len(reply) >= 12 and reply[2] & 0x80
                dns.message.from_wire(reply[:2] + bytes([reply[2] & 0x87]) + reply[3:])
                stats["replies"] += 1
            stats["streams"] += 1
    assert stats["streams"] >= TCP_STREAMS
    return stats
