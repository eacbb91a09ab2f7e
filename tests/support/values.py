"""SkyDNS JSON values for tests (tests/unit/dns/test_hostile_data.py and tests/e2e/test_hostile_data.py)."""
from __future__ import annotations


def value_of_size(size: int) -> bytes:
    base = b'{"host":"10.0.0.2"}'
    return base[:-1] + b" " * (size - len(base)) + b"}"      # JSON whitespace: a valid value
