"""`dnsdisco status`: lists what serve would answer, from a real etcd, in text and JSON (the cases
without etcd are tests/unit/ops/test_status.py)."""
from __future__ import annotations

import json
import subprocess

from tests.support.harness import child_env, dnsdisco_cmd


def status(etcd, prefix, *args, check=True):
    out = subprocess.run(dnsdisco_cmd("status", "--etcd", etcd.endpoint, "--prefix", prefix.rstrip("/"),
                                      "--etcd-timeout", "2", *args),
                         env=child_env(), capture_output=True, text=True, timeout=30)
    if check:
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr
    return out


def write_records(kv, prefix):
    p = prefix.rstrip("/")
    kv.put(f"{p}/local/svc/hello/a", b'{"host":"10.0.0.7","port":8080}')
    kv.put(f"{p}/local/svc/hello/b", b'{"host":"fd00::8","port":8080,"ttl":60,"text":"v2"}')
    kv.put(f"{p}/local/svc/hello", b'{"host":"10.0.0.1"}')
    kv.put(f"{p}/local/svc/hello/a/deep", b'{"host":"10.0.0.99"}')
    kv.put(f"{p}/local/svc/alias", b'{"host":"www.example.org"}')
    kv.put(f"{p}/local/svc/hello/bad", b'{"host":"10.0.0.300"}')
    kv.put(f"{p}/local/svc/broken", b"not json")


def test_text_lists_every_record_and_bad_value(etcd, kv, prefix):
    write_records(kv, prefix)
    p = prefix.rstrip("/")
    out = status(etcd, prefix).stdout
    lines = out.splitlines()
    assert lines[0].startswith("# etcd revision") and "5 record(s), 2 bad value(s)" in lines[0]
    row = next(line for line in lines if line.endswith(f"{p}/local/svc/hello/a"))
    assert row.split()[:4] == ["a.hello.svc.local", "A,SRV", "30", "10.0.0.7:8080"]
    row = next(line for line in lines if line.endswith(f"{p}/local/svc/hello/b"))
    assert row.split()[:5] == ["b.hello.svc.local", "AAAA,SRV,TXT", "60", "[fd00::8]:8080", 'text="v2"']
    assert any(line.split()[:2] == ["alias.svc.local", "CNAME"] for line in lines)
    bad_part = out.split("bad values (skipped, not served):", 1)[1]
    assert f"{p}/local/svc/hello/bad" in bad_part and "10.0.0.300" in bad_part
    assert f"{p}/local/svc/broken" in bad_part and "JSON" in bad_part


def test_json_and_a_name(etcd, kv, prefix):
    write_records(kv, prefix)
    p = prefix.rstrip("/")
    info = json.loads(status(etcd, prefix, "--format", "json").stdout)
    keys = {r["key"]: r for r in info["records"]}
    assert set(keys) == {f"{p}/local/svc/hello/a", f"{p}/local/svc/hello/b", f"{p}/local/svc/hello",
                         f"{p}/local/svc/hello/a/deep", f"{p}/local/svc/alias"}
    assert keys[f"{p}/local/svc/hello/a"]["types"] == ["A", "SRV"]
    assert keys[f"{p}/local/svc/hello/a"]["ttl"] == 30 and keys[f"{p}/local/svc/hello/b"]["ttl"] == 60
    assert {b["key"] for b in info["bad"]} == {f"{p}/local/svc/hello/bad", f"{p}/local/svc/broken"}
    assert all(b["message"] for b in info["bad"])

    # NAME: the value at the name and its instances one level below, never deeper
    one = json.loads(status(etcd, prefix, "--format", "json", "HELLO.svc.local.").stdout)
    assert one["result"] == "NOERROR"
    assert sorted(r["key"] for r in one["records"]) == [
        f"{p}/local/svc/hello", f"{p}/local/svc/hello/a", f"{p}/local/svc/hello/b"]
    assert one["deeper"] == 1
    assert [b["key"] for b in one["bad"]] == [f"{p}/local/svc/hello/bad"]
    text = status(etcd, prefix, "hello.svc.local").stdout
    assert text.splitlines()[0].startswith("hello.svc.local: answered by 3 record(s): 1 at ")
    assert "1 record(s) further below do not answer" in text
    assert f"{p}/local/svc/hello/a/deep" not in text

    # a name that does not exist, or is not served, exits 1 (scripts test it); NODATA exists
    missing = status(etcd, prefix, "nope.svc.local", check=False)
    assert missing.returncode == 1 and "NXDOMAIN" in missing.stdout and "Traceback" not in missing.stderr
    outside = status(etcd, prefix, "hello.example.org", check=False)
    assert outside.returncode == 1 and "REFUSED" in outside.stdout
    kv.put(f"{p}/local/svc/empty/deeper/x", b'{"host":"10.0.0.5"}')
    assert "NODATA" in status(etcd, prefix, "empty.svc.local").stdout     # exit 0, checked by status()
