"""Forwarding of names outside our zones to upstream resolvers, with a TTL-bounded cache.

dnsdisco is often the only nameserver in a resolv.conf, so every other name must still
resolve. The forwarder sends the client's query (fresh random id, hop-by-hop EDNS options
removed) to the upstreams over UDP, retries over TCP when the reply is truncated, fails
over between upstreams with a per-try timeout, and answers SERVFAIL when all fail.

This module is the I/O; the bytes are handled by upstream_wire.py (pure: walking, patching,
the upstream cache) and the upstream list by upstreams.py (--forward items, resolv.conf,
self-loops).
"""
from __future__ import annotations

import logging
import random
import struct
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import gevent
from gevent import socket as gsocket
from gevent.event import AsyncResult

from dnsdisco.dns.constants import FORMERR, NOERROR, REFUSED, SERVFAIL
from dnsdisco.dns.names import format_hostport
from dnsdisco.net.upstream_wire import (QR, TC, Message, UpstreamCache, UpstreamKey, WireError, build_reply,
                                        cache_ttl, finish_reply, parse_message, read_qname, strip_hop_by_hop,
                                        upstream_key)

_rng = random.SystemRandom()


class UpstreamError(Exception):
    """One try at one upstream failed (timeout, refused, reset, malformed or spoofed reply)."""


@dataclass(slots=True)
class _Upstream:
    addr: tuple[str, int]
    label: str
    family: int
    fails: int = 0
    down_until: float = 0.0


