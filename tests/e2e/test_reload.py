"""SIGHUP: zone files and reloadable settings are picked up while queries keep being answered."""
from __future__ import annotations

import json
import signal
import threading
import time

import dns.rcode

from tests.support.harness import ServeProcess, addresses, wait_for

ZONE = ("$ORIGIN svc.local.\n$TTL 60\n@ IN SOA ns.dns.svc.local. hostmaster.svc.local. 1 7200 1800 86400 5\n"
        "static1 IN A 192.0.2.1\n")


class QueryLoop(threading.Thread):
    """Queries `name` back to back (bounded in count and time) and keeps every failure."""

    def __init__(self, srv, name: str, limit: int = 5000, seconds: float = 20.0):
        super().__init__(daemon=True)
        self.srv, self.name, self.limit, self.seconds = srv, name, limit, seconds
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.count = 0

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and self.count < self.limit and time.monotonic() < deadline:
            try:
                reply = self.srv.query(self.name, timeout=1.0)
                if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
                    self.failures.append(dns.rcode.to_text(reply.rcode()))
            except Exception as exc:  # a timeout is a failure too
                self.failures.append(repr(exc))
            self.count += 1


def test_sighup_reloads_zone_file_and_settings_without_a_failed_query(etcd, tmp_path):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "svc.local.zone").write_text(ZONE)
    conf = tmp_path / "dnsdisco.toml"
    conf.write_text(f'zones_dir = "{zones}"\nttl = 30\nprefix = "/reload"\n')
    etcd.etcdctl("put", "/reload/local/svc/hello/a", json.dumps({"host": "10.0.0.1"}))
    with ServeProcess(etcd.endpoint, "--config", str(conf)) as srv:
        assert srv.query("hello.svc.local").answer[0].ttl == 30
        assert srv.query("static2.svc.local").rcode() == dns.rcode.NXDOMAIN
        loop = QueryLoop(srv, "hello.svc.local")
        loop.start()
        try:
            wait_for(lambda: loop.count > 20, 5, what="the query loop to run")
            (zones / "svc.local.zone").write_text(ZONE + "static2 IN A 192.0.2.2\n")
            conf.write_text(f'zones_dir = "{zones}"\nttl = 77\nprefix = "/other"\n')
            srv.signal(signal.SIGHUP)
            wait_for(lambda: addresses(srv.query("static2.svc.local")) == ["192.0.2.2"], 5, what="the new zone file")
            wait_for(lambda: srv.query("hello.svc.local").answer[0].ttl == 77, 5, what="the new --ttl")
            # a broken zone file: the old zones stay in service
            (zones / "svc.local.zone").write_text("this is not a zone file\n")
            srv.signal(signal.SIGHUP)
            wait_for(lambda: "zone files not reloaded" in srv.log(), 5, what="the zone-file error")
            assert addresses(srv.query("static2.svc.local")) == ["192.0.2.2"]
            counted = loop.count
            wait_for(lambda: loop.count > counted + 20, 5, what="more queries after the reloads")
        finally:
            loop.stop.set()
            loop.join(10)
        log = srv.log()
    assert loop.failures == [], loop.failures[:5]
    assert "SIGHUP: reloaded" in log
    assert "prefix changed; restart dnsdisco to apply it" in log
