"""The snapshot's maps: read-only, and a change makes a new one that shares almost everything.

Apart from snapshot.py because it is a data structure with one job, how a copy-on-change map
stays cheap to change at millions of entries, and tests/unit/dns/test_layered.py holds it to a
plain dict under any sequence of changes.
"""
from __future__ import annotations

import functools

_MISSING = object()
_DELETED = object()
FOLD_AT = 1024  # overlay size at which it is folded into the middle tier
MIDDLE_SHARE = 16   # the middle tier is folded into the base at 1/16 of the base's size


def _layered_get(over: dict, base: dict, key, default=None):
    value = over.get(key, _MISSING)
    if value is _MISSING:
        return base.get(key, default)
    return default if value is _DELETED else value


def _tiered_get(over: dict, middle: dict, base: dict, key, default=None):
    value = over.get(key, _MISSING)
    if value is _MISSING:
        value = middle.get(key, _MISSING)
        if value is _MISSING:
            return base.get(key, default)
    return default if value is _DELETED else value


class Layered:
    """A read-only mapping: a base dict shared between snapshots, a middle tier shared too,
    and a small overlay of recent changes.

    Each change copies the overlay (at most FOLD_AT entries); a full overlay is folded into a
    copy of the middle tier, and the middle tier into a copy of the base only when it reaches
    a sixteenth of the base. So a change costs what the change and the small tiers cost, and
    a copy of the base (two million entries at a million services, a stall the updates queued
    behind it would feel) comes once per base/16 changes rather than once per FOLD_AT."""

    __slots__ = ("_base", "_middle", "_over", "_size", "find")

    def __init__(self, base: dict | None = None, over: dict | None = None, size: int | None = None,
                 middle: dict | None = None):
        self._base = base if base is not None else {}
        self._middle = middle if middle is not None else {}
        self._over = over if over is not None else {}
        self._size = len(self._base) if size is None else size
        # `get` for the query path: with no overlay (a full sync, or just folded) the base
        # dict's own get, which runs no Python code of ours. Never the bound self.get: that
        # cycle would leave a dropped snapshot's dicts to the cyclic collector.
        if self._middle:
            self.find = functools.partial(_tiered_get, self._over, self._middle, self._base)
        elif self._over:
            self.find = functools.partial(_layered_get, self._over, self._base)
        else:
            self.find = self._base.get

    def get(self, key, default=None):
        return _tiered_get(self._over, self._middle, self._base, key, default)

    def __contains__(self, key) -> bool:
        return _tiered_get(self._over, self._middle, self._base, key, _MISSING) is not _MISSING

    def __len__(self) -> int:
        return self._size

    def items(self):
        over, middle = self._over, self._middle
        for key, value in over.items():
            if value is not _DELETED:
                yield key, value
        for key, value in middle.items():
            if value is not _DELETED and key not in over:
                yield key, value
        for key, value in self._base.items():
            if key not in over and key not in middle:
                yield key, value

    def with_changes(self, changes: dict) -> "Layered":
        """A new mapping with `changes` applied (value None deletes)."""
        if not self._size and not self._over and not self._middle:   # a full sync: the base in one go
            base = {key: value for key, value in changes.items() if value is not None}
            return Layered(base, {}, len(base))
        size = self._size
        over = dict(self._over)
        for key, value in changes.items():
            existed = key in self
            if value is None:
                if existed:
                    size -= 1
                    over[key] = _DELETED
            else:
                if not existed:
                    size += 1
                over[key] = value
        if len(over) < FOLD_AT:
            return Layered(self._base, over, size, self._middle)
        middle = dict(self._middle)
        middle.update(over)
        if len(middle) < max(FOLD_AT, len(self._base) // MIDDLE_SHARE):
            return Layered(self._base, {}, size, middle)
        base = dict(self._base)
        for key, value in middle.items():
            if value is _DELETED:
                base.pop(key, None)
            else:
                base[key] = value
        return Layered(base, {}, size)
