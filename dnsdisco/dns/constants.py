"""The protocol numbers and our own limits, defined once for every module that reads or
writes DNS messages (the rules, the encoder, the forwarder, transfers)."""
from __future__ import annotations

# RR types (RFC 1035, 3596, 2782, 6891, 1995, 5936, 8945)
T_A, T_NS, T_CNAME, T_SOA, T_PTR, T_MX, T_TXT = 1, 2, 5, 6, 12, 15, 16
T_AAAA, T_SRV, T_OPT, T_TSIG, T_IXFR, T_AXFR, T_ANY = 28, 33, 41, 250, 251, 252, 255
C_IN, C_ANY = 1, 255

# rcodes; BADVERS needs the extended rcode bits of an OPT record (RFC 6891 6.1.3)
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, NOTAUTH = 0, 1, 2, 3, 4, 5, 9
BADVERS = 16
BADSIG, BADKEY, BADTIME = 16, 17, 18     # TSIG errors (RFC 8945 3)

UDP_PAYLOAD = 1232    # the EDNS buffer size we announce (DNS flag day 2020)
TCP_LIMIT = 65535     # the largest message over TCP (two length octets)
DO_BIT = 0x8000       # in an OPT record's TTL field

MAX_ROTATIONS = 8     # answer orders kept for an evenly rotated RRset
WEIGHTED_TURNS = 32   # answer orders of a weighted one: each record's first-place share within 1/32
MAX_CHAIN = 8         # CNAME hops followed inside our zones
