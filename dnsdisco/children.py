"""Child processes that never outlive the process that started them.

serve's embedded etcd and the command `dnsdisco register -- CMD` wraps are started with
`preexec_fn=parent_death_signal()`: if their parent dies by any signal, SIGKILL included, the
kernel sends them SIGTERM (Linux prctl PR_SET_PDEATHSIG), so no orphan keeps an etcd's ports or
serves traffic while it is no longer registered.
"""
from __future__ import annotations

import os
import signal

PR_SET_PDEATHSIG = 1


def parent_death_signal():
    """A preexec_fn for Popen: the child gets SIGTERM when its parent dies (Linux), and ends
    at once if the parent died before this ran. None where prctl is not available."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:     # the parent is gone already: nobody would stop us
            os._exit(1)
    return preexec
