"""How a snapshot holds its records (issue 23): per parent name, with the common value packed.

A million services with two instances each are two million records. Held as one Record
tuple each, with its own name and host strings and a slot in a map by name, they cost more
than the rest of serve together. Here a record costs no string, tuple or int of its own:

- a *value* is an int for the record registrars write (an IPv4 address, a port and no other
  field): address << 16 | port. Any other record stays a Record, name included (they are few).
- a *node* holds the records one label below a parent name, in the order of their names:
  - when every value is such an int (the usual service): one bytes object, the count, each
    value in 6 octets (address and port, big-endian: the int's own octets), then the labels
    joined by "/" (a label never holds one: labels come from the parts of etcd keys);
  - else a flat tuple (label, value, label, value, ...), labels interned;
  - past BIG entries either way, a dict label -> value (a zone apex with thousands of
    services, where a scan would be slow).

`record(name, value)` makes the Record the rules read, on demand; the reply cache makes
that a cost of first answers only. Pure: snapshot.py and bulk.py build and read nodes
through these functions (snapshot.py inlines the tuple and dict cases of `lookup`).
"""
from __future__ import annotations

import socket
import sys

from dnsdisco.dns.names import parent, reverse_name
from dnsdisco.dns.records import Record

BIG = 8           # entries above which a node is a dict (a tuple or bytes node is scanned)
_pton, _ntoa, _AF_INET, _new = socket.inet_pton, socket.inet_ntoa, socket.AF_INET, tuple.__new__
intern = sys.intern


def pack(rec: Record):
    """The value held for `rec`: an int for a plain IPv4 record, else the Record itself."""
    if len(rec) == 4 and rec[2] == "ipv4":
        return int.from_bytes(_pton(_AF_INET, rec[1]), "big") << 16 | rec[3]
    return rec


def record(name: str, value) -> Record:
    """The Record of a held value at `name` (the inverse of `pack`)."""
    if type(value) is int:
        return _new(Record, (name, _ntoa((value >> 16).to_bytes(4, "big")), "ipv4", value & 0xFFFF))
    return value


def ptr_key(value):
    """The PTR index key of a held value: an int for an IPv4 address (the packed value's
    high bits), the address text for IPv6, None for a record without an address."""
    if type(value) is int:
        return value >> 16
    kind = value[2]
    if kind == "ipv4":
        return int.from_bytes(_pton(_AF_INET, value[1]), "big")
    return value[1] if kind == "ipv6" else None


def address_key(address: str):
    """The PTR index key of a normalised address (as names.address_of_reverse gives it)."""
    return address if ":" in address else int.from_bytes(_pton(_AF_INET, address), "big")


def address_text(key) -> str:
    """The address of a PTR index key."""
    return key if type(key) is str else _ntoa(key.to_bytes(4, "big"))


def order(par: str):
    """The sort key of labels under `par` that orders them as their whole names: "a-b" sorts
    before "a" as "a-b.x" does before "a.x". Under the root a name is its label."""
    return _dotted if par else None


def _dotted(label: str) -> str:
    return label + "."


def lookup(node, label: str):
    """The value held for `label` in `node`, or None."""
    kind = type(node)
    if kind is tuple:
        # a node's values are never strings, so `in` and `index` find labels only
        return node[node.index(label) + 1] if label in node else None
    if kind is dict:
        return node.get(label)
    names = node[1 + 6 * node[0]:].decode().split("/")
    if label not in names:
        return None
    at = 1 + 6 * names.index(label)
    return int.from_bytes(node[at:at + 6], "big")


def size(node) -> int:
    kind = type(node)
    return len(node) // 2 if kind is tuple else node[0] if kind is bytes else len(node)


def labels(node):
    """The labels of `node`, in name order."""
    kind = type(node)
    if kind is tuple:
        return node[::2]
    if kind is bytes:
        return tuple(node[1 + 6 * node[0]:].decode().split("/"))
    return tuple(node)


def items(node):
    """(label, value) pairs of `node`, in name order."""
    kind = type(node)
    if kind is tuple:
        return zip(node[::2], node[1::2])
    if kind is bytes:
        count = node[0]
        return zip(node[1 + 6 * count:].decode().split("/"),
                   [int.from_bytes(node[at:at + 6], "big") for at in range(1, 1 + 6 * count, 6)])
    return node.items()


def bytes_records(node: bytes, dot: str) -> list:
    """The Records of a bytes node whose parent is `dot` without its first character: the
    host text made straight from each value's address octets (`items` and `record` in one)."""
    out = []
    at = 1
    for label in node[1 + 6 * node[0]:].decode().split("/"):
        out.append(_new(Record, (label + dot, _ntoa(node[at:at + 4]), "ipv4", node[at + 4] << 8 | node[at + 5])))
        at += 6
    return out


def bytes_record(node: bytes, label: str, name: str):
    """The Record of `label` (named `name`) in a bytes node, or None."""
    names = node[1 + 6 * node[0]:].decode().split("/")
    if label not in names:
        return None
    at = 1 + 6 * names.index(label)
    return _new(Record, (name, _ntoa(node[at:at + 4]), "ipv4", node[at + 4] << 8 | node[at + 5]))


