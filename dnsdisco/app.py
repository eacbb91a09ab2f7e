"""`dnsdisco serve`: wires etcd, the sync loop, the responder and the listeners together.

This is the only place that knows all the parts; each part stays testable on its own.
"""
from __future__ import annotations

import logging
import signal
import sys
import time

log = logging.getLogger("dnsdisco.serve")


def _fail(message: str, code: int = 1) -> int:
    print(f"dnsdisco serve: {message}", file=sys.stderr)
    return code


def run_serve(cfg, args=None) -> int:
    # gevent and gRPC must be set up before any socket or gRPC object exists
    from .etcdconf import StartupError, check_access, connect  # sets GRPC_VERBOSITY before gRPC loads
    from .kv import init_gevent
    init_gevent()
    import gevent
    from gevent.event import Event

    from . import logs
    from .metrics import Metrics
    from .server import BindError, DNSServer
    from .snapshot import Snapshot
    from .sync import Syncer
    from .wire import Responder
    from .zonefile import ZoneFileError, load_zones

    try:
        logs.setup(cfg.log_level, cfg.log_format, secrets=logs.secret_values(cfg))
    except ValueError as exc:
        return _fail(str(exc), 2)
    try:
        zones = load_zones(cfg.zone, cfg.zones_dir, cfg.ttl, cfg.neg_ttl)
    except ZoneFileError as exc:
        return _fail(str(exc), 2)

    metrics = Metrics()
    forwarder = acl = None
    if cfg.forward:
        from .acl import Acl
        from .forward import Forwarder, parse_upstreams, self_loops
        try:
            upstreams = parse_upstreams(cfg.forward)
        except ValueError as exc:
            return _fail(f"--forward: {exc}", 2)
        looped = self_loops(upstreams, cfg.listen)
        if looped:
            return _fail(f"--forward {_show(looped[0])} is this server's own --listen address: "
                         "forwarding to it would loop", 2)
        forwarder = Forwarder(upstreams, timeout=cfg.forward_timeout, cache_size=cfg.forward_cache_size,
                              metrics=metrics, log=logging.getLogger("dnsdisco.forward"))
        acl = Acl(cfg.allow)

    responder = Responder(Snapshot.empty(cfg.prefix, zones), forwarder=forwarder, acl=acl, metrics=metrics,
                          ready=False)
    handler = responder.handle
    if cfg.log_queries:
        handler = _logging_handler(handler, logs.QueryLog())
    server = DNSServer(handler, cfg.listen, tcp_idle_timeout=cfg.tcp_idle_timeout,
                       tcp_max_conns=cfg.tcp_max_conns, tcp_max_per_client=cfg.tcp_max_per_client,
                       tcp_read_timeout=cfg.tcp_read_timeout, tcp_max_inflight=cfg.tcp_max_inflight,
                       metrics=metrics,
                       log=logging.getLogger("dnsdisco.server"))
    try:
        server.start()
    except BindError as exc:
        return _fail(str(exc), 1)

    embedded = None
    endpoints = list(cfg.etcd)
    if not endpoints:
        from .embedded import EmbeddedError, find_or_start
        try:
            embedded = find_or_start(cfg.state_dir or None, log, allow_start=cfg.embedded_etcd)
        except EmbeddedError as exc:
            server.stop(0)
            return _fail(str(exc), 1)
        endpoints = [embedded.endpoint]
    log.info("using etcd %s%s, prefix %s", ",".join(endpoints),
             " (embedded, started by dnsdisco)" if embedded is not None and embedded.started else "",
             cfg.prefix or "/")
    kv = None
    try:
        kv = connect(cfg, log=log, endpoints=endpoints)
        if cfg.etcd:  # an etcd the operator named: wrong credentials or TLS stop start-up here
            check_access(kv, cfg.prefix, write=False, log=log)
    except StartupError as exc:
        server.stop(0)
        if kv is not None:
            kv.close()
        if embedded is not None:
            embedded.stop()
        return _fail(str(exc), 1)

    syncer = Syncer(kv, cfg.prefix, zones, on_swap=responder.on_swap, metrics=metrics,
                    log=logging.getLogger("dnsdisco.sync"))
    http = None
    if cfg.http:
        from .health import start_http
        try:
            http = start_http(cfg.http, metrics, lambda: syncer.state, cfg.max_stale,
                              logging.getLogger("dnsdisco.http"))
        except OSError as exc:
            server.stop(0)
            if embedded is not None:
                embedded.stop()
            return _fail(str(exc.strerror or exc), 1)

    stopping = Event()

    def reload_zones():
        try:
            new_zones = load_zones(cfg.zone, cfg.zones_dir, cfg.ttl, cfg.neg_ttl)
        except ZoneFileError as exc:
            log.error("SIGHUP: zone files not reloaded, keeping the old ones: %s", exc)
            return
        syncer.reload_zones(new_zones)
        log.info("SIGHUP: reloaded %d zone(s)", len(new_zones))

    gevent.signal_handler(signal.SIGTERM, stopping.set)
    gevent.signal_handler(signal.SIGINT, stopping.set)
    gevent.signal_handler(signal.SIGHUP, lambda: gevent.spawn(reload_zones))

    sync_greenlet = gevent.spawn(syncer.run)
    log.info("answering for %s on %s", ", ".join(z.name for z in zones),
             ", ".join(_show(a) for a in server.addresses))
    try:
        stopping.wait()
    finally:
        log.info("stopping")
        server.stop(1.0)
        syncer.stop()
        sync_greenlet.kill(block=True, timeout=1.0)
        if http is not None:
            http.stop()
        kv.close()
        if embedded is not None:
            embedded.stop()
    return 0


def _show(addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _logging_handler(handle, query_log):
    """`--log-queries`: one line per query, at the cost of decoding the question."""
    from .wire import parse_fast

    def logged(data, transport, client):
        started = time.perf_counter()
        reply = handle(data, transport, client)
        fq = parse_fast(data)
        if isinstance(fq, tuple) and reply is not None and len(reply) >= 4:
            qname = ".".join(_labels(fq[1])) or "."
            query_log(client, transport, qname, fq[2], reply[3] & 0xF, time.perf_counter() - started)
        return reply
    return logged


def _labels(wire: bytes):
    pos = 0
    while pos < len(wire) and wire[pos]:
        yield wire[pos + 1:pos + 1 + wire[pos]].decode("latin-1")
        pos += wire[pos] + 1
