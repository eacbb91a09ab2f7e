"""NOTIFY (RFC 1996) from a real `dnsdisco serve` to a secondary's socket played by the test: signed
with the TSIG key, coalesced (a burst of puts sends a handful, not one per put), sent again
when unanswered, and counted in the metrics. Knot and BIND receiving them is tests/e2e/test_secondaries.py.
"""
from __future__ import annotations

import time
import urllib.request

from tests.support.harness import ServeProcess, wait_for
from tests.support.netns import free_port
from tests.support.transfer import FakeSecondary, put, write_keys


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_notify_signed_coalesced_and_retried(etcd, kv, prefix, tmp_path):
    secondary = FakeSecondary(delay=0.2, ignore=1)
    http = free_port()
    try:
        with ServeProcess(etcd.endpoint, "--prefix", prefix.rstrip("/"), "--notify", f"127.0.0.1:{secondary.port}",
                          "--tsig-key-file", write_keys(str(tmp_path)), "--transfer-allow", "127.0.0.1/32",
                          "--http", f"127.0.0.1:{http}") as serve:
            # the first full sync is a change: NOTIFY; the first is ignored, so it is sent again (1 s)
            wait_for(lambda: len(secondary.received) >= 2, 10, what="a NOTIFY and its retry")
            first, again = secondary.received[0], secondary.received[1]
            assert 0.8 <= again[0] - first[0] <= 3.0, "resent after about a second"
            assert not secondary.bad, secondary.bad

            # a burst of 300 puts: a handful of NOTIFYs, the last carrying the last serial
            before = len(secondary.received)
            last = 0
            started = time.monotonic()
            for i in range(300):
                last = put(kv, prefix, f"i{i}.burst.svc.local", {"host": f"10.3.{i // 250}.{i % 250}"})
            burst_seconds = time.monotonic() - started
            wait_for(lambda: secondary.received and secondary.received[-1][1] == last, 15,
                     what=f"a NOTIFY with serial {last}")
            time.sleep(0.5)
            sent = len(secondary.received) - before
            # at most one in flight, each answered after 0.2 s: no more than one per 0.2 s of burst
            print(f"{sent} NOTIFY(s) for 300 puts in {burst_seconds:.2f} s")
            assert 1 <= sent <= burst_seconds / 0.2 + 3, (sent, burst_seconds)
            assert sent < 60
            assert not secondary.bad, secondary.bad
            wait_for(lambda: metric(http, 'dnsdisco_notifies_total{result="acked"}') >= sent, 5,
                     what="the acks in the metrics")
            assert metric(http, 'dnsdisco_notifies_total{result="sent"}') == len(secondary.received)
            assert "dnsdisco_journal_entries" in urllib.request.urlopen(
                f"http://127.0.0.1:{http}/metrics", timeout=5).read().decode()
    finally:
        secondary.close()


def test_notify_to_nobody_gives_up_quietly(etcd, kv, prefix):
    """A secondary that never answers: tries with backoff, then one warning; serving goes on."""
    port = free_port()
    with ServeProcess(etcd.endpoint, "--prefix", prefix.rstrip("/"), "--notify", f"127.0.0.1:{port}") as serve:
        put(kv, prefix, "a.svc.local", {"host": "10.0.0.1"})
        wait_for(lambda: serve.query("a.svc.local").answer, 5, what="the put served")
        assert "Traceback" not in serve.log()
