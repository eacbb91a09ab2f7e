"""SOA serials: the etcd revision mod 2^32, compared by RFC 1982 serial arithmetic.

etcd revisions are 64-bit and only grow; a serial holds their low 32 bits. RFC 1982 reads
a serial as newer than another when it is ahead by less than 2^31 (mod 2^32), so a
revision past 2^32 (serial 0, 1, ...) still reads as newer than 4294967295 to every
secondary. Serial 0 after a wrap is an ordinary value in RFC 1982 and is kept: skipping
it would break "serial = revision mod 2^32", the mapping that lets a serial name a
revision again (IXFR from the journal). Pure.
"""
from __future__ import annotations

MOD = 1 << 32
HALF = 1 << 31


def serial_of(revision: int) -> int:
    """The SOA serial of an etcd revision (revision 0, an empty etcd, reads as 1)."""
    return max(1, revision) % MOD



def serial_lt(a: int, b: int) -> bool:
    """RFC 1982 3.2: whether serial `a` is older than `b` (undefined at distance 2^31: False)."""
    return a != b and ((a < b and b - a < HALF) or (a > b and a - b > HALF))



def revision_of(serial: int, current: int) -> int | None:
    """The revision at or before `current` whose serial is `serial`, when it is less than
    2^31 revisions back; None when the serial reads as newer than `current`'s or is at the
    undefined distance."""
    back = (serial_of(current) - serial) % MOD
    if back >= HALF:
        return None
    return current - back