def edited(node, edits: dict) -> dict:
    """label -> value of `node` (None: an empty node) with `edits` applied (value None
    removes the label): what `make` turns into the node that replaces it whole."""
    held = {} if node is None else dict(items(node))
    for label, value in edits.items():
        if value is None:
            held.pop(label, None)
        else:
            held[label] = value
    return held


def packable(label: str, value) -> bool:
    """Whether a (label, value) can go in a bytes node."""
    return type(value) is int and label.isascii() and "/" not in label


def packed(labels, values) -> bytes:
    """The bytes node of labels and their int values (at most BIG, in name order)."""
    return (bytes((len(values),)) + b"".join(value.to_bytes(6, "big") for value in values)
            + "/".join(labels).encode())


def make(par: str, held: dict):
    """The node of `held` (label -> value) under `par`, None when empty."""
    if not held:
        return None
    ordered = sorted(held, key=order(par)) if len(held) > 1 else list(held)
    if len(ordered) > BIG:
        return {label: held[label] for label in ordered}
    if all(packable(label, held[label]) for label in ordered):
        return packed(ordered, [held[label] for label in ordered])
    flat = []
    for label in ordered:
        flat.append(label)
        flat.append(held[label])
    return tuple(flat)


# ------------------------------------------------------------ the PTR index and counts below

def owners(value) -> tuple[str, ...]:
    """The parents of a PTR index entry: one is stored as itself (two million addresses
    with one owner each would otherwise hold two million one-name tuples)."""
    if value is None:
        return ()
    return (value,) if type(value) is str else value


def packed_owners(parents: list[str]):
    """The PTR index entry of sorted `parents` (None for none)."""
    if not parents:
        return None
    return parents[0] if len(parents) == 1 else tuple(parents)


def holds(node, key) -> bool:
    """Whether `node` holds a record whose address is `key`."""
    return node is not None and any(ptr_key(value) == key for _label, value in items(node))


def owner_names(find, parents, key) -> tuple[str, ...]:
    """The sorted names of the records with address `key` under `parents` (`find` gives a
    parent's node)."""
    found = []
    for par in parents:
        node = find(par)
        if node is not None:
            dot = "." + par if par else ""
            if type(node) is bytes:  # the usual service: compare the address octets in place
                octets = key.to_bytes(4, "big") if type(key) is int else None
                at = 1
                for label in node[1 + 6 * node[0]:].decode().split("/"):
                    if node[at:at + 4] == octets:
                        found.append(label + dot)
                    at += 6
            elif type(key) is int:   # a packed value holds the address in its high bits
                found.extend(label + dot for label, value in items(node)
                             if (value >> 16 == key if type(value) is int else ptr_key(value) == key))
            else:
                found.extend(label + dot for label, value in items(node) if ptr_key(value) == key)
    if len(found) > 1:
        found.sort()
    return tuple(found)


# The PTR index: an IPv6 address (text) -> its owners; an IPv4 /24 (address >> 8, an int) ->
# the owners of each address in it, one entry per /24: a flat (octet, owners, ...) tuple while
# it holds at most DENSE_AT addresses, else a 256-slot tuple indexed by the last octet. Owners
# are the parent names holding records with the address (one as itself, several as a sorted
# tuple). Addresses come in dense /24s (a pool, a node's pod range): two million of them are
# then some 8,000 entries, not two million int keys and dict slots.
DENSE_AT = 64


def _slot(entry, octet: int):
    if len(entry) == 256:
        return entry[octet]
    # octets are the only ints in a flat entry (owners are strings or tuples)
    return entry[entry.index(octet) + 1] if octet in entry else None


def ptr_owners(find, key) -> tuple[str, ...]:
    """The parents holding records with address `key` (nodes.ptr_key) in a PTR index, read
    with `find` (its get)."""
    if type(key) is int:
        entry = find(key >> 8)
        return () if entry is None else owners(_slot(entry, key & 255))
    return owners(find(key))


def _entry_items(entry):
    """(octet, owners) of a /24 entry."""
    if entry is None:
        return ()
    if len(entry) == 256:
        return ((octet, held) for octet, held in enumerate(entry) if held is not None)
    return zip(entry[::2], entry[1::2])


def _entry(slots: dict):
    """The /24 entry of {octet: owners} (None for none)."""
    if not slots:
        return None
    if len(slots) > DENSE_AT:
        return tuple(slots.get(octet) for octet in range(256))
    flat = []
    for octet in sorted(slots):
        flat.append(octet)
        flat.append(slots[octet])
    return tuple(flat)


def ptr_entries(ptrs):
    """(address key, owners entry) of every address in PTR index `ptrs` (a mapping)."""
    for key, entry in ptrs.items():
        if type(key) is int:
            net = key << 8
            for octet, held in _entry_items(entry):
                yield net | octet, held
        else:
            yield key, entry


