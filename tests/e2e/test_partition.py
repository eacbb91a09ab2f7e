"""A network partition between dnsdisco and etcd, staged with a TCP relay the test controls.

dnsdisco reaches etcd only through the relay. While the relay is cut, a service is added,
one deleted, one changed 50 times, and etcd is compacted past all of it (directly, not
through the relay): every query during the cut is answered from the last snapshot. After
the relay heals, every change is served within 5 s (the compaction forces a re-list).
"""
from __future__ import annotations

import time

import pytest

from dnsdisco.etcd.client import KV
from tests.support.harness import QueryLoop, ServeProcess, addresses, wait_for
from tests.support.relay import Relay

BEFORE = {"keep": ["10.0.1.1"], "gone": ["10.0.1.2"], "change": ["10.0.1.3"], "new": None}


@pytest.mark.parametrize("mode", ["blackhole", "refuse"])
def test_partition_serves_last_snapshot_then_catches_up(etcd, prefix, mode):
    p = prefix.rstrip("/")
    key = lambda label: f"{p}/local/svc/{label}/i1"  # noqa: E731
    direct = KV([etcd.endpoint], timeout=5)
    for label, value in BEFORE.items():
        if value:
            direct.put(key(label), f'{{"host":"{value[0]}"}}'.encode())
    with Relay(("127.0.0.1", etcd.client_port)) as relay, \
            ServeProcess(relay.endpoint, "--prefix", p) as serve:
        wait_for(lambda: all(addresses(serve.query(f"{label}.svc.local")) == (value or [])
                             for label, value in BEFORE.items()), 10, what="the first sync")
        relay.cut(mode)
        cut_at = time.monotonic()
        loop = QueryLoop(serve, BEFORE)
        loop.start()
        try:
            direct.put(key("new"), b'{"host":"10.0.1.4"}')
            direct.delete(key("gone"))
            for i in range(1, 51):
                direct.put(key("change"), f'{{"host":"10.0.2.{i}"}}'.encode())
            direct.compact(direct.revision())
            # the cut lasts 4 s at least (dnsdisco's etcd calls time out and back off meanwhile)
            # and until the loop has asked every name many times after the compaction
            after = loop.count
            wait_for(lambda: (loop.count >= after + 200 and time.monotonic() - cut_at >= 4)
                     or not loop.is_alive(), 20, what="queries during the cut")
        finally:
            loop.stop()
        assert loop.count > 200 and not loop.failures, loop.failures[:5]

        relay.heal()
        healed = time.monotonic()
        after = {"keep": ["10.0.1.1"], "gone": [], "change": ["10.0.2.50"], "new": ["10.0.1.4"]}
        wait_for(lambda: all(addresses(serve.query(f"{label}.svc.local", timeout=1.0)) == value
                             for label, value in after.items()), 5,
                 what=f"every change served after the relay healed\n{serve.log()}")
        caught_up = time.monotonic() - healed
        assert serve.query("gone.svc.local").rcode() == 3
        assert "re-listed" in serve.log(), serve.log()   # the compaction forced a full list
    direct.close()
    print(f"[{mode}] {loop.count} queries during the cut, all from the last snapshot; "
          f"caught up {caught_up:.2f}s after the heal")
