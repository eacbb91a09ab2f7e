"""The floor: dnslib's threaded DNSServer with a tiny resolver over the same etcd records.

`python -m bench.dnslib_floor --etcd http://127.0.0.1:2379 --port 5353`
Lists /skydns/local/svc in pages, then watches it, and answers A/AAAA/SRV/SOA/NS with
NXDOMAIN vs NODATA and the SOA in negative answers, the way dnsdisco does for these records.
It is what "the obvious Python implementation" gets; it also lets the harness's freshness
and scale measurements be exercised before dnsdisco's serve command exists.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from urllib.parse import urlparse

from dnslib import AAAA, NS, QTYPE, RCODE, RR, SOA, SRV, A
from dnslib.server import BaseResolver, DNSServer

from . import dataset as d


class Records:
    """name → {qtype: [RR]} built from instances; rebuilt per service on each change."""

    def __init__(self):
        self.lock = threading.Lock()
        self.instances: dict[str, dict[str, d.Instance]] = {}   # service → id → instance
        self.names: dict[str, dict[int, list[RR]]] = {}
        self.soa = RR(d.ZONE, QTYPE.SOA, ttl=d.TTL, rdata=SOA(f"ns.dns.{d.ZONE}", f"hostmaster.{d.ZONE}",
                                                               (1, 7200, 1800, 86400, d.NEG_TTL)))
        self.names[d.ZONE] = {QTYPE.SOA: [self.soa],
                              QTYPE.NS: [RR(d.ZONE, QTYPE.NS, ttl=d.TTL, rdata=NS(f"ns.dns.{d.ZONE}"))]}
        self.names[f"ns.dns.{d.ZONE}"] = {QTYPE.A: [RR(f"ns.dns.{d.ZONE}", QTYPE.A, ttl=d.TTL,
                                                       rdata=A("127.0.0.1"))]}
        self.names[f"dns.{d.ZONE}"] = {}

    @staticmethod
    def parse(key: str, value: bytes | None) -> tuple[str, str, d.Instance | None] | None:
        rest = key[len(d.ZONE_KEY) + 1:].split("/")
        if not key.startswith(d.ZONE_KEY + "/") or len(rest) != 2:
            return None
        svc, iid = rest
        if value is None:
            return svc, iid, None
        try:
            v = json.loads(value)
            return svc, iid, d.Instance(svc, iid, v["host"], int(v.get("port", 0)))
        except (ValueError, KeyError, TypeError):
            return None

    def _rebuild(self, svc: str, old_ids: set[str]) -> None:
        insts = self.instances.get(svc, {})
        sname = f"{svc}.{d.ZONE}"
        for iid in old_ids - set(insts):
            self.names.pop(f"{iid}.{sname}", None)
        if not insts:
            self.names.pop(sname, None)
            return
        svc_rrs: dict[int, list[RR]] = {}
        for inst in insts.values():
            inst_rrs: dict[int, list[RR]] = {}
            for owner, rtype, rdata in d.rrs_of(inst):
                if rtype == "SRV":
                    pri, w, port, target = rdata.split()
                    rr = RR(owner, QTYPE.SRV, ttl=d.TTL, rdata=SRV(int(pri), int(w), int(port), target))
                else:
                    rr = RR(owner, getattr(QTYPE, rtype), ttl=d.TTL,
                            rdata=(AAAA if rtype == "AAAA" else A)(rdata))
                (svc_rrs if owner == sname else inst_rrs).setdefault(rr.rtype, []).append(rr)
            self.names[inst.name] = inst_rrs
        self.names[sname] = svc_rrs

    def apply(self, changes) -> None:
        with self.lock:
            touched: dict[str, set[str]] = {}
            for key, value in changes:
                parsed = self.parse(key, value)
                if parsed is None:
                    continue
                svc, iid, inst = parsed
                insts = self.instances.setdefault(svc, {})
                touched.setdefault(svc, set(insts))
                if inst is None:
                    insts.pop(iid, None)
                else:
                    insts[iid] = inst
                if not insts:
                    del self.instances[svc]
            for svc, old in touched.items():
                self._rebuild(svc, old)


class FloorResolver(BaseResolver):
    def __init__(self, records: Records):
        self.records = records

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        name = str(q.qname).rstrip(".").lower()
        if not (name == d.ZONE or name.endswith("." + d.ZONE)):
            reply.header.rcode = RCODE.REFUSED
            return reply
        rrsets = self.records.names.get(name)
        if rrsets is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self.records.soa)
            return reply
        rrs = rrsets.get(q.qtype)
        if not rrs:
            reply.add_auth(self.records.soa)
            return reply
        for rr in rrs:
            reply.add_answer(RR(q.qname, rr.rtype, ttl=rr.ttl, rdata=rr.rdata))
        return reply


class QuietLogger:
    """dnslib logs every query by default; the floor should not pay for printing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def sync(client, records: Records, page: int = 5000) -> None:
    """List the prefix in pages at one revision, then apply watch events forever."""
    from pyetcd import utils
    prefix = d.ZONE_KEY + "/"
    end = utils.prefix_range_end(prefix.encode())
    start = prefix.encode()
    revision = None
    while True:
        resp = client.get_range_response(start, end, limit=page, revision=revision or 0)
        revision = revision or resp.header.revision
        records.apply((kv.key.decode(), kv.value) for kv in resp.kvs)
        if not resp.more or not resp.kvs:
            break
        start = resp.kvs[-1].key + b"\0"
    events, _cancel = client.watch_prefix(prefix, start_revision=revision + 1)
    from pyetcd.events import DeleteEvent
    for ev in events:
        key = ev.key.decode()
        records.apply([(key, None if isinstance(ev, DeleteEvent) else ev.value)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.dnslib_floor", description=__doc__.splitlines()[0])
    ap.add_argument("--etcd", required=True, help="etcd endpoint URL, e.g. http://127.0.0.1:2379")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--address", default="127.0.0.1")
    args = ap.parse_args(argv)
    import pyetcd
    u = urlparse(args.etcd)
    client = pyetcd.client(host=u.hostname, port=u.port or 2379)
    records = Records()
    resolver = FloorResolver(records)
    servers = [DNSServer(resolver, port=args.port, address=args.address, tcp=tcp,
                         logger=QuietLogger()) for tcp in (False, True)]
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    for s in servers:
        s.server.daemon_threads = True
        s.start_thread()
    try:
        sync(client, records)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
