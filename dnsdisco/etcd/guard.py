"""The mass-expiry guard: when a large share of a zone's records is deleted at once, keep
answering with them for a while instead of emptying DNS.

Why: when a fleet is cut off from etcd by a network fault, every lease of the fleet expires
within one lease TTL and the records vanish although the services are alive (Eureka's
self-preservation and Envoy's panic threshold exist for the same reason). A fleet that really
died all at once is the rarer case, and a held record only costs clients a retry elsewhere.

Pure: the Syncer feeds it each watch batch and the clock, and applies what it returns. No I/O.

- Deletions of records are remembered for `window` seconds with their last value.
- When the deletions of one zone within the window pass `fraction` of the records the zone had
  (and at least MIN_DELETIONS), the zone is held: the deletions already applied in the window
  are put back, and further deletions in the zone are held instead of applied.
- A held record that is registered again (its key put) leaves the hold and is served as put.
- The hold ends, and the records still held are deleted, `hold_max` seconds after it began, or
  earlier once puts in the zone during the hold reach half of the records held (the fleet is
  back; what did not return is gone).
- Deletions under the threshold go at once, as without the guard. `fraction` 0 turns it off.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

MIN_DELETIONS = 10         # fewer never start a hold: a small zone losing a few instances, or a rolling restart, is normal


@dataclass
class Hold:
    """One zone's hold: the held keys with their last values, when it began, puts seen since."""
    zone: str
    started: float
    held: dict = field(default_factory=dict)      # key -> last value (bytes)
    initially: int = 0
    returned: int = 0
    zone_size: int = 0                            # the zone's records before the deletions


class ExpiryGuard:
    """Decides, per watch batch, which deletions to apply now and which to hold."""

    def __init__(self, fraction: float, window: float, hold_max: float,
                 zone_of: Callable[[str], str | None] | None = None, *, min_deletions: int = MIN_DELETIONS):
        self.fraction = fraction
        self.window = window
        self.hold_max = hold_max
        self.min_deletions = min_deletions
        self._zone_of = zone_of                    # etcd key -> zone name (None outside); the Syncer sets it
        self._counts: dict[str, int] = {}          # zone -> records it holds now (as served)
        self._recent: deque = deque()              # (time, key, last value, zone) of applied deletions
        self.holds: dict[str, Hold] = {}
        self.started = 0                           # holds begun, for metrics

    @property
    def enabled(self) -> bool:
        return self.fraction > 0

    @property
    def held_count(self) -> int:
        return sum(len(hold.held) for hold in self.holds.values())

    def reset(self, counts: dict[str, int]) -> None:
        """A full listing replaced everything: `counts` are the records per zone now. A hold in
        progress ends (the listing is etcd's word; its records are gone from the new snapshot)."""
        self._counts = dict(counts)
        self._recent.clear()
        self.holds.clear()

    def batch(self, events: list, existing: Callable[[str], bytes | None], now: float):
        """(events to apply, zones whose hold began in this batch) for one watch batch.
        `existing(key)` gives the value a key is served with now (None if absent)."""
        if not self.enabled:
            return events, []
        self._forget_old(now)
        out = []
        deleted_here: dict[str, list] = {}
        for key, value in events:
            zone = self._zone_of(key)
            hold = self.holds.get(zone) if zone is not None else None
            if value is None:
                last = existing(key)
                if hold is not None and key in hold.held:
                    continue                       # already held (its deletion arrived twice)
                if last is None or zone is None:
                    out.append((key, value))
                    continue
                if hold is not None:
                    hold.held[key] = last          # held: keep serving it
                    continue
                deleted_here.setdefault(zone, []).append((key, last))
                out.append((key, value))
            else:
                if zone is not None:
                    if existing(key) is None and not (hold is not None and key in hold.held):
                        self._counts[zone] = self._counts.get(zone, 0) + 1
                    if hold is not None:
                        hold.returned += 1
                        hold.held.pop(key, None)   # registered again: served as put
                out.append((key, value))
        begun = []
        for zone, gone in deleted_here.items():
            for key, last in gone:
                self._recent.append((now, key, last, zone))
            self._counts[zone] = max(0, self._counts.get(zone, 0) - len(gone))
            recent = [(key, last) for _t, key, last, z in self._recent if z == zone]
            before = self._counts[zone] + len(recent)
            if len(recent) >= self.min_deletions and len(recent) > self.fraction * before:
                hold = Hold(zone, now, dict(recent), len(recent), zone_size=before)
                self.holds[zone] = hold
                self.started += 1
                begun.append(zone)
                self._recent = deque(item for item in self._recent if item[3] != zone)
                self._counts[zone] += len(recent)
                here = {key for key, _last in gone}
                # this batch's deletions of the zone are not applied; earlier ones are put back
                out = [(key, value) for key, value in out if not (value is None and key in here)]
                out.extend((key, last) for key, last in recent if key not in here)
        return out, begun

    def release(self, now: float) -> list[tuple[Hold, list[tuple[str, None]], str]]:
        """Holds that end now: (hold, the deletions to apply, why)."""
        ended = []
        for zone, hold in list(self.holds.items()):
            if now - hold.started >= self.hold_max:
                why = f"held for {self.hold_max:g} s (--hold-max)"
            elif hold.initially and hold.returned * 2 >= hold.initially:
                why = f"{hold.returned} record(s) registered again: the fleet is back"
            elif not hold.held:
                why = "every held record was registered again"
            else:
                continue
            del self.holds[zone]
            self._counts[zone] = max(0, self._counts.get(zone, 0) - len(hold.held))
            ended.append((hold, [(key, None) for key in hold.held], why))
        return ended

    def _forget_old(self, now: float) -> None:
        recent = self._recent
        while recent and now - recent[0][0] > self.window:
            recent.popleft()