def ptr_changes(ptrs, changes: dict) -> dict:
    """The changes to PTR index `ptrs` (for Layered.with_changes) that give each address in
    `changes` its new owners entry (None: none)."""
    out = {}
    nets: dict[int, dict] = {}
    for key, held in changes.items():
        if type(key) is int:
            nets.setdefault(key >> 8, {})[key & 255] = held
        else:
            out[key] = held
    for net, edits in nets.items():      # a /24's entry is replaced whole
        slots = dict(_entry_items(ptrs.get(net)))
        for octet, held in edits.items():
            if held is None:
                slots.pop(octet, None)
            else:
                slots[octet] = held
        out[net] = _entry(slots)
    return out


# While a listing is built, the index is a dict: /24 -> its slots, IPv6 address -> owners. A
# /24's slots are a dict octet -> owners while it holds at most DENSE_AT addresses (scattered
# addresses cost no 256 slots each), then a list of 256. A slot or IPv6 entry with several
# owners holds a list, its address in `shared`.

def _dense(slots: dict) -> list:
    dense = [None] * 256
    for octet, held in slots.items():
        dense[octet] = held
    return dense


def add_owner(ptrs: dict, shared: set, key, par: str) -> None:
    """Note `par` as holding a record with address `key` in a PTR index being built."""
    if type(key) is int:
        index = key & 255
        slots = ptrs.get(key >> 8)
        if slots is None:
            ptrs[key >> 8] = {index: par}
            return
        held = slots[index] if type(slots) is list else slots.get(index)
        if held is None:
            slots[index] = par
            if type(slots) is dict and len(slots) > DENSE_AT:
                ptrs[key >> 8] = _dense(slots)
            return
    else:
        slots, index = ptrs, key
        held = ptrs.setdefault(key, par)
    if held is not par and held != par:
        if type(held) is str:
            slots[index] = [held, par]
            shared.add(key)
        elif par not in held:
            held.append(par)


def set_owners(ptrs: dict, shared: set, key, parents: list) -> None:
    """Set the owners of `key` in a PTR index being built to `parents` (none: removed)."""
    shared.discard(key)
    if type(key) is int:
        slots, index = ptrs.get(key >> 8), key & 255
        if slots is None:
            slots = ptrs[key >> 8] = {}
    else:
        slots, index = ptrs, key
    if not parents:
        if type(slots) is list:
            slots[index] = None
        else:
            slots.pop(index, None)
        return
    slots[index] = parents[0] if len(parents) == 1 else list(parents)
    if len(parents) > 1:
        shared.add(key)


def building_owners(ptrs: dict, key):
    """The owners of `key` in a PTR index being built."""
    if type(key) is int:
        slots = ptrs.get(key >> 8)
        if slots is None:
            return ()
        return owners(slots[key & 255] if type(slots) is list else slots.get(key & 255))
    return owners(ptrs.get(key))


def indexes(node_items, reverse_ents: bool):
    """below and PTR maps of a full set of (parent, node) pairs."""
    ptrs: dict = {}
    shared: set = set()
    level: dict[str, int] = {}
    for par, node in node_items:
        if par:
            up = parent(par)
            level[up] = level.get(up, 0) + size(node)
        for _label, value in items(node):
            key = ptr_key(value)
            if key is not None:
                add_owner(ptrs, shared, key, par)
    return finish_indexes(level, ptrs, shared, reverse_ents)


def finish_indexes(level: dict, ptrs: dict, shared: set, reverse_ents: bool):
    """below (from `level`: name -> records two labels below it, each node's size counted at
    its parent's parent) and the PTR index, from one being built (`add_owner`)."""
    for key in shared:
        slots, index = (ptrs[key >> 8], key & 255) if type(key) is int else (ptrs, key)
        slots[index] = tuple(sorted(slots[index]))
    for key, slots in ptrs.items():
        if type(key) is int:
            if type(slots) is dict:
                held = len(slots)
                ptrs[key] = _entry(slots)
            else:
                held = 256 - slots.count(None)
                ptrs[key] = (tuple(slots) if held > DENSE_AT else     # unless owners were taken away
                             _entry({octet: owned for octet, owned in enumerate(slots) if owned is not None}))
            if reverse_ents:    # the reverse names with PTRs in a /24 are children of its name
                up = f"{key & 255}.{key >> 8 & 255}.{key >> 16}.in-addr.arpa"
                level[up] = level.get(up, 0) + held
        elif reverse_ents:      # a reverse name with PTRs exists: its ancestors are empty non-terminals
            up = parent(reverse_name(key))
            level[up] = level.get(up, 0) + 1
    for key in [key for key, entry in ptrs.items() if entry is None]:    # every owner was taken away
        del ptrs[key]
    # each count goes up to every ancestor; a level at a time, so a service's count meets its
    # siblings' at their shared parent and goes on up as one sum
    below: dict[str, int] = {}
    while level:
        above: dict[str, int] = {}
        for name, count in level.items():
            below[name] = below.get(name, 0) + count
            if name:
                up = parent(name)
                above[up] = above.get(up, 0) + count
        level = above
    return below, ptrs
