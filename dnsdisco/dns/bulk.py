"""A snapshot of a full listing built as its pages arrive (serve's first sync and re-lists).

Apart from snapshot.py (what a snapshot is, and how a watch batch makes the next one) because
its only concern is speed and memory at millions of keys: the short paths for the common key
and value, which make a parent's node (dns/nodes.py) from a run of siblings and leave no
object behind per record (a build that made two million objects and dropped them would keep
their memory: the allocator seldom gives it back). `Snapshot.build` uses it;
tests/e2e/test_snapshot_million.py holds it to what `Snapshot.apply` makes of the same keys.
"""
from __future__ import annotations

import gc
import re
from contextlib import contextmanager
from itertools import compress, groupby, repeat
from operator import gt, itemgetter
from typing import Iterable, Sequence

from dnsdisco.dns.names import MAX_LABEL, MAX_NAME, key_for
from dnsdisco.dns.nodes import (add_owner, building_owners, edited, finish_indexes, holds, intern, items, lookup, make,
                                pack, ptr_key, set_owners, size)
from dnsdisco.dns.records import _AF_INET, BadValue, Record, _inet_pton, _plain_value, parse
from dnsdisco.dns.pagelines import PageReader, Source
from dnsdisco.dns.snapshot import _NO_ZONE, Layered, Snapshot, ZoneConfig, serves_reverse


