"""Layered, the snapshot's copy-on-change mapping: after any sequence of changes it reads as
a plain dict with the same changes would, through every tier (overlay, middle, base), and
old versions never see later changes."""
from __future__ import annotations

import random

import pytest

from dnsdisco.dns import layered
from dnsdisco.dns.layered import Layered


def _read(m: Layered, keys) -> dict:
    return {key: m.get(key) for key in keys}


@pytest.mark.parametrize("fold_at,share,base_size,seed", [
    (4, 2, 0, 1),        # starts empty: the first change set becomes the base
    (4, 2, 40, 2),       # middle folds into the base often
    (4, 16, 200, 3),     # middle tier grows to a sixteenth of the base first
    (8, 4, 100, 4),
    (1024, 16, 50, 5),   # the real fold size: the overlay alone
])
def test_any_change_sequence_reads_as_a_dict(monkeypatch, fold_at, share, base_size, seed):
    monkeypatch.setattr(layered, "FOLD_AT", fold_at)
    monkeypatch.setattr(layered, "MIDDLE_SHARE", share)
    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(base_size + 60)]
    truth = {key: i for i, key in enumerate(keys[:base_size])}
    m = Layered(dict(truth))
    versions = [(m, dict(truth))]
    tiers_seen = set()
    for step in range(400):
        changes = {}
        for _ in range(rng.randint(1, 5)):
            key = rng.choice(keys)
            changes[key] = None if rng.random() < 0.3 else step
        m = m.with_changes(changes)
        for key, value in changes.items():
            if value is None:
                truth.pop(key, None)
            else:
                truth[key] = value
        tiers_seen.add((bool(m._over), bool(m._middle)))
        assert len(m) == len(truth)
        assert dict(m.items()) == truth
        assert sorted(key for key, _ in m.items()) == sorted(truth)      # each key once
        assert _read(m, keys) == {key: truth.get(key) for key in keys}
        assert all((key in m) == (key in truth) for key in keys)
        assert all(m.find(key) == truth.get(key) for key in keys)
        if step % 50 == 0:
            versions.append((m, dict(truth)))
    for old, then in versions:            # nothing written later shows through an old version
        assert dict(old.items()) == then
    if fold_at < 100:
        assert (False, True) in tiers_seen or (True, True) in tiers_seen    # the middle tier was used


def test_the_base_is_copied_only_when_the_middle_tier_reaches_its_share(monkeypatch):
    monkeypatch.setattr(layered, "FOLD_AT", 4)
    monkeypatch.setattr(layered, "MIDDLE_SHARE", 4)
    m = Layered({f"b{i}": i for i in range(64)})
    base = m._base
    copies = 0
    for step in range(40):
        m = m.with_changes({f"n{step}": step})
        if m._base is not base:
            copies += 1
            base = m._base
            assert not m._middle and not m._over
    # the overlay folds every 4 keys; the middle tier into the base at a quarter of it: at
    # 16 keys (base 64 -> 80), then at 20 more (80 -> 100), not at every fold of the overlay
    assert copies == 2
    assert len(m) == 104 and m.get("n39") == 39 and m.get("b0") == 0
