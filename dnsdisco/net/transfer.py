"""Zone transfers and TSIG on the query path: AXFR (RFC 5936), IXFR (RFC 1995) from the
journal, and every signed message (RFC 8945).

`Responder.handle` (dns/responder.py) hands this module the messages it cannot answer alone: any
query whose fast parse declined (it may carry a TSIG) and every AXFR/IXFR question.
`Transfers.handle` returns NOT_MINE for the rest, so ordinary queries keep their path.

- A TSIG that names no configured key gets NOTAUTH/BADKEY (also when no key is configured
  at all), a bad MAC NOTAUTH/BADSIG, a stale time NOTAUTH/BADTIME (RFC 8945 5.2); a valid
  signed query gets the usual answer, signed. Never an unsigned normal answer.
- AXFR/IXFR: only over TCP (AXFR over UDP: NOTIMP; IXFR over UDP: RFC 1995 2), only for a
  zone apex (else NOTAUTH), only for clients in --transfer-allow and, with
  --transfer-require-tsig, signed with a configured key (else REFUSED). The zone comes from
  `zonedata.zone_rrsets` (the answers of the rules), SOA first and last, over as many
  messages as it takes, each signed when the request was (RFC 8945 5.3.1).
- `on_swap` keeps the journal (journal.py) and tells the notifier (notify.py) which zones
  changed.
"""
from __future__ import annotations

import logging
import struct
import time

from dnslib import CLASS, OPCODE, QTYPE, RCODE, RR, SOA, DNSBuffer, DNSHeader, DNSRecord

from dnsdisco.dns.names import skip_wire_name
from dnsdisco.net import tsig
from dnsdisco.net.acl import Networks
from dnsdisco.net.journal import Diff, Journal, changes_between
from dnsdisco.dns.encoder import error_for
from dnsdisco.dns.rules import lower_name
from dnsdisco.dns.serial import serial_of
from dnsdisco.dns.responder import NOT_MINE, XFR_QTYPES
from dnsdisco.dns.zonedata import soa_record, zone_rrsets

log = logging.getLogger("dnsdisco.net.transfer")

T_AXFR, T_IXFR, T_SOA = QTYPE.AXFR, QTYPE.IXFR, QTYPE.SOA
MESSAGE_BUDGET = 16384          # octets of records (before compression) per transfer message
UDP_LIMIT = 512                 # a UDP reply without EDNS (RFC 1035 4.2.1)
REFUSAL_LINES, REFUSAL_WINDOW = 10, 10.0    # log lines for refused/failed requests per window (s)


def _question(data: bytes):
    """(qdcount, qtype, arcount) read from the wire, or None when it does not parse."""
    if len(data) < 12:
        return None
    qd, ar = struct.unpack_from("!H", data, 4)[0], struct.unpack_from("!H", data, 10)[0]
    if qd != 1:
        return qd, None, ar
    try:
        return qd, struct.unpack_from("!H", data, skip_wire_name(data, 12))[0], ar
    except (ValueError, struct.error):
        return qd, None, ar


