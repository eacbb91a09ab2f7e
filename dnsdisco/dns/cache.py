"""The reply cache: packed replies by question, dropped by the names an etcd change touches,
and the exact-query tables that answer a repeat of the same bytes by writing only its id.

Every cached question holds one object in the usual case, because at 100,000 names every one
of them is held: a plain query over UDP (RD set, name in lower case, no EDNS or a bare OPT
record) is keyed on its own bytes after the id (`plain_key`, `edns_key`), so the same bytes
object is the cache key and the UDP exact table's key, and the table maps it straight to the
cache entry. Only another spelling of the question (RD clear, EDNS options, a UDP size above
the one we serve, TCP) makes a separate object (`spelling`). An entry that depends only on
its own name (the usual answer) is found again from the names an etcd change touches by
building its key (the shapes), so it holds no name string and no slot in a name index.
"""
from __future__ import annotations

import struct
from collections import deque

from dnsdisco.dns.wire import encode_name

DEFAULT_CACHE_SIZE = 100_000   # cached questions (serve --cache-size)


DEAD = -1          # the stamp of an entry or spelling once dropped: equals no snapshot revision
_KEY_TAIL = struct.Struct("!HHBH")   # qtype, qclass, EDNS/DO bits, size limit after the name
_PLAIN_TAIL = struct.Struct("!HH")   # qtype, qclass after the name
_EDNS_TAIL = struct.Struct("!HHBHHBBHH")   # qtype, qclass, then the OPT: root, 41, size, rcode, version, DO, no data
# the octets after the id of a plain query: RD set, one question, no other records
PLAIN = b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
EDNS = b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"     # the same with one more record: the OPT
_TAILS = {PLAIN: 4, EDNS: 15}          # octets after the name in a key that starts so
_new = object.__new__
MAX_SHAPES = 32    # key tails own-name entries may use; entries with any other are indexed by name
EVICT_MOST = 1024  # entries a full table drops at once: the query that finds it full waits for them