class Forwarder:
    """Sends queries for names outside our zones to upstream resolvers (gevent sockets).

    `forward(query, client_tcp)` is safe to call from many greenlets at once; identical
    queries in flight share one upstream exchange. Metrics hooks, when given:
    `metrics.forwarded(upstream, ok)` after every try at an upstream (ok = a usable answer),
    `metrics.upstream_failure(upstream)` when a try fails at the transport level.
    `stats` counts cache hits/misses, coalesced queries, TCP retries, TC stubs and SERVFAILs.
    """

    def __init__(self, upstreams: list[tuple[str, int]], *, timeout: float = 1.5,
                 cache_size: int = 10000, metrics=None, log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if not upstreams:
            raise ValueError("forwarding needs at least one upstream")
        self.timeout = float(timeout)
        self.metrics = metrics
        self.log = log or logging.getLogger("dnsdisco.net.forwarder")
        self.clock = clock
        self.cache = UpstreamCache(cache_size, clock)
        self.stats: Counter[str] = Counter()
        self._upstreams = [
            _Upstream((h, p), format_hostport(h, p),
                      gsocket.AF_INET6 if ":" in h else gsocket.AF_INET)
            for h, p in upstreams]
        self._preferred = 0
        self._inflight: dict[UpstreamKey, AsyncResult] = {}

    @property
    def upstreams(self) -> list[tuple[str, int]]:
        return [u.addr for u in self._upstreams]

    # -- the entry point

    def forward(self, query: bytes, client_tcp: bool = False) -> bytes:
        """The reply to `query` from cache or upstream; SERVFAIL when no upstream answers.

        Raises WireError only for a message without a DNS header (the caller drops those).
        """
        try:
            qmsg = parse_message(query, records=False)
        except WireError:
            if len(query) < 12:
                raise
            qmsg = Message(*struct.unpack_from(">HH", query, 0), counts=(0, 0, 0, 0))
            return build_reply(query, qmsg, FORMERR)
        if qmsg.counts[0] != 1:
            return build_reply(query, qmsg, FORMERR)
        key = upstream_key(qmsg)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats["cache_hits"] += 1
            out = finish_reply(cached, query, qmsg, qmsg.question_end, client_tcp)
            if len(out) < len(cached):
                self.stats["truncated_to_client"] += 1
            return out
        self.stats["cache_misses"] += 1

        waiting = self._inflight.get(key)
        if waiting is not None:
            self.stats["coalesced"] += 1
            try:
                result = waiting.get(timeout=self._longest_wait())
            except gevent.Timeout:
                result = None
        else:
            waiting = self._inflight[key] = AsyncResult()
            result = None
            try:
                result = self._resolve(query, qmsg, key)
            finally:
                self._inflight.pop(key, None)
                waiting.set(result)
        if result is None:
            self.stats["servfail"] += 1
            return build_reply(query, qmsg, SERVFAIL)
        reply, question_end = result
        out = finish_reply(reply, query, qmsg, question_end, client_tcp)
        if len(out) < len(reply):
            self.stats["truncated_to_client"] += 1
        return out

    def _longest_wait(self) -> float:
        return len(self._upstreams) * 2 * self.timeout + 1.0

    # -- one resolution: try upstreams in order of health

    def _order(self) -> list[_Upstream]:
        now = self.clock()
        n = len(self._upstreams)
        rotated = [self._upstreams[(self._preferred + i) % n] for i in range(n)]
        healthy = [u for u in rotated if u.down_until <= now]
        resting = sorted((u for u in rotated if u.down_until > now), key=lambda u: u.down_until)
        return healthy + resting

    def _resolve(self, query: bytes, qmsg: Message, key: UpstreamKey) -> tuple[bytes, int] | None:
        """(full reply bytes, its question end) or None when every upstream failed."""
        outgoing = strip_hop_by_hop(query, qmsg)     # same question, so qmsg still describes it
        fallback: tuple[bytes, int] | None = None
        for up in self._order():
            try:
                reply, rmsg = self._ask(up, outgoing, qmsg)
            except UpstreamError as exc:
                self._failed(up, str(exc))
                continue
            if rmsg.flags & TC:
                # could not get the whole answer over TCP either; keep the cut one as a last resort
                fallback = fallback or (reply, rmsg.question_end)
                self._report(up, False)
                continue
            if rmsg.rcode in (SERVFAIL, REFUSED):
                # the upstream is alive but cannot answer this name; another one may
                self._alive(up)
                self._report(up, False)
                continue
            self._alive(up)
            self._preferred = self._upstreams.index(up)
            self._report(up, True)
            stripped = strip_hop_by_hop(reply, rmsg)
            if stripped is not reply:
                reply, rmsg = stripped, parse_message(stripped)
            self.cache.put(key, reply, rmsg, cache_ttl(reply, rmsg))
            return reply, rmsg.question_end
        return fallback

    def _ask(self, up: _Upstream, outgoing: bytes, qmsg: Message) -> tuple[bytes, Message]:
        """One try: UDP, then TCP to the same upstream when the UDP reply is truncated."""
        qid = _rng.getrandbits(16)
        wire = struct.pack(">H", qid) + outgoing[2:]
        reply = self._udp(up, wire, qid, qmsg)
        rmsg = self._check(reply)
        if rmsg.flags & TC:
            self.stats["tcp_retries"] += 1
            qid = _rng.getrandbits(16)
            wire = struct.pack(">H", qid) + outgoing[2:]
            try:
                reply = self._tcp(up, wire, qid, qmsg)
                rmsg = self._check(reply)
            except UpstreamError as exc:
                self.log.debug("TCP retry to %s failed: %s", up.label, exc)
        return reply, rmsg

    @staticmethod
    def _check(reply: bytes) -> Message:
        try:
            return parse_message(reply)
        except WireError as exc:
            raise UpstreamError(f"malformed reply: {exc}") from None

    @staticmethod
    def _matches(data: bytes, qid: int, qmsg: Message) -> bool:
        """Anti-spoofing: our random id, a response, and the question we asked."""
        if len(data) < 12:
            return False
        rid, flags, qd = struct.unpack_from(">HHH", data, 0)
        if rid != qid or not flags & QR:
            return False
        if qd == 0:
            return flags & 0x000F != NOERROR      # FORMERR/NOTIMP/REFUSED may omit the question
        if qd != 1:
            return False
        try:
            qname, end = read_qname(data, 12)
        except WireError:
            return False
        if end + 4 > len(data):
            return False
        return (qname, *struct.unpack_from(">HH", data, end)) == (qmsg.qname, qmsg.qtype, qmsg.qclass)

    def _udp(self, up: _Upstream, wire: bytes, qid: int, qmsg: Message) -> bytes:
        deadline = time.monotonic() + self.timeout
        sock = gsocket.socket(up.family, gsocket.SOCK_DGRAM)
        try:
            with self._failures("UDP"):
                sock.connect(up.addr)       # a fresh socket: random source port; only replies from the upstream
                sock.send(wire)
                while True:
                    data = _recv_before(sock, 65535, deadline)
                    if self._matches(data, qid, qmsg):
                        return data
                    self.stats["mismatched_replies"] += 1
        finally:
            sock.close()

    def _tcp(self, up: _Upstream, wire: bytes, qid: int, qmsg: Message) -> bytes:
        deadline = time.monotonic() + self.timeout
        try:
            sock = gsocket.create_connection(up.addr, timeout=self.timeout)
        except gsocket.timeout:
            raise UpstreamError(f"TCP connect timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise UpstreamError(f"TCP connect: {exc.strerror or exc}") from None
        try:
            with self._failures("TCP"):
                sock.sendall(struct.pack(">H", len(wire)) + wire)
                while True:
                    length = struct.unpack(">H", _recv_exact(sock, 2, deadline))[0]
                    data = _recv_exact(sock, length, deadline)
                    if self._matches(data, qid, qmsg):
                        return data
                    self.stats["mismatched_replies"] += 1
        finally:
            sock.close()

    @contextmanager
    def _failures(self, transport: str):
        """A socket error while asking an upstream, as the UpstreamError that says which."""
        try:
            yield
        except gsocket.timeout:
            raise UpstreamError(f"no {transport} reply within {self.timeout:g}s") from None
        except OSError as exc:
            raise UpstreamError(f"{transport}: {exc.strerror or exc}") from None

    # -- health bookkeeping

    def _report(self, up: _Upstream, ok: bool) -> None:
        if self.metrics is not None:
            self.metrics.forwarded(up.label, ok)

    def _failed(self, up: _Upstream, why: str) -> None:
        up.fails += 1
        up.down_until = self.clock() + min(30.0, 2.0 ** min(up.fails - 1, 5))
        if up.fails == 1:
            self.log.warning("upstream %s failed (%s); trying the next one", up.label, why)
        if self.metrics is not None:
            self.metrics.forwarded(up.label, False)
            self.metrics.upstream_failure(up.label)

    def _alive(self, up: _Upstream) -> None:
        if up.fails:
            self.log.info("upstream %s answers again", up.label)
        up.fails = 0
        up.down_until = 0.0


def _recv_before(sock, size: int, deadline: float) -> bytes:
    """One recv of at most `size` octets that gives up (socket.timeout) at `deadline`."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise gsocket.timeout()
    sock.settimeout(remaining)
    return sock.recv(size)


def _recv_exact(sock, n: int, deadline: float) -> bytes:
    parts = []
    while n:
        chunk = _recv_before(sock, n, deadline)
        if not chunk:
            raise UpstreamError("connection closed mid-reply")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)
