"""The live service catalogue on `--http`: a read-only page at `/` and the same data as JSON.

  /                         the page (static HTML/JS/CSS from dnsdisco/static, no build step)
  /v1/status                sync state, revision, last change, query rate, zones, counts, and
                            `version`, which changes with every snapshot swap: a client polls
                            this small document and fetches the rest only when it changed
  /v1/services              services with their instances, a page at a time
                            (?q=SUBSTRING&offset=N&limit=N, default 100, at most 1000)
  /v1/services/<name>       one service with every served instance; 404 (JSON) if none
  /v1/skipped               etcd values skipped as invalid, with the reason (?offset, ?limit)

What the page calls a service is a name that answers with instances (DESIGN.md §3: the
value at the name and those one label below it): a name with records one label below it,
or a record stored right below a zone apex (a service of one). Instances are shown as the
DNS server serves them (--max-records-per-name applies) from the live snapshot, never from
etcd directly, so the page costs etcd nothing. An instance is listed while its key exists
in etcd: a registrar's lease expiry or failed health check deletes it, and the watch
removes it here too.

The page is read-only (GET and HEAD only) and renders every etcd-derived string as text
(textContent, never HTML), under a Content-Security-Policy that allows no inline script.
"""
from __future__ import annotations

import json
import logging
import os
import time
from bisect import bisect_left
from collections import deque
from importlib import resources
from typing import Callable
from urllib.parse import parse_qs

from dnsdisco.dns.names import BadName, normalize, parent
from dnsdisco.dns.records import shown_value
from dnsdisco.ops.status import record_types

DEFAULT_LIMIT = 100        # services per response unless ?limit= says otherwise
MAX_LIMIT = 1000
INSTANCES_IN_LIST = 100    # instances per service in /v1/services; /v1/services/<name> has all
RATE_WINDOW = 10.0         # seconds the query rate is averaged over

