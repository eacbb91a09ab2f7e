"""`dnsdisco serve`: wires etcd, the sync loop, the responder and the listeners together.

This is the only place that knows all the parts; each part stays testable on its own. Over
500 lines because it is the one composition root (DESIGN §5): the order in which serve starts
and stops its parts (the saved snapshot, the listing, the packer, the transfers, the embedded
etcd) is read here in one place, and the rules each part follows live in its own module.
"""
from __future__ import annotations

import logging
import signal
import time

from dnsdisco.dns.names import format_hostport, read_wire_name, to_text
from dnsdisco.ops.logs import fail

log = logging.getLogger("dnsdisco.serve")

STOP_BUDGET = 1.8    # SIGTERM to exit, all steps together (issue 9: exit 0 within 2 s)
STOP_GRACE = 0.8     # of which in-flight queries get this long to be answered
# settings that SIGHUP applies; the others (listeners, etcd, zones served) need a restart
RELOADABLE = {"zones_dir", "ttl", "neg_ttl", "log_level", "log_format", "max_value_bytes",
              "max_records_per_name", "rrl_rate", "rrl_slip", "rrl_exempt"}


def run_serve(cfg, args=None, ctrl_c=None) -> int:
    """`ctrl_c`: cli.StartupInterrupt, holding a Ctrl-C that came while serve started, until
    gevent's handler below takes SIGINT over."""
    # gevent must be set up before any socket exists. No gRPC here: the etcd calls run in a
    # helper process (etcd/helper.py), which is the only one to load it.
    from gevent import monkey
    if not monkey.is_module_patched("socket"):
        monkey.patch_all()
    import gevent
    from gevent.event import Event

    from dnsdisco.ops import logs
    from dnsdisco.etcd.settings import StartupError, check_access, kv_settings
    from dnsdisco.etcd.helper import ProcessKV
    from dnsdisco.ops.metrics import Metrics
    from dnsdisco.net.listeners import DNSServer
    from dnsdisco.net.sockets import BindError
    from dnsdisco.dns.snapshot import Snapshot
    from dnsdisco.etcd.sync import Syncer
    from dnsdisco.dns.responder import Responder
    from dnsdisco.dns.zonefile import ZoneFileError, served_zones

    try:
        zones = served_zones(cfg)
    except ZoneFileError as exc:
        return fail("serve", str(exc), 2)
    problem = _snapshot_file_problem(cfg.snapshot_file)
    if problem:
        return fail("serve", problem, 2)

    metrics = Metrics()
    forwarder = acl = None
    if cfg.forward:
        from dnsdisco.net.acl import Acl
        from dnsdisco.net.forwarder import Forwarder
        upstreams, problem = _upstreams(cfg)
        if problem:
            return fail("serve", problem, 2)
        forwarder = Forwarder(upstreams, timeout=cfg.forward_timeout, cache_size=cfg.forward_cache_size,
                              metrics=metrics, log=logging.getLogger("dnsdisco.net.forwarder"))
        acl = Acl(cfg.allow)

    responder = Responder(Snapshot.empty(cfg.prefix, zones), forwarder=forwarder, acl=acl, metrics=metrics,
                          cache_size=cfg.cache_size, ready=False)
    metrics.track_cache(lambda: len(responder.cache))
    try:
        _transfers(cfg, responder, metrics)
    except ValueError as exc:
        return fail("serve", str(exc), 2)
    if cfg.rrl_rate:
        from dnsdisco.net.rrl import RateLimiter
        responder.rrl = RateLimiter(cfg.rrl_rate, cfg.rrl_slip, cfg.rrl_exempt)
        log.info("response rate limiting: %d responses/s per client network, name and type over UDP, "
                 "slip %d%s", cfg.rrl_rate, cfg.rrl_slip,
                 f", exempt {', '.join(map(str, cfg.rrl_exempt))}" if cfg.rrl_exempt else "")
    handler = responder.handle
    if cfg.log_queries:
        handler = _logging_handler(handler, logs.QueryLog())
    server = DNSServer(handler, cfg.listen, tcp_idle_timeout=cfg.tcp_idle_timeout,
                       tcp_max_conns=cfg.tcp_max_conns, tcp_max_per_client=cfg.tcp_max_per_client,
                       tcp_read_timeout=cfg.tcp_read_timeout, tcp_max_inflight=cfg.tcp_max_inflight,
                       metrics=metrics,
                       log=logging.getLogger("dnsdisco.net.listeners"))
    # SIGTERM from here on is a clean stop, also while an embedded etcd is still starting
    stopping = Event()
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    gevent.signal_handler(signal.SIGINT, stopping.set)
    if ctrl_c is not None and ctrl_c.hand_over(stopping.set):
        log.info("stopping")     # Ctrl-C while starting: nothing is bound or running yet
        return 0
    cleanups: list = []      # what a failed start-up must undo, in start order

    def abort(message: str, code: int = 1) -> int:
        for undo in reversed(cleanups):
            undo()
        return fail("serve", message, code)

    try:
        server.start()
    except BindError as exc:
        return fail("serve", str(exc), 1)
    cleanups.append(lambda: server.stop(0))

    embedded = None
    endpoints = list(cfg.etcd)
    if not endpoints:
        from dnsdisco.etcd.embedded import EmbeddedError, find_or_start
        try:
            embedded = find_or_start(cfg.state_dir or None, log, allow_start=cfg.embedded_etcd)
        except EmbeddedError as exc:
            return abort(str(exc))
        cleanups.append(embedded.stop)
        endpoints = [embedded.endpoint]
    log.info("using etcd %s%s, prefix %s", ",".join(endpoints),
             " (embedded, started by dnsdisco)" if embedded is not None and embedded.started else "",
             cfg.prefix or "/")
    try:
        etcd_settings = kv_settings(cfg, endpoints=endpoints, on_secret=logs.add_secret)
    except StartupError as exc:
        return abort(str(exc))
    # etcd is used from a helper process (etcd/helper.py): under query load gevent's gRPC hands
    # over one watch message per event-loop round trip, too slow for a burst of puts, and gRPC
    # would add its memory to this process (docs/benchmarks.md, "Freshness under load")
    watch_kv = ProcessKV(etcd_settings, log=logging.getLogger("dnsdisco.etcd"))
    cleanups.append(watch_kv.close)
    on_swap = _freezing(_reporting_caps(responder.on_swap, metrics))
    packing = None
    if cfg.precompute_budget:      # packing answers ahead after every full sync
        from dnsdisco.dns.precompute import MIB, Packer
        packer = Packer(responder, cfg.precompute_budget * MIB)
        metrics.track_precompute(lambda: packer.added, lambda: packer.used,
                                 lambda: int(packer.state == packer.RUNNING))
        full_sync = Event()
        on_swap = _waking(on_swap, full_sync)
    catalogue = None
    if cfg.http:   # the live catalogue page sees every swap (catalogue.py)
        from dnsdisco.ops.catalogue import Catalogue
        catalogue = Catalogue(metrics)
        on_swap = catalogue.tracking(on_swap)
    from dnsdisco.etcd.guard import ExpiryGuard
    syncer = Syncer(watch_kv, cfg.prefix, zones, on_swap=on_swap,
                    metrics=metrics, log=logging.getLogger("dnsdisco.etcd.sync"),
                    guard=ExpiryGuard(cfg.hold_fraction, cfg.hold_window, cfg.hold_max))
    http = None
    if cfg.http:
        from dnsdisco.ops.http import start_http
        try:
            catalogue.follow(syncer)
            http = start_http(cfg.http, metrics, lambda: _health_state(syncer), cfg.max_stale,
                              logging.getLogger("dnsdisco.http"), pages=catalogue)
        except OSError as exc:
            return abort(str(exc.strerror or exc))

    settings = {"cfg": cfg}

    def reload():
        """SIGHUP: zone files and the reloadable settings, without dropping a query."""
        old = settings["cfg"]
        new = old
        if args is not None:
            try:
                new = _reload_config(args)
            except ValueError as exc:
                log.error("SIGHUP: settings not reloaded, keeping the old ones: %s", exc)
        fixed = [name for name in new if name not in RELOADABLE and new[name] != old[name]]
        if fixed:
            log.warning("SIGHUP: %s changed; restart dnsdisco to apply %s", ", ".join(sorted(fixed)),
                        "it" if len(fixed) == 1 else "them")
        try:
            new_zones = served_zones(new, names=cfg.zone)
        except ZoneFileError as exc:
            log.error("SIGHUP: zone files not reloaded, keeping the old ones: %s", exc)
            return
        if (new.log_level, new.log_format) != (old.log_level, old.log_format):
            from dnsdisco.config import secret_values
            logs.setup(new.log_level, new.log_format, secrets=secret_values(new))
        if (new.rrl_rate, new.rrl_slip, new.rrl_exempt) != (old.rrl_rate, old.rrl_slip, old.rrl_exempt):
            from dnsdisco.net.rrl import RateLimiter
            responder.rrl = RateLimiter(new.rrl_rate, new.rrl_slip, new.rrl_exempt) if new.rrl_rate else None
        syncer.reload_zones(new_zones)
        settings["cfg"] = new
        log.info("SIGHUP: reloaded %d zone(s) and the settings", len(new_zones))

    gevent.signal_handler(signal.SIGHUP, lambda: gevent.spawn(reload))

    if cfg.snapshot_file:       # before the check below, which waits for an etcd that is down
        _answer_from_saved(cfg.snapshot_file, syncer, responder, zones, endpoints, log)
    if cfg.etcd:  # an etcd the operator named: wrong credentials or TLS stop start-up here
        try:
            check_access(watch_kv, cfg.prefix, write=False, log=log)
        except StartupError as exc:
            return abort(str(exc))
    sync_greenlet = gevent.spawn(syncer.run)
    if cfg.precompute_budget:
        packing = gevent.spawn(_pack_ahead, packer, full_sync, metrics)
    supervisor = None
    if embedded is not None and embedded.started:
        supervisor = gevent.spawn(_supervise, embedded, metrics, stopping)
    log.info("answering for %s on %s", ", ".join(z.name for z in zones),
             ", ".join(format_hostport(*a) for a in server.addresses))
    try:
        stopping.wait()
    finally:
        log.info("stopping")
        deadline = time.monotonic() + STOP_BUDGET
        server.stop(STOP_GRACE)
        if responder.xfr.notifier is not None:
            responder.xfr.notifier.stop()
        syncer.stop()
        if packing is not None:
            packing.kill(block=True, timeout=0.1)
        if supervisor is not None:
            supervisor.kill(block=True, timeout=0.1)
        sync_greenlet.kill(block=True, timeout=_left(deadline, 0.1))
        if cfg.snapshot_file:
            _save_snapshot(cfg.snapshot_file, syncer, endpoints, log)
        if http is not None:
            http.stop()
        watch_kv.close()
        if embedded is not None:
            embedded.stop(timeout=_left(deadline, 0.2))
    return 0


