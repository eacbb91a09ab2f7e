"""A snapshot of a full listing built as its pages arrive (serve's first sync and re-lists).

Apart from snapshot.py (what a snapshot is, and how a watch batch makes the next one) because
its only concern is speed at millions of keys: the short paths for the common key and value,
and indexes built from runs of siblings instead of a list per parent. `Snapshot.build` uses it;
tests/e2e/test_snapshot_million.py holds it to what `Snapshot.apply` makes of the same keys.
"""
from __future__ import annotations

import gc
import re
from contextlib import contextmanager
from itertools import islice
from typing import Iterable, Sequence

from dnsdisco.dns.names import MAX_NAME, parent
from dnsdisco.dns.records import _AF_INET, _PORTS, BadValue, Record, _inet_pton, parse
from dnsdisco.dns.snapshot import (_NO_ZONE, Layered, Snapshot, ZoneConfig, _add_owner, _finish_indexes, _indexes,
                                   serves_reverse)

@contextmanager
def _no_collection():
    """The cyclic collector paused: a collection during a bulk build walks every tuple built
    so far again, and none of them is garbage. Restored as it was, also on error."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


_LIST_KEY = re.compile(r"(?:[a-z0-9_-]{1,63}/)*[a-z0-9_-]{1,63}")
_PORT_TEXT: dict[str, int] = {}     # "8080" -> 8080, the int shared with records._PORTS
_PLAIN_MAX = 64                     # octets a plain value can take at most


class Builder:
    """A snapshot of a full listing, built as its pages arrive: `add(pairs)` for each page
    (pages of one listing in any order), `restart()` when the listing starts over, then
    `finish(revision)`. Equal to applying the pairs in key order to an empty snapshot.

    The common key (lower case, plain labels, under a parent seen in the key just before)
    takes a short path: its name is its label and the shared parent string, its value limit
    that parent's zone's; every other key goes through `Snapshot._parse_changes`, as
    watch events do. Two keys for one name (they differ in letter case) are settled as a
    listing in key order settles them: the larger key wins."""

    def __init__(self, prefix: str, zones: Sequence[ZoneConfig]):
        self._empty = Snapshot.empty(prefix, zones)
        self._base = self._empty.prefix + "/"
        self._zone_names = frozenset(zone.name for zone in self._empty.zones)
        self.restart()

    def restart(self) -> None:
        self.records: dict[str, Record] = {}
        self.rejected: list[tuple[str, str]] = []
        # the records map holds names in the order they came: a run of siblings is its parent
        # and their count, so no list per parent is built only to be thrown away
        self._run_parents: list[str] = []
        self._run_lengths: list[int] = []
        self._ptrs: dict[str, object] = {}      # address -> owner name, or a list of several
        self._shared: set[str] = set()          # addresses with a list of owners
        self._bad: dict[str, str] = {}          # name -> key of the bad value that holds it
        self._settled = False                   # two keys met for one name: rebuild the indexes
        self._plain_lines = None

    def add(self, pairs: Iterable[tuple[str | bytes, bytes]]) -> None:
        with _no_collection():
            self._add(pairs)

    def _add(self, pairs: Iterable[tuple[str | bytes, bytes]]) -> None:
        records, ptrs, shared = self.records, self._ptrs, self._shared
        run_parents, run_lengths = self._run_parents, self._run_lengths
        base, zone_names = self._base, self._zone_names
        cut_at = len(base)
        plain = _LIST_KEY.fullmatch
        last_head = None
        in_run = False
        par = ""
        limit = 0
        for key, value in pairs:
            if type(key) is bytes:
                key = key.decode("utf-8", "replace")
            rest = key[cut_at:]
            cut = rest.rfind("/")
            if (cut < 0 or value is None or len(rest) > MAX_NAME or not key.startswith(base)
                    or plain(rest) is None):
                self._one(key, value)
                in_run = False
                continue
            head = rest[:cut]
            if head != last_head:
                last_head = head
                labels = head.split("/")
                labels.reverse()
                par = ".".join(labels)
                in_run = False
                limit = self._empty._limits(par).max_value_bytes
            name = rest[cut + 1:] + "." + par
            if len(value) > limit or name in zone_names:
                self._one(key, value)
                in_run = False
                continue
            try:
                rec = parse(key, name, value, keep_key=False)
            except BadValue as exc:
                self.rejected.append((key, str(exc)))
                self._settle(key, name, None)
                in_run = False
                continue
            if name in records or name in self._bad:
                self._settle(key, name, rec)
                in_run = False
                continue
            records[name] = rec
            if in_run:
                run_lengths[-1] += 1
            else:
                run_parents.append(par)
                run_lengths.append(1)
                in_run = True
            if rec[2] == "ipv4" or rec[2] == "ipv6":
                _add_owner(ptrs, shared, rec[1], name)

    def page(self, pairs) -> None:
        """One page of a listing handed over as it arrives: (key, value) pairs, or bytes of
        `key TAB value` lines joined by newlines (how serve's etcd helper sends them, keys
        and values holding neither octet); None: the listing started over."""
        if pairs is None:
            self.restart()
        elif type(pairs) is bytes:
            self.add_lines(pairs)
        else:
            self.add(pairs)

    def add_lines(self, lines: bytes) -> None:
        """A page of `key TAB value` lines. Lines of plain keys with plain values ({"host":
        IPv4, "port": n}, at most one space around the tokens) are cut apart by one regular
        expression over the whole page, in C; any other line goes through `add`'s own path."""
        with _no_collection():
            self._add_lines(lines)

    def _add_lines(self, lines: bytes) -> None:
        try:
            text = lines.decode("utf-8")
        except UnicodeDecodeError:            # a key or value that is not UTF-8: say which
            self.add((key.decode("utf-8", "replace"), value)
                     for key, _tab, value in (line.partition(b"\t") for line in lines.split(b"\n")))
            return
        if self._plain_lines is None:
            base = re.escape(self._base)
            self._plain_lines = re.compile(
                rf'^(?:{base}((?:[a-z0-9_-]{{1,63}}/)*[a-z0-9_-]{{1,63}})/([a-z0-9_-]{{1,63}})\t'
                rf'\{{ ?"host" ?: ?"([0-9.]{{7,15}})" ?, ?"port" ?: ?(0|[1-9][0-9]{{0,4}}) ?\}}|(.*))$',
                re.M).findall
        records, bad, zone_names, ports, base = self.records, self._bad, self._zone_names, _PORT_TEXT, self._base
        ptrs, shared = self._ptrs, self._shared
        run_parents, run_lengths = self._run_parents, self._run_lengths
        pton, inet, new = _inet_pton, _AF_INET, tuple.__new__
        last_head = None
        in_run = False
        par = dot_par = ""
        limit = 0
        others: list[tuple[str, bytes]] = []    # lines for `add`, after the plain ones (the
        # larger key wins whatever the order, and `add` keeps its own runs of siblings)
        for head, label, host, port, other in self._plain_lines(text):
            if other or not head:
                key, _tab, value = other.partition("\t")
                others.append((key, value.encode()))
                continue
            if head != last_head:
                last_head = head
                labels = head.split("/")
                labels.reverse()
                par = ".".join(labels)
                dot_par = "." + par
                in_run = False
                limit = self._empty._limits(par).max_value_bytes
            name = label + dot_par
            number = ports.get(port)
            if number is None:
                number = int(port)
                if number <= 65535:
                    number = ports.setdefault(port, _PORTS.setdefault(number, number))
            try:
                pton(inet, host)
            except OSError:
                number = None
            if (number is None or number > 65535 or len(name) > MAX_NAME or limit < _PLAIN_MAX
                    or name in records or name in zone_names or name in bad):
                others.append((f"{base}{head}/{label}", f'{{"host":"{host}","port":{port}}}'.encode()))
                continue
            records[name] = new(Record, (name, host, "ipv4", number))
            if in_run:
                run_lengths[-1] += 1
            else:
                run_parents.append(par)
                run_lengths.append(1)
                in_run = True
            # snapshot._add_owner, written out: this loop runs once per plain key of a full listing
            held = ptrs.setdefault(host, name)
            if held is not name:
                if type(held) is str:
                    ptrs[host] = [held, name]
                    shared.add(host)
                else:
                    held.append(name)
        if others:
            self.add(others)

    def _one(self, key: str, value) -> None:
        """A key off the short path, parsed as a watch event is."""
        parsed, rejected = self._empty._parse_changes([(key, value)])
        self.rejected.extend(rejected)
        for name, rec in parsed.items():
            self._settle(key, name, rec)

    def _settle(self, key: str, name: str, rec: Record | None) -> None:
        """Record `rec` (None: a bad value) for `name` unless a larger key already holds it."""
        held = self.records.get(name)
        if held is not None:
            held_key = self._empty.key_of(held)
        else:
            held_key = self._bad.get(name)
        if held_key is not None:
            if key < held_key:
                return
            self._settled = True
        self._bad.pop(name, None)
        if rec is None:
            self.records.pop(name, None)
            self._bad[name] = key
            return
        self.records[name] = rec
        if held_key is None:
            self._run_parents.append(parent(name))
            self._run_lengths.append(1)
            if rec.is_address:
                _add_owner(self._ptrs, self._shared, rec.host, name)

    def _runs(self):
        """(parent, names) of each run of siblings, from the records map's order."""
        names = iter(self.records)
        for par, length in zip(self._run_parents, self._run_lengths):
            yield par, list(islice(names, length))

    def finish(self, revision: int) -> Snapshot:
        """The snapshot of everything added, at `revision`. The builder is spent."""
        with _no_collection():
            return self._finish(revision)

    def _finish(self, revision: int) -> Snapshot:
        empty, records = self._empty, self.records
        reverse_ents = serves_reverse(empty.zones)
        if self._settled:      # a name changed hands: its index entries are rebuilt from the records
            children, below, ptr_map = _indexes(records.items(), reverse_ents)
        else:
            children, below, ptr_map = _finish_indexes(self._runs(), self._ptrs, self._shared, reverse_ents)
        self._run_parents = self._run_lengths = self._ptrs = None
        floor = min((z.max_records_per_name for z in empty.zones), default=_NO_ZONE.max_records_per_name)
        capped = sorted(name for name, kids in children.items()
                        if len(kids) > floor and len(kids) > empty._limits(name).max_records_per_name)
        return Snapshot(empty.prefix, empty.zones, revision, Layered(records), Layered(children), Layered(below),
                        Layered(ptr_map), tuple(self.rejected), tuple(capped))