class Transfers:
    """Transfer policy, TSIG keys, the journal and the notifier of one serve process."""

    def __init__(self, *, allow=(), keys: dict | None = None, require_tsig: bool = False,
                 journal: Journal | None = None, notifier=None, metrics=None,
                 message_budget: int = MESSAGE_BUDGET, pause=None, spawn=None):
        self.allow = Networks(allow)
        self.keys = dict(keys or {})
        self.require_tsig = require_tsig
        self.journal = journal
        self.notifier = notifier
        self.metrics = metrics
        self.message_budget = message_budget
        self._zone_cache: tuple | None = None     # (revision, zone name, rrsets) of the last AXFR
        self._packed_cache: tuple | None = None   # (key, messages) of the last whole zone packed
        self._refusals = [0.0, 0, 0]               # window start, lines logged, lines left out
        self.pause = pause                         # called now and then in long computations (gevent.sleep)
        # the revision the journal is complete to: the responder may already serve a newer
        # snapshot while the journal entry for it is being computed (IXFR then stops here)
        self.recorded: int | None = None
        self.spawn = spawn
        self._queued: list | None = None          # [old, new, touched] not yet in the journal
        self._worker = None
        # False while serve answers from a saved snapshot (--snapshot-file): `handle` does not
        # send it on, so it is not announced either (a secondary told of it would ask for a
        # transfer and get SERVFAIL); `announce` ends that once the listing has replaced it
        self.announcing = True

    # ------------------------------------------------------------ the query path

    def handle(self, responder, data: bytes, transport: str, client):
        """Reply bytes, a list of reply messages (TCP transfers), None (send nothing), or
        NOT_MINE when the responder's usual path answers this message."""
        question = _question(data)
        if question is None:
            return NOT_MINE
        qd, qtype, arcount = question
        signed = None
        if arcount:
            try:
                signed = tsig.check(data, self.keys)
            except ValueError:
                return _formerr(data)
        if signed is None:
            if qtype in XFR_QTYPES and qd == 1:
                return self._transfer(responder, data, data, transport, client, None)
            return NOT_MINE
        body = tsig.unsigned(data, signed)
        if signed.error:
            return self._tsig_failed(data, body, signed, transport, client, qtype)
        if qtype in XFR_QTYPES and qd == 1:
            return self._transfer(responder, data, body, transport, client, signed)
        # a valid signed query: the usual answer, then signed with the same key
        reply = responder.handle(body, transport, client)
        if reply is None:
            return None
        if isinstance(reply, list):       # pragma: no cover - only transfers give lists
            reply = reply[0]
        if transport == "udp":
            reply = _fit_udp(reply, body, signed)
        wire, _ = tsig.sign(_with_id(reply, signed.rdata.original_id), signed.key, signed.mac)
        self._count("tsig_query", "ok")
        return _with_id(wire, struct.unpack_from("!H", data, 0)[0])

    def _tsig_failed(self, data, body, signed, transport, client, qtype):
        try:
            query = DNSRecord.parse(body)
        except Exception:
            return _formerr(data)
        reply = error_for(query, RCODE.NOTAUTH)
        reply = tsig.error_reply(_with_id(reply, signed.rdata.original_id), signed)
        word = {tsig.BADKEY: "badkey", tsig.BADSIG: "badsig", tsig.BADTIME: "badtime"}[signed.error]
        kind = "axfr" if qtype == T_AXFR else "ixfr" if qtype == T_IXFR else "tsig_query"
        self._count(kind, word)
        self._refusal_log("%s from %s over %s signed with key %s: %s, answered NOTAUTH", kind.upper(), client[0],
                 transport.upper(), signed.keytext, word.upper())
        return _with_id(reply, struct.unpack_from("!H", data, 0)[0])

    def allowed(self, client, signed) -> bool:
        if not client or not self.allow.contains(client[0]):
            return False
        return signed is not None or not self.require_tsig

    # ------------------------------------------------------------ AXFR and IXFR

    def _transfer(self, responder, data: bytes, body: bytes, transport: str, client, signed):
        started = time.monotonic()
        try:
            query = DNSRecord.parse(body)
        except Exception:
            return _formerr(data)
        kind = "axfr" if query.q.qtype == T_AXFR else "ixfr"

        def finish(reply: bytes, result: str):
            self._count(kind, result)
            self._refusal_log("%s of %s to %s over %s%s: %s", kind.upper(), lower_name(query.q.qname) or ".", client[0],
                     transport.upper(), f" key {signed.keytext}" if signed else "", result)
            return self._signed([reply], data, signed)[0]

        if query.header.opcode != OPCODE.QUERY:
            return finish(error_for(query, RCODE.NOTIMP), "notimp")
        snap = responder.snapshot
        if not responder.ready or responder.provisional:     # a saved snapshot is not sent on
            return finish(error_for(query, RCODE.SERVFAIL), "not_ready")
        name = lower_name(query.q.qname)
        zone = next((z for z in snap.zones if z.name == name), None)
        if kind == "axfr" and transport != "tcp":
            return finish(error_for(query, RCODE.NOTIMP), "udp")     # RFC 5936 4.2: TCP only
        if query.q.qclass != CLASS.IN:
            return finish(error_for(query, RCODE.REFUSED), "refused")
        if not self.allowed(client, signed):
            return finish(error_for(query, RCODE.REFUSED), "refused")
        if zone is None:
            return finish(error_for(query, RCODE.NOTAUTH), "notauth")
        serial = serial_of(snap.revision)
        whole = None
        if kind == "axfr":
            records = self._zone(snap, zone.name)
            detail = "full"
            whole = (snap, zone.name)
        else:
            client_serial = _ixfr_serial(query)
            if client_serial is None:
                return finish(error_for(query, RCODE.FORMERR), "formerr")
            upto = snap.revision
            soa = soa_record(snap, zone.name)
            if self.journal is not None and self.recorded is not None and self.recorded < upto:
                upto = self.recorded
                soa = _with_serial(soa, serial_of(upto))
                serial = serial_of(upto)
            diff = self.journal.diff(zone.name, client_serial, upto) if self.journal else None
            if diff == "current":
                records, detail, kind = [soa], f"current at {client_serial}", "ixfr_current"
            elif diff is None:
                records, detail, kind = self._zone(snap, zone.name), f"full from {client_serial}", "ixfr_full"
                whole = (snap, zone.name)
            else:
                assert isinstance(diff, Diff)
                old = _with_serial(soa, client_serial)
                records = [soa, old, *diff.removed, soa, *diff.added, soa]
                detail = f"{client_serial} -> {serial}: -{len(diff.removed)} +{len(diff.added)}"
            if transport != "tcp" and len(records) > 1:
                # RFC 1995 2: over UDP the reply if it fits, else our SOA alone (with TC: ask over TCP)
                reply = self._header(query, True)
                for rr in records:
                    reply.add_answer(rr)
                wire = reply.pack()
                room = UDP_LIMIT - (tsig_room(signed) if signed else 0)
                if len(wire) > room:
                    reply = self._header(query, True)
                    reply.header.tc = 1
                    reply.add_answer(soa)
                    detail += ", sent SOA and TC over UDP"
                    wire = reply.pack()
                self._count(kind, "ok")
                log.info("%s of %s to %s over UDP%s: %s", kind.upper(), name, client[0],
                         f" key {signed.keytext}" if signed else "", detail)
                return self._signed([wire], data, signed)[0]
        messages = self._pack(query, records, whole)
        out = self._signed(messages, data, signed)
        self._count(kind, "ok")
        log.info("%s of %s to %s over %s%s: serial %d, %s, %d record(s) in %d message(s), %d octets, %.3f s",
                 kind.upper(), name, client[0], transport.upper(), f" key {signed.keytext}" if signed else "",
                 serial, detail, len(records), len(out), sum(map(len, out)), time.monotonic() - started)
        return out if transport == "tcp" else out[0]

    def _zone(self, snap, zone_name: str) -> list:
        """SOA, every other record, SOA: the AXFR stream (computed once per revision)."""
        cached = self._zone_cache
        if cached is not None and cached[0] == (snap.revision, id(snap)) and cached[1] == zone_name:
            return cached[2]
        rrsets = zone_rrsets(snap, zone_name, pause=self.pause)
        soa = rrsets[0].rrs[0]
        records = [soa] + [rr for rrset in rrsets[1:] for rr in rrset.rrs] + [soa]
        self._zone_cache = ((snap.revision, id(snap)), zone_name, records)
        return records

    @staticmethod
    def _header(query: DNSRecord, with_question: bool) -> DNSRecord:
        header = DNSHeader(id=query.header.id, qr=1, aa=1, rd=query.header.rd, opcode=OPCODE.QUERY)
        reply = DNSRecord(header, q=query.q if with_question else None)
        if not with_question:
            reply.questions = []
        return reply

    def _pack(self, query: DNSRecord, records: list, whole_zone: tuple | None = None) -> list[bytes]:
        """The records in order over as many messages as needed, each compressed; the
        question only in the first (RFC 5936 2.2.1). A whole zone (`whole_zone`: its snapshot
        and name) is packed once per revision and question: later transfers only get their id."""
        qid = query.header.id
        key = None
        if whole_zone is not None:
            snap, zone_name = whole_zone
            key = (snap.revision, id(snap), zone_name, query.q.qtype, tuple(query.q.qname.label), query.header.rd)
            cached = self._packed_cache
            if cached is not None and cached[0] == key:
                return [_with_id(wire, qid) for wire in cached[1]]
        messages = []
        current = self._header(query, True)
        used = 0
        for rr in records:
            buf = DNSBuffer()
            rr.pack(buf)
            size = len(buf.data)
            if current.rr and used + size > self.message_budget:
                messages.append(bytes(current.pack()))
                current = self._header(query, False)
                used = 0
                if self.pause is not None:
                    self.pause()              # a large zone must not hold up other clients
            current.add_answer(rr)
            used += size
        messages.append(bytes(current.pack()))
        if key is not None:
            self._packed_cache = (key, messages)
        return [_with_id(wire, qid) for wire in messages]

    def _signed(self, messages: list[bytes], data: bytes, signed) -> list[bytes]:
        if signed is None or signed.key is None:
            return [bytes(wire) for wire in messages]
        qid = struct.unpack_from("!H", data, 0)[0]
        out, ctx = [], None
        multi = len(messages) > 1
        for wire in messages:
            wire, ctx = tsig.sign(_with_id(wire, signed.rdata.original_id), signed.key, signed.mac,
                                  ctx=ctx, multi=multi)
            out.append(_with_id(wire, qid))
        return out

    def _refusal_log(self, msg: str, *args) -> None:
        """A line per refused or failed request, at most REFUSAL_LINES per REFUSAL_WINDOW s (a
        client must not be able to fill the log); the number left out is said once after."""
        now = time.monotonic()
        window = self._refusals
        if now - window[0] >= REFUSAL_WINDOW:
            if window[2]:
                log.info("%d more refused or failed transfer/TSIG request(s) not logged in the last %.0f s",
                         window[2], now - window[0])
            window[:] = [now, 0, 0]
        if window[1] < REFUSAL_LINES:
            window[1] += 1
            log.info(msg, *args)
        else:
            window[2] += 1

    def _count(self, kind: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.transfer(kind, result)

    # ------------------------------------------------------------ keeping the journal

    def on_swap(self, old, new, touched) -> None:
        """A snapshot swap: record what it changed in each zone and tell the notifier. With
        `spawn` (serve passes gevent.spawn) the journal is kept by a worker of its own, so the
        etcd sync never waits for it; swaps that arrive while it works are merged into one
        entry (from the first one's old snapshot to the last one's new)."""
        self._zone_cache = None
        self._packed_cache = None
        if self._queued is None:
            self._queued = [old, new, touched]
        else:
            self._queued[1] = new
            self._queued[2] = None if touched is None or self._queued[2] is None else \
                frozenset(self._queued[2]) | frozenset(touched)
        if self.spawn is None:
            self._drain()
        elif self._worker is None or self._worker.dead:
            self._worker = self.spawn(self._drain)

    def _drain(self) -> None:
        while self._queued is not None:
            old, new, touched = self._queued
            self._queued = None
            try:
                self._record(old, new, touched)
            except Exception:
                log.exception("keeping the IXFR journal failed at revision %d; it starts over", new.revision)
                if self.journal is not None:
                    self.journal.reset(new.revision)
                    self.recorded = new.revision

    def _record(self, old, new, touched) -> None:
        changed = []
        if self.journal is not None:
            if touched is None or old.zones != new.zones or old.prefix != new.prefix:
                self.journal.reset(new.revision)
                changed = [z.name for z in new.zones]
            else:
                for zone in new.zones:
                    names = [n for n in touched if (new.zone_of(n) or old.zone_of(n)) is zone]
                    if not names:
                        continue
                    changes = changes_between(zone_rrsets(old, zone.name, names, self.pause),
                                              zone_rrsets(new, zone.name, names, self.pause))
                    if self.journal.record(zone.name, old.revision, new.revision, changes):
                        changed.append(zone.name)
            self.recorded = new.revision
            if self.metrics is not None:
                span = self.journal.span
                self.metrics.journal(len(self.journal.entries), self.journal.bytes,
                                     span[1] - span[0] if span else 0)
        elif touched is None:
            changed = [z.name for z in new.zones]
        if changed and self.notifier is not None and new.revision and self.announcing:
            self.notifier.changed(changed)

    def announce(self, zones) -> None:
        """Announce changes again from now on, and `zones` at once: serve calls this when the
        first listing has replaced a saved snapshot and transfers are answered again."""
        self.announcing = True
        if self.notifier is not None and zones:
            self.notifier.changed(zones)


def tsig_room(signed) -> int:
    """Octets a TSIG record adds: owner, fixed fields, algorithm name, MAC."""
    mac = len(signed.rdata.mac) or 64
    return len(signed.keyname.to_wire()) + 10 + len(signed.rdata.algorithm.to_wire()) + 16 + mac + 6


def _fit_udp(reply: bytes, body: bytes, signed) -> bytes:
    """A UDP reply that stays within the client's size once the TSIG is added (RFC 8945 5.3:
    truncate, set TC, sign the truncated message)."""
    from dnsdisco.dns.wire import edns_of, udp_limit
    try:
        query = DNSRecord.parse(body)
        edns = edns_of(query)
        limit = udp_limit(edns.present, edns.udp_size) if not isinstance(edns, str) else UDP_LIMIT
    except Exception:
        limit = UDP_LIMIT
    if len(reply) + tsig_room(signed) <= limit:
        return reply
    try:
        parsed = DNSRecord.parse(reply)
    except Exception:
        return reply
    parsed.header.tc = 1
    parsed.rr, parsed.auth = [], []
    parsed.ar = [rr for rr in parsed.ar if rr.rtype == QTYPE.OPT]
    return parsed.pack()


def _ixfr_serial(query: DNSRecord) -> int | None:
    for rr in query.auth:
        if rr.rtype == T_SOA:
            return rr.rdata.times[0]
    return None


def _with_serial(soa_rr, serial: int):
    rd = soa_rr.rdata
    times = (serial,) + tuple(rd.times[1:])
    return RR(soa_rr.rname, T_SOA, rclass=soa_rr.rclass, ttl=soa_rr.ttl, rdata=SOA(rd.mname, rd.rname, times))


def _with_id(wire: bytes, qid: int) -> bytes:
    return struct.pack("!H", qid) + bytes(wire[2:])


def _formerr(data: bytes) -> bytes | None:
    from dnsdisco.dns.encoder import formerr_for
    return formerr_for(data)