def _snapshot_file_problem(path: str) -> str:
    """Why --snapshot-file cannot be written at the stop (found at the start, not after hours)."""
    import os
    if not path:
        return ""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"--snapshot-file {path}: is a directory; name a file in it"
    if not os.path.isdir(directory):
        return f"--snapshot-file {path}: the directory {directory} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"--snapshot-file {path}: the directory {directory} is not writable by this user"
    return ""


def _answer_from_saved(path: str, syncer, responder, zones, endpoints, log) -> None:
    """--snapshot-file at start: answer from the snapshot the last stop saved until the first
    listing replaces it, its negative answers SERVFAIL (etcd/saved.py says when it is used)."""
    import gevent

    from dnsdisco.etcd.heap import trim as trim_heap
    from dnsdisco.etcd.saved import load
    started = time.monotonic()
    snapshot, why = load(path, syncer.prefix, zones, endpoints)
    if snapshot is None:
        log.info("not answering from the saved snapshot %s: %s", path, why)
        return
    responder.provisional = True
    responder.xfr.announcing = False      # not sent on to secondaries, so no NOTIFY for it
    syncer.adopt(snapshot)

    def listed():     # the first listing is swapped in, then `ready`: negatives are known again
        syncer.ready.wait()
        responder.provisional = False
        responder.xfr.announce([zone.name for zone in responder.snapshot.zones])
        gevent.sleep(0.5)             # the saved snapshot is gone by now: hand its pages back
        trim_heap()
    gevent.spawn(listed)
    log.info("answering from the snapshot saved in %s (%d record(s) at revision %d, read in %.2f s) until "
             "the listing is built; negative answers are SERVFAIL until then", path, snapshot.record_count,
             snapshot.revision, time.monotonic() - started)


