"""Domain names and etcd keys: the CoreDNS/SkyDNS mapping and RFC 1035 label rules.

Names inside dnsdisco are lower case, without the trailing dot; the root is "".
`hello.svc.local` lives at `<prefix>/local/svc/hello`.
"""
from __future__ import annotations

from typing import Any

import ipaddress

import socket

MAX_LABEL = 63
MAX_NAME = 253  # presentation length without the trailing dot (255 octets on the wire)


class BadName(ValueError):
    """A name or key that breaks the label rules; the message names it."""


def normalize(name: str) -> str:
    """Lower case, no trailing dot, RFC 1035 length limits checked."""
    text = name.strip()
    if text in ("", "."):
        return ""
    if text.endswith("."):
        text = text[:-1]
    text = text.lower()
    if len(text) > MAX_NAME:
        raise BadName(f"name {name!r} is longer than {MAX_NAME} characters")
    for label in text.split("."):
        if not label:
            raise BadName(f"name {name!r} has an empty label")
        if len(label) > MAX_LABEL:
            raise BadName(f"name {name!r} has a label longer than {MAX_LABEL} characters")
    return text


def hostname_problem(name: str) -> str:
    """Why a normalised `name` is no host name ('' if it is one): each label of ASCII letters,
    digits, '-' and '_'. serve answers any octets in a label (RFC 2181), but a name that a
    registrar writes is typed by people and looked up by stub resolvers, so `register` and
    `dnsdisco.Registration` hold their names to this."""
    for label in labels(name):
        bad = sorted({c for c in label if not (c.isascii() and (c.isalnum() or c in "-_"))})
        if bad:
            shown = ", ".join(repr(c) for c in bad)
            return f"has {shown} in the label {label!r} (use letters, digits, '-' and '_')"
    return ""


def labels(name: str) -> list[str]:
    return name.split(".") if name else []


def parent(name: str) -> str:
    """`a.b.c` → `b.c`; the root's parent is the root."""
    _, _, rest = name.partition(".")
    return rest


def ancestors(name: str) -> list[str]:
    """Every proper ancestor, nearest first, ending with the root ""."""
    out = []
    while name:
        name = parent(name)
        out.append(name)
    return out


def is_subdomain(name: str, zone: str) -> bool:
    """True when `name` is `zone` or below it (label-wise, not string-wise)."""
    if not zone:
        return True
    return name == zone or name.endswith("." + zone)


def zone_of(name: str, zones) -> str | None:
    """The longest zone that contains `name`, or None."""
    best = None
    for zone in zones:
        if is_subdomain(name, zone) and (best is None or len(zone) > len(best)):
            best = zone
    return best


def key_for(prefix: str, name: str) -> str:
    """`hello.svc.local` → `/skydns/local/svc/hello`."""
    parts = labels(name)
    parts.reverse()
    return prefix.rstrip("/") + "/" + "/".join(parts) if parts else prefix.rstrip("/") or "/"


def name_for(prefix: str, key: str) -> str | None:
    """The inverse of key_for; None for a key outside the prefix or with a bad label."""
    base = prefix.rstrip("/") + "/"
    if not key.startswith(base):
        return None
    rest = key[len(base):]
    if not rest:
        return None
    parts = rest.split("/")
    if any(not p or "." in p for p in parts):
        return None
    parts.reverse()
    try:
        return normalize(".".join(parts))
    except BadName:
        return None


def from_labels(wire_labels) -> str | None:
    """The name that wire labels (bytes, without the root) spell, as the snapshot holds names;
    None when a label holds an octet no stored name can hold.

    Stored names come from etcd key parts, which never contain a "." (such keys are skipped)
    nor a backslash, and are served in ASCII form; so a label with a ".", a backslash or an
    octet outside ASCII (RFC 2181 section 11 allows them all) names nothing we hold. Joining
    such labels with dots would make `hello\\.svc.local` match `hello.svc.local`. Only ASCII
    letters are folded (RFC 4343)."""
    parts = []
    for label in wire_labels:
        if b"." in label or b"\\" in label or not label.isascii():
            return None
        parts.append(label.lower().decode("ascii"))
    return ".".join(parts)


def skip_wire_name(data: bytes, pos: int) -> int:
    """The offset just past the (possibly compressed) name at `pos` in a DNS message; the one
    walker every reader of raw messages uses. ValueError for a label type that is neither a
    length nor a pointer, or a name that runs past the end."""
    end = len(data)
    while True:
        if pos >= end:
            raise ValueError("name runs past the end of the message")
        length = data[pos]
        if length >= 0xC0:
            if pos + 1 >= end:
                raise ValueError("compression pointer cut short")
            return pos + 2
        if length > 63:
            raise ValueError(f"unsupported label type {length:#x}")
        if length == 0:
            return pos + 1
        pos += length + 1


def read_wire_name(data: bytes, pos: int) -> tuple[list[bytes], int]:
    """The labels of the (possibly compressed) name at `pos` in a DNS message, as sent (no
    case folding), and the offset just past the name where it starts. ValueError for a name
    that runs past the end, a pointer loop, a bad label type or more than 255 octets."""
    parts, end = _walk_name(data, pos)
    return [part[1:] for part in parts], end


def expand_wire_name(data: bytes, pos: int) -> tuple[bytes, int]:
    """The name at `pos` as uncompressed wire octets (pointers followed, the root's zero
    octet at the end, letter case as sent) and the offset just past it; read_wire_name's
    errors."""
    parts, end = _walk_name(data, pos)
    parts.append(b"\x00")
    return b"".join(parts), end


