"""A page of serve's etcd helper lines read into rows of the usual service (bulk.Builder).

Apart from bulk.py (what a full listing's pages make) because this is the one place that reads
the helper's page format (etcd.helper._packed: `key TAB value` lines joined by newlines, keys
and values holding neither octet) and the only per-record work of a first sync: at millions of
keys, reading the page is most of serve's share of it. A regular expression over the whole
page, in C, cuts each plain line (a key of plain labels, a value {"host": IPv4, "port": n})
apart, together with the next line when it is a sibling (the usual service is one or two
instances); map and zip then do each record's own work (its address and port octets) a
column at a time, so the Python loop of the Builder runs once per row, not once per record.
Pure: no I/O, tested with tables (tests/unit/dns/test_pagelines.py).
"""
from __future__ import annotations

import re
import socket
from itertools import repeat

from dnsdisco.dns.names import MAX_LABEL

_pton, _AF_INET = socket.inet_pton, socket.AF_INET
# b"8080" -> b"\x1f\x90", b"" past 65535; b"" (a line of another shape) -> two octets never read
_PORT_OCTETS: dict[bytes, bytes] = {b"": b"\0\0"}


def _address(host: str):
    """The four octets of an IPv4 address, or None."""
    try:
        return _pton(_AF_INET, host)
    except OSError:
        return None


def plain_directory(where: bytes) -> bool:
    """Whether a directory part ("local/svc/") is labels of 1 to 63 octets, each with its "/"."""
    return not where or all(0 < len(label) <= MAX_LABEL for label in where[:-1].split(b"/"))


class Source:
    """The key and value of a line of a page, by its key, as `Builder.add` takes them: for
    the few plain lines that go there (a value out of range, a limit of their own), whose
    value is the line's own octets (a limit counts them, spaces included)."""

    def __init__(self, lines: bytes):
        self._lines = lines
        self._values: dict | None = None

    def pair(self, key: bytes) -> tuple[str, bytes]:
        if self._values is None:
            self._values = {line_key: value for line_key, _tab, value in
                            (line.partition(b"\t") for line in self._lines.split(b"\n"))}
        return key.decode(), self._values[key]


class PageReader:
    """Pages of lines under one key prefix (`base`, with its last "/") read into rows."""

    def __init__(self, base: str):
        self._base = base.encode()
        label = rb'([a-z0-9_-]{1,63})'
        # {"host": IPv4, "port": n}, at most one space around the tokens; the common spelling
        # without spaces written as its own alternative, which sre reads faster
        value = (rb'\t\{(?:"host":"| ?"host" ?: ?")([0-9.]{7,15})(?:","port":|" ?, ?"port" ?: ?)'
                 rb'(0|[1-9][0-9]{0,4})(?:\}| \})')
        base_rx = re.escape(self._base)
        self._findall = re.compile(
            # a plain line, and the next one too when it is its sibling: its directory part up
            # to the parent's label, the parent's label, and of each line the label, host and
            # port; any other line is the last group. The directory part is one run of its
            # characters (sre reads that faster than a repeated label); its labels are
            # checked once per distinct directory of a page (plain_directory)
            rb'^(?:' + base_rx + rb'([a-z0-9_/-]*/|)' + label + b'/' + label + value +
            rb'(?:\n' + base_rx + rb'\1\2/' + label + value + rb')?|(.*))$', re.M).findall

    def read(self, lines: bytes) -> tuple[list, list, Source]:
        """(rows, pending, source) of a page. A row is (directory part, parent label, first
        label, second label or b"", address and port octets of the first, of the second, the
        address keys (ints) of both, b""), every item bytes but the keys; a line of any other
        shape is a row with the empty parent label and the line last. `pending` holds (key,
        value) of plain-looking lines whose address, port or directory is out of range, and
        `source` gives any line's own (key, value)."""
        rows = self._findall(lines)
        source = Source(lines)
        if not rows:
            return [], [], source
        dirs, parents, firsts, hosts, ports, seconds, hosts2, ports2, others = zip(*rows)
        del rows
        count = len(dirs)
        hosts = b"\n".join(hosts + hosts2).decode().split("\n")
        hosts = [host or "0.0.0.0" for host in hosts]          # no host: no second line, or another shape
        bad: set | tuple = ()                 # records (first halves, then second) that go to `add`
        wheres = set(dirs)
        wheres.discard(b"")
        odd = [where for where in wheres if not plain_directory(where)]
        if odd:                               # an empty or long label
            bad = {at + half for at, where in enumerate(dirs) if where in odd for half in (0, count)}
        try:
            addresses = list(map(_pton, repeat(_AF_INET, 2 * count), hosts))
        except OSError:                       # a plain line's host is not an IPv4 address
            addresses = list(map(_address, hosts))
            bad = {*bad, *(at for at in range(2 * count) if addresses[at] is None)}
        ports += ports2
        octets = list(map(_PORT_OCTETS.get, ports, repeat(b"")))
        if b"" in octets:                     # a port not met before, or one out of range
            for port in set(ports).difference(_PORT_OCTETS):
                _PORT_OCTETS[port] = int(port).to_bytes(2, "big") if int(port) <= 65535 else b""
            octets = list(map(_PORT_OCTETS.get, ports))
            if b"" in octets:
                bad = {*bad, *(at for at in range(2 * count) if not octets[at])}
        for at in bad:
            addresses[at], octets[at] = b"\0\0\0\0", b"\0\0"
        keys = list(map(int.from_bytes, addresses, repeat("big", 2 * count)))
        rows = zip(dirs, parents, firsts, seconds, addresses, octets, addresses[count:], octets[count:],
                   keys, keys[count:], others)
        if not bad:
            return rows, [], source
        return self._kept(list(rows), bad, count, source)

    def _kept(self, rows: list, bad: set, count: int, source: Source) -> tuple[list, list, Source]:
        """The rows without the records in `bad`, and those records' own (key, value)."""
        pending = []
        for at in sorted({at % count for at in bad}):
            where, label, first, second, address, port, address2, port2, key, key2, other = rows[at]
            kept = []
            for index, name, *record in ((at, first, address, port, key), (at + count, second, address2, port2, key2)):
                if not name:
                    continue
                if index in bad:
                    pending.append(source.pair(self._base + where + label + b"/" + name))
                else:
                    kept.append((name, *record))
            if kept:
                (first, address, port, key), (second, address2, port2, key2) = (
                    kept[0], kept[1] if len(kept) > 1 else (b"", b"\0\0\0\0", b"\0\0", 0))
                rows[at] = (where, label, first, second, address, port, address2, port2, key, key2, other)
            else:
                rows[at] = None
        return [row for row in rows if row is not None], pending, source
