"""The immutable record set the resolver reads, and how etcd changes make the next one.

A snapshot is never modified: `apply()` returns a new one and the server swaps a single
reference, so a query sees either the old set or the new one, never half of a change.
Maps are layered (a shared base plus a small overlay of recent changes) so that applying
a change costs time proportional to the change, not to the 100,000 records beside it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from dnsdisco.dns.names import (address_of_reverse, ancestors, key_for, name_for, parent,
                                reverse_name)
from dnsdisco.dns.layered import FOLD_AT, Layered  # noqa: F401 - FOLD_AT: the snapshot's fold size, read by tests
from dnsdisco.dns.records import BadValue, Record, parse, wire_problem

MAX_VALUE_BYTES = 65536        # hostile-data caps for names outside every zone; zones
MAX_RECORDS_PER_NAME = 1000    # carry their own (serve's --max-value-bytes etc.)


@dataclass(frozen=True)
class ZoneConfig:
    """One served zone: its SOA parameters and the static records of its zone file."""
    name: str
    ttl: int = 30            # TTL of records that set none
    neg_ttl: int = 5         # SOA minimum: how long a "no such name" is cached
    mname: str = ""          # primary nameserver in the SOA; default ns.dns.<zone>
    rname: str = ""          # responsible mailbox; default hostmaster.<zone>
    # SOA timers for secondaries of live data (docs/transfers.md): NOTIFY carries every change,
    # so refresh is only the fallback when a NOTIFY is lost (a minute); retry soon after a
    # failed refresh; expire two weeks (RFC 1912 2.2), so secondaries keep answering through a
    # long dnsdisco or etcd outage. A zone file's SOA overrides them.
    refresh: int = 60
    retry: int = 10
    expire: int = 1209600
    soa_ttl: int | None = None
    static: dict = field(default_factory=dict)   # name -> tuple of dnslib RR (owner lower case)
    max_value_bytes: int = MAX_VALUE_BYTES            # larger etcd values are skipped
    max_records_per_name: int = MAX_RECORDS_PER_NAME  # instances served under one name
    ns_addresses: tuple = ()  # addresses of the default NS name ns.dns.<zone> (A/AAAA and glue)

    @property
    def soa_mname(self) -> str:
        return self.mname or f"ns.dns.{self.name}"

    @property
    def soa_rname(self) -> str:
        return self.rname or f"hostmaster.{self.name}"


@dataclass(frozen=True)
class Snapshot:
    prefix: str
    zones: tuple[ZoneConfig, ...]
    revision: int
    records: Layered            # name -> Record
    children: Layered           # name -> tuple of child names that hold a record
    below: Layered              # name -> number of record keys and PTR names strictly below it
    ptrs: Layered               # address (normalised) -> the name with it, or a tuple of several (_owners)
    rejected: tuple = ()        # (key, message) of values skipped in the change that made this
    capped: tuple = ()          # names this change left with over max_records_per_name instances

    # ------------------------------------------------------------ building

    @classmethod
    def empty(cls, prefix: str, zones: Sequence[ZoneConfig]) -> "Snapshot":
        return cls(prefix.rstrip("/"), tuple(zones), 0, Layered(), Layered(), Layered(), Layered())

    @classmethod
    def build(cls, prefix: str, zones: Sequence[ZoneConfig], revision: int,
              items: Iterable[tuple[str, bytes]]) -> "Snapshot":
        """A snapshot of a full listing; bad values are skipped and listed in `rejected`.
        `bulk.Builder` does the work, page by page when the listing arrives in pages."""
        from dnsdisco.dns.bulk import Builder
        builder = Builder(prefix, zones)
        builder.add(items)
        return builder.finish(revision)

    def _parse_changes(self, changes: Iterable[tuple[str, bytes | None]]):
        """etcd events as {name: Record or None (gone or bad)}, the last event per name
        winning, and the (key, message) of every value skipped. Records are held by name
        (keys differing only in letter case are one name), so a lookup needs no key."""
        rec_changes: dict[str, Record | None] = {}
        rejected: list[tuple[str, str]] = []
        base_length = len(self.prefix) + 1
        for key, value in changes:
            if isinstance(key, bytes):
                key = key.decode("utf-8", "replace")
            name = name_for(self.prefix, key)
            if name is None:
                if value is not None:
                    rejected.append((key, f"{key}: key does not map to a valid DNS name under {self.prefix or '/'}"))
                continue
            if value is None:
                rec_changes[name] = None
                continue
            problem = wire_problem(name)
            limit = self._limits(name).max_value_bytes
            if problem or len(value) > limit:
                why = (f"the name {name!r} {problem}" if problem else
                       f"value of {len(value)} bytes is over the {limit}-byte limit (--max-value-bytes)")
                rejected.append((key, f"{key}: {why}"))
                rec_changes[name] = None
                continue
            try:
                # the name's own key (lower case, same length: name_for only reversed the
                # labels) is left out of the record; key_of() writes it again
                own_key = len(key) - base_length == len(name) and key == key.lower()
                rec_changes[name] = parse(key, name, value, keep_key=not own_key)
            except BadValue as exc:
                rejected.append((key, str(exc)))
                rec_changes[name] = None
        return rec_changes, rejected

    def with_zones(self, zones: Sequence[ZoneConfig]) -> "Snapshot":
        """The same records served with new zone settings (SIGHUP reload). Adding the first
        reverse zone (or removing the last) builds (or drops) the reverse empty non-terminals
        in one pass."""
        zones = tuple(zones)
        if serves_reverse(zones) == serves_reverse(self.zones):
            return Snapshot(self.prefix, zones, self.revision, self.records, self.children,
                            self.below, self.ptrs, (), ())
        children, below, ptrs = _indexes(self.records.items(), serves_reverse(zones))
        return Snapshot(self.prefix, zones, self.revision, self.records, Layered(children),
                        Layered(below), Layered(ptrs), (), ())

    def apply(self, revision: int, changes: Sequence[tuple[str, bytes | None]]):
        """Apply etcd events in order; returns (snapshot, touched names, rejected (key, message))."""
        rec_changes, rejected = self._parse_changes(changes)

        child_edits: dict[str, dict[str, bool]] = {}   # parent -> {child name: present}
        below_delta: dict[str, int] = {}
        ptr_edits: dict[str, dict[str, bool]] = {}
        touched: set[str] = set()
        record_updates: dict[str, Record | None] = {}
        reverse_ents = serves_reverse(self.zones)

        for name, new in rec_changes.items():
            old = self.records.get(name)
            if old is None and new is None:
                continue
            if old == new:
                continue
            record_updates[name] = new
            name_ancestors = ancestors(name)
            touched.add(name)
            touched.update(name_ancestors)
            if (old is None) != (new is None):
                present = new is not None
                child_edits.setdefault(name_ancestors[0], {})[name] = present
                step = 1 if present else -1
                for anc in name_ancestors:
                    below_delta[anc] = below_delta.get(anc, 0) + step
            for rec, present in ((old, False), (new, True)):
                if rec is not None and rec.is_address:
                    ptr_edits.setdefault(rec.host, {})[rec.name] = present
        # a record removed and re-added in one batch nets out: recompute from the final state
        records = self.records.with_changes(record_updates) if record_updates else self.records

        children_changes = {}
        for par, edits in child_edits.items():
            current = set(self.children.get(par, ()))
            for child, _ in edits.items():
                # the final presence comes from the records map, not the edit order
                if records.get(child) is not None:
                    current.add(child)
                else:
                    current.discard(child)
            children_changes[par] = tuple(sorted(current)) or None
        ptr_changes = {}
        for address, edits in ptr_edits.items():
            before = _owners(self.ptrs.get(address))
            current = set(before)
            for owner in edits:
                rec = records.get(owner)
                if rec is not None and rec.is_address and rec.host == address:
                    current.add(owner)
                else:
                    current.discard(owner)
            if current == set(before):
                continue
            ptr_changes[address] = _packed(sorted(current))
            rname = reverse_name(address)
            touched.add(rname)
            # inside a served reverse zone, a reverse name with PTRs makes its ancestors empty
            # non-terminals (NODATA, not NXDOMAIN)
            if reverse_ents and bool(current) != bool(before):
                step = 1 if current else -1
                for anc in ancestors(rname):
                    below_delta[anc] = below_delta.get(anc, 0) + step
                    touched.add(anc)
        below_changes = {}
        for anc, delta in below_delta.items():
            count = self.below.get(anc, 0) + delta
            below_changes[anc] = count if count > 0 else None

        children = self.children.with_changes(children_changes) if children_changes else self.children
        # every touched name still over the cap, so a reporter can tell "still capped" from "fixed"
        floor = min((z.max_records_per_name for z in self.zones), default=_NO_ZONE.max_records_per_name)
        capped = sorted(name for name in touched
                        if len(children.get(name, ())) > floor
                        and len(children.get(name, ())) > self._limits(name).max_records_per_name)
        snap = Snapshot(
            self.prefix, self.zones, max(revision, self.revision), records, children,
            self.below.with_changes(below_changes) if below_changes else self.below,
            self.ptrs.with_changes(ptr_changes) if ptr_changes else self.ptrs,
            tuple(rejected), tuple(capped),
        )
        return snap, frozenset(touched), tuple(rejected)

    # ------------------------------------------------------------ reading

    @property
    def record_count(self) -> int:
        return len(self.records)

    def _limits(self, name: str) -> ZoneConfig:
        """The zone whose hostile-data caps apply to `name` (defaults outside every zone)."""
        return self.zone_of(name) or _NO_ZONE

    def zone_of(self, name: str) -> ZoneConfig | None:
        """The longest zone holding `name` (label-wise, like names.is_subdomain)."""
        for zone_name, dotted, zone in self._zone_suffixes:     # longest first
            if name.endswith(dotted) or name == zone_name:
                return zone
        return None

    @functools.cached_property
    def _zone_suffixes(self) -> tuple:
        """(name, "." + name, zone) per zone, longest name first (of two zones of one name, the
        first listed); the root zone's suffix is "", which every name ends with."""
        ordered = sorted(self.zones, key=lambda zone: -len(zone.name))
        return tuple((zone.name, "." + zone.name if zone.name else "", zone) for zone in ordered)

    def record_at(self, name: str) -> Record | None:
        return self.records.find(name)

    def records_for(self, name: str, zone: ZoneConfig | None = None) -> tuple[Record, ...]:
        """The value at the name itself and its instances one label below (never deeper).
        `zone` is the name's zone when the caller knows it already (saves a lookup)."""
        find = self.records.find
        own = find(name)
        out = [] if own is None else [own]
        children = self.children.find(name, ())
        if len(children) > 1:
            cap = (zone or self._limits(name)).max_records_per_name
            if len(children) > cap:           # the first N by key (instance id); see `capped`
                children = sorted(children, key=lambda child: child.partition(".")[0])[:cap]
        for child in children:
            rec = find(child)
            if rec is not None:
                out.append(rec)
        return tuple(out)


    def exists(self, name: str, zone: ZoneConfig | None = None) -> bool:
        """The name has records, static records, or descendants (an empty non-terminal).
        `zone` is the name's zone when the caller knows it already (saves a lookup)."""
        if self.records.find(name) is not None or self.below.find(name, 0) > 0 or self.ptr_names(name):
            return True
        if zone is None:
            zone = self.zone_of(name)
            if zone is None:
                return False
        if name == zone.name:
            return True
        static = zone.static
        if not static:
            return False
        if name in static:
            return True
        suffix = "." + name
        return any(owner.endswith(suffix) for owner in static)

    def ptr_names(self, rname: str) -> tuple[str, ...]:
        """Names whose address reverses to `rname` (the automatic PTR records), capped like
        instances so one address shared by many records cannot make a huge answer."""
        if not rname.endswith(".arpa"):
            return ()
        address = address_of_reverse(rname)
        names = _owners(self.ptrs.get(address)) if address is not None else ()
        cap = self._limits(rname).max_records_per_name
        return names[:cap] if len(names) > cap else names

    def named_records(self):
        """Every (name, Record), in no set order: the one way outside this module to walk
        the records, so their layout here stays this module's own business."""
        return self.records.items()

    def instance_names(self, name: str) -> tuple[str, ...]:
        """The names one label below `name` that hold a record, sorted (uncapped)."""
        return self.children.find(name, ())

    def parents(self):
        """Every (name, instance names) of a name with records one label below it."""
        return self.children.items()

    @property
    def parent_count(self) -> int:
        return len(self.children)

    def count_below(self, name: str) -> int:
        """Record keys and PTR names strictly below `name` (0 for none)."""
        return self.below.find(name, 0)

    def ptr_items(self):
        """Every (address, owner names) of the PTR index, in no set order."""
        return ((address, _owners(held)) for address, held in self.ptrs.items())

    def key_of(self, rec: Record) -> str:
        """The etcd key a record was read from."""
        return rec.key or key_for(self.prefix, rec.name)

    def all_records(self):
        """Every record, for `dnsdisco status`; order by key."""
        return sorted((rec for _key, rec in self.records.items()), key=self.key_of)


