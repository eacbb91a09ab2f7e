"""Domain names and etcd keys: the CoreDNS/SkyDNS mapping and RFC 1035 label rules.

Names inside dnsdisco are lower case, without the trailing dot; the root is "".
`hello.svc.local` lives at `<prefix>/local/svc/hello`.
"""
from __future__ import annotations

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


def reverse_name(ip: str) -> str:
    """`10.0.0.7` → `7.0.0.10.in-addr.arpa`; IPv6 gives the nibble form under ip6.arpa.

    Takes a normalised address (as records.classify_host returns); called for every
    record of a full sync, so it avoids the ipaddress module."""
    if ":" not in ip:
        a, b, c, d = ip.split(".")
        return f"{d}.{c}.{b}.{a}.in-addr.arpa"
    nibbles = socket.inet_pton(socket.AF_INET6, ip).hex()
    return ".".join(reversed(nibbles)) + ".ip6.arpa"


def label_count(name: str) -> int:
    return name.count(".") + 1 if name else 0
