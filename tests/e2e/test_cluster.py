"""A 3-member etcd cluster loses its leader under a running dnsdisco and a running registrar.

dnsdisco serve and `dnsdisco register --ttl 3` are both given all three endpoints, the
leader first (so both talk to the member that dies). A query loop runs throughout: SIGKILL
the leader. No query fails, a record written after the kill is served within 3 s, and the
registrar's record stays served for more than twice its lease TTL after the kill.
"""
from __future__ import annotations

import subprocess
import time


from dnsdisco.etcd.client import KV
from tests.support.etcdproc import leader
from tests.support.harness import QueryLoop, ServeProcess, addresses, child_env, dnsdisco_cmd, wait_for

TTL = 3




def test_leader_killed_under_serve_and_registrar(cluster):
    lead = leader(cluster)
    ordered = [lead] + [m for m in cluster if m is not lead]
    eps = ",".join(m.endpoint for m in ordered)
    survivors = [m.endpoint for m in ordered[1:]]
    with KV([m.endpoint for m in ordered], timeout=5) as kv:
        kv.put("/skydns/local/svc/static/s1", b'{"host":"10.0.3.1"}')

    registrar = subprocess.Popen(
        dnsdisco_cmd("register", "reg.svc.local", "--port", "80", "--address", "10.0.3.9", "--id", "r1",
                     "--ttl", str(TTL), "--etcd", eps),
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with ServeProcess(eps) as serve:
            expected = {"static": ["10.0.3.1"], "reg": ["10.0.3.9"]}
            wait_for(lambda: all(addresses(serve.query(f"{n}.svc.local")) == v for n, v in expected.items()),
                     10, what="the records before the kill")
            loop = QueryLoop(serve, expected, max_seconds=40)
            loop.start()
            try:
                wait_for(lambda: loop.count >= 50, 10, what="the query loop to run")
                lead.kill()
                killed = time.monotonic()
                with KV(survivors, timeout=5) as kv:
                    kv.put("/skydns/local/svc/after/a1", b'{"host":"10.0.3.5"}')
                written = time.monotonic()
                wait_for(lambda: addresses(serve.query("after.svc.local", timeout=1.0)) == ["10.0.3.5"], 3,
                         what=f"the record written after the kill\n{serve.log()}")
                served = time.monotonic()
                # past two lease TTLs after the kill: the registrar kept its lease (or re-put it)
                wait_for(lambda: time.monotonic() - killed > 2 * TTL + 1 or not loop.is_alive(), 15,
                         what="two lease TTLs")
            finally:
                loop.stop()
            assert loop.is_alive() is False
            assert loop.count > 200 and not loop.failures, (loop.failures[:5], serve.log())
            assert addresses(serve.query("reg.svc.local")) == ["10.0.3.9"]
    finally:
        registrar.terminate()
        output, _ = registrar.communicate(timeout=15)
    assert registrar.returncode == 0, output
    print(f"{loop.count} queries, none failed; write took {written - killed:.2f}s after the kill, "
          f"served {served - written:.2f}s after the write")
