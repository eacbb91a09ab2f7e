"""Prometheus metrics of a running dnsdisco, on a registry of its own.

Other modules report events through the methods of `Metrics` (or `NullMetrics`, which
does nothing, when `--http` is off or in tests). The query path calls `query()` for
every query, so its counters are plain integers in cells bound once per (transport,
qtype, rcode) and read by a collector at scrape time: a repeated query costs three dict
lookups and a few integer additions, no lock and no allocation. Rarer events use
prometheus-client children bound once and kept in dicts.

Label values come from small closed sets (qtype and rcode names, "udp"/"tcp", reason
words chosen by the code, configured upstreams); nothing a client or an etcd value
controls becomes a label, so a hostile peer cannot grow the number of series.
Unknown qtypes and rcodes are counted as "other".

Metric names (all prefixed `dnsdisco_`):
  queries_total{qtype,rcode,transport}   answered queries
  cache_hits_total                        queries answered from the packed-reply cache
  answer_seconds                          histogram of the time to answer one query
  dropped_total{reason}                   packets not answered (garbage, responses, rrl...)
  handler_errors_total                    unexpected exceptions in the query path
  bad_values_total                        etcd values skipped as invalid
  records                                 records in the live snapshot
  cached_questions                        questions with packed replies in the cache (--cache-size)
  precomputed_answers                     answers packed ahead since the last full sync (--precompute-budget)
  precomputed_bytes                       their estimated octets
  precompute_running                      1 while answers are being packed ahead
  etcd_watch_connected                    1 while the etcd watch stream is up
  etcd_revision                           etcd revision of the live snapshot
  resyncs_total{reason}                   full re-lists of the prefix
  tcp_connections                         open TCP connections
  forwarded_total{upstream,result}        forwarded queries, result "ok" or "error"
  upstream_failures_total{upstream}       failed attempts to reach an upstream
  rrl_total{action}                       rate-limited responses, action "drop" or "slip"
  capped_total{kind}                      hostile-data caps applied (oversize value, ...)
  build_info{version}                     always 1
  transfers_total{kind,result}            zone transfer requests (axfr, ixfr, ...) by result
  notifies_total{result}                  NOTIFYs to secondaries: sent, acked, failed
  journal_entries, journal_bytes, journal_revisions   the IXFR journal's size and span
plus the process_* and python_* metrics of prometheus-client.
"""
from __future__ import annotations

from bisect import bisect_left as _bisect_left

import dnslib
from prometheus_client import (CollectorRegistry, Counter, Gauge, PlatformCollector, ProcessCollector,
                               generate_latest)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from dnsdisco import __version__

NAMESPACE = "dnsdisco"

QTYPE_NAMES: dict[int, str] = {code: name for code, name in dnslib.QTYPE.forward.items()}
RCODE_NAMES: dict[int, str] = {code: name for code, name in dnslib.RCODE.forward.items()}
RCODE_NAMES.update({16: "BADVERS", 23: "BADCOOKIE"})  # extended rcodes (RFC 6891, 7873)
OTHER = -1  # key of every qtype/rcode that has no name

# Answers from memory and forwarded answers differ by orders of magnitude: the buckets span both.
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                   0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _QueryCounts:
    """The per-query counters as plain integers, turned into metric families at scrape time.

    prometheus-client takes a lock on every increment, which costs more than the rest of a
    cache-hit answer under gevent; here the query path only adds to list cells. That is exact
    with gevent (the query path runs in one OS thread and never yields mid-increment); were
    several OS threads to report queries at once, a rare count could be lost, never corrupted.
    """

    def __init__(self) -> None:
        # transport -> qtype -> rcode -> [queries, cache hits]; unnamed codes share OTHER.
        self.cells: dict[str, dict[int, dict[int, list[int]]]] = {}
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # last: above every bound
        self.latency_sum = 0.0

    def bind(self, qtype: int, rcode: int, transport: str) -> list[int]:
        # An unnamed qtype or rcode is not added as a key of its own, so a client cycling
        # through all 65536 types cannot grow these dicts; it takes this slower path instead.
        qkey = qtype if qtype in QTYPE_NAMES else OTHER
        rkey = rcode if rcode in RCODE_NAMES else OTHER
        by_rcode = self.cells.setdefault(transport, {}).setdefault(qkey, {})
        return by_rcode.setdefault(rkey, [0, 0])

    def describe(self):
        return list(self._families())

    def collect(self):
        return list(self._families())

    def _families(self):
        queries = CounterMetricFamily(f"{NAMESPACE}_queries", "DNS queries answered, by question "
                                      "type, response code and transport", labels=("qtype", "rcode", "transport"))
        hits = CounterMetricFamily(f"{NAMESPACE}_cache_hits", "queries answered from the packed-reply cache")
        total_hits = 0
        for transport, by_qtype in list(self.cells.items()):
            for qtype, by_rcode in list(by_qtype.items()):
                for rcode, (count, cache_hits) in list(by_rcode.items()):
                    queries.add_metric((QTYPE_NAMES.get(qtype, "other"), RCODE_NAMES.get(rcode, "other"),
                                        transport), count)
                    total_hits += cache_hits
        hits.add_metric((), total_hits)
        cumulative, buckets = 0, []
        for bound, count in zip((*map(floatToGoString, LATENCY_BUCKETS), "+Inf"), list(self.latency_counts)):
            cumulative += count
            buckets.append((bound, cumulative))
        latency = HistogramMetricFamily(f"{NAMESPACE}_answer_seconds", "time from receiving a query "
                                        "to having its reply (a repeat of an identical query is timed 1 in 16)", buckets=buckets, sum_value=self.latency_sum)
        return [queries, hits, latency]


