"""The upstream list of the forwarder: `--forward` items and resolv.conf files, read once here.

Pure (files, no sockets). `read_resolv_conf` is the one resolv.conf reader: `--forward
resolv.conf:PATH` and the Python API's `resolve_srv` both take their nameservers from it.

Self-loops: an upstream list that points at our own listen address makes every forwarded
query loop until it times out. The forwarder cannot know where the server listens; the
caller checks with `self_loops(upstreams, listens)` before serving.
"""
from __future__ import annotations

import ipaddress

from dnsdisco.dns.names import is_address, parse_address_port

DEFAULT_PORT = 53
RESOLV_CONF = "/etc/resolv.conf"


def parse_upstream(item: str) -> list[tuple[str, int]]:
    """One `--forward` item: `1.2.3.4`, `1.2.3.4:5353`, `[::1]:53`, `::1` or `resolv.conf:PATH`."""
    text = str(item).strip()
    if text.startswith("resolv.conf:"):
        path = text[len("resolv.conf:"):]
        if not path:
            raise ValueError(f"{text!r}: give a path, e.g. resolv.conf:/etc/resolv.conf")
        return read_resolv_conf(path)
    if not text:
        raise ValueError("empty upstream")
    if ":" in text and not text.startswith("[") and text.count(":") > 1 and is_address(text):
        return [(text, DEFAULT_PORT)]       # a bare IPv6 address: no port can be meant
    host, port = parse_address_port(
        text, DEFAULT_PORT, hint="an upstream is an IP address (optionally :PORT, [IPv6]:PORT) or "
        "resolv.conf:PATH; names are not resolved, to avoid asking ourselves")
    if port == 0:
        raise ValueError(f"{text!r}: port 0 cannot be asked")
    return [(host, port)]


def parse_upstreams(items: list[str]) -> list[tuple[str, int]]:
    """All `--forward` items (commas allowed inside an item), in order, without duplicates."""
    result: list[tuple[str, int]] = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                for upstream in parse_upstream(part):
                    if upstream not in result:
                        result.append(upstream)
    return result


def read_resolv_conf(path: str = RESOLV_CONF) -> list[tuple[str, int]]:
    """The `nameserver` addresses of a resolv.conf file, port 53, in order, once each.
    ValueError naming the file when it cannot be read or lists no address."""
    where = f"resolv.conf:{path}"
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise ValueError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{where}: is a directory, not a resolv.conf file") from None
    except PermissionError:
        raise ValueError(f"{where}: permission denied") from None
    except OSError as exc:
        raise ValueError(f"{where}: cannot read: {exc.strerror or exc}") from None
    found: list[tuple[str, int]] = []
    skipped: list[str] = []
    for line in lines:
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            if is_address(words[1]):
                if (words[1], DEFAULT_PORT) not in found:
                    found.append((words[1], DEFAULT_PORT))
            else:
                skipped.append(words[1])
    if not found:
        extra = f" (not IP addresses: {', '.join(skipped)})" if skipped else ""
        raise ValueError(f"{where}: no 'nameserver ADDRESS' lines{extra}")
    return found


def self_loops(upstreams: list[tuple[str, int]], listens: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Upstreams that are one of our own listen addresses (forwarding to them would loop)."""
    loops = []
    for host, port in upstreams:
        up = _ip(host)
        for lhost, lport in listens:
            if lport != port:
                continue
            listen = _ip(lhost) if lhost != "localhost" else ipaddress.ip_address("127.0.0.1")
            if listen is None or up is None:
                continue
            if listen == up or (listen.is_unspecified and listen.version == up.version and up.is_loopback):
                loops.append((host, port))
                break
    return loops


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
