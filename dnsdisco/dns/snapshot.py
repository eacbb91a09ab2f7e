"""The immutable record set the resolver reads, and how etcd changes make the next one.

A snapshot is never modified: `apply()` returns a new one and the server swaps a single
reference, so a query sees either the old set or the new one, never half of a change.
Maps are layered (dns/layered.py: a shared base, a middle tier and a small overlay of recent
changes) so that applying a change costs time proportional to the change, not to the million
records beside it. Records are held per parent name, the usual service's values packed in one
bytes object (dns/nodes.py); the read methods below give Records and names, so no caller
depends on that layout.
"""
from __future__ import annotations

import functools
import socket
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Iterable, Sequence

from dnsdisco.dns.layered import Layered
from dnsdisco.dns.names import address_of_reverse, ancestors, key_for, name_for, reverse_name
from dnsdisco.dns.nodes import (address_key, address_text, bytes_record, bytes_records, edited, holds, indexes, intern, items,
                                labels, lookup, make, owner_names, owners, pack, packed_owners, ptr_entries, ptr_key,
                                ptr_owners, record, size)
from dnsdisco.dns.nodes import ptr_changes as ptr_entry_changes
from dnsdisco.dns.records import BadValue, Record, parse, wire_problem

_new, _ntoa = tuple.__new__, socket.inet_ntoa

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
    nodes: Layered              # parent name -> node: the records one label below it (dns/nodes.py)
    below: Layered              # name -> records two or more labels below it, plus the reverse names
    #                             with PTRs below it while a reverse zone is served (only counts > 0;
    #                             the records one label below are its node's size)
    ptrs: Layered               # IPv4 /24 or IPv6 address -> the parents holding records with its addresses (nodes.py)
    record_count: int = 0
    rejected: tuple = ()        # (key, message) of values skipped in the change that made this
    capped: tuple = ()          # names this change left with over max_records_per_name instances

    # ------------------------------------------------------------ building

    @classmethod
    def empty(cls, prefix: str, zones: Sequence[ZoneConfig]) -> "Snapshot":
        return cls(prefix.rstrip("/"), tuple(zones), 0, Layered(), Layered(), Layered())

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
            return Snapshot(self.prefix, zones, self.revision, self.nodes, self.below, self.ptrs,
                            self.record_count)
        below, ptrs = indexes(self.nodes.items(), serves_reverse(zones))
        return Snapshot(self.prefix, zones, self.revision, self.nodes, Layered(below), Layered(ptrs),
                        self.record_count)

    def apply(self, revision: int, changes: Sequence[tuple[str, bytes | None]]):
        """Apply etcd events in order; returns (snapshot, touched names, rejected (key, message))."""
        rec_changes, rejected = self._parse_changes(changes)

        node_edits: dict[str, dict] = {}            # parent -> {label: new value or None}
        deep: dict[str, int] = {}                   # name -> change of its `below` count
        ptr_edits: dict[object, set] = {}           # address -> parents whose records with it changed
        touched: set[str] = set()
        count = self.record_count
        find = self.nodes.get
        for name, rec in rec_changes.items():
            label, _dot, par = name.partition(".")
            node = find(par)
            old = None if node is None else lookup(node, label)
            new = None if rec is None else pack(rec)
            if old == new:
                continue
            node_edits.setdefault(par, {})[intern(label)] = new
            name_ancestors = ancestors(name)
            touched.add(name)
            touched.update(name_ancestors)
            if (old is None) != (new is None):
                step = 1 if new is not None else -1
                count += step
                for anc in name_ancestors[1:]:      # one label below is the parent's node size
                    deep[anc] = deep.get(anc, 0) + step
            for value in (old, new):
                if value is not None:
                    key = ptr_key(value)
                    if key is not None:
                        ptr_edits.setdefault(key, set()).add(par)
        node_changes = {}
        for par, edits in node_edits.items():       # a node is replaced whole
            node_changes[par] = make(par, edited(find(par), edits))
        nodes = self.nodes.with_changes(node_changes) if node_changes else self.nodes

        reverse_ents = serves_reverse(self.zones)
        ptr_changes = {}
        for key, pars in ptr_edits.items():
            before = ptr_owners(self.ptrs.find, key)
            after = sorted({par for par in before if par not in pars} |
                           {par for par in pars if holds(nodes.get(par), key)})
            # names are label + parent, so only the edited parents' names can differ: comparing
            # theirs alone keeps a change O(its own records), however many services share the
            # address (one host's IP under hundreds of services)
            if owner_names(self.nodes.find, pars, key) != owner_names(nodes.find, pars, key):
                rname = reverse_name(address_text(key))
                touched.add(rname)
                # inside a served reverse zone, a reverse name with PTRs makes its ancestors
                # empty non-terminals (NODATA, not NXDOMAIN)
                if reverse_ents and bool(after) != bool(before):
                    step = 1 if after else -1
                    for anc in ancestors(rname):
                        deep[anc] = deep.get(anc, 0) + step
                        touched.add(anc)
            if tuple(after) != before:
                ptr_changes[key] = packed_owners(after)
        below_changes = {}
        for anc, delta in deep.items():
            if delta:
                total = self.below.get(anc, 0) + delta
                below_changes[anc] = total if total > 0 else None

        # every touched name still over the cap, so a reporter can tell "still capped" from "fixed"
        floor = min((z.max_records_per_name for z in self.zones), default=_NO_ZONE.max_records_per_name)
        capped = sorted(name for name in touched
                        if size(nodes.get(name, ())) > floor
                        and size(nodes.get(name, ())) > self._limits(name).max_records_per_name)
        snap = Snapshot(
            self.prefix, self.zones, max(revision, self.revision), nodes,
            self.below.with_changes(below_changes) if below_changes else self.below,
            self.ptrs.with_changes(ptr_entry_changes(self.ptrs, ptr_changes)) if ptr_changes else self.ptrs,
            count, tuple(rejected), tuple(capped),
        )
        return snap, frozenset(touched), tuple(rejected)

    # ------------------------------------------------------------ reading

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

    def _value_at(self, name: str):
        label, _dot, par = name.partition(".")
        node = self.nodes.find(par)
        if node is None:
            return None
        return lookup(node, label)

    def record_at(self, name: str) -> Record | None:
        label, _dot, par = name.partition(".")
        node = self.nodes.find(par)
        if node is None:
            return None
        if type(node) is bytes:         # the usual service's node
            return bytes_record(node, label, name)
        value = lookup(node, label)
        if type(value) is int:      # nodes.record, inline: the rules ask this of every name they meet
            return _new(Record, (name, _ntoa((value >> 16).to_bytes(4, "big")), "ipv4", value & 0xFFFF))
        return value

    def records_for(self, name: str, zone: ZoneConfig | None = None) -> tuple[Record, ...]:
        """The value at the name itself and its instances one label below (never deeper),
        sorted by name. `zone` is the name's zone when the caller knows it already."""
        own = self.record_at(name)
        node = self.nodes.find(name)
        if node is None:
            return () if own is None else (own,)
        dot = "." + name if name else ""
        count = size(node)
        if count > 1:
            cap = (zone or self._limits(name)).max_records_per_name
            if count > cap:           # the first N by key (instance id); see `capped`
                pairs = sorted(items(node), key=itemgetter(0))[:cap]
                out = [record(label + dot, value) for label, value in pairs]
                return tuple(out) if own is None else (own, *out)
        if type(node) is bytes:
            out = bytes_records(node, dot)
        else:
            out = [record(label + dot, value) for label, value in items(node)]
        return tuple(out) if own is None else (own, *out)

    def plain_records(self, name: str, zone: ZoneConfig, named: bool = False) -> tuple[bytes, list[str] | None] | None:
        """`records_for(name, zone)` without making a Record, when every record there is a
        plain IPv4 one (an address and a port, each other field its default, as registrars
        write them): their values in the same order, 6 octets each (the address, then the
        port), and with `named` the labels of the instances among them (else None); the
        name's own record, when it has one, is the first value and has no label. None when
        any record is otherwise or the name is over its zone's max-records cap: the caller
        reads `records_for`."""
        label, _dot, par = name.partition(".")
        find = self.nodes.find
        above = find(par)
        own = b""
        if above is not None:
            if type(above) is bytes:       # the usual service's node: compare labels in place
                names = above[1 + 6 * above[0]:].decode().split("/")
                if label in names:
                    at = 1 + 6 * names.index(label)
                    own = above[at:at + 6]
            else:
                value = lookup(above, label)
                if value is not None:
                    if type(value) is not int:
                        return None
                    own = value.to_bytes(6, "big")
        # a node at the name holds records two labels below its parent: none when `below`
        # counts none there (a small map, where the map of nodes is as large as the zone)
        node = find(name) if self.below.find(par, 0) else None
        if node is None:
            return own, [] if named else None
        if type(node) is not bytes:        # a tuple node, or a dict one past nodes.BIG
            count = size(node)
            if count > 1 and count > zone.max_records_per_name:
                return None
            pairs = list(items(node))
            if any(type(value) is not int for _label, value in pairs):
                return None
            return (own + b"".join([value.to_bytes(6, "big") for _label, value in pairs]),
                    [label for label, _value in pairs] if named else None)
        count = node[0]
        if count > 1 and count > zone.max_records_per_name:
            return None
        end = 1 + 6 * count
        return (own + node[1:end] if own else node[1:end]), node[end:].decode().split("/") if named else None

    def exists(self, name: str, zone: ZoneConfig | None = None) -> bool:
        """The name has records, static records, or descendants (an empty non-terminal).
        `zone` is the name's zone when the caller knows it already (saves a lookup)."""
        if (self._value_at(name) is not None or self.nodes.find(name) is not None
                or self.below.find(name, 0) > 0 or self.ptr_names(name)):
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
        if address is None:
            return ()
        key = address_key(address)
        names = owner_names(self.nodes.find, ptr_owners(self.ptrs.find, key), key)
        cap = self._limits(rname).max_records_per_name
        return names[:cap] if len(names) > cap else names

    def named_records(self):
        """Every (name, Record), in no set order: the one way outside this module to walk
        the records, so their layout here stays this module's own business."""
        for par, node in self.nodes.items():
            dot = "." + par if par else ""
            for label, value in items(node):
                name = label + dot
                yield name, record(name, value)

    def instance_names(self, name: str) -> tuple[str, ...]:
        """The names one label below `name` that hold a record, sorted (uncapped)."""
        node = self.nodes.find(name)
        return () if node is None else _children(name, node)

    def has_instances(self, name: str) -> bool:
        """Whether a record is held one label below `name` (instance_names without the names)."""
        return self.nodes.find(name) is not None

    def parents(self):
        """Every (name, instance names) of a name with records one label below it."""
        return ((par, _children(par, node)) for par, node in self.nodes.items())

    def parent_names(self):
        """Every name with records one label below it, without building their names."""
        return (par for par, _node in self.nodes.items())

    @property
    def parent_count(self) -> int:
        return len(self.nodes)

    def count_below(self, name: str) -> int:
        """Record keys and PTR names strictly below `name` (0 for none)."""
        node = self.nodes.find(name)
        return (0 if node is None else size(node)) + self.below.find(name, 0)

    def ptr_items(self):
        """Every (address, owner names) of the PTR index, in no set order."""
        find = self.nodes.find
        return ((address_text(key), owner_names(find, owners(held), key)) for key, held in ptr_entries(self.ptrs))

    def key_of(self, rec: Record) -> str:
        """The etcd key a record was read from."""
        return rec.key or key_for(self.prefix, rec.name)

    def all_records(self):
        """Every record, for `dnsdisco status`; order by key."""
        return sorted((rec for _name, rec in self.named_records()), key=self.key_of)


_NO_ZONE = ZoneConfig("")


def serves_reverse(zones: Sequence[ZoneConfig]) -> bool:
    """Whether any zone holds reverse names: only then are the ancestors of the reverse names
    of our addresses empty non-terminals (NODATA) worth indexing. The address -> names index
    itself is always kept (one entry per IPv4 /24, no reverse name built: nodes.py), since PTR
    questions for registered addresses are answered with or without a reverse zone."""
    return any(zone.name == "arpa" or zone.name.endswith(".arpa") for zone in zones)


def _children(par: str, node) -> tuple[str, ...]:
    dot = "." + par if par else ""
    return tuple(label + dot for label in labels(node))


def judge(prefix: str, key: str, value: bytes) -> Record:
    """The record `serve` would make of `value` at `key`, or BadValue with the message serve
    would log when it skips it. The registrar and the Python API ask this before they
    write, so what they accept is always served: it is the same code a sync runs."""
    parsed, rejected = Snapshot.empty(prefix, ())._parse_changes([(key, value)])
    if rejected:
        raise BadValue(rejected[0][1])
    (record,) = parsed.values()
    return record
