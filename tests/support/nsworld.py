"""etcd and `dnsdisco serve` (and reference servers) inside a network namespace made by tests/support/netns.py.

Inside a fresh namespace every port is free, so servers listen on port 53 of loopback addresses
(127.0.0.1, 127.0.0.2, ...: the whole of 127/8 is on lo) and clients find them through
/etc/netns/<name>/resolv.conf (DESIGN.md section 7).

    with NsWorld("ddviz", tmp_path) as world:
        world.put("/skydns/local/svc/hello/i0", {"host": "10.0.0.7", "port": 8080})
        world.serve("127.0.0.1", "--zone", "svc.local")
        world.knot("127.0.0.2", {"svc.local": ZONE_TEXT})
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dnsdisco.etcd.embedded import binary
from tests.support.etcdproc import EtcdProcess
from tests.support.harness import ROOT, child_env, dnsdisco_cmd
from tests.support.netns import Netns
from tests.support.refservers import BindServer, KnotServer

ETCD = "http://127.0.0.1:2379"

_PUT = """\
import json, sys
from dnsdisco.etcd.client import KV
kv = KV([sys.argv[1]], timeout=5.0)
for key, value in json.load(sys.stdin):
    kv.put(key, value.encode())
kv.close()
"""


class NsWorld:
    def __init__(self, prefix: str, workdir: Path, *, resolv_conf: str = "nameserver 127.0.0.1\n"):
        self.workdir = Path(workdir)
        self.ns = Netns(prefix, resolv_conf=resolv_conf)
        self.etcd = EtcdProcess(prefix, client_port=2379, peer_port=2380)
        self.env = child_env()
        self.logs: dict[str, Path] = {}
        self.refs = []

    # -- life cycle

    def __enter__(self) -> "NsWorld":
        self.ns.__enter__()
        try:
            self.start("etcd", self.etcd.command())
            self.poll("etcd to be healthy", lambda: self.ns.run(
                [binary("etcdctl"), f"--endpoints={ETCD}", "--dial-timeout=1s", "endpoint", "health"],
                env={**os.environ, "ETCDCTL_API": "3"}).returncode == 0, 30)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for ref in self.refs:
            ref.stop()
        self.ns.close()
        self.etcd.cleanup()

    # -- processes

    def start(self, name: str, argv, **kw) -> subprocess.Popen:
        log = self.workdir / f"{name.replace(' ', '_').replace('/', '_')}.log"
        self.logs[name] = log
        fh = open(log, "w")
        try:
            return self.ns.popen(argv, env=kw.pop("env", self.env), cwd=str(ROOT), stdout=fh,
                                 stderr=subprocess.STDOUT, **kw)
        finally:
            fh.close()

    def log(self, name: str) -> str:
        try:
            return self.logs[name].read_text(errors="replace")
        except (KeyError, OSError):
            return ""

    def poll(self, what: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception as exc:   # not up yet
                last = exc
            time.sleep(0.1)
        logs = "\n".join(f"--- {n} ---\n{self.log(n)[-3000:]}" for n in self.logs)
        raise TimeoutError(f"{what}: not within {timeout}s (last error: {last})\n{logs}")

    def run(self, argv, *, timeout: float = 30, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        return self.ns.run(argv, timeout=timeout, env=env if env is not None else self.env, **kw)

    # -- data and servers

    def put(self, items: dict) -> None:
        """Put {key: JSON-able value or str} into the namespace's etcd in one process."""
        pairs = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in items.items()]
        res = self.run([sys.executable, "-c", _PUT, ETCD], input=json.dumps(pairs))
        assert res.returncode == 0, f"putting keys into etcd failed: {res.stderr}"

    def _dig_ok(self, address: str, name: str, rdtype: str = "SOA") -> bool:
        code = ("import sys, dns.message, dns.query\n"
                "r = dns.query.udp(dns.message.make_query(sys.argv[2], sys.argv[3]), sys.argv[1], timeout=0.5)\n"
                "sys.exit(0 if r.rcode() == 0 and r.answer else 1)\n")
        return self.run([sys.executable, "-c", code, address, name, rdtype], timeout=5).returncode == 0

    def serve(self, address: str, *args: str, ready: tuple[str, str] | None = None, name: str | None = None):
        """`dnsdisco serve --listen ADDRESS:53 --etcd <the namespace's etcd> ARGS`; waits until it answers
        the first --zone's SOA and, if given, the `ready` (name, type) question with an answer."""
        name = name or f"dnsdisco {address}"
        proc = self.start(name, dnsdisco_cmd("serve", "--listen", f"{address}:53", "--etcd", ETCD, *args))
        zone = args[list(args).index("--zone") + 1] if "--zone" in args else "svc.local"

        def up():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            return self._dig_ok(address, zone) and (ready is None or self._dig_ok(address, *ready))
        self.poll(f"{name} to answer", up, 30)
        return proc

    def reference(self, cls, address: str, zones: dict[str, str]):
        """A KnotServer or BindServer inside the namespace on ADDRESS:53."""
        ref = cls(self.workdir / f"{cls.tool}-{address}", zones, listen=address, port=53,
                  popen=lambda argv, **kw: self.ns.popen(argv, **kw),
                  wait=lambda: self.poll(f"{cls.tool} on {address}",
                                         lambda: self._dig_ok(address, next(iter(zones))), 20))
        ref.start()
        self.refs.append(ref)
        return ref

    def knot(self, address: str, zones: dict[str, str]) -> KnotServer:
        return self.reference(KnotServer, address, zones)

    def bind(self, address: str, zones: dict[str, str]) -> BindServer:
        return self.reference(BindServer, address, zones)
