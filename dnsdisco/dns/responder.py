"""`Responder.handle(packet) -> reply bytes`: the query path the socket loops call, no I/O.

Every reply comes from one path: the rules (dns.rules) answer the question, the encoder
(dns.encoder) writes the bytes, and the caches keep those bytes. A cached reply was written
with the question in lower case, so the client's id, RD/CD bits and spelling of the name are
written over it. dnslib only parses the rare query the fast reader declines.
Transfers, rate limiting and forwarding are handed in (`xfr`, `rrl`, `forwarder`): this
package does not import the network side.

Over 500 lines: the ways a query takes (the exact-query table, the plain lane, a cache hit,
the packed way, the rules' way, dnslib's) are the one class's methods, since each reads and
fills the same caches and counters and is read beside the others; the rules, the encoder,
the caches and the wire reader they call live in their own modules.
"""
from __future__ import annotations

import itertools
import logging
import random
import struct
import time

from dnslib import DNSRecord

from dnsdisco.dns.cache import (DEAD, DEFAULT_CACHE_SIZE, PLAIN, ReplyCache, _Entry, _same_but_name, cache_key,
                                 edns_key, eviction_batch, is_spelling, plain_key, spelling)
from dnsdisco.dns.constants import (C_IN, NOERROR, NXDOMAIN, REFUSED, SERVFAIL, T_A, T_AAAA, T_AXFR, T_IXFR, T_PTR,
                                    T_SRV, TCP_LIMIT)
from dnsdisco.dns.encoder import (encode, error_for, error_reply, formerr_for, formerr_with_opt, opt_record,
                                  packed_reply, reply_flags)
from dnsdisco.dns.rules import answer, from_dnslib, message_rcode, packed, soa_serial
from dnsdisco.dns.snapshot import Snapshot
from dnsdisco.dns.wire import (DROP, SLOW, badkey_reply, edns_of, edns_problem, encode_name, labels_wire, parse_fast,
                               plain_query_name, slip_reply,
                               udp_limit, wire_to_name)

log = logging.getLogger("dnsdisco.responder")
_now = time.perf_counter

XFR_QTYPES = frozenset((T_IXFR, T_AXFR))   # handed to `xfr` (net.transfer.Transfers)
NOT_MINE = object()   # what `xfr.handle` returns for a message the usual path answers
_SERIAL = struct.Struct("!I")
_PLAIN_HEADER = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 0)   # id 0, RD, one question
_QUESTION_TAIL = struct.Struct("!HH")
_PACKED_QTYPES = frozenset((T_A, T_AAAA, T_SRV))    # the questions _packed_first may answer
_FLAGS: dict[int, int] = {}     # _packed_first's reply_flags, by query flags, rcode and forwarding (under 2**21)
# False in tests only: every first answer then takes _first, whose replies and cache entries
# _packed_first's must equal (tests/unit/dns/test_plain_way.py)
PACKED_WAY = True


def _unsure(reply: bytes, qtype: int) -> bool:
    """What a snapshot saved at the last stop may be wrong about (`Responder.provisional`):
    NXDOMAIN; NOERROR without an answer and not truncated (NODATA, a referral); and REFUSED to
    a PTR question (an address outside our zones is answered once a record holds it)."""
    rcode = reply[3] & 0xF
    return (rcode == NXDOMAIN or (rcode == NOERROR and not reply[6] and not reply[7] and not reply[2] & 0x02)
            or (rcode == REFUSED and qtype == T_PTR))


