"""TSIG (RFC 8945) for dnsdisco: keys, checking a signed message, signing a reply.

The MAC and the TSIG record format come from dnspython (`dns.tsig`), a well-kept
implementation; this module only finds the TSIG record in our own wire bytes, picks
the RFC's error for each failure and appends a TSIG to replies packed by dnslib (so
their name compression is kept). Pure apart from reading the key file in
`load_key_file`. Secrets are never put into a message or an exception text.
"""
from __future__ import annotations

import base64
import binascii
import struct
import time
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

from dnsdisco.dns.constants import BADKEY, BADSIG, BADTIME, T_TSIG
from dnsdisco.dns.wire import tsig_start

FUDGE = 300                     # seconds of clock difference accepted (RFC 8945 10)
ALGORITHMS = {
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}


class KeyFileError(ValueError):
    """A key line that cannot be used; the message names the source and line, never the secret."""


def parse_keys(text: str, source: str = "<keys>") -> dict:
    """`name algorithm secret` lines (base64 secret; `#` comments; `;` also separates keys,
    for the environment) -> {dns.name.Name: dns.tsig.Key}."""
    keys = {}
    lines = [part for line in text.splitlines() for part in line.split(";")]
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 3:
            raise KeyFileError(f"{source}: entry {number}: expected 'name algorithm secret', "
                               f"got {len(fields)} field(s)")
        name_text, algorithm_text, secret_text = fields
        algorithm = ALGORITHMS.get(algorithm_text.lower().rstrip("."))
        if algorithm is None:
            raise KeyFileError(f"{source}: entry {number}: algorithm {algorithm_text!r} is not one of "
                               f"{', '.join(ALGORITHMS)}")
        try:
            name = dns.name.from_text(name_text)
        except dns.exception.DNSException as exc:
            raise KeyFileError(f"{source}: entry {number}: key name {name_text!r}: {exc}") from None
        try:
            secret = base64.b64decode(secret_text, validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"{source}: entry {number}: the secret of key {name_text} is not "
                               "base64 (tsig-keygen and keymgr print base64)") from None
        if len(secret) < 16:
            raise KeyFileError(f"{source}: entry {number}: the secret of key {name_text} has "
                               f"{len(secret)} octets; use at least 16 (RFC 8945 6)")
        if name in keys:
            raise KeyFileError(f"{source}: entry {number}: key {name_text} is defined twice")
        keys[name] = dns.tsig.Key(name, secret, algorithm)
    return keys


def load_key_file(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"--tsig-key-file {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_keys(text, f"--tsig-key-file {path}")


def secrets_of(keys: dict) -> list[str]:
    """The secrets as the text an operator wrote them, for the log masks."""
    return [base64.b64encode(key.secret).decode() for key in keys.values()]


# ---------------------------------------------------------------- reading a signed message


@dataclass
class Signed:
    """A message's TSIG and what checking it found."""
    start: int                     # where the TSIG record begins
    keyname: dns.name.Name
    rdata: object                  # dns.rdtypes.ANY.TSIG.TSIG of the request
    key: dns.tsig.Key | None       # the configured key it names (None: unknown)
    error: int                     # 0, BADKEY, BADSIG or BADTIME

    @property
    def mac(self) -> bytes:
        return self.rdata.mac

    @property
    def keytext(self) -> str:
        return self.keyname.to_text(omit_final_dot=True)


def check(data: bytes, keyring: dict, now: int | None = None) -> Signed | None:
    """The TSIG of `data` checked against `keyring`; None when unsigned; ValueError when the
    message or its TSIG is malformed (FORMERR)."""
    start = tsig_start(data)
    if start is None:
        return None
    try:
        msg = dns.message.from_wire(data, keyring=False)
    except dns.exception.DNSException as exc:
        raise ValueError(f"malformed signed message: {exc}") from None
    if msg.tsig is None:
        return None
    owner = msg.tsig.name
    rdata = msg.tsig[0]
    key = keyring.get(owner)
    if key is None or key.algorithm != rdata.algorithm:
        return Signed(start, owner, rdata, None, BADKEY)
    now = int(time.time()) if now is None else now
    try:
        dns.tsig.validate(data, key, owner, rdata, now, b"", start)
    except dns.tsig.BadTime:
        return Signed(start, owner, rdata, key, BADTIME)
    except (dns.tsig.BadSignature, dns.tsig.PeerError, dns.exception.DNSException, ValueError):
        return Signed(start, owner, rdata, key, BADSIG)
    return Signed(start, owner, rdata, key, 0)


def unsigned(data: bytes, signed: Signed) -> bytes:
    """The request without its TSIG record, with the id it was signed with."""
    arcount = struct.unpack_from("!H", data, 10)[0]
    body = bytearray(data[:signed.start])
    struct.pack_into("!H", body, 10, arcount - 1)
    struct.pack_into("!H", body, 0, signed.rdata.original_id)
    return bytes(body)


# ---------------------------------------------------------------- signing a reply

def _append(wire: bytes, keyname: dns.name.Name, rdata) -> bytes:
    rdwire = rdata.to_wire()
    out = bytearray(wire)
    out += keyname.to_wire() + struct.pack("!HHIH", T_TSIG, dns.rdataclass.ANY, 0, len(rdwire)) + rdwire
    struct.pack_into("!H", out, 10, struct.unpack_from("!H", wire, 10)[0] + 1)
    return bytes(out)


def _rdata(algorithm, time_signed: int, original_id: int, error: int = 0, other: bytes = b""):
    return dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, algorithm, time_signed, FUDGE,
                                     b"", original_id, error, other)


def sign(wire: bytes, key: dns.tsig.Key, request_mac: bytes, *, ctx=None, multi: bool = False,
         error: int = 0, other: bytes = b"", time_signed: int | None = None):
    """`wire` with a TSIG appended: (signed bytes, context for the next message of a
    multi-message answer, RFC 8945 5.3.1; None when not `multi`)."""
    when = int(time.time()) if time_signed is None else time_signed
    original_id = struct.unpack_from("!H", wire, 0)[0]
    rdata, next_ctx = dns.tsig.sign(wire, key, _rdata(key.algorithm, when, original_id, error, other),
                                    when, request_mac, ctx, multi)
    return _append(wire, key.name, rdata), next_ctx


def error_reply(reply: bytes, signed: Signed, now: int | None = None) -> bytes:
    """The reply (already NOTAUTH) to a request whose TSIG failed: unsigned with an empty
    MAC for BADKEY and BADSIG (RFC 8945 5.3.2), signed for BADTIME with the request's time
    and our clock in Other Data."""
    now = int(time.time()) if now is None else now
    if signed.error == BADTIME and signed.key is not None:
        other = struct.pack("!HI", (now >> 32) & 0xFFFF, now & 0xFFFFFFFF)
        wire, _ = sign(reply, signed.key, signed.mac, error=BADTIME, other=other,
                       time_signed=signed.rdata.time_signed)
        return wire
    rdata = _rdata(signed.rdata.algorithm, now, struct.unpack_from("!H", reply, 0)[0], signed.error)
    return _append(reply, signed.keyname, rdata)