STATIC = {                 # path -> (file in dnsdisco/static, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
# no inline script or style, nothing from elsewhere: a value that slipped into the DOM as
# markup still could not run
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


# ---------------------------------------------------------------- pure part

def is_service(snap, name: str) -> bool:
    """Whether `name` is listed as a service (see the module notes)."""
    zone = snap.zone_of(name)
    if zone is None or name == zone.name:
        return False
    if snap.has_instances(name):
        return True
    return parent(name) == zone.name and snap.record_at(name) is not None


def service_names(snap) -> list[str]:
    """Every service of `snap`, sorted by name."""
    apexes = {zone.name for zone in snap.zones}
    candidates = set()
    for name in snap.parent_names():
        candidates.add(name)
        if name in apexes:
            candidates.update(snap.instance_names(name))
    return sorted(name for name in candidates if is_service(snap, name))


class ServiceIndex:
    """The sorted service names of the latest snapshot and their count per zone.

    A swap only notes the names it touched; the next reader re-judges just those (a bisect
    each), so a page open on 100,000 services does not re-sort them after every put. A
    full listing, a zone reload or a burst touching many names rebuilds it once instead.
    """

    def __init__(self) -> None:
        self.snapshot = None
        self._names: list[str] = []
        self._per_zone: dict[str, int] = {}
        self._pending: set[str] = set()
        self._rebuild = True

    def swapped(self, snap, touched) -> None:
        self.snapshot = snap
        if self._rebuild:
            return
        if touched is None:
            self._rebuild = True
            self._pending.clear()
            return
        self._pending.update(touched)
        if len(self._pending) > max(10000, len(self._names) // 4):
            self._rebuild = True
            self._pending.clear()

    def current(self) -> tuple[list[str], dict[str, int]]:
        """(sorted names, services per zone) of the latest snapshot; do not modify them."""
        snap = self.snapshot
        if snap is None:
            return [], {}
        if self._rebuild:
            self._names = service_names(snap)
            self._per_zone = {}
            for name in self._names:
                zone = snap.zone_of(name).name
                self._per_zone[zone] = self._per_zone.get(zone, 0) + 1
            self._rebuild = False
            self._pending.clear()
        elif self._pending:
            names, per_zone = self._names, self._per_zone
            for name in self._pending:
                i = bisect_left(names, name)
                listed = i < len(names) and names[i] == name
                if is_service(snap, name) == listed:
                    continue
                zone = snap.zone_of(name).name
                if listed:
                    del names[i]
                    per_zone[zone] -= 1
                else:
                    names.insert(i, name)
                    per_zone[zone] = per_zone.get(zone, 0) + 1
            self._pending.clear()
        return self._names, self._per_zone


def instance_entry(snap, service: str, rec, zone) -> dict:
    """One served record of `service` as plain data; `id` is "" for the value at the name itself."""
    ttl = rec.ttl if rec.ttl is not None else zone.ttl
    return {"id": rec.name[:-len(service) - 1] if rec.name != service else "", "name": rec.name,
            "host": rec.host, "kind": rec.host_kind, "port": rec.port, "priority": rec.priority,
            "weight": rec.weight, "ttl": ttl, "types": record_types(rec), "value": shown_value(rec),
            "text": rec.text, "mail": rec.mail, "group": rec.group, "key": snap.key_of(rec)}


def service_entry(snap, name: str, max_instances: int | None = None) -> dict:
    zone = snap.zone_of(name)
    served = snap.records_for(name, zone)
    shown = served if max_instances is None else served[:max_instances]
    return {"name": name, "zone": zone.name, "instance_count": len(served),
            "instances": [instance_entry(snap, name, rec, zone) for rec in shown]}


def skipped_entry(key: str, message: str) -> dict:
    reason = message[len(key) + 2:] if message.startswith(key + ": ") else message
    return {"key": key, "reason": reason}


def page_of(items: list, offset: int, limit: int) -> list:
    return items[offset:offset + limit]


class QueryRate:
    """Queries per second over about the last RATE_WINDOW seconds, from a growing total
    sampled whenever it is asked for (no timer: a server nobody looks at does no work)."""

    def __init__(self, now: float, total: int, window: float = RATE_WINDOW) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque([(now, total)])

    def observe(self, now: float, total: int) -> tuple[float | None, float]:
        """(queries per second or None, seconds it covers)."""
        samples = self.samples
        if now - samples[-1][0] >= 1.0:
            samples.append((now, total))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        since, before = samples[0]
        span = now - since
        if span <= 0:
            return None, 0.0
        return max(0, total - before) / span, span


def sync_state(ready: bool, state) -> tuple[str, str]:
    """(word, short sentence) for the page's badge; the error itself is given apart."""
    if not ready:
        return "starting", "waiting for the first full sync from etcd"
    if state is not None and not state.connected:
        return "stale", "etcd unreachable: serving the last snapshot"
    return "live", "following etcd's watch"


class BadRequest(ValueError):
    """A query parameter that cannot be used; the message names it."""


def int_param(params: dict, name: str, default: int, high: int) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {values[-1]!r}") from None
    if not 0 <= value <= high:
        raise BadRequest(f"{name} must be between 0 and {high}, got {value}")
    return value


# ---------------------------------------------------------------- the live part

class Catalogue:
    """The WSGI app behind `/` and `/v1/`; sees every snapshot swap through `tracking()`."""

    def __init__(self, metrics=None, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._metrics = metrics
        self._clock, self._wall = clock, wall
        self._boot = os.urandom(4).hex()       # versions of an earlier run never match
        self._swaps = 0
        self.snapshot = None
        self.changed_at: float | None = None   # wall time of the last swap
        self._syncer = None
        self._index = ServiceIndex()
        self._rate = QueryRate(clock(), self._queries())
        self._static = {path: _static_file(file, ctype) for path, (file, ctype) in STATIC.items()}

    # -- wiring

    def tracking(self, on_swap):
        """`on_swap` that records each new snapshot first."""
        def swapped(snap, touched):
            self.snapshot = snap
            self._index.swapped(snap, touched)
            self._swaps += 1
            self.changed_at = self._wall()
            on_swap(snap, touched)
        return swapped

    def follow(self, syncer) -> None:
        """Read the sync state and the skipped values from `syncer`."""
        self._syncer = syncer
        if self.snapshot is None:
            self.snapshot = syncer.current
            self._index.swapped(syncer.current, None)

    @property
    def version(self) -> str:
        return f"{self._boot}-{self._swaps}"

    def _queries(self) -> int:
        fn = getattr(self._metrics, "queries_answered", None)
        return fn() if fn is not None else 0

    def _skipped(self) -> list[tuple[str, str]]:
        skipped = getattr(self._syncer, "skipped", None) or {}
        return sorted(dict(skipped).items())

    # -- documents

    def status(self) -> dict:
        snap = self.snapshot
        syncer = self._syncer
        state = syncer.state if syncer is not None else None
        ready = bool(syncer is not None and syncer.ready.is_set())
        word, detail = sync_state(ready, state)
        names, per_zone = self._index.current()
        now, wall = self._clock(), self._wall()
        total = self._queries()
        rate, span = self._rate.observe(now, total)
        last_contact = state.last_contact if state is not None else None
        return {
            "version": self.version,
            "now": wall,
            "sync": {"state": word, "detail": detail, "error": state.error if state is not None else "",
                     "ready": ready,
                     "connected": bool(state and state.connected),
                     "revision": state.revision if state is not None else 0,
                     "snapshot_revision": snap.revision if snap is not None else 0,
                     "last_change": self.changed_at,
                     "seconds_since_change": None if self.changed_at is None else max(0.0, wall - self.changed_at),
                     "seconds_since_contact": None if last_contact is None else max(0.0, now - last_contact),
                     "resyncs": state.resyncs if state is not None else 0},
            "queries": {"total": total, "per_second": None if rate is None else round(rate, 1),
                        "window_seconds": round(span, 1)},
            "zones": [{"name": z.name, "ttl": z.ttl, "neg_ttl": z.neg_ttl, "services": per_zone.get(z.name, 0)}
                      for z in (snap.zones if snap is not None else ())],
            "counts": {"services": len(names), "records": snap.record_count if snap is not None else 0,
                       "skipped": len(getattr(syncer, "skipped", None) or ())},
        }

    def services(self, q: str, offset: int, limit: int) -> dict:
        snap = self.snapshot
        names, _ = self._index.current()
        q = q.strip().lower()
        matching = [name for name in names if q in name] if q else names
        return {"version": self.version, "revision": snap.revision if snap is not None else 0,
                "query": q, "total": len(matching), "offset": offset, "limit": limit,
                "services": [service_entry(snap, name, INSTANCES_IN_LIST)
                             for name in page_of(matching, offset, limit)]}

    def service(self, name: str) -> dict | None:
        snap = self.snapshot
        if snap is None or not is_service(snap, name):
            return None
        return {"version": self.version, "revision": snap.revision, **service_entry(snap, name)}

    def skipped(self, offset: int, limit: int) -> dict:
        items = self._skipped()
        return {"version": self.version, "total": len(items), "offset": offset, "limit": limit,
                "skipped": [skipped_entry(k, m) for k, m in page_of(items, offset, limit)]}

    # -- WSGI

    @staticmethod
    def handles(path: str) -> bool:
        return path in STATIC or path == "/v1" or path.startswith("/v1/")

    def __call__(self, environ, start_response):
        # PATH_INFO is the request's octets as latin-1 (PEP 3333); names are UTF-8
        path = environ.get("PATH_INFO", "").encode("latin-1", "replace").decode("utf-8", "replace")
        if path in STATIC:
            body, ctype = self._static[path]
            headers = [("Cache-Control", "no-cache")]
            if path == "/":
                headers += [("Content-Security-Policy", PAGE_POLICY), ("Referrer-Policy", "no-referrer")]
            return _respond(start_response, "200 OK", body, ctype, headers)
        params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        try:
            if path == "/v1/status":
                return _json(start_response, "200 OK", self.status(), cache="no-store")
            if path in ("/v1/services", "/v1/services/"):
                offset = int_param(params, "offset", 0, 10**9)
                limit = int_param(params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
                q = (params.get("q") or [""])[-1]
                return self._versioned(environ, start_response, lambda: self.services(q, offset, limit))
            if path.startswith("/v1/services/"):
                raw = path[len("/v1/services/"):]
                try:
                    name = normalize(raw)
                except BadName as exc:
                    return _json(start_response, "400 Bad Request", {"error": str(exc)})
                found = self.service(name) if name else None
                if found is None:
                    return _json(start_response, "404 Not Found",
                                 {"error": f"no service named {name or raw!r}", "name": name or raw})
                return self._versioned(environ, start_response, lambda: found)
            if path == "/v1/skipped":
                offset = int_param(params, "offset", 0, 10**9)
                limit = int_param(params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
                return self._versioned(environ, start_response, lambda: self.skipped(offset, limit))
        except BadRequest as exc:
            return _json(start_response, "400 Bad Request", {"error": str(exc)})
        return _json(start_response, "404 Not Found",
                     {"error": f"no such endpoint {path!r}",
                      "endpoints": ["/v1/status", "/v1/services", "/v1/services/<name>", "/v1/skipped"]})

    def _versioned(self, environ, start_response, build):
        """A document that changes only with the snapshot: 304 for a client that has it."""
        etag = f'"{self.version}"'
        if environ.get("HTTP_IF_NONE_MATCH") == etag:
            start_response("304 Not Modified", [("ETag", etag), ("Cache-Control", "no-cache")])
            return [b""]
        return _json(start_response, "200 OK", build(), cache="no-cache", extra=[("ETag", etag)])


def _static_file(file: str, ctype: str) -> tuple[bytes, str]:
    """A file of dnsdisco/static; an install without them still serves the JSON endpoints."""
    try:
        return resources.files(__package__).joinpath("static", file).read_bytes(), ctype
    except OSError as exc:
        logging.getLogger("dnsdisco.http").error("catalogue page file %s missing from the installed package (%s); "
                                                 "the /v1/ endpoints still work", file, exc)
        return (f"dnsdisco: the catalogue page's file {file} is missing from this installation; "
                "reinstall dnsdisco. The JSON endpoints under /v1/ work.\n").encode(), "text/plain; charset=utf-8"


def _json(start_response, status: str, doc: dict, cache: str = "no-store", extra=()):
    body = json.dumps(doc, separators=(",", ":")).encode()   # ASCII only: \\u escapes
    return _respond(start_response, status, body, "application/json", [("Cache-Control", cache), *extra])


def _respond(start_response, status: str, body: bytes, ctype: str, headers=()):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                            ("X-Content-Type-Options", "nosniff"), *headers])
    return [body]