_NO_ZONE = ZoneConfig("")


def serves_reverse(zones: Sequence[ZoneConfig]) -> bool:
    """Whether any zone holds reverse names: only then are the ancestors of the reverse names
    of our addresses empty non-terminals (NODATA) worth indexing. The address -> names index
    itself is always kept (one entry per address, no reverse name built), since PTR questions
    for registered addresses are answered with or without a reverse zone."""
    return any(zone.name == "arpa" or zone.name.endswith(".arpa") for zone in zones)


def _owners(value) -> tuple[str, ...]:
    """The names of a PTR index entry: one name is stored as itself (two million addresses
    with one owner each would otherwise hold two million one-name tuples)."""
    if value is None:
        return ()
    return (value,) if type(value) is str else value


def _packed(names: list[str]):
    """The PTR index entry of sorted `names` (None for none)."""
    if not names:
        return None
    return names[0] if len(names) == 1 else tuple(names)


def _indexes(records, reverse_ents: bool):
    """children, below and PTR maps of a full record set ((name, Record) pairs)."""
    kids: dict[str, list] = {}
    ptrs: dict[str, object] = {}
    shared: set[str] = set()
    for name, rec in records:
        kids.setdefault(parent(name), []).append(name)
        if rec.is_address:
            _add_owner(ptrs, shared, rec.host, name)
    return _finish_indexes(kids.items(), ptrs, shared, reverse_ents)


