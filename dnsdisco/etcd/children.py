"""Child processes that never outlive the process that started them.

serve's embedded etcd (started with `preexec_fn=parent_death_signal()`) and the command
`dnsdisco register -- CMD` wraps (started through the `dying_with_us` trampoline) get SIGTERM
from the kernel when their parent dies by any signal, SIGKILL included (Linux prctl
PR_SET_PDEATHSIG), so no orphan keeps an etcd's ports or serves traffic while it is no longer
registered.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys

PR_SET_PDEATHSIG = 1


def _prctl():
    """libc's prctl, or None where there is none (not Linux)."""
    import ctypes
    import ctypes.util
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def parent_death_signal():
    """A preexec_fn for Popen: the child gets SIGTERM when its parent dies (Linux), and ends
    at once if the parent died before this ran. None where prctl is not available."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:     # the parent is gone already: nobody would stop us
            os._exit(1)
    return preexec


def dying_with_us(command: list[str]) -> list[str]:
    """`command` started through a trampoline that sets the parent-death signal and execs it
    (same pid): util-linux's `setpriv --pdeathsig TERM` where there is one (a C program, no
    start-up cost), else `python -m dnsdisco.etcd.children`. For a process that has loaded gRPC: a
    preexec_fn would make Popen fork without exec'ing at once, and gRPC's fork handlers abort
    such a child (seen as SIGABRT of the wrapped command); spawning a trampoline does not."""
    setpriv = shutil.which("setpriv")
    if setpriv is not None and sys.platform.startswith("linux"):
        return [setpriv, "--pdeathsig", "TERM", "--", *command]
    return [sys.executable, "-m", "dnsdisco.etcd.children", str(os.getpid()), "--", *command]


def cannot_run(program: str, exc: OSError) -> tuple[str, int]:
    """Why `program` did not start, as one line, and the exit status a shell gives for it
    (127: not found, 126: found but not runnable). The register command and this trampoline
    both report a wrapped command that cannot start, and must say it alike."""
    return (f"cannot run {program!r}: {exc.strerror or exc}",
            127 if isinstance(exc, FileNotFoundError) else 126)


def main(argv: list[str]) -> int:
    """The trampoline: `PARENT_PID -- CMD ARGS...`."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m dnsdisco.etcd.children PARENT_PID -- CMD [ARGS...]", file=sys.stderr)
        return 2
    parent, command = int(argv[0]), argv[2:]
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:                    # the parent is gone already: nobody would stop us
        return 1
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        # this layer may not import ops.logs: the line is spelled as logs.fail spells it
        message, code = cannot_run(command[0], exc)
        print(f"dnsdisco register: {message}", file=sys.stderr)
        return code
    return 0    # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
