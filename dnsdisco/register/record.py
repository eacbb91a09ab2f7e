"""The record a registration writes: its JSON value, its instance id, the address it
publishes, its TTLs, and the checks of the settings that make them.

`dnsdisco register`, the Python API and the option table read these; the registrar
(registrar.py) only holds the finished key and value in etcd.
"""
from __future__ import annotations

import ipaddress
import json
import re
import socket

MIN_TTL = 2  # etcd's minimum lease TTL is about 2 s


def record_value(host: str, port: int | None = None, *, priority: int | None = None,
                 weight: int | None = None, text: str | None = None, ttl: int | None = None) -> bytes:
    """The JSON value of DESIGN.md section 2 with only the fields that are set."""
    value: dict = {"host": host}
    if port:
        value["port"] = int(port)
    if priority is not None:
        value["priority"] = int(priority)
    if weight is not None:
        value["weight"] = int(weight)
    if text:
        value["text"] = text
    if ttl is not None:
        value["ttl"] = int(ttl)
    return json.dumps(value, separators=(",", ":")).encode()


_NOT_LABEL = re.compile(r"[^a-z0-9-]+")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def sanitize_label(text: str) -> str:
    """Any text → one DNS label (lower case letters, digits, inner dashes, ≤ 63)."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-")
    label = re.sub(r"-{2,}", "-", label)[:63].strip("-")
    return label or "instance"


def default_id(port: int, hostname: str | None = None) -> str:
    """A stable instance id from the host name and the port: `web1-8080`."""
    host = (hostname if hostname is not None else socket.gethostname()).split(".")[0]
    return sanitize_label(f"{host}-{port}")


def check_id(instance_id: str) -> str:
    """Validate an explicit --id: one DNS label (it becomes `<id>.<name>`)."""
    label = instance_id.strip().lower()
    if not _LABEL.match(label):
        raise ValueError(f"instance id {instance_id!r} is not a DNS label (letters, digits, '-', "
                         "'_', at most 63 characters, no dots)")
    return label


def check_host(host: str) -> str:
    """An IPv4/IPv6 address (A/AAAA) or a host name, judged by the code serve uses
    (records.classify_host), so an address serve would skip is refused here."""
    from dnsdisco.dns.records import BadValue, classify_host
    try:
        value, _kind = classify_host("", str(host))
    except BadValue as exc:
        raise ValueError(str(exc).removeprefix(": ")) from None
    if not value:
        raise ValueError("an empty address")
    return value


def default_dns_ttl(lease: int) -> int:
    """The DNS TTL a registrar writes when none is chosen: half the lease, at least 1 s, so a
    cache holds a dead instance at most half as long again as etcd does."""
    return max(1, int(lease) // 2)


def lease_ttl(text) -> int:
    try:
        ttl = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number of seconds") from None
    if ttl < MIN_TTL:
        raise ValueError(f"{ttl} is below {MIN_TTL} seconds, etcd's minimum lease TTL")
    if ttl > 2**31 - 1:
        raise ValueError(f"{ttl} is too large")
    return ttl


def primary_address() -> str | None:
    """The address this host would use to reach the outside, else None.

    Connecting a UDP socket only picks a route; nothing is sent.
    """
    for family, target in ((socket.AF_INET, ("192.0.2.1", 9)), (socket.AF_INET6, ("2001:db8::1", 9))):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(target)
                addr = ipaddress.ip_address(s.getsockname()[0])
        except (OSError, ValueError):
            continue
        if not (addr.is_loopback or addr.is_unspecified or addr.is_link_local):
            return str(addr)
    try:
        _, _, addrs = socket.gethostbyname_ex(socket.gethostname())
    except OSError:
        addrs = []
    for text in addrs:
        addr = ipaddress.ip_address(text)
        if not (addr.is_loopback or addr.is_unspecified or addr.is_link_local):
            return text
    return None