class _NoTransfers:
    """The stand-in until serve hands in net.transfer.Transfers: transfers go on to the rules,
    which refuse them, and a signed query gets NOTAUTH/BADKEY (no keys are known), never an
    unsigned answer (RFC 8945 5.2)."""

    def handle(self, responder, data, transport, client):
        reply = badkey_reply(data)
        return NOT_MINE if reply is None else reply

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
        # serving a snapshot saved at the last stop (etcd/saved.py) until the first listing is
        # built: its negative answers are SERVFAIL (the name may exist by now), nothing is cached
        self.provisional = False
        self._zone_memo: dict[bytes, bool] = {}
        # per transport: exact query bytes (id left out) -> the _Entry keyed on them, or a spelling
        self._exact: dict[str, dict[bytes, _Entry]] = self.cache.exact
        # a cap per table: UDP's as large as the cache, TCP's (rarer) an eighth of it
        self._exact_max = {"udp": max(1024, cache_size), "tcp": max(1024, cache_size // 8)}
        self._udp, self._udp_most = self._exact["udp"], self._exact_max["udp"]   # for a plain query's first answer
        self._revision = snapshot.revision      # what a table member with an SOA must have been written at
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
        self.cache.invalidate(touched)     # touched None: the exact tables are emptied too
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
        return (self.forwarder is not None and data[2] & 0x01 and client is not None
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
        if exact is not None and (exact.stamp is None or exact.stamp == self._revision):
            turn = exact.turn
            exact.turn = turn + 1
            variant = exact.replies
            if type(variant) is not bytes:   # one reply per answer order
                variant = variant[turn % len(variant)]
            if folded is None:
                reply = data[:2] + variant
            else:                            # the client's spelling of the name
                end = 12 + exact.qlen
                reply = data[:2] + variant[:10] + data[12:end] + variant[end - 2:]
            if self.rrl is not None and transport == "udp":
                end = 12 + exact.qlen
                reply = self._rate_limited(reply, data, (None, data[12:end], (data[end] << 8) | data[end + 1]), client)
                if reply is None:
                    return None
            cell = exact.cell                # this kind of answer's counters, added to directly
            if cell is not None:
                cell[0] += 1
                cell[1] += 1
                if not turn & 15:
                    self.metrics.latency(_now() - started)
            return reply
        if (folded == asked and transport == "udp" and asked[:10] == PLAIN and PACKED_WAY and self.rrl is None
                and self.ready and not self.provisional):
            reply = self._plain_first(data, asked, started)
            if reply is not None:
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
            reply = self._not_ready(data, fq)
            hit = False
        elif fq is SLOW:
            reply = self._slow(data, transport, client)
            hit = False
        else:
            qid, qname, qtype, qclass, edns, udp, do = fq
            lname = qname.lower()
            # PTR: answered from the snapshot for registered addresses, even outside our zones
            if (self.forwarder is not None and qtype != T_PTR and not self._in_zone(lname)
                    and self._may_forward(client, data)):
                reply = self.forwarder.forward(data, transport == "tcp")
                if self.metrics:
                    self.metrics.query(qtype, reply[3] & 0xF if reply else SERVFAIL, transport,
                                       _now() - started, False)
                return reply
            if transport == "tcp":
                limit = TCP_LIMIT
                key = cache_key(lname, qtype, qclass, edns, do, limit)
            elif edns:                       # keyed on the query's own octets when it can be
                limit = udp_limit(edns, udp)
                key = edns_key(lname, qtype, qclass, do, limit)
                if key == asked:
                    key = asked
            else:                            # plain: keyed on the query's own octets when it can be
                limit = 512
                if qname == lname and len(asked) == 14 + len(qname) and asked[:10] == PLAIN:
                    key = asked                  # == plain_key(lname, qtype, qclass)
                else:
                    key = plain_key(lname, qtype, qclass)
            if self.provisional:
                key = None                   # answers from a saved snapshot are never cached
            entry = self.cache.entries.get(key)
            if entry is not None:
                reply = self._from_entry(entry, key, data, qname, lname, transport, qtype)
                hit = True
            else:
                reply = None
                if qtype in _PACKED_QTYPES and qclass == C_IN and PACKED_WAY and key is not None:
                    own = key is asked
                    reply = self._packed_first(data, transport, key, qname, lname, qtype, edns, do, limit, own)
                    if own and reply is not None and self.rrl is None:
                        # counted as its repeats will be, on the counters its exact-table entry holds
                        cell = self._udp[key].cell
                        if cell is not None:
                            cell[0] += 1
                            self.metrics.latency(_now() - started)
                            return reply
                if reply is None:
                    reply = self._first(data, transport, client, qname, lname, qtype, qclass, edns, do, limit, key,
                                        own=key is asked)
                hit = False
        if (self.provisional and reply is not None and len(reply) >= 12
                and _unsure(reply, fq[2] if type(fq) is tuple else 0)):
            reply = self._not_ready(data, fq)
        if self.rrl is not None and transport == "udp" and reply is not None and type(fq) is tuple:
            reply = self._rate_limited(reply, data, fq, client)     # response rate limiting
            if reply is None:
                return None
        if self.metrics and reply is not None and len(reply) >= 4:
            qtype_seen = fq[2] if isinstance(fq, tuple) else 0
            self.metrics.query(qtype_seen, reply[3] & 0xF, transport, _now() - started, hit)
        return reply

    def prepare(self, lname: bytes, qtype: int) -> _Entry | None:
        """Pack ahead the reply to a plain query (RD set, no EDNS, as glibc and dnsperf send
        it) for `lname` (lower-case wire) and `qtype`, on the path a first query takes, so the
        cache holds the entry that query would have left there, with its answer order at the
        start, so clients see the same rotation as without it. Its exact-query entry is left
        for the first real query to make (it would double what an answer packed ahead costs);
        no query is counted. The new cache entry, or None when there is none to add (not
        ready, already cached, outside our zones, or not cacheable)."""
        if not self.ready or self.provisional or (self.forwarder is not None and not self._in_zone(lname)):
            return None
        data = _PLAIN_HEADER + lname + _QUESTION_TAIL.pack(qtype, 1)
        key = data[2:]                       # plain_key(lname, qtype, 1)
        if key in self.cache.entries:
            return None
        # client None: never forwarded (a CNAME out of our zones is then not cached either)
        self._first(data, "udp", None, lname, lname, qtype, 1, False, False, udp_limit(False, 0), key, ahead=True)
        return self.cache.entries.get(key)

    @staticmethod
    def _patched(variant: bytes, data: bytes, qname: bytes) -> bytes:
        """A cached reply (without id) with this query's RD and CD bits and spelling of the name."""
        out = bytearray(variant)
        out[0] = (out[0] & 0xFE) | (data[2] & 0x01)        # RD
        out[1] = (out[1] & 0xEF) | (data[3] & 0x10)        # CD
        out[10:10 + len(qname)] = qname
        return bytes(out)

    def _from_entry(self, entry: _Entry, key: bytes, data: bytes, qname: bytes, lname: bytes, transport: str,
                    qtype: int) -> bytes:
        turn = entry.turn
        entry.turn = turn + 1
        offsets = entry.extra
        if offsets is not None:                  # replies with an SOA: its serial is the revision
            revision = self.snapshot.revision
            if entry.stamp != revision:          # rewrite the serials once per revision
                serial = soa_serial(self.snapshot)
                fresh = []
                for variant, at in zip(entry.variants, offsets):
                    out = bytearray(variant)
                    for offset in at:
                        _SERIAL.pack_into(out, offset, serial)
                    fresh.append(bytes(out))
                entry.replies = fresh[0] if len(fresh) == 1 else tuple(fresh)
                entry.stamp = revision
        replies = entry.replies
        single = type(replies) is bytes
        first = replies if single else replies[0]
        same = lname == qname
        if same and not (first[0] ^ data[2]) & 0x01 and not (first[1] ^ data[3]) & 0x10:
            mine = replies                       # the usual case: only the id differs
        elif same:
            mine = (self._patched(replies, data, qname) if single
                    else tuple(self._patched(variant, data, qname) for variant in replies))
            same = False
        else:
            # a name in mixed case: 0x20-randomised queries never repeat byte for byte, so
            # they stay out of the exact-query table (a lower-case twin there answers them)
            return data[:2] + self._patched(first if single else replies[turn % len(replies)], data, qname)
        # remember these exact query bytes, so next time only the id is written (while the
        # entry lives and, for replies with an SOA, while the revision is the same)
        if self.forwarder is None or self._in_zone(lname):
            table = self._exact[transport]
            asked = data[2:]
            known = table.get(asked)
            if known is entry:
                pass                                     # it answers its own octets already
            elif (known is not None and is_spelling(known) and known.extra.owner == key
                  and known.stamp != DEAD):
                known.replies = mine                     # the same entry at a new revision
                known.stamp = entry.stamp
                known.turn = turn + 1
            else:
                if known is not None and is_spelling(known) and known.stamp != DEAD:
                    self.cache.detach(known)             # its entry was replaced under the same key
                if same and asked == key and transport == "udp":   # keyed on these octets: the entry answers them
                    self._answers_own_octets(entry, key, qtype, first, len(qname))
                else:
                    if len(table) >= self._exact_max[transport]:
                        self._make_room(table, transport)
                    cell = self.metrics.cell_for(qtype, first[1] & 0xF, transport) if self.metrics else None
                    exact = spelling(mine, turn + 1, entry.stamp, cell, len(qname), key, table, asked)
                    self.cache.attach(exact)
                    table[asked] = exact
        return data[:2] + (mine if single else mine[turn % len(mine)])

    def _answers_own_octets(self, entry: _Entry, key: bytes, qtype: int, reply: bytes, qlen: int) -> None:
        """A cache entry keyed on a plain UDP query's own octets enters the UDP exact table
        itself, so a repeat of those octets is an id-only write."""
        table = self._udp
        if len(table) >= self._udp_most:
            self._make_room(table, "udp")
        entry.cell = self.metrics.cell_for(qtype, reply[1] & 0xF, "udp") if self.metrics else None
        entry.qlen = qlen
        table[key] = entry

    def _make_room(self, table: dict, transport: str) -> None:
        """The exact table is full: forget its oldest (cache.eviction_batch; their cache entries stay)."""
        for old in list(itertools.islice(table, eviction_batch(self._exact_max[transport]))):
            forgotten = table.pop(old)
            if is_spelling(forgotten) and forgotten.stamp != DEAD:
                self.cache.detach(forgotten)

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

    def _not_ready(self, data: bytes, fq) -> bytes | None:
        """SERVFAIL before the first sync, and for a negative answer from a saved snapshot
        (`provisional`): clients retry instead of caching a false NXDOMAIN."""
        forwarding = self.forwarder is not None
        if type(fq) is tuple:
            _qid, qname, _qtype, _qclass, edns, _udp, do = fq
            return data[:2] + error_reply((data[2] << 8) | data[3], data[12:12 + len(qname) + 4], SERVFAIL,
                                          edns=edns, do=do, ra=forwarding)
        try:
            query = DNSRecord.parse(data)
        except Exception:
            return formerr_for(data)
        return error_for(query, SERVFAIL, forwarding=forwarding)

    def _first(self, data: bytes, transport: str, client, qname: bytes, lname: bytes, qtype: int, qclass: int,
               edns: bool, do: bool, limit: int, key: bytes | None, ahead: bool = False,
               own: bool = False) -> bytes | None:
        """A question not answered before (or not cacheable): the rules answer it, the
        encoder writes it, and with a cache `key` the cache keeps the bytes. `ahead`: packed
        ahead (`prepare`), so only the cache entry is made and nothing is sent. `own`: `key`
        is the query's own octets after the id (`plain_key`, `edns_key`: UDP only)."""
        snap = self.snapshot
        generation = self.cache.generation
        forwarding = self.forwarder is not None
        qflags = (data[2] << 8) | data[3]
        try:
            ans = answer(snap, lname, qtype, qclass, forwarding)
        except Exception:
            log.exception("internal error answering %r", data[:64])
            if self.metrics:
                self.metrics.handler_error()
            return data[:2] + error_reply(qflags, qname + struct.pack("!HH", qtype, qclass), SERVFAIL, edns=edns,
                                          do=do, ra=forwarding)
        if not ans.in_zone and ans.rcode == REFUSED and self._may_forward(client, data):
            return self.forwarder.forward(data, transport == "tcp")
        if ans.chase is not None and forwarding:
            # the same question from a client that may not forward gets the bare CNAME: cache neither
            key = None
            if self._may_forward(client, data):
                self._finish_chain(ans, transport == "tcp")
        flags = reply_flags(qflags, ans.rcode, ans.aa, forwarding)
        variants, offsets = encode(ans, lname, qtype, qclass, flags, edns, do, limit)
        if key is not None and ans.cacheable and generation == self.cache.generation:
            entry = self.cache.put(key, variants, ans.depends, offsets, snap.revision, ans.name)
            if ahead:
                self.cache.put_ahead(key)
                return None
            if own and (self.forwarder is None or self._in_zone(lname)):
                return self._own_first(entry, key, data, qtype, variants[0], len(qname))
            # served like a hit, so a repeat of these exact bytes is an id-only write from now on
            return self._from_entry(entry, key, data, qname, lname, transport, qtype)
        return data[:2] + self._patched(variants[0], data, qname)

    def _packed_first(self, data: bytes, transport: str, key: bytes, qname: bytes, lname: bytes, qtype: int,
                      edns: bool, do: bool, limit: int, own: bool) -> bytes | None:
        """The first answer to A, AAAA or SRV (class IN) of a name whose records are all
        plain: the reply _first would give, and the cache entry it would leave, written
        straight from the packed octets (rules.packed, encoder.packed_reply), since most first
        answers are these. None for anything else, which _first then answers."""
        if self.forwarder is not None and not self._in_zone(lname):
            return None
        name = wire_to_name(lname)
        if name is None:
            return None
        entry = self._packed_entry(key, name, lname, qtype, (data[2] << 8) | data[3], edns, do, limit)
        if entry is None:
            return None
        if own:
            replies = entry.replies
            return self._own_first(entry, key, data, qtype, replies if type(replies) is bytes else replies[0],
                                   len(qname))
        # another spelling of the question (RD clear, as resolvers ask; CD set; a name in mixed
        # case; TCP): served like a hit, as _first serves it
        return self._from_entry(entry, key, data, qname, lname, transport, qtype)

    def _packed_entry(self, key: bytes, name: str, lname: bytes, qtype: int, qflags: int, edns: bool, do: bool,
                      limit: int) -> _Entry | None:
        """The packed way for _packed_first and _plain_first: the cache entry at `key` of the
        reply to A, AAAA or SRV of `name` (`lname` its wire form) written straight from the
        packed octets (rules.packed, encoder.packed_reply); None when that way does not give
        it, and nothing is cached then."""
        forwarding = self.forwarder is not None
        snap = self.snapshot
        held = packed(snap, name, qtype, forwarding)
        if held is None:
            return None
        # the header word: one of a few, kept by the query's flags, the rcode and forwarding
        known = (qflags << 5) | (held[4] << 1) | forwarding
        flags = _FLAGS.get(known)
        if flags is None:
            flags = _FLAGS[known] = reply_flags(qflags, held[4], True, forwarding)
        written = packed_reply(held, qtype, name, lname, flags, edns, do, limit)
        if written is None:
            return None
        variants, offsets = written
        return self.cache.put(key, variants, name, offsets, snap.revision, name)

    def _plain_first(self, data: bytes, asked: bytes, started: float) -> bytes | None:
        """The commonest first question, answered before parse_fast reads it: a plain UDP
        query (RD alone, one question and nothing else, so its octets after the id are its
        cache key) in lower case, for A, AAAA or SRV in class IN of a name in our zones, not
        cached yet, with rate limiting off. Its name is read once, straight into the text the
        snapshot holds (wire.plain_query_name), answered the packed way as _packed_first
        answers it, and counted on its exact-table cell. None for anything else, which
        handle's usual path then answers."""
        qtype = data[-4] << 8 | data[-3]
        if qtype not in _PACKED_QTYPES or asked in self.cache.entries:
            return None
        if self.forwarder is not None and not self._in_zone(data[12:-4]):
            return None                      # someone else's name: handle's usual path forwards it
        name = plain_query_name(data)
        if name is None:
            return None
        entry = self._packed_entry(asked, name, data[12:-4], qtype, 0x0100, False, False, 512)
        if entry is None:
            return None
        first = entry.replies
        reply = self._own_first(entry, asked, data, qtype, first if type(first) is bytes else first[0], len(data) - 16)
        cell = entry.cell
        if cell is not None:                 # counted as its repeats will be
            cell[0] += 1
            self.metrics.latency(_now() - started)
        return reply

    def _own_first(self, entry: _Entry, key: bytes, data: bytes, qtype: int, first: bytes, qlen: int) -> bytes:
        """The usual first answer, written with this query's flags and name: its entry then
        answers a repeat of these octets from the UDP exact table as they are."""
        entry.turn = 1
        self._answers_own_octets(entry, key, qtype, first, qlen)
        return data[:2] + first

    def _finish_chain(self, ans, tcp: bool) -> None:
        """Append the upstream answer for a CNAME target outside our zones (stub resolvers
        never chase a CNAME themselves), as CoreDNS's backend lookup does. A failed upstream
        leaves the CNAME alone with NOERROR; an upstream NXDOMAIN is the chain's end."""
        target, qtype = ans.chase
        question = (struct.pack("!HHHHHH", random.getrandbits(16), 0x0100, 1, 0, 0, 1) + encode_name(target)
                    + struct.pack("!HH", qtype, 1) + opt_record(False))
        try:
            upstream = DNSRecord.parse(self.forwarder.forward(question, tcp))
            rcode = upstream.header.rcode
            if rcode == NOERROR:
                ans.answer.extend(from_dnslib(rr) for rr in upstream.rr)
        except Exception:
            return
        if rcode == NXDOMAIN:
            ans.rcode = NXDOMAIN

    def _slow(self, data: bytes, transport: str, client) -> bytes | None:
        """A query the fast reader declined (other header bits or sections, EDNS it cannot
        vouch for): parsed by dnslib, then answered on the same path, not cached."""
        if edns_problem(data) is not None:
            if self.metrics:
                self.metrics.dropped("malformed")
            return formerr_with_opt(data, self.forwarder is not None)
        try:
            query = DNSRecord.parse(data)
        except Exception:
            if self.metrics:
                self.metrics.dropped("malformed")
            return formerr_for(data)
        if query.header.qr:
            return None
        if any(sum(len(label) + 1 for label in q.qname.label) >= 255 for q in query.questions):
            return formerr_for(data)          # a name over 255 octets (RFC 1035 3.1) cannot be echoed
        edns = edns_of(query)
        rcode = message_rcode(query.header.opcode, len(query.questions), edns)
        if rcode is not None:
            return error_for(query, rcode, forwarding=self.forwarder is not None)
        q = query.q
        qname = labels_wire(q.qname.label)
        limit = TCP_LIMIT if transport == "tcp" else udp_limit(edns.present, edns.udp_size)
        return self._first(data, transport, client, qname, qname.lower(), q.qtype, q.qclass, edns.present,
                           edns.do, limit, None)