def _save_snapshot(path: str, syncer, endpoints, log) -> None:
    """--snapshot-file at stop: the last snapshot built from etcd, for the next start; never a
    saved one read back (it would look younger than it is)."""
    heard = syncer.state.last_contact
    if not syncer.ready.is_set() or heard is None:
        log.info("not saving a snapshot to %s: no listing of etcd was built since the start", path)
        return
    from dnsdisco.etcd.saved import save
    started = time.monotonic()
    snapshot = syncer.current
    try:
        size = save(path, snapshot, endpoints, time.time() - (started - heard))    # etcd's last answer
    except OSError as exc:
        log.warning("could not save the snapshot to %s: %s", path, exc.strerror or exc)
        return
    log.info("saved %d record(s) at revision %d to %s (%.1f MiB) in %.2f s", snapshot.record_count,
             snapshot.revision, path, size / 2**20, time.monotonic() - started)


_yielded = [0.0]
YIELD_EVERY = 0.004    # seconds of a long computation between two turns of the sockets


def _yield_to_io() -> None:
    """Let the sockets be served in the middle of a long computation (a large zone's AXFR or
    journal entry) once it has run YIELD_EVERY: a timed sleep makes the event loop poll every
    descriptor, where sleep(0) only runs the queued callbacks."""
    import gevent
    now = time.monotonic()
    if now - _yielded[0] >= YIELD_EVERY:
        gevent.sleep(0.0005)
        _yielded[0] = time.monotonic()


