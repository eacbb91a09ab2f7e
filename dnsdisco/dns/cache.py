"""The reply cache: packed replies by question, dropped by the names an etcd change touches,
and the exact-query table that answers a repeat of the same bytes by writing only its id.
"""
from __future__ import annotations

import struct
from collections import deque

DEFAULT_CACHE_SIZE = 100_000   # cached questions (serve --cache-size)


DEAD = -1          # an _Exact's revision once its cache entry is gone: equals no snapshot revision
_KEY_TAIL = struct.Struct("!HHBH")   # qtype, qclass, EDNS/DO bits, size limit after the name


def cache_key(lname: bytes, qtype: int, qclass: int, edns: bool, do: bool, limit: int) -> bytes:
    """The reply cache's key for a question: one bytes object, not a tuple, because at
    100,000 names every cached question's key is held (a 6-tuple costs 88 more octets)."""
    return lname + _KEY_TAIL.pack(qtype, qclass, (edns << 1) | do, limit)


class _Exact:
    """What a repeat of one exact query (all but the id) is sent, kept in one small object so a
    repeat touches as little memory as it can. `revision` is None when the reply holds no SOA
    (good for any revision), the revision its SOA serial was written at, or DEAD. `table` and
    `key` say where it is held, so a dropped cache entry takes its _Exacts out of the table at
    once (left in, they would keep the dead replies alive until the table's own eviction)."""

    __slots__ = ("replies", "count", "turn", "revision", "cell", "qtype", "qlen", "entry", "table", "key")

    def __init__(self, replies, turn, revision, cell, qtype, qlen, entry, table, key):
        self.replies = replies
        self.count = len(replies)
        self.turn = turn
        self.revision = revision
        self.cell = cell
        self.qtype = qtype
        self.qlen = qlen
        self.entry = entry
        self.table = table
        self.key = key

    def forget(self) -> None:
        """Dead: answer nothing again, and leave the table if it still holds this one."""
        self.revision = DEAD
        table = self.table
        if table.get(self.key) is self:
            del table[self.key]


class _Entry:
    """One cached question: its replies without the id (one per answer order), the next turn,
    where each reply's SOA serial sits (None: no SOA), the name or names whose change drops it
    (`depends`: one str, or a tuple), the _Exact or _Exacts made from it (None, one, or a list:
    most questions have one spelling) and the revision the serials were written at. Slotted
    and with single values unwrapped, because at 100,000 names every cached question holds one."""

    __slots__ = ("variants", "turn", "offsets", "depends", "exacts", "revision")

    def __init__(self, variants: tuple, offsets, depends, revision):
        self.variants = variants
        self.turn = 0
        self.offsets = offsets
        self.depends = depends
        self.exacts = None
        self.revision = revision

    def names(self) -> tuple:
        depends = self.depends
        return (depends,) if type(depends) is str else depends

    def attach(self, exact: _Exact) -> None:
        held = self.exacts
        if held is None:
            self.exacts = exact
        elif type(held) is list:
            held.append(exact)
        else:
            self.exacts = [held, exact]

    def detach(self, exact: _Exact) -> None:
        held = self.exacts
        if held is exact:
            self.exacts = None
        elif type(held) is list and exact in held:
            held.remove(exact)
            if len(held) == 1:
                self.exacts = held[0]


    def kill(self) -> None:
        """The entry is dropped: the exact-table entries made from it must not answer again."""
        held = self.exacts
        if held is None:
            return
        if type(held) is list:
            for exact in held:
                exact.forget()
        else:
            held.forget()
        self.exacts = None


class ReplyCache:
    """Packed replies keyed on `cache_key` (lower qname, qtype, qclass, EDNS?, DO, size limit).

    An etcd change drops the entries of the names it touched (`depends`); a change that may
    touch anything (touched None) drops them all. When full, the oldest eighth is evicted.
    Variants are replies without their 2-octet id, so one tuple can also serve the exact-query
    table; when an entry is dropped, the exact-table entries made from it are marked dead.
    Entries packed ahead (dns/precompute.py) are listed in `ahead`, and those no query has
    been answered from yet go first when the cache is full, so packing ahead never costs a
    real query's entry its place.
    """

    def __init__(self, max_entries: int = 100_000):
        self.max_entries = max(8, max_entries)
        self.entries: dict[bytes, _Entry] = {}
        self.by_name: dict[str, bytes | set] = {}   # name -> the one key, or a set of keys
        self.generation = 0
        self.ahead: deque[bytes] = deque()           # keys packed ahead, oldest first

    def put_ahead(self, key: bytes) -> None:
        """The entry at `key` was packed ahead: evict it before the others until it is used."""
        self.ahead.append(key)

    def put(self, key: bytes, variants, depends, serial_offsets=None, revision=None) -> _Entry:
        if len(self.entries) >= self.max_entries:
            self._evict(self.max_entries // 8)
        if type(depends) is not str:
            depends = tuple(depends)
            if len(depends) == 1:
                depends = depends[0]
        entry = _Entry(tuple(variants), serial_offsets, depends, revision)
        self.entries[key] = entry
        by_name = self.by_name
        if type(depends) is str:               # most answers read one name
            held = by_name.get(depends)
            if held is None:
                by_name[depends] = key
                return entry
            depends = (depends,)
        for name in depends:
            held = by_name.get(name)
            if held is None:
                by_name[name] = key            # most names: one key, no set
            elif type(held) is set:
                held.add(key)
            elif held != key:
                by_name[name] = {held, key}
        return entry

    def _evict(self, count: int) -> None:
        victims: dict[bytes, None] = {}
        ahead, entries = self.ahead, self.entries
        while ahead and len(victims) < count:
            key = ahead.popleft()
            entry = entries.get(key)
            if entry is not None and _unused(entry):
                victims[key] = None
        if len(victims) < count:
            for key in entries:                   # then the oldest
                victims[key] = None
                if len(victims) >= count:
                    break
        for key in victims:
            entry = self.entries.pop(key)
            entry.kill()
            for name in entry.names():
                held = self.by_name.get(name)
                if type(held) is set:
                    held.discard(key)
                    if not held:
                        del self.by_name[name]
                elif held == key:
                    del self.by_name[name]

    def clear(self) -> None:
        for entry in self.entries.values():
            entry.kill()
        self.entries.clear()
        self.by_name.clear()
        self.ahead.clear()

    def invalidate(self, touched) -> None:
        """Drop what a snapshot change may have altered; `touched` None means everything."""
        self.generation += 1
        if touched is None:
            self.clear()
            return
        entries = self.entries
        for name in touched:
            held = self.by_name.pop(name, None)
            if held is not None:
                for key in held if type(held) is set else (held,):
                    entry = entries.pop(key, None)
                    if entry is not None:
                        entry.kill()

    def __len__(self) -> int:
        return len(self.entries)


def _unused(entry: _Entry) -> bool:
    """No query was answered from `entry` yet: every answer from the cache turns it (an
    exact-query entry is only made by such an answer)."""
    return not entry.turn


def _same_but_name(asked: bytes, folded: bytes, qlen: int) -> bool:
    """Whether lower-casing changed only the name (the first `qlen` octets after the 10 header
    octets): a type, flag or option octet that reads as a capital letter makes another query."""
    end = 10 + qlen
    return asked[:10] == folded[:10] and asked[end:] == folded[end:]


