"""The record model and the parsing of etcd values (CoreDNS `msg.Service` / SkyDNS format).

A value is JSON with optional fields; anything we cannot serve correctly is rejected with a
message that names the key, so one bad registration never hides the others.
"""
from __future__ import annotations

import json
import socket
from typing import NamedTuple

from dnslib import DNSLabel

from dnsdisco.dns.names import MAX_LABEL, BadName, normalize

MAX_TTL = 2**31 - 1


class BadValue(ValueError):
    """An etcd value that cannot be served; the message names the key and the problem."""


def wire_problem(name: str) -> str:
    """Why `name` cannot go on the wire as it reads ('' if it can): dnslib turns `\\DDD` into
    other octets and non-ASCII into IDNA, whose labels may pass 63 octets or split in two."""
    if not name:
        return ""
    if "\\" in name:
        return "has a backslash (a DNS escape)"
    if name.isascii():
        return ""        # names.normalize already held it to 63-octet labels and 253 characters
    try:
        wire = DNSLabel(name).label
    except UnicodeError:
        return "has a label that does not fit 63 octets in IDNA form"
    if len(wire) != name.count(".") + 1:
        return "has a character that IDNA turns into a label separator"
    if any(not 0 < len(label) <= MAX_LABEL for label in wire):
        return "has a label longer than 63 octets on the wire"
    if sum(len(label) + 1 for label in wire) + 1 > 255:
        return "is longer than 255 octets on the wire"
    return ""


class Record(NamedTuple):
    """One served etcd value. A NamedTuple: immutable, and cheap to build 200,000 times.

    `key` is "" when the etcd key is the name's own (`names.key_for`): at 100,000 services
    the keys would hold 16 MB that the names already say; `Snapshot.key_of` gives it back."""
    key: str
    name: str            # the owner name the key maps to (the instance name)
    host: str = ""       # address (normalised) or lower-case name without trailing dot
    host_kind: str = ""  # "ipv4" | "ipv6" | "name" | ""
    port: int = 0
    priority: int = 10
    weight: int = 100
    text: str = ""
    ttl: int | None = None
    mail: bool = False
    targetstrip: int = 0
    group: str = ""

    @property
    def is_address(self) -> bool:
        return self.host_kind in ("ipv4", "ipv6")


def _int_field(key: str, data: dict, field: str, low: int, high: int, default):
    if field not in data or data[field] is None:
        return default
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise BadValue(f"{key}: {field!r} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise BadValue(f"{key}: {field!r} {value} is outside {low}..{high}")
    return value


def _str_field(key: str, data: dict, field: str) -> str:
    value = data.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadValue(f"{key}: {field!r} must be a string, got {type(value).__name__}")
    return value


_PORTS: dict[int, int] = {}   # at most 65,536 entries: ints above 256 are objects of their own


def classify_host(key: str, host: str) -> tuple[str, str]:
    """Return (normalised host, kind) or raise BadValue."""
    host = host.strip()
    if not host:
        return "", ""
    # inet_pton is strict (no octal, no short forms) and fast: a full sync classifies every host
    try:
        socket.inet_pton(socket.AF_INET, host)
        return host, "ipv4"
    except OSError:
        pass
    if ":" in host:
        try:
            packed = socket.inet_pton(socket.AF_INET6, host)
        except OSError:
            packed = None
        if packed is not None:
            if packed[:12] == b"\0" * 10 + b"\xff\xff":
                return socket.inet_ntop(socket.AF_INET, packed[12:]), "ipv4"
            return socket.inet_ntop(socket.AF_INET6, packed), "ipv6"
    if all(c.isdigit() or c == "." for c in host):
        raise BadValue(f"{key}: host {host!r} is not a valid IPv4 address")
    if ":" in host:
        raise BadValue(f"{key}: host {host!r} is not a valid IPv6 address")
    try:
        name = normalize(host)
    except BadName as exc:
        raise BadValue(f"{key}: host is not a valid name: {exc}") from None
    if not name:
        raise BadValue(f"{key}: host {host!r} is the root")
    problem = wire_problem(name)
    if problem:
        raise BadValue(f"{key}: host {host!r} {problem}")
    for label in name.split("."):
        if not all(c.isalnum() or c in "-_*" for c in label):
            raise BadValue(f"{key}: host {host!r} is neither an address nor a host name")
    return name, "name"


def parse(key: str, name: str, value: bytes | str, keep_key: bool = True) -> Record:
    """Parse one etcd value stored at `key` (owner `name`); `keep_key` False leaves the
    record's key empty (the caller knows it is the name's own key)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadValue(f"{key}: value is not UTF-8 text") from None
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise BadValue(f"{key}: value is not JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, dict):
        raise BadValue(f"{key}: value must be a JSON object, got {type(data).__name__}")
    host, kind = classify_host(key, _str_field(key, data, "host"))
    text = _str_field(key, data, "text")
    mail = data.get("mail", False)
    if mail is None:
        mail = False
    if not isinstance(mail, bool):
        raise BadValue(f"{key}: 'mail' must be true or false, got {mail!r}")
    port = _int_field(key, data, "port", 0, 65535, 0)
    port = _PORTS.setdefault(port, port)      # one int object per port number, not per record
    record = Record(
        key=key if keep_key else "",
        name=name,
        host=host,
        host_kind=kind,
        port=port,
        # CoreDNS serves an explicit priority 0 as the default 10; registrars rely on that
        priority=_int_field(key, data, "priority", 0, 65535, 10) or 10,
        weight=_int_field(key, data, "weight", 0, 65535, 100),
        text=text,
        ttl=_int_field(key, data, "ttl", 0, MAX_TTL, None),
        mail=mail,
        targetstrip=_int_field(key, data, "targetstrip", 0, 127, 0),
        group=_str_field(key, data, "group"),
    )
    if not host and not text:
        raise BadValue(f"{key}: value has neither 'host' nor 'text'; nothing to serve")
    if len(text.encode("utf-8")) > 65000:
        raise BadValue(f"{key}: 'text' is too long for a DNS reply")
    return record


def to_value(rec: Record) -> bytes:
    """The etcd value that `parse` reads back as `rec` (the mass-expiry guard puts records
    back that way): only the fields that differ from the defaults."""
    data: dict = {}
    if rec.host:
        data["host"] = rec.host
    if rec.port:
        data["port"] = rec.port
    if rec.priority != 10:
        data["priority"] = rec.priority
    if rec.weight != 100:
        data["weight"] = rec.weight
    if rec.text:
        data["text"] = rec.text
    if rec.ttl is not None:
        data["ttl"] = rec.ttl
    if rec.mail:
        data["mail"] = True
    if rec.targetstrip:
        data["targetstrip"] = rec.targetstrip
    if rec.group:
        data["group"] = rec.group
    return json.dumps(data, separators=(",", ":")).encode()


def shown_value(rec) -> str:
    """host[:port] and every field that differs from the served default."""
    host = f"[{rec.host}]" if rec.host_kind == "ipv6" and rec.port else rec.host
    parts = [f"{host}:{rec.port}" if rec.port else (host or "-")]
    if rec.priority != 10:
        parts.append(f"priority={rec.priority}")
    if rec.weight != 100:
        parts.append(f"weight={rec.weight}")
    if rec.mail:
        parts.append("mail")
    if rec.targetstrip:
        parts.append(f"targetstrip={rec.targetstrip}")
    if rec.group:
        parts.append(f"group={rec.group}")
    if rec.text:
        parts.append("text=" + json.dumps(rec.text, ensure_ascii=False))
    return " ".join(parts)