def _pack_ahead(packer, full_sync, metrics) -> None:
    """The greenlet that packs answers ahead (dns/precompute.py) after every full sync, a
    short batch at a time. After each batch the sockets get their turn: gevent.idle() returns
    once the loop has polled them and run what they woke (queries, the sync's greenlet), so an
    etcd change waits for one batch at most (sleep(0) would not poll them: gevent runs its
    callbacks for up to its switch interval first; a timed sleep waits out the poll's
    millisecond resolution each time).
    When queries were answered meanwhile, the process's CPU time over that turn says how busy
    the server is, and the next batch waits so that packing takes only the idle share
    (precompute.pause_after). A new full sync starts it over on the new snapshot."""
    import gc

    import gevent
    from dnsdisco.dns.precompute import MIB, pause_after
    clock, cpu = time.monotonic, time.process_time
    while True:
        full_sync.wait()
        while packer.responder.provisional:    # a saved snapshot (--snapshot-file): nothing is cached from it
            gevent.sleep(0.1)                  # until the listing replaced it
        full_sync.clear()
        packer.begin()
        started = clock()
        seen = metrics.queries_answered()
        while True:
            began = clock()
            if not packer.step() or full_sync.is_set():
                break
            ended, gap_cpu = clock(), cpu()
            gevent.idle()
            answered = metrics.queries_answered()
            if answered != seen:                # queries came: wait by how busy that turn was
                seen = answered
                busy = (cpu() - gap_cpu) / max(clock() - ended, 1e-6)
                pause = pause_after(ended - began, busy)
                if pause:
                    gevent.sleep(pause)
        if packer.state == packer.DONE:
            gc.freeze()          # as after a full sync: collections need not walk these answers
            log.info("packed %d answers ahead (~%.1f MiB, stopped by %s) in %.1f s", packer.added,
                     packer.used / MIB, {"all": "the end of the list", "budget": "--precompute-budget",
                                         "cache": "7/8 of --cache-size"}[packer.why],
                     clock() - started)


def _waking(on_swap, event):
    """on_swap that also sets `event` after a full sync (touched None)."""
    def swapped(snap, touched):
        on_swap(snap, touched)
        if touched is None:
            event.set()
    return swapped


def _tsig_keys(cfg) -> dict:
    """The TSIG keys of --tsig-key-file and DNSDISCO_TSIG_KEYS; ValueError names what is wrong."""
    from dnsdisco.net import tsig
    keys = tsig.load_key_file(cfg.tsig_key_file) if cfg.tsig_key_file else {}
    if cfg.tsig_keys:
        for name, key in tsig.parse_keys(cfg.tsig_keys, "DNSDISCO_TSIG_KEYS").items():
            if name in keys:
                raise ValueError(f"TSIG key {name} is in both --tsig-key-file and DNSDISCO_TSIG_KEYS")
            keys[name] = key
    if cfg.transfer_require_tsig and not keys:
        raise ValueError("--transfer-require-tsig needs a key: give --tsig-key-file or DNSDISCO_TSIG_KEYS")
    return keys


