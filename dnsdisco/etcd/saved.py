"""The snapshot serve saves when it stops and reads back when it starts (--snapshot-file).

Why: a start lists the whole prefix before it answers (SERVFAIL until then: seconds at a
million services). With the snapshot saved at the last stop, serve answers at once from it
while that listing runs, under one rule that keeps it from lying about what it does not know
yet: its positive answers are given as they were, and every negative one (NXDOMAIN, NODATA)
is SERVFAIL, since the name may have been registered since (dns/responder.py, `provisional`).
The listing's snapshot then replaces it whole.

When a saved snapshot is used (`load`), and why not otherwise (the reason is logged):
- it was written by this code (a digest of the modules whose objects it holds: a pickle of an
  older layout must never be read as the new one);
- for the same etcd endpoints, key prefix and zones (another etcd or other zones are other data);
- etcd was last heard from at most MAX_AGE seconds before (a restart, not a revival of data
  from long ago: records deleted meanwhile are served only until the listing is built);
- the file belongs to this user and no one else may write it: it is a pickle, which runs code
  when read, so it is trusted exactly as far as the configuration file is.

Written atomically (a temporary file renamed over the old one), mode 0600.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import stat
import time
from pathlib import Path

from dnsdisco.dns.bulk import no_collection

FORMAT = 1
MAX_AGE = 600.0                 # seconds since etcd last answered, at most, for a saved snapshot to be used
# the modules whose classes and layouts the pickle holds
_MODULES = ("snapshot.py", "nodes.py", "layered.py", "records.py", "zonedata.py", "names.py")


def code_digest() -> str:
    """A digest of the dns/ modules a saved snapshot's objects come from."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent.parent / "dns"
    for name in _MODULES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def _identity(prefix: str, zones, endpoints) -> tuple:
    return (FORMAT, code_digest(), prefix, tuple(zones), tuple(sorted(endpoints)))


def save(path: str, snapshot, endpoints, heard_at: float) -> int:
    """Write `snapshot` (the last one built from etcd, which was last heard from at the wall
    clock time `heard_at`) to `path`; the octets written. Raises OSError."""
    target = Path(path)
    data = pickle.dumps({"identity": _identity(snapshot.prefix, snapshot.zones, endpoints),
                         "heard_at": heard_at, "snapshot": snapshot}, protocol=pickle.HIGHEST_PROTOCOL)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return len(data)


def load(path: str, prefix: str, zones, endpoints, now: float | None = None):
    """(snapshot, "") from `path` when it may be served (see the module's list), else
    (None, why not)."""
    now = time.time() if now is None else now
    try:
        src = open(path, "rb")      # checked as opened: no other file can be put there in between
    except FileNotFoundError:
        return None, "no snapshot saved there yet"
    except IsADirectoryError:
        return None, "it is not a regular file"
    except OSError as exc:
        return None, f"cannot read it: {exc.strerror or exc}"
    with src:
        info = os.fstat(src.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, "it is not a regular file"
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            return None, "it belongs to another user or others may write it (it is a pickle: it runs code when read)"
        try:
            with no_collection():          # millions of new objects, none of them garbage
                saved = pickle.load(src)
            identity, heard_at, snapshot = saved["identity"], saved["heard_at"], saved["snapshot"]
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign file is only not used
            return None, f"it cannot be read back ({exc.__class__.__name__}: {exc})"[:300]
    want = _identity(prefix, zones, endpoints)
    if identity[:2] != want[:2]:
        return None, "another version of dnsdisco saved it"
    if identity[2] != want[2]:
        return None, f"it holds the prefix {identity[2] or '/'!r}, not {want[2] or '/'!r}"
    if identity[3] != want[3]:
        return None, "it was saved with other zones or zone settings"
    if identity[4] != want[4]:
        return None, f"it was saved from etcd {','.join(identity[4])}, not {','.join(want[4])}"
    age = now - heard_at
    if not 0 <= age <= MAX_AGE:
        return None, f"etcd was last heard from {age:.0f} s before it was read, more than {MAX_AGE:.0f} s"
    return snapshot, ""
