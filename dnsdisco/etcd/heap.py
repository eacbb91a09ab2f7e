"""Handing freed memory back to the system, for the two processes of `serve`.

glibc keeps freed pages for reuse; after a full etcd listing that is memory the process no
longer needs, and giving it back is cheap next to the listing (docs/benchmarks.md, "Memory
at 100,000 services"). Both the serving process (after building the snapshot) and the etcd
helper (after sending the listing) call it.
"""
from __future__ import annotations


def trim() -> None:
    """malloc_trim(0): give freed heap pages back to the system. No-op off glibc."""
    import ctypes
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    malloc_trim(0)
