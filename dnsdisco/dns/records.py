"""The record model and the parsing of etcd values (CoreDNS `msg.Service` / SkyDNS format).

A value is JSON with optional fields; anything we cannot serve correctly is rejected with a
message that names the key, so one bad registration never hides the others.
"""
from __future__ import annotations

import json
import re
import socket
from operator import itemgetter

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


_EXTRA = ("key", "priority", "weight", "text", "ttl", "mail", "targetstrip", "group")
_EXTRA_DEFAULTS = ("", 10, 100, "", None, False, 0, "")
_ADDRESS_KINDS = frozenset(("ipv4", "ipv6"))


def _extra(index: int, default):
    def get(self):
        return self[4][index] if len(self) == 5 else default
    return property(get)


class Record(tuple):
    """One served etcd value: immutable, compared and hashed as a tuple.

    Compact because a million services hold two million of them: the fields every record
    has (name, host, host_kind, port) are the tuple's first four items; the rest (key,
    priority, weight, text, ttl, mail, targetstrip, group) are a fifth item only when one of
    them differs from its default, which a plain `{"host", "port"}` registration never does.
    `name` is the same string object as the snapshot's key for it, and `port` one shared int
    per port number (`_PORTS`).

    `key` is "" when the etcd key is the name's own (`names.key_for`): the keys would hold
    what the names already say; `Snapshot.key_of` gives it back."""
    __slots__ = ()
    _fields = ("key", "name", "host", "host_kind", "port", *_EXTRA[1:])

    def __new__(cls, key: str = "", name: str = "", host: str = "", host_kind: str = "", port: int = 0,
                priority: int = 10, weight: int = 100, text: str = "", ttl: int | None = None,
                mail: bool = False, targetstrip: int = 0, group: str = ""):
        extra = (key, priority, weight, text, ttl, mail, targetstrip, group)
        if (not key and priority == 10 and weight == 100 and not text and ttl is None and mail is False
                and not targetstrip and not group):
            return tuple.__new__(cls, (name, host, host_kind, port))
        return tuple.__new__(cls, (name, host, host_kind, port, extra))

    def __reduce__(self):
        return (tuple.__new__, (Record, tuple(self)))

    def __repr__(self) -> str:
        return "Record(" + ", ".join(f"{field}={getattr(self, field)!r}" for field in self._fields) + ")"

    name = property(itemgetter(0))
    host = property(itemgetter(1))     # address (normalised) or lower-case name without trailing dot
    host_kind = property(itemgetter(2))  # "ipv4" | "ipv6" | "name" | ""
    port = property(itemgetter(3))
    key = _extra(0, "")
    priority = _extra(1, 10)
    weight = _extra(2, 100)
    text = _extra(3, "")
    ttl = _extra(4, None)
    mail = _extra(5, False)
    targetstrip = _extra(6, 0)
    group = _extra(7, "")

    @property
    def is_address(self) -> bool:
        return self[2] in _ADDRESS_KINDS

    def _replace(self, **changes) -> "Record":
        fields = {field: getattr(self, field) for field in self._fields}
        fields.update(changes)
        return Record(**fields)


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


_PLAIN = frozenset(("host", "port"))
# JSON's own whitespace and number syntax (no leading zero), so a match means what json.loads reads
_plain_value = re.compile(rb'\{[ \t\n\r]*"host"[ \t\n\r]*:[ \t\n\r]*"([0-9.]{7,15})"[ \t\n\r]*,'
                          rb'[ \t\n\r]*"port"[ \t\n\r]*:[ \t\n\r]*(0|[1-9][0-9]{0,4})[ \t\n\r]*\}').fullmatch
_inet_pton, _AF_INET, _new = socket.inet_pton, socket.AF_INET, tuple.__new__
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


def _plain_record(key: str, name: str, host: str, port: int, keep_key: bool) -> Record | None:
    """The record of a plain value ({"host": IPv4, "port": n}, as registrars write it), or
    None when the host is not a strict dotted IPv4 address (no spaces, octal or short forms)
    or the port is out of range: the general parse judges those."""
    if not 0 <= port <= 65535:
        return None
    try:
        _inet_pton(_AF_INET, host)
    except OSError:
        return None
    port = _PORTS.setdefault(port, port)
    if keep_key:
        return Record(key, name, host, "ipv4", port)
    return _new(Record, (name, host, "ipv4", port))


def parse(key: str, name: str, value: bytes | str, keep_key: bool = True) -> Record:
    """Parse one etcd value stored at `key` (owner `name`); `keep_key` False leaves the
    record's key empty (the caller knows it is the name's own key)."""
    if type(value) is bytes:
        plain = _plain_value(value)
        if plain is not None:
            # {"host": IPv4, "port": n} exactly as registrars write it: what json.loads and the
            # checks below would make of it, without them (a full sync reads millions)
            host, port = plain.groups()
            rec = _plain_record(key, name, host.decode(), int(port), keep_key)
            if rec is not None:
                return rec
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadValue(f"{key}: value is not UTF-8 text") from None
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise BadValue(f"{key}: value is not JSON ({exc.msg} at position {exc.pos})") from None
    if type(data) is dict and data.keys() <= _PLAIN:
        # the shape registrars write ({"host": IPv4, "port": n}): the checks below in short
        host, port = data.get("host"), data.get("port", 0)
        if type(host) is str and type(port) is int:
            rec = _plain_record(key, name, host, port, keep_key)
            if rec is not None:
                return rec
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
