"""The registrar's pure helpers: record values, instance ids, TTLs, hosts, backoff, and the
command and HTTP health checks. The registrar against a real etcd is tests/etcd/test_registrar.py."""
from __future__ import annotations

import json
import threading

import pytest

from dnsdisco.register import checks
from dnsdisco.register import record
from dnsdisco.register import registrar as reg


# ---------------------------------------------------------------- pure helpers

def test_record_value_has_only_the_fields_that_are_set():
    assert json.loads(record.record_value("10.0.0.7", 8080)) == {"host": "10.0.0.7", "port": 8080}
    assert json.loads(record.record_value("10.0.0.7", 0)) == {"host": "10.0.0.7"}
    assert json.loads(record.record_value("10.0.0.7", 80, priority=0, weight=5, text="v=1")) == {
        "host": "10.0.0.7", "port": 80, "priority": 0, "weight": 5, "text": "v=1"}


@pytest.mark.parametrize("text, label", [
    ("Web1-8080", "web1-8080"), ("my_host.example.com-80", "my-host-example-com-80"),
    ("--x--", "x"), ("", "instance"), ("a" * 100, "a" * 63), ("ü-1", "1"),
])
def test_sanitize_label(text, label):
    assert record.sanitize_label(text) == label


def test_default_id_is_stable_and_a_label():
    assert record.default_id(8080, "Web1.example.com") == "web1-8080"
    assert record.default_id(8080) == record.default_id(8080)


@pytest.mark.parametrize("bad", ["a.b", "-a", "x" * 64, "a b", ""])
def test_check_id_rejects_non_labels(bad):
    with pytest.raises(ValueError, match="not a DNS label"):
        record.check_id(bad)


def test_lease_ttl_minimum():
    assert record.lease_ttl("2") == 2
    with pytest.raises(ValueError, match="minimum lease TTL"):
        record.lease_ttl("1")


def test_check_host_accepts_addresses_and_names():
    assert record.check_host("10.0.0.7") == "10.0.0.7"
    assert record.check_host("FD00::0007") == "fd00::7"
    assert record.check_host("Web.Example.") == "web.example"
    with pytest.raises(ValueError):
        record.check_host("not an address")


def test_backoff_doubles_up_to_its_cap():
    b = reg.Backoff(0.2, 1.0)
    assert [b.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next() == 0.2


def test_command_check_passes_fails_and_times_out(tmp_path):
    flag = tmp_path / "up"
    check = checks.CommandCheck(f"test -e {flag}", timeout=2)
    assert check()[0] is False
    flag.touch()
    assert check()[0] is True
    ok, detail = checks.CommandCheck("sleep 30", timeout=0.3)()
    assert not ok and "no exit" in detail


def test_http_check(tmp_path):
    import http.server
    codes = {"/ok": 200, "/bad": 503}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(codes.get(self.path, 404))
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        assert checks.HttpCheck(base + "/ok", 2)()[0] is True
        ok, detail = checks.HttpCheck(base + "/bad", 2)()
        assert not ok and "503" in detail
    finally:
        srv.shutdown()
        srv.server_close()
    ok, detail = checks.HttpCheck(base + "/ok", 1)()
    assert not ok
