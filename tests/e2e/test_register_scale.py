"""Registration at scale (issue 21): 1,000 `dnsdisco.Registration`s in one process share one
lease and one keepalive thread, and none of them goes missing from a real `dnsdisco serve`
when etcd is stopped for 3 s and started again.

Before the shared lease, a process with 1,000 registrations ran 1,000 threads and channels;
after such a restart at lease TTL 5 most of its records vanished from DNS for tens of seconds.
"""
from __future__ import annotations

import threading
import time

import pytest

import dnsdisco
from tests.support.harness import ServeProcess, addresses, wait_for

ZONE = "svc.local"
SERVICES, PER_SERVICE = 20, 50          # 1,000 instances
TTL = 5                                 # the lease TTL at which the old registrar lost most records


def _address(s: int, i: int) -> str:
    return f"10.{s}.{i // 250}.{i % 250 + 1}"


def _present(serve) -> dict[str, int]:
    """Instances each service answers with now (A over TCP: 50 addresses exceed 512 octets)."""
    seen = {}
    for s in range(SERVICES):
        reply = serve.query(f"s{s}.{ZONE}", "A", tcp=True, timeout=3.0)
        seen[f"s{s}"] = len(addresses(reply))
    return seen


def test_thousand_registrations_survive_an_etcd_restart(etcd):
    # stopping all 1,000 at the end is a deliberate mass deregistration: without the mass-expiry
    # guard (tests/unit/etcd/test_guard.py), so "every record gone after stop" is seen at once
    with ServeProcess(etcd.endpoint, "--zone", ZONE, "--neg-ttl", "0", "--hold-fraction", "0") as serve:
        threads_before = threading.active_count()
        regs = [dnsdisco.Registration(f"s{s}.{ZONE}", port=8000 + i, address=_address(s, i), ttl=TTL,
                                      etcd=etcd.endpoint, id=f"i{i}", wait=0)
                for s in range(SERVICES) for i in range(PER_SERVICE)]
        try:
            t0 = time.monotonic()
            for reg in regs:
                reg.start()
            wait_for(lambda: all(r.registered for r in regs), 30, 0.1, "all 1,000 registered")
            # one lease for all of them, and one thread (not one per registration)
            assert len(etcd.etcdctl("lease", "list").split()[3:]) == 1
            assert threading.active_count() - threads_before <= 2
            want = {f"s{s}": PER_SERVICE for s in range(SERVICES)}
            wait_for(lambda: _present(serve) == want, 20, 0.2, f"serve to answer all 1,000\n{serve.log()}")
            print(f"1,000 registered and answered in {time.monotonic() - t0:.1f}s")

            etcd.stop()
            down = time.monotonic()
            while time.monotonic() - down < 3.0:      # serve answers from its last snapshot meanwhile
                assert _present(serve) == want
                time.sleep(0.2)
            etcd.start()
            back = time.monotonic()
            rounds, worst = 0, want
            while time.monotonic() - back < 3 * TTL:   # three lease TTLs after the restart
                seen = _present(serve)
                rounds += 1
                if seen != want:
                    worst = seen
                    missing = {k: PER_SERVICE - v for k, v in seen.items() if v != PER_SERVICE}
                    pytest.fail(f"{time.monotonic() - back:.1f}s after the restart, instances missing: "
                                f"{missing}\n{serve.log()[-3000:]}")
                time.sleep(0.1)
            assert worst == want and rounds > 20
            assert all(r.registered for r in regs)
            assert len(etcd.etcdctl("lease", "list").split()[3:]) == 1
        finally:
            t1 = time.monotonic()
            for reg in regs:
                reg.stop()
            print(f"1,000 stopped in {time.monotonic() - t1:.1f}s")
        # the last one revoked the shared lease: every record is gone at once
        wait_for(lambda: all(_present(serve)[f"s{s}"] == 0 for s in range(SERVICES)), 5, 0.1,
                 "every record gone after stop")