class _Bound:
    """A counter family with one free label whose children are bound once, then looked up."""

    __slots__ = ("_family", "_fixed", "_children")

    def __init__(self, family: Counter, *fixed: str) -> None:
        self._family, self._fixed, self._children = family, fixed, {}

    def inc(self, value: str) -> None:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = self._family.labels(value, *self._fixed)
        child.inc()


class Metrics:
    """Every metric dnsdisco exports, registered on `self.registry` (not the global one)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, process_metrics: bool = True) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)

        def counter(name, doc, labels=()):
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=registry)

        def gauge(name, doc, labels=()):
            return Gauge(name, doc, labels, namespace=NAMESPACE, registry=registry)

        self._hot = _QueryCounts()
        registry.register(self._hot)
        self._dropped = _Bound(counter("dropped", "packets not answered, by reason", ("reason",)))
        self._handler_errors = counter("handler_errors", "unexpected errors while answering a query")
        self._bad_values = counter("bad_values", "etcd values skipped because they are not valid records")
        self._records = gauge("records", "records in the live snapshot")
        self._held = gauge("held_records", "records deleted in etcd but still served by the mass-expiry guard")
        self._holds = counter("expiry_holds", "times the mass-expiry guard began holding a zone's deleted records")
        self._watch_connected = gauge("etcd_watch_connected", "1 while the etcd watch stream is connected")
        self._revision = gauge("etcd_revision", "etcd revision of the live snapshot")
        self._resyncs = _Bound(counter("resyncs", "full re-lists of the etcd prefix, by reason", ("reason",)))
        self._tcp_connections = gauge("tcp_connections", "open TCP client connections")
        forwarded = counter("forwarded", "queries forwarded upstream, by upstream and result",
                            ("upstream", "result"))
        self._forwarded_ok = _Bound(forwarded, "ok")
        self._forwarded_error = _Bound(forwarded, "error")
        self._upstream_failures = _Bound(counter("upstream_failures", "failed attempts to reach an upstream",
                                                 ("upstream",)))
        self._rrl = _Bound(counter("rrl", "responses limited by response rate limiting, by action", ("action",)))
        self._capped = _Bound(counter("capped", "hostile-data caps applied, by kind", ("kind",)))
        self._embedded_restarts = counter("embedded_etcd_restarts", "times the embedded etcd that serve "
                                          "started exited and was started again")
        gauge("build_info", "dnsdisco version", ("version",)).labels(__version__).set(1)
        # zone transfers (transfer.py, notify.py, journal.py): labels are words chosen by the code
        self._transfers = counter("transfers", "zone transfer requests answered, by kind (axfr, ixfr, "
                                  "ixfr_full, ixfr_current, tsig_query) and result", ("kind", "result"))
        self._notifies = _Bound(counter("notifies", "NOTIFY messages to secondaries, by result "
                                        "(sent, acked, failed)", ("result",)))
        self._journal_entries = gauge("journal_entries", "IXFR journal entries held")
        self._journal_bytes = gauge("journal_bytes", "octets of RRsets the IXFR journal holds")
        self._journal_span = gauge("journal_revisions", "etcd revisions the IXFR journal spans")

        # Bound methods and cells of the query path, looked up once here.
        self._cells = self._hot.cells
        self._bind_query = self._hot.bind
        self._latency_counts = self._hot.latency_counts

    # ------------------------------------------------------------ the query path

    def query(self, qtype: int, rcode: int, transport: str, seconds: float | None,
              cache_hit: bool) -> None:
        """Count one answered query; `seconds` None means its latency was not measured."""
        cell = self.cell_for(qtype, rcode, transport)
        cell[0] += 1
        if cache_hit:
            cell[1] += 1
        if seconds is not None:
            self.latency(seconds)

    def cell_for(self, qtype: int, rcode: int, transport: str) -> list[int]:
        """The [queries, cache hits] counters of one kind of answer, for a caller that answers
        that kind again and again (the exact-query table) to add to directly."""
        try:
            return self._cells[transport][qtype][rcode]
        except KeyError:
            return self._bind_query(qtype, rcode, transport)

    def queries_answered(self) -> int:
        """Every query counted so far, all kinds together (the catalogue page's query rate)."""
        return sum(cell[0] for by_qtype in list(self._cells.values()) for by_rcode in list(by_qtype.values())
                   for cell in list(by_rcode.values()))

    def latency(self, seconds: float) -> None:
        """One latency sample for the histogram (repeats are timed 1 in 16)."""
        self._latency_counts[_bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._hot.latency_sum += seconds

    # ------------------------------------------------------------ everything else

    def dropped(self, reason: str) -> None:
        self._dropped.inc(reason)

    def handler_error(self) -> None:
        self._handler_errors.inc()

    def bad_value(self, key: str) -> None:
        """Count a skipped etcd value (the caller logs the key; it is never a label)."""
        self._bad_values.inc()

    def records(self, n: int) -> None:
        self._records.set(n)

    def watch(self, connected: bool, revision: int) -> None:
        self._watch_connected.set(1 if connected else 0)
        self._revision.set(revision)

    def resync(self, reason: str) -> None:
        self._resyncs.inc(reason)

    def tcp_connections(self, delta: int) -> None:
        self._tcp_connections.inc(delta)

    def forwarded(self, upstream: str, ok: bool) -> None:
        (self._forwarded_ok if ok else self._forwarded_error).inc(upstream)

    def upstream_failure(self, upstream: str) -> None:
        self._upstream_failures.inc(upstream)

    def rrl(self, action: str) -> None:
        self._rrl.inc(action)

    def capped(self, kind: str) -> None:
        self._capped.inc(kind)

    def transfer(self, kind: str, result: str) -> None:
        self._transfers.labels(kind, result).inc()

    def notify(self, result: str) -> None:
        self._notifies.inc(result)

    def journal(self, entries: int, octets: int, revisions: int) -> None:
        self._journal_entries.set(entries)
        self._journal_bytes.set(octets)
        self._journal_span.set(revisions)

    def expiry_hold(self, held: int, begun: int = 0) -> None:
        """The mass-expiry guard's records held now, and holds begun since the last call."""
        self._held.set(held)
        if begun:
            self._holds.inc(begun)

    def embedded_restart(self) -> None:
        self._embedded_restarts.inc()

    def track_cache(self, size) -> None:
        """Read the reply cache's size at scrape time (`size()`), not on the query path."""
        Gauge("cached_questions", "questions with packed replies in the cache (at most --cache-size)",
              namespace=NAMESPACE, registry=self.registry).set_function(size)

    def track_precompute(self, added, octets, running) -> None:
        """Read the packing ahead's progress at scrape time (each argument a function)."""
        for name, doc, read in (
                ("precomputed_answers", "answers packed ahead in idle time since the last full sync", added),
                ("precomputed_bytes", "estimated octets of the answers packed ahead", octets),
                ("precompute_running", "1 while answers are being packed ahead, 0 when done or off", running)):
            Gauge(name, doc, namespace=NAMESPACE, registry=self.registry).set_function(read)

    # ------------------------------------------------------------ exposition

    def render(self) -> bytes:
        """The registry in the Prometheus text format (what /metrics serves)."""
        return generate_latest(self.registry)


class NullMetrics:
    """The same methods as `Metrics`, doing nothing: for `--http off` and for tests."""

    content_type = CONTENT_TYPE_LATEST

    def query(self, qtype: int, rcode: int, transport: str, seconds: float | None,
              cache_hit: bool) -> None:
        pass

    def cell_for(self, qtype: int, rcode: int, transport: str) -> list[int]:
        return [0, 0]

    def queries_answered(self) -> int:
        return 0

    def latency(self, seconds: float) -> None:
        pass

    def dropped(self, reason: str) -> None:
        pass

    def handler_error(self) -> None:
        pass

    def bad_value(self, key: str) -> None:
        pass

    def records(self, n: int) -> None:
        pass

    def watch(self, connected: bool, revision: int) -> None:
        pass

    def resync(self, reason: str) -> None:
        pass

    def tcp_connections(self, delta: int) -> None:
        pass

    def forwarded(self, upstream: str, ok: bool) -> None:
        pass

    def upstream_failure(self, upstream: str) -> None:
        pass

    def rrl(self, action: str) -> None:
        pass

    def capped(self, kind: str) -> None:
        pass

    def expiry_hold(self, held: int, begun: int = 0) -> None:
        pass

    def embedded_restart(self) -> None:
        pass

    def track_cache(self, size) -> None:
        pass

    def track_precompute(self, added, octets, running) -> None:
        pass

    def render(self) -> bytes:
        return b""

    def transfer(self, kind: str, result: str) -> None:
        pass

    def notify(self, result: str) -> None:
        pass

    def journal(self, entries: int, octets: int, revisions: int) -> None:
        pass
