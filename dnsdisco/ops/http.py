"""HTTP endpoints for operators: /metrics, /healthz and /readyz on `--http HOST:PORT`.

`readiness()` is the pure rule; `start_http()` serves it with gevent's WSGI server in the
same process as the DNS listeners. The endpoints only read state, so a scrape or a probe
never delays a DNS answer by more than the time to render the metrics.

- /healthz: 200 "ok" while the process runs (liveness).
- /readyz:  503 until the first full sync from etcd; 503 while etcd has been unreachable
            for longer than --max-stale seconds (DNS answers still come from the last
            snapshot all the same); 200 otherwise. The body says why, in one line.
- /metrics: the Prometheus text format of the Metrics registry.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from gevent.pywsgi import WSGIServer

from dnsdisco.dns.names import format_hostport
from dnsdisco.ops.metrics import Metrics, NullMetrics


def readiness(ready: bool, connected: bool, last_contact: float | None, now: float,
              max_stale: float) -> tuple[bool, str]:
    """(ready?, reason) from the sync state; `last_contact`/`now` are monotonic seconds."""
    if not ready:
        return False, "not ready: waiting for the first full sync from etcd"
    if connected:
        return True, "ok"
    if last_contact is None:
        return False, "etcd unreachable since start-up; answering from the last snapshot"
    away = max(0.0, now - last_contact)
    if away > max_stale:
        return False, (f"etcd unreachable for {away:.0f}s, longer than max-stale {max_stale:g}s; "
                       "answering from the last snapshot")
    return True, f"ok: etcd unreachable for {away:.0f}s, within max-stale {max_stale:g}s"


def _flag(value: Any) -> bool:
    """A bool, or an Event (threading/gevent) whose truth is `is_set()`, not the object's."""
    is_set = getattr(value, "is_set", None)
    return bool(is_set()) if callable(is_set) else bool(value)


class HttpEndpoints:
    """The running HTTP server; `address` is the bound (host, port), port 0 resolved."""

    def __init__(self, server: WSGIServer) -> None:
        self._server = server

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.address[:2]
        return host, port

    @property
    def port(self) -> int:
        return self._server.address[1]

    def stop(self, timeout: float = 1.0) -> None:
        self._server.stop(timeout=timeout)


def make_app(metrics: Metrics | NullMetrics, state_fn: Callable[[], Any], max_stale: float,
             log: logging.Logger, clock: Callable[[], float] = time.monotonic, pages=None):
    """The WSGI application behind the endpoints (separate from the server for testing).
    `pages`, if given, is a WSGI app with `handles(path)` (the catalogue) that serves its paths."""

    def respond(start_response, status: str, body: bytes, content_type: str = "text/plain; charset=utf-8"):
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store")])
        return [body]

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return respond(start_response, "405 Method Not Allowed", b"use GET\n")
        if pages is not None and pages.handles(path):
            return pages(environ, start_response)
        if path == "/healthz":
            return respond(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            try:
                state = state_fn()
                ok, reason = readiness(_flag(getattr(state, "ready", False)),
                                       _flag(getattr(state, "connected", False)),
                                       getattr(state, "last_contact", None), clock(), max_stale)
                for note in getattr(state, "notes", None) or ():     # e.g. the mass-expiry guard's hold
                    reason += "\n" + note
            except Exception:  # a bug in the state source must not look like readiness
                log.exception("cannot read the sync state for /readyz")
                ok, reason = False, "not ready: the sync state cannot be read (see the log)"
            return respond(start_response, "200 OK" if ok else "503 Service Unavailable",
                           reason.encode() + b"\n")
        if path == "/metrics":
            try:
                body = metrics.render()
            except Exception:
                log.exception("cannot render the metrics")
                return respond(start_response, "500 Internal Server Error", b"metrics failed (see the log)\n")
            return respond(start_response, "200 OK", body, metrics.content_type)
        if path == "/":
            return respond(start_response, "200 OK", b"dnsdisco: /metrics /healthz /readyz\n")
        return respond(start_response, "404 Not Found", b"not found: try %s/metrics, /healthz or /readyz\n"
                       % (b"/ (the catalogue), " if pages is not None else b""))

    return app


def start_http(address: tuple[str, int], metrics: Metrics | NullMetrics, state_fn: Callable[[], Any],
               max_stale: float, log: logging.Logger | None = None, pages=None) -> HttpEndpoints:
    """Bind `address` now (raising OSError with the address if it cannot) and serve in greenlets.

    `state_fn()` returns an object with `ready` (bool or Event), `connected` (bool) and
    `last_contact` (time.monotonic() of the last answer from etcd, or None).
    """
    log = log or logging.getLogger("dnsdisco.http")
    app = make_app(metrics, state_fn, max_stale, log, pages=pages)
    # log=None: no access log line per scrape; errors go to our logger.
    server = WSGIServer(address, app, log=None, error_log=log)
    try:
        server.start()
    except OSError as exc:
        raise OSError(exc.errno, f"--http {format_hostport(*address)}: cannot listen: {exc.strerror or exc}") from None
    endpoints = HttpEndpoints(server)
    host, port = endpoints.address
    log.info("serving /metrics, /healthz and /readyz%s", " and the catalogue page at /" if pages is not None else "",
             extra={"fields": {"http": format_hostport(host, port)}})
    return endpoints
