"""`Responder.handle(packet) -> reply bytes`: the query path the socket loops call, no I/O.

On a cache hit no dnslib object is built: the cached reply was packed with the question
in lower case, so the client's id, RD/CD bits and spelling of the name are written over it.
Transfers, rate limiting and forwarding are handed in (`xfr`, `rrl`, `forwarder`): this
package does not import the network side.
"""
from __future__ import annotations

import itertools
import logging
import random
import struct
import time

from dnslib import EDNS0, DNSHeader, DNSLabel, DNSQuestion, DNSRecord, RCODE

from dnsdisco.dns.cache import DEAD, DEFAULT_CACHE_SIZE, ReplyCache, _Exact, _same_but_name, cache_key
from dnsdisco.dns.names import from_labels, zone_of_labels
from dnsdisco.dns.packer import encode_name, fast_answer, negative_reply
from dnsdisco.dns.rules import UDP_PAYLOAD, answer, edns_of, error_reply, soa_serial
from dnsdisco.dns.snapshot import Snapshot
from dnsdisco.dns.wire import (DROP, SLOW, T_OPT, TCP_LIMIT, _HEADER, _TYPECLASS, edns_problem, formerr_for,
                               formerr_with_opt, pack_reply, parse_fast, rotations, slip_reply,
                               soa_serial_offsets, udp_limit)

log = logging.getLogger("dnsdisco.wire")
_now = time.perf_counter

T_PTR = 12            # answered from the snapshot for registered addresses, even outside our zones
XFR_QTYPES = frozenset((251, 252))   # IXFR, AXFR: handed to `xfr` (net.transfer.Transfers)
NOT_MINE = object()   # what `xfr.handle` returns for a message the usual path answers
_SERIAL = struct.Struct("!I")


class _NoTransfers:
    """Transfers refused and signed queries left to the usual path: the stand-in until serve
    hands in net.transfer.Transfers."""

    def handle(self, responder, data, transport, client):
        return NOT_MINE

    def on_swap(self, old, new, touched):
        pass