@contextmanager
def no_collection():
    """The cyclic collector paused: a collection during a bulk build (or a saved snapshot read
    back, etcd/saved.py) walks every object made so far again, and none of them is garbage.
    Restored as it was, also on error."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


_LIST_KEY = re.compile(r"(?:[a-z0-9_-]{1,63}/)*[a-z0-9_-]{1,63}")
_PLAIN_ROOM = MAX_NAME - MAX_LABEL - 1   # the longest parent every plain label fits under
_PLAIN_MAX = 64                     # octets a plain value can take at most
_COUNTS = [bytes((count,)) for count in range(3)]    # the first octet of a bytes node


class Builder:
    """A snapshot of a full listing, built as its pages arrive: `add(pairs)` for each page
    (pages of one listing in any order), `restart()` when the listing starts over, then
    `finish(revision)`. Equal to applying the pairs in key order to an empty snapshot.

    The common key (lower case, plain labels, not a zone's apex) takes a short path: in
    `add_lines` with a plain value, it comes in a row with its next sibling (dns/pagelines)
    and the row is its parent's node (merged when the siblings took several rows); in `add`, its label
    and value go on a flat list, its parent once per run. No name is built. Every other key
    goes through `Snapshot._parse_changes`, as watch events do, and is settled by name at
    `finish`: two keys for one name (they differ in letter case) are settled as a listing in
    key order settles them, the larger key wins. A short-path key is its name's own key, so
    two of them never share a name."""

    def __init__(self, prefix: str, zones: Sequence[ZoneConfig]):
        self._empty = Snapshot.empty(prefix, zones)
        self._base = self._empty.prefix + "/"
        # the labels under each parent that are zone apexes: their value limits are their own zone's
        self._apexes: dict[str, set] = {}
        for zone in self._empty.zones:
            if zone.name:
                label, _dot, par = zone.name.partition(".")
                self._apexes.setdefault(par, set()).add(label)
        self._zone_names = frozenset(zone.name for zone in self._empty.zones)
        self._memo_cut, self._memo_dir, self._memo_limit = -2, "", 0     # see _head
        self._reader: PageReader | None = None
        self.restart()

    def restart(self) -> None:
        self.rejected: list[tuple[str, str]] = []
        self._nodes: dict = {}                  # parent -> node, of the plain runs of add_lines
        # the short path of `add` in the order it came: a run of siblings is its parent and
        # their count, their labels and values one flat list
        self._flat: list = []
        self._run_parents: list[str] = []
        self._run_lengths: list[int] = []
        self._ptrs: dict = {}                   # the PTR index being built (nodes.add_owner)
        self._shared: set = set()               # addresses with a list of parents
        self._long: dict[str, tuple] = {}       # name -> (key, Record or None) off the short path

    @property
    def pending(self) -> int:
        """Records added so far (before names off the short path are settled)."""
        return len(self._flat) // 2 + len(self._long) + sum(size(node) for node in self._nodes.values())

    def _head(self, head: str):
        """The parent name of a key's directory part, its value limit, the longest label that
        fits under it and the labels under it that are zone apexes."""
        labels = head.split("/")
        labels.reverse()
        par = ".".join(labels)
        cut = head.rfind("/")
        # a parent's zone is its directory's unless it is a zone apex itself: siblings' parents
        # (one per service) share their directory's limit, found once
        if par in self._zone_names:
            limit = self._empty._limits(par).max_value_bytes
        elif cut == self._memo_cut and head.startswith(self._memo_dir):
            limit = self._memo_limit
        else:
            limit = self._memo_limit = self._empty._limits(par).max_value_bytes
            self._memo_cut, self._memo_dir = cut, head[:cut + 1]
        return par, limit, MAX_NAME - len(par) - 1, self._apexes.get(par, ())

    def add(self, pairs: Iterable[tuple[str | bytes, bytes]]) -> None:
        with no_collection():
            self._add(pairs)

    def _add(self, pairs: Iterable[tuple[str | bytes, bytes]]) -> None:
        flat, ptrs, shared = self._flat, self._ptrs, self._shared
        run_parents, run_lengths = self._run_parents, self._run_lengths
        base = self._base
        cut_at = len(base)
        plain, plain_value = _LIST_KEY.fullmatch, _plain_value
        pton, inet, from_bytes = _inet_pton, _AF_INET, int.from_bytes
        last_head = None
        in_run = False
        par = ""
        limit = room = 0
        apex = ()
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
                par, limit, room, apex = self._head(head)
                in_run = False
            label = rest[cut + 1:]
            if len(value) > limit or label in apex or len(label) > room:
                self._one(key, value)
                in_run = False
                continue
            found = plain_value(value) if type(value) is bytes else None
            if found is not None:      # records.parse's own short path, without the Record
                host, port = found.groups()
                number = int(port)
                try:
                    address = from_bytes(pton(inet, host.decode()), "big")
                except OSError:
                    number = 65536
                if number > 65535:
                    found = None
                else:
                    value = address << 16 | number
            if found is None:
                name = label + "." + par
                try:
                    value = pack(parse(key, name, value, keep_key=False))
                except BadValue as exc:
                    self.rejected.append((key, str(exc)))
                    self._settle(key, name, None)
                    in_run = False
                    continue
            flat.append(intern(label))
            flat.append(value)
            if in_run:
                run_lengths[-1] += 1
            else:
                run_parents.append(par)
                run_lengths.append(1)
                in_run = True
            address = value >> 16 if type(value) is int else ptr_key(value)
            if address is not None:
                add_owner(ptrs, shared, address, par)

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
        IPv4, "port": n}, at most one space around the tokens) are read in rows of siblings
        (pagelines.PageReader); any other line goes through `add`'s own path."""
        with no_collection():
            self._add_lines(lines)

    def _add_lines(self, lines: bytes) -> None:
        if self._reader is None:
            self._reader = PageReader(self._base)
        # a line of any other shape goes to `add`, after the plain ones (the larger key wins
        # whatever the order, and `add` keeps its own runs of siblings); plain lines are
        # ASCII, the others are decoded as `add` would (a key that is not UTF-8 is read with
        # replacements)
        self._rows(*self._reader.read(lines))

    def _rows(self, rows, pending: list, source: Source) -> None:
        """Rows of plain siblings, one or two (directory part, parent label, first label,
        second label or empty, the address and port octets of each, their address keys), or
        a line of another shape (the last item), made into their parents' nodes and PTR index
        entries; then `pending` pairs and those other lines go to `add`."""
        nodes, ptrs, shared = self._nodes, self._ptrs, self._shared
        find = ptrs.get
        directory = None
        suffix = ""
        limit = longest = 0
        for where, label, first, second, address, port, address2, port2, key, key2, other in rows:
            if not label:
                key, _tab, value = other.partition(b"\t")
                pending.append((key.decode("utf-8", "replace"), value))
                continue
            if where != directory:
                directory = where
                suffix, limit, special = self._directory(directory.decode())
                # a parent name longer than this takes `_careful_run`: every one in a directory
                # whose limit is low or that holds zone apexes or their parents
                longest = -1 if limit < _PLAIN_MAX or special else _PLAIN_ROOM
            par = label.decode() + suffix
            if len(par) > longest:
                run = (first, second) if second else (first,)
                self._careful_run(par, where + label + b"/", limit, run, (address + port, address2 + port2),
                                  (key, key2), pending, source)
                continue
            if not second:
                node = b"".join((_COUNTS[1], address, port, first))
            elif first < second and not second.startswith(first):
                node = b"".join((_COUNTS[2], address, port, address2, port2, first, b"/", second))
            else:
                node = None
            if node is None or nodes.setdefault(par, node) is not node:
                # not in name order, or the parent's siblings came in more than one row (more
                # than two, other lines between, or two pages)
                self._run_node(par, (first, second) if second else (first,), (address + port, address2 + port2))
            # nodes.add_owner, written out for a dense /24 (this runs once per plain key of
            # a full listing); a new /24 or a sparse one, and shared addresses, take the call
            for owned in (key, key2) if second else (key,):
                slots = find(owned >> 8)
                if type(slots) is list and slots[owned & 255] is None:
                    slots[owned & 255] = par
                else:
                    add_owner(ptrs, shared, owned, par)
        if pending:
            pending.sort()         # in key order, as the lines came (the order of `rejected`)
            self.add(pending)

    def _directory(self, directory: str):
        """What the parents under a key's directory part ("local/svc/") share: the suffix of
        their names (".svc.local"), their value limit, and the labels (as bytes) of those that
        take `_careful_run` (a zone apex, or a parent of one: their limits or labels are their own)."""
        dotted = ".".join(reversed(directory[:-1].split("/"))) if directory else ""
        suffix = "." + dotted if dotted else ""
        special = set()
        for name in self._zone_names | self._apexes.keys():
            label = name[:len(name) - len(suffix)]
            if name.endswith(suffix) and label and "." not in label:
                special.add(label.encode())
        return suffix, self._empty._limits(dotted).max_value_bytes, special

    def _careful_run(self, par: str, head: bytes, limit: int, labels, values, keys, pending: list, source) -> None:
        """A run of plain siblings under a parent whose limit, room or apexes may turn some
        away (to `add`, as `_add` would take them): the checks of `_head`, record by record."""
        if par in self._zone_names:
            limit = self._empty._limits(par).max_value_bytes
        room = MAX_NAME - len(par) - 1
        apex = self._apexes.get(par, ())
        kept_labels, kept_values = [], []
        for label, value, key in zip(labels, values, keys):
            text = label.decode()
            if limit < _PLAIN_MAX or len(text) > room or text in apex:
                pending.append(source.pair(self._base.encode() + head + label))
            else:
                kept_labels.append(label)
                kept_values.append(value)
                add_owner(self._ptrs, self._shared, key, par)
        if kept_labels:
            self._run_node(par, kept_labels, kept_values)

    def _run_node(self, par: str, run_labels, run_values) -> None:
        """Hold a run of plain siblings from `add_lines` (labels as bytes in key order, and
        the six value octets of each) as `par`'s node, merged with what it holds already."""
        node = make(par, dict(zip(map(bytes.decode, run_labels), map(int.from_bytes, run_values, repeat("big")))))
        nodes = self._nodes
        held = nodes.get(par)
        if held is not None:       # the parent's siblings came in two runs (two pages, or deeper keys between)
            merged = dict(items(held))
            merged.update(items(node))
            node = make(par, merged)
        nodes[par] = node

    def _one(self, key: str, value) -> None:
        """A key off the short path, parsed as a watch event is."""
        parsed, rejected = self._empty._parse_changes([(key, value)])
        self.rejected.extend(rejected)
        for name, rec in parsed.items():
            self._settle(key, name, rec)

    def _settle(self, key: str, name: str, rec: Record | None) -> None:
        """Hold `rec` (None: a bad value) for `name` unless a larger key already holds it."""
        held = self._long.get(name)
        if held is None or key > held[0]:
            self._long[name] = (key, rec)

    def finish(self, revision: int) -> Snapshot:
        """The snapshot of everything added, at `revision`. The builder is spent."""
        with no_collection():
            return self._finish(revision)

    def _finish(self, revision: int) -> Snapshot:
        empty = self._empty
        flat, ptrs, shared = self._flat, self._ptrs, self._shared
        nodes = self._nodes
        pos = 0
        for par, length in zip(self._run_parents, self._run_lengths):     # the runs of `add`
            end = pos + 2 * length
            # nodes.make, written out for the usual service: one or two plain values under a
            # new parent, two in name order (the short path takes plain labels only)
            if par in nodes or type(flat[pos + 1]) is not int:
                node = None
            elif length == 1:
                node = b"".join((_COUNTS[1], flat[pos + 1].to_bytes(6, "big"), flat[pos].encode()))
            elif (length == 2 and type(flat[pos + 3]) is int and flat[pos] < flat[pos + 2]
                  and not flat[pos + 2].startswith(flat[pos])):
                node = b"".join((_COUNTS[2], flat[pos + 1].to_bytes(6, "big"), flat[pos + 3].to_bytes(6, "big"),
                                 flat[pos].encode(), b"/", flat[pos + 2].encode()))
            else:
                node = None
            if node is None:
                held = dict(zip(flat[pos:end:2], flat[pos + 1:end:2]))
                node = nodes.get(par)
                if node is not None:   # the parent's siblings came in two runs (two pages, or deeper keys between)
                    held.update(items(node))
                node = make(par, held)
            nodes[par] = node
            pos = end
        self._flat = self._run_parents = self._run_lengths = self._nodes = None
        if self._long:
            self._settle_long(nodes, ptrs, shared)
        floor = min((z.max_records_per_name for z in empty.zones), default=_NO_ZONE.max_records_per_name)
        # a node's size, and its parent's name (where finish_indexes counts it), in C loops;
        # nodes come in listing order, so siblings' parents are summed a group at a time
        lengths = [node[0] if type(node) is bytes else size(node) for node in nodes.values()]
        count = sum(lengths)
        over = list(compress(nodes, map(gt, lengths, repeat(floor))))     # parents over the smallest cap
        level: dict[str, int] = {}      # name -> records two labels below it (finish_indexes)
        ups = map(itemgetter(2), map(str.partition, nodes, repeat(".")))
        for up, group in groupby(zip(ups, lengths), itemgetter(0)):
            level[up] = level.get(up, 0) + sum(map(itemgetter(1), group))
        root = nodes.get("")
        if root is not None:            # the root's records are below no name
            level[""] -= size(root)
            if not level[""]:
                del level[""]
        below, ptr_map = finish_indexes(level, ptrs, shared, serves_reverse(empty.zones))
        self._ptrs = self._shared = None
        capped = sorted(name for name in over if size(nodes[name]) > empty._limits(name).max_records_per_name)
        return Snapshot(empty.prefix, empty.zones, revision, Layered(nodes), Layered(below), Layered(ptr_map),
                        count, tuple(self.rejected), tuple(capped))

    def _settle_long(self, nodes: dict, ptrs: dict, shared: set) -> None:
        """Put the records off the short path into `nodes` and the PTR index: a name a
        short-path key holds too goes to the larger key (the short one is the name's own)."""
        prefix = self._empty.prefix
        edits: dict[str, dict] = {}
        replaced = set()       # addresses of short-path records a larger key took over
        for name, (key, rec) in self._long.items():
            label, _dot, par = name.partition(".")
            node = nodes.get(par)
            old = None if node is None else lookup(node, label)
            if old is not None:
                if key < key_for(prefix, name):
                    continue
                address = ptr_key(old)
                if address is not None:
                    replaced.add(address)
            edits.setdefault(par, {})[intern(label)] = None if rec is None else pack(rec)
        for par, changes in edits.items():
            for value in changes.values():
                address = None if value is None else ptr_key(value)
                if address is not None:
                    add_owner(ptrs, shared, address, par)
            node = make(par, edited(nodes.get(par), changes))
            if node is None:
                nodes.pop(par, None)
            else:
                nodes[par] = node
        for address in replaced:
            set_owners(ptrs, shared, address,
                       [par for par in building_owners(ptrs, address) if holds(nodes.get(par), address)])
