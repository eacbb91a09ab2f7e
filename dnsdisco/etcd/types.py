"""The parts of the etcd adapter that need no gRPC: its exceptions, WatchBatch, and the check
of its settings (endpoint URLs, TLS files, user and password).

`etcd/client.py` builds on these and re-exports them. Code that only handles the adapter's
results and errors, or checks its settings, imports them from here, so that importing it does
not load gRPC: `serve`'s main process never does (its list and watch run in the helper process
of etcd/helper.py, which imports etcd.client).
"""
from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit


class EtcdError(Exception):
    """Base of every error this adapter raises."""


class EtcdUnavailable(EtcdError):
    """No endpoint answered in time; the message names the endpoints and the last error."""


class Compacted(EtcdError):
    """The requested revision is compacted away: re-list. `.compact_revision` may be 0 if
    etcd did not say which revision it compacted to."""

    def __init__(self, compact_revision: int, message: str | None = None):
        self.compact_revision = compact_revision
        super().__init__(message or f"etcd history is compacted up to revision {compact_revision}")


class EtcdAuthError(EtcdError):
    """etcd rejected the credentials or denied the operation."""


class EtcdTooLarge(EtcdError):
    """A response over the gRPC receive limit (a list page of very large values)."""


class EtcdConfigError(EtcdError, ValueError):
    """An endpoint URL or TLS setting that cannot be used; the message names it."""


class WatchBatch(NamedTuple):
    """One step of a watch.

    `revision`: every change up to and including it has been delivered, so a watch resumed
    at revision + 1 misses nothing. `events`: (key, value) in etcd order, value None for a
    delete. A batch without events is a progress or liveness signal.
    """
    revision: int
    events: list[tuple[str, bytes | None]]


def range_end(prefix: bytes) -> bytes:
    """The smallest key after every key that starts with prefix (etcd's prefix range end)."""
    end = bytearray(prefix)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"  # empty or all-0xff prefix: to the end of the key space


def read_pem(path: str, what: str) -> bytes:
    """The PEM file at `path`; `what` names it in the error (a flag, or "the etcd CA file")."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise EtcdConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise EtcdConfigError(f"{what} {path} is not a PEM file")
    return data


def parse_endpoint(url: str) -> tuple[str, str]:
    """(url, target) of one member: `url` with scheme and port made explicit
    ("http://HOST:2379" for "HOST"), `target` the HOST:PORT gRPC dials."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EtcdConfigError(f"etcd endpoint {url!r}: expected http://HOST:PORT or https://HOST:PORT")
    try:
        port = parts.port or 2379
    except ValueError:
        raise EtcdConfigError(f"etcd endpoint {url!r}: bad port") from None
    host = parts.hostname
    target = f"{'[' + host + ']' if ':' in host else host}:{port}"
    return f"{parts.scheme}://{target}", target


def tls_pems(ca: str | None, cert: str | None, key: str | None) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(CA, client key, client certificate) read from their PEM files (None where not given)."""
    return (read_pem(ca, "the etcd CA file") if ca else None,
            read_pem(key, "the etcd client key file") if key else None,
            read_pem(cert, "the etcd client certificate file") if cert else None)


def needs_tls(settings: dict) -> bool:
    """Whether a KV with these settings talks TLS (TLS files given or an https:// endpoint)."""
    return (settings["ca"] is not None or settings["cert"] is not None
            or any(e.startswith("https://") for e in settings["endpoints"]))


def check_settings(endpoints: list[str] | str, *, timeout: float = 5.0,
                   ca: str | None = None, cert: str | None = None, key: str | None = None,
                   user: str | None = None, password: str | None = None) -> dict:
    """The settings of a KV (`KV(**settings)`), checked as KV checks them, without gRPC:
    endpoints (a list, or a comma-separated string) and their URLs, TLS files readable and
    PEM, certificate with key, user with password. Raises EtcdConfigError naming what
    cannot work."""
    return checked_settings(endpoints, timeout=timeout, ca=ca, cert=cert, key=key, user=user,
                            password=password)[0]


def checked_settings(endpoints: list[str] | str, *, timeout: float = 5.0,
                     ca: str | None = None, cert: str | None = None, key: str | None = None,
                     user: str | None = None, password: str | None = None):
    """check_settings, and the TLS files it read to check them: (settings, (CA, client key,
    client certificate) or None without TLS), so a KV reads each file once."""
    if isinstance(endpoints, str):
        endpoints = [e for e in endpoints.split(",")]
    endpoints = [e.strip() for e in endpoints if e and e.strip()]
    if not endpoints:
        raise EtcdConfigError("no etcd endpoint given")
    if (cert is None) != (key is None):
        raise EtcdConfigError("the etcd client certificate and key must be given together")
    if (user is None) != (password is None):
        raise EtcdConfigError("an etcd user needs a password (and a password needs a user)")
    settings = dict(endpoints=endpoints, timeout=timeout, ca=ca, cert=cert, key=key,
                    user=user, password=password)
    pems = tls_pems(ca, cert, key) if needs_tls(settings) else None
    if ca is not None or cert is not None:
        plain = [e for e in endpoints if not e.startswith("https://")]
        if plain:
            raise EtcdConfigError(f"TLS files are given but etcd endpoint {plain[0]!r} is "
                                  "not https://")
    settings["timeout"] = float(timeout)
    for e in endpoints:
        parse_endpoint(e)
    return settings, pems
