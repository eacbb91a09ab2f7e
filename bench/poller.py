"""Follows a burst of new names until each is served, in a process of its own.

The burst's writers are threads with a gRPC client; a poller that shared their interpreter
waited for the GIL after every reply and asked one name at a time, so it fell behind puts
coming at 1,000/s. Traced against the server's own apply times, that queue was the burst
figure: the server applied every put within 3-30 ms of it returning while the in-process
poller reported p99 35-600 ms. Here every name put is asked at once, all pending names in
flight together, each asked again `pause` s after a stale answer.

Protocol: the parent writes lines "<index> <qname> <address> <t_put>" to stdin, t_put being
time.monotonic() when the put returned (CLOCK_MONOTONIC on Linux: the same clock in both
processes), then "end". The child prints "ready" once its socket is up and, at the end,
one JSON object: {"ms": {index: ms put → served}, "timeouts": [index, ...]}.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time

from .probe import has_address, pack_query

LOST_AFTER = 0.2        # a query with no reply by then is asked again


class _Name:
    __slots__ = ("query", "fresh", "t_put", "next_at", "qid", "sent_at")

    def __init__(self, qname: str, address: str, t_put: float, now: float):
        self.query = bytearray(pack_query(qname, "A"))
        self.fresh = has_address(address)          # the reply carries the new address
        self.t_put = t_put
        self.next_at = now
        self.qid: int | None = None
        self.sent_at = 0.0


def follow(port: int, lines, *, pause: float, timeout: float, budget: float) -> dict:
    """Poll 127.0.0.1:port for the names read from `lines` (a file descriptor) until each is
    served, `timeout` s passes after its put, or `budget` s passes in all."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    os.set_blocking(lines, False)
    print("ready", flush=True)
    pending: dict[int, _Name] = {}
    in_flight: dict[int, int] = {}           # query id -> index
    served: dict[int, float] = {}
    timeouts: list[int] = []
    next_id = 0
    text = b""
    ended = False
    give_up = time.monotonic() + budget
    while (not ended or pending) and time.monotonic() < give_up:
        now = time.monotonic()
        wait = 0.05
        for index, n in list(pending.items()):
            if now - n.t_put > timeout:
                timeouts.append(index)
                del pending[index]
                if n.qid is not None:
                    in_flight.pop(n.qid, None)
                continue
            if n.qid is not None and now - n.sent_at > LOST_AFTER:
                in_flight.pop(n.qid, None)
                n.qid = None
            if n.qid is None:
                if n.next_at <= now:
                    while next_id in in_flight:
                        next_id = (next_id + 1) & 0xFFFF
                    struct.pack_into("!H", n.query, 0, next_id)
                    try:
                        sock.send(n.query)
                    except OSError:              # full buffer, or the server's port refused:
                        n.next_at = now + pause  # ask again later, until the name times out
                        wait = min(wait, pause)
                        continue
                    n.qid, n.sent_at = next_id, now
                    in_flight[next_id] = index
                    next_id = (next_id + 1) & 0xFFFF
                else:
                    wait = min(wait, n.next_at - now)
        readable, _, _ = select.select([sock, lines] if not ended else [sock], [], [], max(wait, 0))
        if sock in readable:
            while True:
                try:
                    reply = sock.recv(65535)
                except OSError:                  # drained, or an ICMP error: nothing to read
                    break
                t = time.monotonic()
                if len(reply) < 12:
                    continue
                index = in_flight.pop(struct.unpack_from("!H", reply)[0], None)
                if index is None or index not in pending:
                    continue
                n = pending[index]
                n.qid = None
                if n.fresh(reply):
                    served[index] = (t - n.t_put) * 1000
                    del pending[index]
                else:
                    n.next_at = t + pause
        if lines in readable:
            chunk = os.read(lines, 65536)
            if not chunk:
                ended = True
            text += chunk
            *complete, text = text.split(b"\n")
            now = time.monotonic()
            for line in complete:
                if line == b"end":
                    ended = True
                elif line:
                    index, qname, address, t_put = line.decode().split()
                    pending[int(index)] = _Name(qname, address, float(t_put), now)
    timeouts.extend(pending)
    sock.close()
    return {"ms": served, "timeouts": timeouts}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int, help="the DNS server's UDP port on 127.0.0.1")
    ap.add_argument("--pause", type=float, default=0.0005, help="s between asks of one name [0.0005]")
    ap.add_argument("--timeout", type=float, default=2.0, help="s after its put a name counts as a timeout [2]")
    ap.add_argument("--budget", type=float, default=60.0, help="s in all before giving up [60]")
    a = ap.parse_args(argv)
    result = follow(a.port, sys.stdin.fileno(), pause=a.pause, timeout=a.timeout, budget=a.budget)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