def _add_owner(ptrs: dict, shared: set, address: str, name: str) -> None:
    held = ptrs.setdefault(address, name)
    if held is not name:
        if type(held) is str:
            ptrs[address] = [held, name]
            shared.add(address)
        else:
            held.append(name)


def _finish_indexes(kids, ptrs: dict, shared: set, reverse_ents: bool):
    """children (parent -> sorted names), below (name -> records and PTR names strictly
    below) and the PTR index, from (parent, names) pairs (a parent may come more than once)
    and the owners of each address (a list where `shared` says several)."""
    children: dict[str, tuple] = {}
    below: dict[str, int] = {}
    level: dict[str, int] = {}        # counts still to go up to the ancestors
    for par, names in kids:
        if not names:
            continue
        count = len(names)
        if count > 1:
            names.sort()
        held = children.get(par)
        if held is not None:
            names = sorted(held + tuple(names))
        children[par] = tuple(names)
        below[par] = below.get(par, 0) + count
        if par:
            up = parent(par)
            level[up] = level.get(up, 0) + count
    for address in shared:
        ptrs[address] = tuple(sorted(ptrs[address]))
    if reverse_ents:     # a reverse name with PTRs exists: its ancestors are empty non-terminals
        for address in ptrs:
            up = parent(reverse_name(address))
            level[up] = level.get(up, 0) + 1
    # each count goes up to every ancestor; a level at a time, so a service's count meets its
    # siblings' at their shared parent and goes on up as one sum
    while level:
        above: dict[str, int] = {}
        for name, count in level.items():
            below[name] = below.get(name, 0) + count
            if name:
                up = parent(name)
                above[up] = above.get(up, 0) + count
        level = above
    return children, below, ptrs


def judge(prefix: str, key: str, value: bytes) -> Record:
    """The record `serve` would make of `value` at `key`, or BadValue with the message serve
    would log when it skips it. The registrar and the Python API ask this before they
    write, so what they accept is always served: it is the same code a sync runs."""
    parsed, rejected = Snapshot.empty(prefix, ())._parse_changes([(key, value)])
    if rejected:
        raise BadValue(rejected[0][1])
    (record,) = parsed.values()
    return record
