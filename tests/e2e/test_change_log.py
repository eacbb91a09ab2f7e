"""Changes in the log (issue 22) from a real `dnsdisco serve` on a real etcd: puts, deletes,
an expiry and a bounded burst, and nothing at --log-level warning. The pure ChangeLog tests
are tests/unit/etcd/test_sync.py."""
from __future__ import annotations

import re
import time

from tests.support.harness import ServeProcess, addresses, wait_for


def _change_lines(serve: ServeProcess) -> list[str]:
    return [line for line in serve.log().splitlines() if "dnsdisco.changes:" in line]


def test_serve_logs_put_delete_expiry_and_a_bounded_burst(etcd, kv, prefix):
    p = prefix.rstrip("/")
    kv.put(f"{p}/local/svc/old/a", b'{"host":"10.0.0.1"}')
    kv.put(f"{p}/local/svc/old/b", b'{"host":"10.0.0.2"}')
    with ServeProcess(etcd.endpoint, "--prefix", p) as serve:
        synced = [line for line in serve.log().splitlines() if "synced" in line]
        assert len(synced) == 1 and "synced 2 record(s) of 1 service(s)" in synced[0], serve.log()
        assert not _change_lines(serve)          # the first sync is that one line, not one per record

        kv.put(f"{p}/local/svc/hello/a", b'{"host":"10.0.0.7","port":8080}')
        wait_for(lambda: any("added a.hello.svc.local: 10.0.0.7:8080" in l for l in _change_lines(serve)),
                 10, 0.05, "the put's line")
        kv.delete(f"{p}/local/svc/hello/a")
        wait_for(lambda: any("removed a.hello.svc.local (was 10.0.0.7:8080)" in l for l in _change_lines(serve)),
                 10, 0.05, "the delete's line")
        lease = kv.grant(2)
        kv.put(f"{p}/local/svc/hello/e", b'{"host":"10.0.0.9"}', lease=lease)
        wait_for(lambda: any("added e.hello.svc.local" in l for l in _change_lines(serve)), 10, 0.05, "lease put")
        wait_for(lambda: any("removed e.hello.svc.local (was 10.0.0.9)" in l for l in _change_lines(serve)),
                 15, 0.1, "the expiry's line")
        assert all("service=hello.svc.local" in l for l in _change_lines(serve))

        before = len(_change_lines(serve))
        started = time.monotonic()
        for i in range(1000):
            kv.put(f"{p}/local/svc/burst/i{i}", b'{"host":"10.0.1.1"}')
        took = time.monotonic() - started
        wait_for(lambda: addresses(serve.query("i999.burst.svc.local")) == ["10.0.1.1"], 15, 0.05, "the burst")
        time.sleep(1.5)               # the last summary comes at the end of its second
        lines = _change_lines(serve)[before:]
        own = [l for l in lines if "added i" in l]
        summaries = [l for l in lines if "more change(s)" in l]
        counted = sum(int(re.search(r"burst\.svc\.local \+(\d+)", l).group(1)) for l in summaries)
        assert len(own) + counted == 1000, (len(own), counted, lines[:10])
        assert len(lines) <= 5 * (took + 2), (len(lines), took)       # a few lines a second
    with ServeProcess(etcd.endpoint, "--prefix", p, "--log-level", "warning") as quiet:
        kv.put(f"{p}/local/svc/hello/q", b'{"host":"10.0.0.5"}')
        wait_for(lambda: addresses(quiet.query("q.hello.svc.local")) == ["10.0.0.5"], 10, 0.05, "q")
        time.sleep(0.3)
        assert not _change_lines(quiet) and "synced" not in quiet.log()