def _walk_name(data: bytes, pos: int) -> tuple[list[bytes], int]:
    """The one walker that follows compression pointers: each label with its length octet."""
    found: list[bytes] = []
    end = None
    jumps = 0
    total = 1
    size = len(data)
    while True:
        if pos >= size:
            raise ValueError("name runs past the end of the message")
        length = data[pos]
        if length >= 0xC0:
            if pos + 1 >= size:
                raise ValueError("compression pointer cut short")
            if end is None:
                end = pos + 2
            jumps += 1
            if jumps > 64:
                raise ValueError("compression pointer loop")
            pos = ((length & 0x3F) << 8) | data[pos + 1]
            continue
        if length > MAX_LABEL:
            raise ValueError(f"unsupported label type {length:#x}")
        if length == 0:
            return found, (end if end is not None else pos + 1)
        total += length + 1
        if total > 255:
            raise ValueError("name longer than 255 octets")
        if pos + 1 + length > size:
            raise ValueError("label runs past the end of the message")
        found.append(bytes(data[pos:pos + 1 + length]))
        pos += 1 + length


def to_text(wire_labels) -> str:
    """Labels in presentation form for messages and logs: a "." or a backslash inside a label
    and octets outside printable ASCII are escaped (RFC 1035 section 5.1), so two different
    names never print alike; the root is "."."""
    out = []
    for label in wire_labels:
        text = []
        for octet in label:
            if octet in (0x2E, 0x5C):
                text.append("\\" + chr(octet))
            elif 0x21 <= octet <= 0x7E:
                text.append(chr(octet))
            else:
                text.append(f"\\{octet:03d}")
        out.append("".join(text))
    return ".".join(out) or "."


def zone_of_labels(wire_labels, zones) -> str | None:
    """The longest of `zones` (plain names) that the wire labels lie in, compared label by
    label, so a "." inside a label never lines up with a zone's label boundary."""
    folded = [label.lower() for label in wire_labels]
    best = None
    for zone in zones:
        zone_labels = [part.encode("ascii") for part in labels(zone)]
        count = len(zone_labels)
        if count <= len(folded) and (count == 0 or folded[-count:] == zone_labels):
            if best is None or count > label_count(best):
                best = zone
    return best


def reverse_name(ip: str) -> str:
    """`10.0.0.7` → `7.0.0.10.in-addr.arpa`; IPv6 gives the nibble form under ip6.arpa.

    Takes a normalised address (as records.classify_host returns); called for every
    record of a full sync, so it avoids the ipaddress module."""
    if ":" not in ip:
        a, b, c, d = ip.split(".")
        return f"{d}.{c}.{b}.{a}.in-addr.arpa"
    nibbles = socket.inet_pton(socket.AF_INET6, ip).hex()
    return ".".join(reversed(nibbles)) + ".ip6.arpa"


def address_of_reverse(rname: str) -> str | None:
    """`7.0.0.10.in-addr.arpa` → `10.0.0.7`; a full nibble name under ip6.arpa → the IPv6
    address in normal form; None for any other name (a partial or malformed reverse name)."""
    if rname.endswith(".in-addr.arpa"):
        parts = rname[: -len(".in-addr.arpa")].split(".")
        if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and (p == "0" or p[0] != "0") and int(p) < 256
                                      for p in parts):
            return None
        return ".".join(reversed(parts))
    if rname.endswith(".ip6.arpa"):
        nibbles = rname[: -len(".ip6.arpa")].split(".")
        if len(nibbles) != 32 or not all(len(n) == 1 and n in "0123456789abcdef" for n in nibbles):
            return None
        return socket.inet_ntop(socket.AF_INET6, bytes.fromhex("".join(reversed(nibbles))))
    return None


def label_count(name: str) -> int:
    return name.count(".") + 1 if name else 0


# ---------------------------------------------------------------- endpoints

def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` → (host, port); a bare host takes default_port."""
    text = str(text).strip()
    host, port_text = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected [ADDRESS]:PORT")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        raise ValueError(f"{text!r}: write an IPv6 address as [ADDRESS]:PORT")
    if not host:
        raise ValueError(f"{text!r}: missing host")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{text!r}: expected HOST:PORT")
        return host, default_port
    try:
        return host, parse_port(port_text)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None


def parse_address_port(text: str, default_port: int | None = None, *, names: tuple[str, ...] = (),
                       hint: str = "give an IP address") -> tuple[str, int]:
    """parse_hostport for an endpoint that must be an IP address (or one of `names`, such as
    "localhost"): we bind or send to it, and resolving a name could ask ourselves. `hint`
    ends the message for anything else."""
    host, port = parse_hostport(text, default_port)
    if host not in names and not is_address(host):
        raise ValueError(f"{text!r}: {hint}")
    return host, port


def is_address(text: str) -> bool:
    """Whether `text` is an IPv4 or IPv6 address (an IPv6 %scope is allowed)."""
    try:
        ipaddress.ip_address(str(text).split("%", 1)[0])
    except ValueError:
        return False
    return True


def parse_port(text: Any) -> int:
    try:
        port = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0..65535")
    return port


def format_hostport(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets: the one spelling of an endpoint in
    messages, help and logs (parse_hostport reads it back)."""
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def ns_addresses(ns_address: list[str], listen: list[tuple[str, int]]) -> tuple[str, ...]:
    """The default NS name's addresses: --ns-address, else every --listen address that names
    one host (not 0.0.0.0 or ::), so `ns.dns.<zone>` resolves to where this server answers."""
    if ns_address:
        return tuple(dict.fromkeys(ns_address))
    found = []
    for host, _port in listen:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            continue
        if not addr.is_unspecified:
            found.append(str(addr))
    return tuple(dict.fromkeys(found))
