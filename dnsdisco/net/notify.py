"""NOTIFY (RFC 1996) to the secondaries of `--notify ADDR[:PORT]` when a zone changes.

One greenlet per (zone, secondary) while there is something to tell it, so at most one
NOTIFY is in flight to each: a change while one is outstanding only marks the pair
pending, and the next NOTIFY (carrying the serial current then) goes when the secondary
acknowledges or the tries run out. A burst of 1,000 puts therefore sends a handful of
NOTIFYs, not 1,000. An unanswered NOTIFY is sent again after 1, 2, 4... seconds
(RFC 1996 3.6), up to `tries` times. NOTIFYs are signed with `key` when one is given.
Runs under gevent (serve monkey-patches the socket module).
"""
from __future__ import annotations

import logging
import random
import socket
import struct
import time

import gevent
from dnslib import OPCODE, QTYPE, DNSHeader, DNSQuestion, DNSRecord

from dnsdisco.dns.names import format_hostport, parse_address_port
from dnsdisco.net import tsig
from dnsdisco.dns.zonedata import soa_record

log = logging.getLogger("dnsdisco.net.notify")


def parse_target(text) -> tuple[str, int]:
    """`ADDRESS[:PORT]` or `[V6]:PORT` of a secondary (default port 53)."""
    return parse_address_port(text, 53, hint="NOTIFY goes to an IP address (e.g. 192.0.2.53 or [2001:db8::53]:53)")


class Notifier:
    def __init__(self, targets, current, *, key=None, timeout: float = 1.0, tries: int = 5,
                 metrics=None):
        self.targets = [tuple(t) for t in targets]
        self.current = current            # () -> the live Snapshot
        self.key = key
        self.timeout = timeout
        self.tries = tries
        self.metrics = metrics
        self._pending: dict[tuple, bool] = {}
        self._workers: dict[tuple, gevent.Greenlet] = {}
        self.sent = 0                     # NOTIFY messages sent (tests, log)

    def changed(self, zones) -> None:
        """Zones whose content changed: tell every secondary, coalescing with what is in flight."""
        for zone in zones:
            for target in self.targets:
                pair = (zone, target)
                self._pending[pair] = True
                worker = self._workers.get(pair)
                if worker is None or worker.dead:
                    self._workers[pair] = gevent.spawn(self._run, zone, target)

    def stop(self) -> None:
        gevent.killall(list(self._workers.values()), block=True, timeout=1.0)
        self._workers.clear()

    # ------------------------------------------------------------ one secondary, one zone

    def _run(self, zone: str, target: tuple) -> None:
        try:
            self._notify_all(zone, target)
        except Exception:      # a bug must not leave the pair without a worker for good
            log.exception("NOTIFY %s to %s failed", zone, format_hostport(*target))
            self._count("failed")

    def _notify_all(self, zone: str, target: tuple) -> None:
        pair = (zone, target)
        while self._pending.get(pair):
            self._pending[pair] = False
            wait = self.timeout
            tries = 0
            while True:
                tries += 1
                serial = self._notify_once(zone, target, wait, pair)
                if serial is not None:
                    self._count("acked")
                    log.debug("NOTIFY %s serial %d acknowledged by %s", zone, serial, format_hostport(*target))
                    break
                if self._pending.get(pair):
                    # a newer change while this one went unanswered: send that one now, with the
                    # first timeout again (a secondary that was down gets the news when it is back,
                    # not after the backoff; still one NOTIFY in flight, at most one per timeout)
                    self._pending[pair] = False
                    wait, tries = self.timeout, 0
                    continue
                if tries >= self.tries:
                    self._count("failed")
                    log.warning("NOTIFY %s to %s: no answer after %d tries; it will catch up at its SOA "
                                "refresh", zone, format_hostport(*target), self.tries)
                    break
                wait *= 2

    def _notify_once(self, zone: str, target: tuple, wait: float, pair: tuple) -> int | None:
        """Send one NOTIFY and wait up to `wait` s for its answer; the serial sent, or None
        (also early, once `timeout` s have passed, when a newer change is pending)."""
        snap = self.current()
        soa = soa_record(snap, zone)
        serial = soa.rdata.times[0]
        qid = random.randint(0, 0xFFFF)
        message = DNSRecord(DNSHeader(id=qid, opcode=OPCODE.NOTIFY, aa=1, rd=0), q=DNSQuestion(zone + ".", QTYPE.SOA))
        message.add_answer(soa)
        wire = message.pack()
        mac = b""
        if self.key is not None:
            wire, _ = tsig.sign(wire, self.key, b"")
            mac = _mac_of(wire)
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sent_at = time.monotonic()
        deadline = sent_at + wait
        try:
            try:
                sock.connect(target)
                sock.send(wire)
                self.sent += 1
                self._count("sent")
            except OSError as exc:         # no route, refused by an earlier ICMP: a failed try
                log.debug("NOTIFY %s to %s not sent: %s", zone, format_hostport(*target), exc)
                sock.close()
                sock = None
            while True:
                now = time.monotonic()
                left = deadline - now
                if left <= 0:
                    return None
                if self._pending.get(pair) and now - sent_at >= self.timeout:
                    return None
                step = min(left, self.timeout / 4)
                if sock is None:
                    gevent.sleep(step)
                    continue
                sock.settimeout(step)
                try:
                    reply = sock.recv(65535)
                except (socket.timeout, TimeoutError):
                    continue
                except OSError:           # ICMP unreachable: nobody listens yet
                    sock.close()
                    sock = None
                    continue
                if _answers(reply, qid, self.key, mac):
                    return serial
        finally:
            if sock is not None:
                sock.close()

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.notify(result)


def _mac_of(wire: bytes) -> bytes:
    """The MAC of the TSIG we just appended (its rdata ends with the MAC, id, error, other)."""
    import dns.message
    return dns.message.from_wire(wire, keyring=False).tsig[0].mac


def _answers(reply: bytes, qid: int, key, mac: bytes) -> bool:
    """A response to our NOTIFY (same id, QR, opcode NOTIFY), signed when we signed."""
    if len(reply) < 12:
        return False
    rid, flags = struct.unpack_from("!HH", reply)
    if rid != qid or not flags & 0x8000 or (flags >> 11) & 0xF != OPCODE.NOTIFY:
        return False
    if key is None:
        return True
    import dns.message
    import dns.exception
    try:
        dns.message.from_wire(reply, keyring={key.name: key}, request_mac=mac)
    except (dns.exception.DNSException, ValueError):
        log.warning("NOTIFY answer with a bad or missing TSIG (key %s) ignored",
                    key.name.to_text(omit_final_dot=True))
        return False
    return True