def eviction_batch(capacity: int) -> int:
    """How many of the oldest entries a full table of `capacity` drops: an eighth, so the work
    is done once per many insertions, but never more than EVICT_MOST, since the query that
    found the table full (and every query queued behind it) waits while they go."""
    return max(1, min(capacity // 8, EVICT_MOST))


def cache_key(lname: bytes, qtype: int, qclass: int, edns: bool, do: bool, limit: int) -> bytes:
    """The reply cache's key for a question that is not a plain UDP query: one bytes object,
    not a tuple, because at 100,000 names every cached question's key is held. It cannot equal
    a `plain_key` or an `edns_key`: one that starts with their first three octets holds the name
    b"\\x01\\x00\\x00" (a one-octet label, then the root), so it is 10 octets long, and theirs
    are 15 or more."""
    return lname + _KEY_TAIL.pack(qtype, qclass, (edns << 1) | do, limit)


def plain_key(lname: bytes, qtype: int, qclass: int) -> bytes:
    """The key of a plain UDP query (no EDNS, so a 512-octet limit and no DO): the query's own
    octets after the id when the client sent RD set and the name in lower case."""
    return PLAIN + lname + _PLAIN_TAIL.pack(qtype, qclass)


def edns_key(lname: bytes, qtype: int, qclass: int, do: bool, limit: int) -> bytes:
    """The key of a UDP query with EDNS: the query's own octets after the id when the client
    sent RD set, the name in lower case and a bare OPT record asking for `limit` octets."""
    return EDNS + lname + _EDNS_TAIL.pack(qtype, qclass, 0, 41, limit, 0, 0, do << 15, 0)


def _key_form(key: bytes) -> tuple[bytes, int]:
    """(the octets before the name, the count after it) of a cache key: a plain or EDNS
    query's own octets start with their header, a `cache_key` with the name itself."""
    cut = _TAILS.get(key[:10]) if len(key) > 10 else None
    return (b"", 7) if cut is None else (key[:10], cut)


def key_name(key: bytes) -> bytes:
    """The lower-case wire name a cache key was made from."""
    head, cut = _key_form(key)
    return key[len(head):-cut]


class _Entry:
    """One cached question, or another spelling of one in an exact table: one class for both,
    so the query path that reads them stays specialised to one type (CPython's attribute
    caches are per type). `replies`: the replies without their id, one per answer order (a
    tuple), or the one reply itself when there is one order; `turn`: the next order; `stamp`:
    None when the replies hold no SOA (good at any revision), else the revision their SOA
    serials were written at, DEAD once dropped. `cell` (that kind of answer's metrics
    counters) and `qlen` (the name's length) are set when it enters an exact table. `extra`:
    for a cache entry, where each reply's SOA serial sits (a tuple per reply) or None; for
    another spelling, its `_Link`."""

    __slots__ = ("replies", "turn", "stamp", "cell", "qlen", "extra")

    @property
    def variants(self) -> tuple:
        """The replies as a tuple, one per answer order."""
        replies = self.replies
        return (replies,) if type(replies) is bytes else replies


class _Link:
    """Where another spelling of a cached question (RD clear, EDNS options, TCP) is held and
    whose it is: `owner` is its entry's cache key, `table` and `key` its place, so a dropped
    entry takes its spellings out of the table at once (left in, they would keep the dead
    replies alive until the table's own eviction)."""

    __slots__ = ("owner", "table", "key")

    def __init__(self, owner, table, key):
        self.owner = owner
        self.table = table
        self.key = key


def spelling(replies, turn, stamp, cell, qlen, owner: bytes, table: dict, key: bytes) -> _Entry:
    """Another spelling of the entry at `owner`, held in `table` at `key`."""
    made = _new(_Entry)
    made.replies = replies
    made.turn = turn
    made.stamp = stamp
    made.cell = cell
    made.qlen = qlen
    made.extra = _Link(owner, table, key)
    return made


def is_spelling(held: _Entry) -> bool:
    return type(held.extra) is _Link


def forget(held: _Entry) -> None:
    """A spelling is dead: it answers nothing again, and leaves its table if still there."""
    held.stamp = DEAD
    link = held.extra
    if link.table.get(link.key) is held:
        del link.table[link.key]


class ReplyCache:
    """Packed replies keyed on `plain_key` or `cache_key` (lower qname, qtype, qclass, EDNS?,
    DO, size limit), and the exact-query tables (`exact`, per transport) made from them.

    An etcd change drops the entries of the names it touched; a change that may touch anything
    (touched None) drops them all. An entry that depends on its own name only is found by
    building its key from a touched name with each tail after the name that own-name entries'
    keys were made with (`shapes`, by the key's first ten octets: a handful, the query types and EDNS
    sizes clients use; at most MAX_SHAPES in all, so hostile queries cannot make an update
    slow); any other entry's names are in `depends` and indexed in `by_name`. When full, the
    oldest go (`eviction_batch`). A dropped entry is stamped DEAD and leaves the exact tables
    with its other spellings (`spellings`). Entries packed ahead (dns/precompute.py) are listed
    in `ahead`, and those no query has been answered from yet go first when the cache is full,
    so packing ahead never costs a real query's entry its place.
    """

    def __init__(self, max_entries: int = 100_000):
        self.max_entries = max(8, max_entries)
        self.entries: dict[bytes, _Entry] = {}
        self.by_name: dict[str, bytes | set] = {}    # name -> the one key, or a set of keys
        self.depends: dict[bytes, str | tuple] = {}  # key -> names, for entries not found by shape
        # the tails own-name entries' keys end with, after the name: plain keys, other keys
        self.shapes: dict[bytes, dict[bytes, None]] = {PLAIN: {}, EDNS: {}, b"": {}}
        self._held = 0                                # tails in `shapes`
        self.spellings: dict[bytes, _Entry | list] = {}
        self.exact: dict[str, dict[bytes, _Entry]] = {"udp": {}, "tcp": {}}
        self.generation = 0
        self.ahead: deque[bytes] = deque()           # keys packed ahead, oldest first

    def put_ahead(self, key: bytes) -> None:
        """The entry at `key` was packed ahead: evict it before the others until it is used."""
        self.ahead.append(key)

    def put(self, key: bytes, variants, depends, serial_offsets=None, revision=None, own: str | None = None) -> _Entry:
        """Cache `variants` (the replies, one per answer order) at `key`; `depends` names what
        drops it, `own` is the question's own name (lower-case presentation)."""
        entries = self.entries
        if len(entries) >= self.max_entries:
            self._evict(eviction_batch(self.max_entries))
        entry = _new(_Entry)                     # no __init__ call: every first answer makes one
        entry.stamp = None if serial_offsets is None else revision
        entry.extra = serial_offsets
        entry.replies = variants[0] if len(variants) == 1 else tuple(variants)
        entry.turn = 0                           # `cell` and `qlen` are set when it enters a table
        if entries.setdefault(key, entry) is not entry:     # a key put twice: the first one goes
            self._drop(key)
            entries[key] = entry
        if depends is not own and type(depends) is not str:     # the rules' usual answer reads its own name
            depends = tuple(depends)
            if len(depends) == 1:
                depends = depends[0]
        if depends is own or (type(depends) is str and depends == own):
            # the name reads back as the key's octets (no escapes): its length tells
            head, cut = _key_form(key)
            if len(depends) + 2 + len(head) + cut == len(key):
                tails = self.shapes[head]
                tail = key[-cut:]
                if tail in tails:
                    return entry
                if self._held < MAX_SHAPES:
                    tails[tail] = None
                    self._held += 1
                    return entry
        self.depends[key] = depends
        by_name = self.by_name
        for name in (depends,) if type(depends) is str else depends:
            held = by_name.get(name)
            if held is None:
                by_name[name] = key            # most names: one key, no set
            elif type(held) is set:
                held.add(key)
            elif held != key:
                by_name[name] = {held, key}
        return entry

    def attach(self, exact: _Entry) -> None:
        """Another spelling (`spelling`) of the entry at its owner key entered an exact table."""
        spellings, owner = self.spellings, exact.extra.owner
        held = spellings.get(owner)
        if held is None:
            spellings[owner] = exact
        elif type(held) is list:
            held.append(exact)
        else:
            spellings[owner] = [held, exact]

    def detach(self, exact: _Entry) -> None:
        """A spelling left its table (evicted, or replaced)."""
        spellings, owner = self.spellings, exact.extra.owner
        held = spellings.get(owner)
        if held is exact:
            del spellings[owner]
        elif type(held) is list and exact in held:
            held.remove(exact)
            if len(held) == 1:
                spellings[owner] = held[0]

    def spelled(self, key: bytes) -> list:
        """The spellings made from the entry at `key` (for tests and counts)."""
        held = self.spellings.get(key)
        return [] if held is None else list(held) if type(held) is list else [held]

    def _drop(self, key: bytes) -> None:
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        entry.stamp = DEAD
        table = self.exact["udp"]
        if table.get(key) is entry:
            del table[key]
        if self.spellings:
            held = self.spellings.pop(key, None)
            if held is not None:
                for exact in held if type(held) is list else (held,):
                    forget(exact)
        if self.depends:
            names = self.depends.pop(key, None)
            if names is not None:
                by_name = self.by_name
                for name in (names,) if type(names) is str else names:
                    held = by_name.get(name)
                    if type(held) is set:
                        held.discard(key)
                        if not held:
                            del by_name[name]
                    elif held == key:
                        del by_name[name]

    def _evict(self, count: int) -> None:
        victims: dict[bytes, None] = {}
        ahead, entries = self.ahead, self.entries
        while ahead and len(victims) < count:
            key = ahead.popleft()
            entry = entries.get(key)
            if entry is not None and not entry.turn:   # no query answered from it yet
                victims[key] = None
        if len(victims) < count:
            for key in entries:                   # then the oldest
                victims[key] = None
                if len(victims) >= count:
                    break
        for key in victims:
            self._drop(key)

    def clear(self) -> None:
        for entry in self.entries.values():
            entry.stamp = DEAD
        for held in self.spellings.values():
            for exact in held if type(held) is list else (held,):
                exact.stamp = DEAD
        for table in self.exact.values():
            table.clear()
        self.entries.clear()
        self.by_name.clear()
        self.depends.clear()
        for tails in self.shapes.values():
            tails.clear()
        self._held = 0
        self.spellings.clear()
        self.ahead.clear()

    def invalidate(self, touched) -> None:
        """Drop what a snapshot change may have altered; `touched` None means everything."""
        self.generation += 1
        if touched is None:
            self.clear()
            return
        entries, depends, by_name = self.entries, self.depends, self.by_name
        shapes = [(head, tails) for head, tails in self.shapes.items() if tails]
        for name in touched:
            held = by_name.get(name)
            if held is not None:
                for key in list(held) if type(held) is set else (held,):
                    self._drop(key)
            if shapes and entries:
                try:
                    wire = encode_name(name)
                except Exception:       # a name no query can ask: no own-name entry holds it
                    continue
                for key in [head + wire + tail for head, tails in shapes for tail in tails]:
                    if key in entries and key not in depends:
                        self._drop(key)

    def __len__(self) -> int:
        return len(self.entries)


def _same_but_name(asked: bytes, folded: bytes, qlen: int) -> bool:
    """Whether lower-casing changed only the name (the first `qlen` octets after the 10 header
    octets): a type, flag or option octet that reads as a capital letter makes another query."""
    end = 10 + qlen
    return asked[:10] == folded[:10] and asked[end:] == folded[end:]
