"""etcd/saved.py: the snapshot serve saves at a stop reads back as it was, and is refused,
with the reason serve logs, whenever it may not be served (another version, prefix, zones or
etcd; too old; a file others may write; a damaged one)."""
from __future__ import annotations

import json
import os

import pytest

from dnsdisco.dns.snapshot import Snapshot, ZoneConfig
from dnsdisco.etcd import saved

PREFIX = "/skydns"
ZONES = (ZoneConfig("svc.local"),)
ETCD = ["http://127.0.0.1:2379"]
NOW = 1_800_000_000.0


def snapshot(count: int = 50) -> Snapshot:
    items = []
    for i in range(count):
        for j in range(2):
            items.append((f"{PREFIX}/local/svc/s{i}/i{j}",
                          json.dumps({"host": f"10.{i // 250}.{i % 250}.{j + 1}", "port": 80 + j}).encode()))
    items.append((f"{PREFIX}/local/svc/odd/v6", json.dumps({"host": "2001:db8::1"}).encode()))
    items.append((f"{PREFIX}/local/svc/text", json.dumps({"text": "hello"}).encode()))
    return Snapshot.build(PREFIX, ZONES, 42, items)


def test_a_saved_snapshot_reads_back_as_it_was(tmp_path):
    path = tmp_path / "snap"
    original = snapshot()
    written = saved.save(str(path), original, ETCD, NOW - 5)
    assert written == path.stat().st_size > 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name != "snap"]      # no temporary file left
    back, why = saved.load(str(path), PREFIX, ZONES, ETCD, now=NOW)
    assert why == "" and back is not None
    assert back.revision == 42 and back.record_count == original.record_count
    assert sorted(back.named_records()) == sorted(original.named_records())
    for name in ("s3.svc.local", "i1.s3.svc.local", "odd.svc.local", "text.svc.local"):
        zone = back.zone_of(name)
        assert back.records_for(name, zone) == original.records_for(name, zone)
    assert back.ptr_names("2.3.0.10.in-addr.arpa") == original.ptr_names("2.3.0.10.in-addr.arpa") == ("i1.s3.svc.local",)


def test_saving_again_replaces_the_file(tmp_path):
    path = tmp_path / "snap"
    saved.save(str(path), snapshot(3), ETCD, NOW - 5)
    saved.save(str(path), snapshot(7), ETCD, NOW - 1)
    back, _why = saved.load(str(path), PREFIX, ZONES, ETCD, now=NOW)
    assert back.record_count == snapshot(7).record_count


@pytest.mark.parametrize("prefix, zones, etcd, now, reason", [
    ("/other", ZONES, ETCD, NOW, "it holds the prefix '/skydns', not '/other'"),
    (PREFIX, (ZoneConfig("svc.local", ttl=7),), ETCD, NOW, "it was saved with other zones or zone settings"),
    (PREFIX, (ZoneConfig("svc.local"), ZoneConfig("x.local")), ETCD, NOW,
     "it was saved with other zones or zone settings"),
    (PREFIX, ZONES, ["http://10.0.0.1:2379"], NOW,
     "it was saved from etcd http://127.0.0.1:2379, not http://10.0.0.1:2379"),
    (PREFIX, ZONES, ETCD, NOW - 5 + saved.MAX_AGE + 1, "etcd was last heard from 601 s before it was read, more than 600 s"),
    (PREFIX, ZONES, ETCD, NOW - 10, "etcd was last heard from -5 s before it was read, more than 600 s"),
])
def test_a_snapshot_of_other_data_or_too_old_is_refused(tmp_path, prefix, zones, etcd, now, reason):
    path = tmp_path / "snap"
    saved.save(str(path), snapshot(3), ETCD, NOW - 5)
    assert saved.load(str(path), prefix, zones, etcd, now=now) == (None, reason)


def test_the_endpoints_order_does_not_matter(tmp_path):
    path = tmp_path / "snap"
    two = ["http://127.0.0.2:2379", "http://127.0.0.1:2379"]
    saved.save(str(path), snapshot(3), two, NOW - 5)
    back, why = saved.load(str(path), PREFIX, ZONES, list(reversed(two)), now=NOW)
    assert why == "" and back is not None


def test_a_snapshot_another_version_saved_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "snap"
    saved.save(str(path), snapshot(3), ETCD, NOW - 5)
    monkeypatch.setattr(saved, "code_digest", lambda: "changed")
    assert saved.load(str(path), PREFIX, ZONES, ETCD, now=NOW) == (None, "another version of dnsdisco saved it")


def test_files_that_are_missing_others_may_write_or_are_damaged_are_refused(tmp_path):
    path = tmp_path / "snap"
    assert saved.load(str(path), PREFIX, ZONES, ETCD, now=NOW) == (None, "no snapshot saved there yet")
    assert saved.load(str(tmp_path), PREFIX, ZONES, ETCD, now=NOW) == (None, "it is not a regular file")
    saved.save(str(path), snapshot(3), ETCD, NOW - 5)
    for mode in (0o620, 0o602, 0o666):
        os.chmod(path, mode)
        snap, why = saved.load(str(path), PREFIX, ZONES, ETCD, now=NOW)
        assert snap is None and "others may write it" in why
    os.chmod(path, 0o600)
    data = path.read_bytes()
    for damaged in (data[:len(data) // 2], b"", b"not a pickle"):
        path.write_bytes(damaged)
        snap, why = saved.load(str(path), PREFIX, ZONES, ETCD, now=NOW)
        assert snap is None and why.startswith("it cannot be read back ("), why


def test_the_digest_covers_every_dnsdisco_module_a_saved_snapshot_refers_to(tmp_path):
    """A pickle names the classes of what it holds: a change to any of their modules must
    change the digest, or a file of the old layout would be read as the new one."""
    import pickle

    path = tmp_path / "snap"
    saved.save(str(path), snapshot(), ETCD, NOW - 5)
    modules = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            modules.add(module)
            return super().find_class(module, name)

    with open(path, "rb") as src:
        Recording(src).load()
    ours = {module for module in modules if module.startswith("dnsdisco.")}
    assert ours and {module.rsplit(".", 1)[1] + ".py" for module in ours} <= set(saved._MODULES), ours
    assert len(saved.code_digest()) == 64


def test_reading_a_snapshot_back_sets_off_no_collection(tmp_path):
    """Reading back makes millions of objects at a million services, none of them garbage: a
    collection then walks them all again (28 collections for this file with the collector on)."""
    import gc
    path = tmp_path / "snap"
    saved.save(str(path), snapshot(20_000), ETCD, NOW - 5)
    started = []

    def count(phase, info):
        if phase == "start":
            started.append(info["generation"])
    gc.collect()
    gc.callbacks.append(count)
    try:
        back, why = saved.load(str(path), PREFIX, ZONES, ETCD, now=NOW)
    finally:
        gc.callbacks.remove(count)
    assert why == "" and back.record_count == 40_002
    assert len(started) <= 2, started
    assert gc.isenabled()