def _transfers(cfg, responder, metrics) -> None:
    """Zone transfers: TSIG keys, --transfer-allow, the IXFR journal and NOTIFY (transfer.py)."""
    from dnsdisco.ops import logs
    from dnsdisco.net import tsig
    from dnsdisco.net.journal import Journal
    from dnsdisco.net.notify import Notifier
    from dnsdisco.net.transfer import Transfers
    import gevent
    keys = _tsig_keys(cfg)
    for secret in tsig.secrets_of(keys):
        logs.add_secret(secret)
    journal = Journal(*cfg.ixfr_journal_size) if cfg.transfer_allow or cfg.notify else None
    notifier = None
    if cfg.notify:
        notifier = Notifier(cfg.notify, lambda: responder.snapshot, key=next(iter(keys.values()), None),
                            metrics=metrics)
    responder.xfr = Transfers(allow=cfg.transfer_allow, keys=keys, require_tsig=cfg.transfer_require_tsig,
                              journal=journal, notifier=notifier, metrics=metrics, pause=_yield_to_io,
                              spawn=gevent.spawn)
    if cfg.transfer_allow or cfg.notify or keys:
        log.info("zone transfers: allowed from %s%s; %d TSIG key(s)%s; NOTIFY to %s",
                 ", ".join(map(str, cfg.transfer_allow)) or "nobody",
                 " with a TSIG key" if cfg.transfer_require_tsig else "", len(keys),
                 f" ({', '.join(k.to_text(omit_final_dot=True) for k in keys)})" if keys else "",
                 ", ".join(format_hostport(*t) for t in cfg.notify) or "nobody")


RESTART_MIN = 0.5     # first wait before the embedded etcd is started again
RESTART_MAX = 30.0    # waits double while it keeps dying, up to this
RESTART_STABLE = 60.0  # an etcd that ran this long starts the next restart from RESTART_MIN


def _supervise(embedded, metrics, stopping) -> None:
    """Start the embedded etcd again whenever it exits, with a doubling wait while it keeps
    dying. The sync loop notices the broken watch by itself and resumes from the last
    applied revision + 1, so nothing is lost; meanwhile answers come from the snapshot."""
    import gevent

    from dnsdisco.etcd.embedded import EmbeddedError
    delay = RESTART_MIN
    started = time.monotonic()
    while not stopping.is_set():
        code = embedded.proc.wait()          # cooperative under gevent
        if stopping.is_set():
            return
        if time.monotonic() - started >= RESTART_STABLE:
            delay = RESTART_MIN
        why = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        log.warning("embedded etcd (pid %d) ended (%s); starting it again in %gs (log: %s)",
                    embedded.pid, why, delay, embedded.log_path)
        metrics.embedded_restart()
        while not stopping.wait(delay):
            try:
                embedded.restart()
            except EmbeddedError as exc:
                delay = min(delay * 2, RESTART_MAX)
                log.error("embedded etcd did not start again: %s; next try in %gs", exc, delay)
                continue
            log.info("embedded etcd running again (pid %d) at %s", embedded.pid, embedded.endpoint)
            started = time.monotonic()
            delay = min(delay * 2, RESTART_MAX)
            break
        gevent.sleep(0)


def _upstreams(cfg) -> tuple[list, str]:
    """--forward's upstreams, or the one line that says why they cannot be used."""
    from dnsdisco.net.upstreams import parse_upstreams, self_loops
    try:
        upstreams = parse_upstreams(cfg.forward)
    except ValueError as exc:
        return [], f"--forward: {exc}"
    looped = self_loops(upstreams, cfg.listen)
    if looped:
        return [], (f"--forward {format_hostport(*looped[0])} is this server's own --listen address: "
                    "forwarding to it would loop")
    return upstreams, ""


