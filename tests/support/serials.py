"""RFC 1982 serial arithmetic the tests check the package's serial_lt against (the package
itself only needs serial_lt and revision_of)."""
from __future__ import annotations

from dnsdisco.dns.serial import HALF, MOD, serial_lt

def serial_add(serial: int, n: int) -> int:
    """RFC 1982 3.1: addition of 0 <= n < 2^31."""
    if not 0 <= n < HALF:
        raise ValueError(f"serial addition of {n} is outside 0..2^31-1 (RFC 1982 3.1)")
    return (serial + n) % MOD


def serial_gt(a: int, b: int) -> bool:
    return serial_lt(b, a)
