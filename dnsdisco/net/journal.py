"""The IXFR journal: for each applied etcd batch, the RRsets it changed in each zone.

Pure and bounded. An entry holds, for every (name, type) the batch changed in one zone,
the RRset before and after (None: absent). A reply to IXFR from serial S condenses every
entry since S into one difference (RFC 1995 allows it): per RRset the state before the
first entry and after the last, so a name added and deleted again sends nothing. The
journal holds at most `max_entries` entries and `max_bytes` octets of RRsets; the oldest
go first, and a client older than what is left gets the whole zone (AXFR-style), as does
one from before a re-list (`reset`), whose changes were never seen one by one.

A revision that no entry of a zone starts or ends at is still a known state of that zone
when no entry of the zone spans it: the zone did not change across it (the serial moves
with every etcd change, the zone's content only with its own).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dnsdisco.dns.serial import revision_of

DEFAULT_ENTRIES = 1000
DEFAULT_BYTES = 32 << 20


@dataclass
class Entry:
    zone: str
    start: int                     # revision before the batch
    end: int                       # revision after it
    changes: dict                  # (name, type) -> (RRset | None before, RRset | None after)
    size: int = 0


@dataclass
class Diff:
    """What IXFR sends for one zone: the RRs to delete, then the RRs to add."""
    start: int                     # the client's revision
    end: int                       # the current one
    removed: list = field(default_factory=list)    # dnslib RRs
    added: list = field(default_factory=list)


def parse_size(text) -> tuple[int, int]:
    """`ENTRIES` or `ENTRIES:BYTES` (BYTES may end in K, M or G): the journal's bounds."""
    text = str(text).strip()
    entries_text, _, bytes_text = text.partition(":")
    try:
        entries = int(entries_text)
    except ValueError:
        raise ValueError(f"{text!r}: expected ENTRIES or ENTRIES:BYTES, e.g. 1000:32M") from None
    size = DEFAULT_BYTES
    if bytes_text:
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(bytes_text[-1].upper(), 1)
        digits = bytes_text[:-1] if scale != 1 else bytes_text
        try:
            size = int(digits) * scale
        except ValueError:
            raise ValueError(f"{text!r}: BYTES must be a number, optionally ending in K, M or G") from None
    if entries < 0 or size < 0:
        raise ValueError(f"{text!r}: the bounds cannot be negative")
    return entries, size


def changes_between(before: list, after: list) -> dict:
    """{(name, type): (before, after)} for the RRsets that differ between two lists."""
    old = {rrset.key: rrset for rrset in before}
    new = {rrset.key: rrset for rrset in after}
    out = {}
    for key in old.keys() | new.keys():
        a, b = old.get(key), new.get(key)
        if a is None or not a.same(b):
            if a is None and b is None:
                continue
            out[key] = (a, b)
    return out


class Journal:
    def __init__(self, max_entries: int = DEFAULT_ENTRIES, max_bytes: int = DEFAULT_BYTES):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: list[Entry] = []
        self.bytes = 0
        self.base = None            # the revision of the last full listing: nothing before it
        self.floors: dict[str, int] = {}   # zone -> oldest revision still answerable after eviction

    # -- writing

    def reset(self, revision: int) -> None:
        """A full re-list (or new zone settings): the journal starts again at `revision`."""
        self.entries.clear()
        self.bytes = 0
        self.floors.clear()
        self.base = revision

    def record(self, zone: str, start: int, end: int, changes: dict) -> bool:
        """One batch's changes to one zone; False when there were none (nothing kept)."""
        if not changes:
            return False
        size = sum(s.size() for pair in changes.values() for s in pair if s is not None) + 64
        entry = Entry(zone, start, end, dict(changes), size)
        self.entries.append(entry)
        self.bytes += size
        self._trim()
        return True

    def _trim(self) -> None:
        while self.entries and (len(self.entries) > self.max_entries or self.bytes > self.max_bytes):
            gone = self.entries.pop(0)
            self.bytes -= gone.size
            self.floors[gone.zone] = max(self.floors.get(gone.zone, 0), gone.end)

    # -- reading

    @property
    def span(self) -> tuple[int, int] | None:
        """The oldest start and newest end revision held, or None when empty."""
        if not self.entries:
            return None
        return self.entries[0].start, self.entries[-1].end

    def diff(self, zone: str, client_serial: int, current: int) -> Diff | None | str:
        """The condensed difference from the client's serial to `current` for `zone`:
        "current" when the client is up to date (or reads as newer), None when the journal
        cannot say (older than what it holds, unknown, or before a re-list: send AXFR)."""
        revision = revision_of(client_serial, current)
        if revision is None or revision == current:
            return "current"
        if self.base is None or revision < self.base or revision < self.floors.get(zone, 0):
            return None
        mine = [e for e in self.entries if e.zone == zone]
        for e in mine:
            if e.start < revision < e.end:
                return None           # inside a batch: a state no secondary was ever sent
        since = [e for e in mine if e.start >= revision]
        first: dict = {}
        last: dict = {}
        for e in since:
            for key, (old, new) in e.changes.items():
                if key not in first:
                    first[key] = old
                last[key] = new
        out = Diff(revision, current)
        for key in sorted(first, key=lambda k: (k[0].split(".")[::-1], k[1])):
            old, new = first[key], last[key]
            if old is None and new is None:
                continue
            if old is not None and old.same(new):
                continue
            if old is not None and new is not None and old.ttl == new.ttl:
                old_texts = {t for t in old.texts}
                new_texts = {t for t in new.texts}
                out.removed.extend(rr for rr in old.rrs if _text(rr) not in new_texts)
                out.added.extend(rr for rr in new.rrs if _text(rr) not in old_texts)
                continue
            if old is not None:
                out.removed.extend(old.rrs)
            if new is not None:
                out.added.extend(new.rrs)
        return out


def _text(rr) -> str:
    from dnsdisco.dns.zonedata import rdata_text
    return rdata_text(rr)