def check_config(cfg, args=None) -> int:
    """`serve --check-config`: the checks start-up makes before it binds or connects anything
    (the settings were parsed by config.load already), then exit: 0 usable, 2 not."""
    from dnsdisco.dns.zonefile import ZoneFileError, served_zones
    try:
        served_zones(cfg)
    except ZoneFileError as exc:
        return fail("serve", str(exc), 2)
    if cfg.forward:
        _unused, problem = _upstreams(cfg)
        if problem:
            return fail("serve", problem, 2)
    try:
        _tsig_keys(cfg)
    except ValueError as exc:
        return fail("serve", str(exc), 2)
    problem = _snapshot_file_problem(cfg.snapshot_file)
    if problem:
        return fail("serve", problem, 2)
    origin = {}
    for name in cfg:
        origin.setdefault(cfg.source(name), []).append(name)
    given = ", ".join(f"{len(names)} from {where}" for where, names in sorted(origin.items())
                      if where != "default") or "all defaults"
    config = getattr(args, "config", None)
    print(f"dnsdisco serve: settings OK ({given}{f'; file {config}' if config else ''})")
    return 0


def _health_state(syncer):
    """What /readyz reads: the first full sync done, etcd answering, when it last did."""
    from types import SimpleNamespace
    state = syncer.state
    return SimpleNamespace(ready=syncer.ready.is_set(), connected=state.connected,
                           last_contact=state.last_contact, notes=syncer.hold_notes())


def _reload_config(args):
    """The serve settings read again: the same flags, the environment and config file as now."""
    from dnsdisco.config import load, options_for
    flags = {o.name: getattr(args, o.name, None) for o in options_for("serve")}
    return load("serve", flags, config_path=getattr(args, "config", None))


def _left(deadline: float, at_least: float) -> float:
    """Seconds until `deadline`, but never less than `at_least`."""
    return max(at_least, deadline - time.monotonic())



# Generation-1 collections per full collection once serving (CPython's default is 10). A full
# collection walks every reply the cache holds (100,000 at the default --cache-size) while
# answers wait, and finds nothing there: answering and applying changes make no cyclic garbage
# (tests/unit/dns/test_no_cycles.py). Young collections still run as often as before; the full
# one comes once per ~700,000 objects made and kept, not once per ~70,000.
FULL_COLLECTION_EVERY = 100


def _freezing(on_swap):
    """After a full sync, move what exists out of the garbage collector's sight (a full
    collection would walk every record of the snapshot while answers wait; frozen objects are
    not walked), make full collections rare (FULL_COLLECTION_EVERY), and hand the pages the
    listing used back to the system."""
    import gc

    from dnsdisco.etcd.heap import trim as trim_heap

    def swapped(snap, touched):
        on_swap(snap, touched)
        if touched is None:
            gc.freeze()
            young, middle, _full = gc.get_threshold()
            gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
            trim_heap()
    return swapped


def _reporting_caps(on_swap, metrics):
    """on_swap that also warns once per name over --max-records-per-name (again only after it
    was fixed) and counts it in the metrics."""
    from dnsdisco.dns.snapshot import MAX_RECORDS_PER_NAME
    warned: set[str] = set()

    def swapped(snap, touched):
        on_swap(snap, touched)
        capped = set(snap.capped)
        if touched is None:
            warned.intersection_update(capped)
        else:
            warned.difference_update(set(touched) - capped)
        for name in sorted(capped - warned):
            warned.add(name)
            zone = snap.zone_of(name)
            cap = zone.max_records_per_name if zone else MAX_RECORDS_PER_NAME
            log.warning("%s has %d instances, over the limit of %d (--max-records-per-name); "
                        "serving the first %d by key", name, len(snap.instance_names(name)), cap, cap)
            metrics.capped("records_per_name")
    return swapped


def _logging_handler(handle, query_log):
    """`--log-queries`: one line per query, at the cost of decoding the question."""
    from dnsdisco.dns.wire import parse_fast

    def logged(data, transport, client):
        started = time.perf_counter()
        replies = handle(data, transport, client)
        # a zone transfer is a list of messages: its first says the rcode
        reply = (replies[0] if replies else None) if isinstance(replies, list) else replies
        fq = parse_fast(data)
        if isinstance(fq, tuple) and reply is not None and len(reply) >= 4:
            qname = to_text(read_wire_name(fq[1], 0)[0])
            query_log(client, transport, qname, fq[2], reply[3] & 0xF, time.perf_counter() - started)
        return replies
    return logged