class Responder:
    """Turns a query packet into reply bytes from the current snapshot (or the forwarder)."""

    def __init__(self, snapshot: Snapshot, *, forwarder=None, acl=None, metrics=None,
                 cache_size: int = DEFAULT_CACHE_SIZE, ready: bool = True):
        self.snapshot = snapshot
        self.forwarder = forwarder
        self.acl = acl
        self.metrics = metrics
        self.cache = ReplyCache(cache_size)
        # False until the first full sync: SERVFAIL then, so no client caches a false NXDOMAIN
        self.ready = ready
        self._zone_memo: dict[bytes, bool] = {}
        # per transport: exact query bytes (id left out) -> _Exact
        self._exact: dict[str, dict[bytes, _Exact]] = {"udp": {}, "tcp": {}}
        # a cap per table: UDP's as large as the cache, TCP's (rarer) an eighth of it
        self._exact_max = {"udp": max(1024, cache_size), "tcp": max(1024, cache_size // 8)}
        self._revision = snapshot.revision      # what an _Exact with an SOA must have been written at
        self.rrl = None
        self._zone_suffixes = self._suffixes(snapshot)
        # AXFR/IXFR and TSIG: serve hands in net.transfer.Transfers (app.py)
        self.xfr = _NoTransfers()

    @staticmethod
    def _suffixes(snap: Snapshot) -> tuple[bytes, ...]:
        return tuple(encode_name(zone.name) for zone in snap.zones)

    # -- the snapshot

    def on_swap(self, snapshot: Snapshot, touched=None) -> None:
        """Serve `snapshot` from now on and drop the cached replies it may change."""
        old = self.snapshot
        if snapshot.zones != self.snapshot.zones:
            touched = None
            self._zone_memo.clear()
            self._zone_suffixes = self._suffixes(snapshot)
        self.snapshot = snapshot
        self._revision = snapshot.revision
        self.cache.invalidate(touched)
        if touched is None:            # every entry died: free the exact tables' references too
            for table in self._exact.values():
                table.clear()
        self.ready = True
        # after the swap, so answering the change never waits for the IXFR journal
        try:
            self.xfr.on_swap(old, snapshot, touched)
        except Exception:
            log.exception("keeping the IXFR journal failed at revision %d", snapshot.revision)

    # -- queries

    def _in_zone(self, lname: bytes) -> bool:
        hit = self._zone_memo.get(lname)
        if hit is None:
            hit = False
            for suffix in self._zone_suffixes:
                if lname.endswith(suffix):
                    cut = len(lname) - len(suffix)
                    # the suffix must start on a label boundary
                    pos = 0
                    while pos < cut:
                        pos += lname[pos] + 1
                    if pos == cut:
                        hit = True
                        break
            if len(self._zone_memo) > 100_000:
                self._zone_memo.clear()
            self._zone_memo[lname] = hit
        return hit

    def _may_forward(self, client, data: bytes) -> bool:
        """Whether this query goes upstream: forwarding is on, the client is allowed, and it
        asked for recursion (RD); without RD a name outside our zones is REFUSED."""
        return (self.forwarder is not None and data[2] & 0x01
                and (self.acl is None or self.acl.allows(client[0])))

    def handle(self, data: bytes, transport: str, client) -> bytes | list | None:
        """The reply to one DNS message, or None to send nothing; over TCP a zone transfer
        is a list of messages."""
        started = _now()
        # 1. the exact bytes of this query (all but the id) were answered before, or the same
        #    bytes with the name in other letter case (0x20-randomised resolvers)
        table = self._exact[transport]
        asked = data[2:]
        exact = table.get(asked)
        if exact is None:
            folded = asked.lower()
            if folded != asked:
                exact = table.get(folded)
                if exact is not None and not _same_but_name(asked, folded, exact.qlen):
                    exact = None
        else:
            folded = None
        if exact is not None and (exact.revision is None or exact.revision == self._revision):
            turn = exact.turn
            exact.turn = turn + 1
            variant = exact.replies[turn % exact.count]
            if folded is None:
                reply = data[:2] + variant
            else:                            # the client's spelling of the name
                end = 12 + exact.qlen
                reply = data[:2] + variant[:10] + data[12:end] + variant[end - 2:]
            if self.rrl is not None and transport == "udp":
                reply = self._rate_limited(reply, data, (None, data[12:12 + exact.qlen], exact.qtype), client)
                if reply is None:
                    return None
            cell = exact.cell                # this kind of answer's counters, added to directly
            if cell is not None:
                cell[0] += 1
                cell[1] += 1
                if not turn & 15:
                    self.metrics.latency(_now() - started)
            return reply
        fq = parse_fast(data)
        if fq is DROP:
            if self.metrics:
                self.metrics.dropped("not-a-query")
            return None
        if fq is SLOW or fq[2] in XFR_QTYPES:      # maybe signed (TSIG), or AXFR/IXFR
            out = self.xfr.handle(self, data, transport, client)
            if out is not NOT_MINE:
                return out
        if not self.ready:
            reply = self._not_ready(data)
            hit = False
        elif fq is SLOW:
            reply = self._slow(data, transport, client, None)
            hit = False
        else:
            qid, qname, qtype, qclass, edns, udp, do = fq
            lname = qname.lower()
            if (self.forwarder is not None and qtype != T_PTR and not self._in_zone(lname)
                    and self._may_forward(client, data)):
                reply = self.forwarder.forward(data, transport == "tcp")
                if self.metrics:
                    self.metrics.query(qtype, reply[3] & 0xF if reply else RCODE.SERVFAIL, transport,
                                       _now() - started, False)
                return reply
            limit = TCP_LIMIT if transport == "tcp" else udp_limit(edns, udp)
            key = cache_key(lname, qtype, qclass, edns, do, limit)
            entry = self.cache.entries.get(key)
            if entry is not None:
                reply = self._from_entry(entry, data, qname, lname, transport, qtype)
                hit = True
            else:
                reply = self._miss(data, transport, client, key, fq, lname, limit)
                hit = False
        if self.rrl is not None and transport == "udp" and reply is not None and type(fq) is tuple:
            reply = self._rate_limited(reply, data, fq, client)     # response rate limiting
            if reply is None:
                return None
        if self.metrics and reply is not None and len(reply) >= 4:
            qtype_seen = fq[2] if isinstance(fq, tuple) else 0
            self.metrics.query(qtype_seen, reply[3] & 0xF, transport, _now() - started, hit)
        return reply

    @staticmethod
    def _patched(variant: bytes, data: bytes, qname: bytes) -> bytes:
        """A cached reply (without id) with this query's RD and CD bits and spelling of the name."""
        out = bytearray(variant)
        out[0] = (out[0] & 0xFE) | (data[2] & 0x01)        # RD
        out[1] = (out[1] & 0xEF) | (data[3] & 0x10)        # CD
        out[10:10 + len(qname)] = qname
        return bytes(out)

    def _from_entry(self, entry: _Entry, data: bytes, qname: bytes, lname: bytes, transport: str,
                    qtype: int) -> bytes:
        turn = entry.turn
        entry.turn = turn + 1
        revision = None
        if entry.offsets is not None:            # replies with an SOA: its serial is the revision
            revision = self.snapshot.revision
            if entry.revision != revision:       # rewrite the serials once per revision
                serial = soa_serial(self.snapshot)
                fresh = []
                for variant, offsets in zip(entry.variants, entry.offsets):
                    out = bytearray(variant)
                    for offset in offsets:
                        _SERIAL.pack_into(out, offset, serial)
                    fresh.append(bytes(out))
                entry.variants = tuple(fresh)
                entry.revision = revision
        variants = entry.variants
        count = len(variants)
        first = variants[0]
        if lname == qname and not (first[0] ^ data[2]) & 0x01 and not (first[1] ^ data[3]) & 0x10:
            replies = variants                   # the usual case: only the id differs
        elif lname == qname:
            replies = tuple(self._patched(variant, data, qname) for variant in variants)
        else:
            # a name in mixed case: 0x20-randomised queries never repeat byte for byte, so
            # they stay out of the exact-query table (a lower-case twin there answers them)
            return data[:2] + self._patched(variants[turn % count], data, qname)
        # remember these exact query bytes, so next time only the id is written (while the
        # entry lives and, for replies with an SOA, while the revision is the same)
        if self.forwarder is None or self._in_zone(lname):
            table = self._exact[transport]
            asked = data[2:]
            known = table.get(asked)
            if known is not None and known.entry is entry:
                known.replies = replies              # the same entry at a new revision
                known.revision = revision
                known.turn = turn + 1
            else:
                if known is not None and known.revision != DEAD:
                    known.entry.detach(known)          # its entry was replaced under the same key
                most = self._exact_max[transport]
                if len(table) >= most:                 # full: forget the oldest eighth
                    for old in list(itertools.islice(table, most // 8)):
                        forgotten = table.pop(old)
                        if forgotten.revision != DEAD:
                            forgotten.entry.detach(forgotten)
                rcode = first[1] & 0xF
                cell = self.metrics.cell_for(qtype, rcode, transport) if self.metrics else None
                exact = _Exact(replies, turn + 1, revision, cell, qtype, len(qname), entry, table, asked)
                entry.attach(exact)
                table[asked] = exact
        return data[:2] + replies[turn % count]

    # -- response rate limiting (UDP only; see rrl.py). `rrl` is a RateLimiter set by serve
    # when --rrl-rate is given; None keeps the query path free of it.

    def _rate_limited(self, reply: bytes, data: bytes, fq: tuple, client) -> bytes | None:
        """The reply, a truncated stand-in for it (slip), or None (drop)."""
        qname = fq[1]
        action = self.rrl.check(client[0], qname.lower(), fq[2])
        if action == "pass":
            return reply
        if self.metrics:
            self.metrics.rrl(action)
        if action == "slip":
            return slip_reply(reply, data, 12 + len(qname) + 4)
        return None

    def _not_ready(self, data: bytes) -> bytes | None:
        """SERVFAIL before the first sync: clients retry instead of caching a false NXDOMAIN."""
        try:
            query = DNSRecord.parse(data)
        except Exception:
            return formerr_for(data)
        return error_reply(query, RCODE.SERVFAIL, forwarding=self.forwarder is not None).pack()

    def _miss(self, data: bytes, transport: str, client, key: bytes, fq: tuple, lname: bytes,
              limit: int) -> bytes | None:
        """A cache miss: the direct packer for plain questions, else the dnslib path."""
        qname, qtype, qclass, edns, do = fq[1], fq[2], fq[3], fq[4], fq[6]
        try:
            packed = fast_answer(self.snapshot, lname, qtype, qclass, edns, do, limit, self.forwarder is not None,
                                 ((data[2] & 0x01) << 8) | (data[3] & 0x10))
        except Exception:
            log.exception("internal error in the direct packer for %r", data[:64])
            packed = None
        if packed is None:
            return self._slow(data, transport, client, (key, qname))
        variants, depends, offsets = packed
        entry = self.cache.put(key, variants, depends, offsets, self.snapshot.revision)
        # served like a hit, so a repeat of these exact bytes is an id-only write from now on
        return self._from_entry(entry, data, qname, lname, transport, qtype)

    def _finish_chain(self, ans, tcp: bool) -> None:
        """Append the upstream answer for a CNAME target outside our zones (stub resolvers
        never chase a CNAME themselves), as CoreDNS's backend lookup does. A failed upstream
        leaves the CNAME alone with NOERROR; an upstream NXDOMAIN is the chain's end."""
        target, qtype = ans.chase
        question = DNSRecord(DNSHeader(id=random.getrandbits(16), rd=1), q=DNSQuestion(target + ".", qtype))
        question.add_ar(EDNS0(udp_len=UDP_PAYLOAD))
        try:
            upstream = DNSRecord.parse(self.forwarder.forward(question.pack(), tcp))
        except Exception:
            return
        rcode = upstream.header.rcode
        if rcode == RCODE.NOERROR:
            for rr in upstream.rr:
                ans.reply.add_answer(rr)
        elif rcode == RCODE.NXDOMAIN:
            ans.reply.header.rcode = RCODE.NXDOMAIN

    def _name_not_text(self, data: bytes, transport: str, client) -> bytes | None:
        """The reply to a plain query whose name dnslib cannot read (octets that are not UTF-8,
        which RFC 2181 11 allows): like any absent name, NXDOMAIN in our zones and REFUSED (or
        forwarded) outside them. None when the query is not one parse_fast reads."""
        fq = parse_fast(data)
        if type(fq) is not tuple:
            return None
        _qid, qname, qtype, qclass, edns, udp, do = fq
        wire_labels = []
        pos = 0
        while qname[pos]:
            wire_labels.append(qname[pos + 1:pos + 1 + qname[pos]])
            pos += qname[pos] + 1
        if from_labels(wire_labels) is not None:
            return None                        # a readable name: dnslib failed for another reason
        forwarding = self.forwarder is not None
        zone_name = zone_of_labels(wire_labels, [zone.name for zone in self.snapshot.zones])
        flags = ((data[2] & 0x01) << 8) | (data[3] & 0x10) | (0x0080 if forwarding else 0)
        if zone_name is None or qclass != 1:
            if zone_name is None and self._may_forward(client, data):
                return self.forwarder.forward(data, transport == "tcp")
            head = _HEADER.pack(0, 0x8000 | flags | RCODE.REFUSED, 1, 0, 0, 1 if edns else 0)
            opt = b"\x00" + struct.pack("!HHIH", T_OPT, UDP_PAYLOAD, 0x8000 if do else 0, 0) if edns else b""
            return data[:2] + head[2:] + qname + _TYPECLASS.pack(qtype, qclass) + opt
        zone = next(z for z in self.snapshot.zones if z.name == zone_name)
        limit = TCP_LIMIT if transport == "tcp" else udp_limit(edns, udp)
        packed = negative_reply(qname, zone_name, qtype, zone, soa_serial(self.snapshot), edns, do,
                                0x8400 | flags | RCODE.NXDOMAIN, limit)
        if packed is None:
            return None
        return data[:2] + packed[0][0]

    def _slow(self, data: bytes, transport: str, client, cache_slot) -> bytes | None:
        if edns_problem(data) is not None:
            if self.metrics:
                self.metrics.dropped("malformed")
            return formerr_with_opt(data, self.forwarder is not None)
        try:
            query = DNSRecord.parse(data)
        except Exception:
            reply = self._name_not_text(data, transport, client)
            if reply is not None:
                return reply
            if self.metrics:
                self.metrics.dropped("malformed")
            return formerr_for(data)
        if query.header.qr:
            return None
        if any(sum(len(label) + 1 for label in q.qname.label) >= 255 for q in query.questions):
            return formerr_for(data)          # a name over 255 octets (RFC 1035 3.1) cannot be echoed
        snap = self.snapshot
        generation = self.cache.generation
        if cache_slot is not None:
            # answer the canonical (lower-case) question so the packed bytes suit every client
            query.q.qname = DNSLabel([label.lower() for label in query.q.qname.label])
        forwarding = self.forwarder is not None
        try:
            ans = answer(query, snap, forwarding=forwarding)
        except Exception:
            log.exception("internal error answering %r", data[:64])
            if self.metrics:
                self.metrics.handler_error()
            return bytes(error_reply(query, RCODE.SERVFAIL, forwarding=forwarding).pack())
        if not ans.in_zone and self._may_forward(client, data) and ans.reply.header.rcode == RCODE.REFUSED:
            return self.forwarder.forward(data, transport == "tcp")
        if ans.chase is not None and self.forwarder is not None:
            # the same question from a client that may not forward gets the bare CNAME: cache neither
            cache_slot = None
            if self._may_forward(client, data):
                self._finish_chain(ans, transport == "tcp")
        edns = edns_of(query)
        if transport == "tcp":
            limit = TCP_LIMIT
        elif isinstance(edns, str):
            limit = 512
        else:
            limit = udp_limit(edns.present, edns.udp_size)
        variants = [bytes(pack_reply(r, limit)) for r in rotations(ans.reply, ans.weights)]
        if cache_slot is not None:
            key, qname = cache_slot
            if ans.cacheable and generation == self.cache.generation:
                offsets = [tuple(at - 2 for at in soa_serial_offsets(v)) for v in variants]
                entry = self.cache.put(key, [v[2:] for v in variants], ans.depends,
                                       offsets if any(offsets) else None, snap.revision)
                entry.turn = 1
            out = bytearray(variants[0])
            out[12:12 + len(qname)] = qname
            return bytes(out)
        return bytes(variants[0])

