"""serve's garbage-collector policy after a full sync (app._freezing)."""
from __future__ import annotations

import gc

from dnsdisco import app


def test_a_full_sync_freezes_what_exists_and_makes_full_collections_rare(monkeypatch):
    swapped = []
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    monkeypatch.setattr("dnsdisco.etcd.heap.trim", lambda: None)
    try:
        on_swap = app._freezing(lambda snap, touched: swapped.append(touched))
        on_swap("changes", {"a.svc.local"})           # a change: nothing else happens
        assert gc.get_threshold() == before and gc.get_freeze_count() == frozen
        on_swap("full", None)                          # a full sync
        assert swapped == [{"a.svc.local"}, None]
        assert gc.get_freeze_count() > frozen
        assert gc.get_threshold() == (before[0], before[1], app.FULL_COLLECTION_EVERY)
        assert app.FULL_COLLECTION_EVERY > before[2]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
