"""Children that never outlive their parent: the trampolines of dnsdisco/children.py."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnsdisco.etcd import children
from tests.support.harness import ROOT, child_env

PARENT = """
import subprocess, sys, time
cmd = {cmd!r}
subprocess.Popen(cmd)
print("started", flush=True)
time.sleep(60)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.parametrize("trampoline", ["python", "setpriv"])
def test_the_child_ends_when_its_parent_is_killed(tmp_path, trampoline):
    if trampoline == "setpriv" and shutil.which("setpriv") is None:
        pytest.skip("no setpriv here (util-linux)")
    marker = tmp_path / "child.pid"
    target = [sys.executable, "-c", f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); "
                                    "time.sleep(60)"]
    # the parent builds the command itself (the trampoline needs the parent's pid)
    build = ("from dnsdisco.etcd.children import dying_with_us; import os; "
             "cmd = dying_with_us({t!r}) if {sp} else [sys.executable, '-m', 'dnsdisco.etcd.children', str(os.getpid()), '--', *{t!r}]")
    code = "import sys\n" + build.format(t=target, sp=trampoline == "setpriv") + "\n" + \
        PARENT.replace("cmd = {cmd!r}\n", "")
    parent = subprocess.Popen([sys.executable, "-c", code], env=child_env(), cwd=str(ROOT), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 10
        while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        child = int(marker.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 5
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _gone(child), "the child outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


def test_python_trampoline_reports_a_missing_command():
    out = subprocess.run([sys.executable, "-m", "dnsdisco.etcd.children", str(os.getpid()), "--", "no-such-command-here"],
                         env=child_env(), cwd=str(ROOT), capture_output=True, text=True, timeout=30)
    assert out.returncode == 127 and "cannot run 'no-such-command-here'" in out.stderr


def test_dying_with_us_prefers_setpriv():
    cmd = children.dying_with_us(["true"])
    if shutil.which("setpriv"):
        assert cmd[1:4] == ["--pdeathsig", "TERM", "--"] and cmd[-1] == "true"
    else:
        assert cmd[1:3] == ["-m", "dnsdisco.etcd.children"] and cmd[-1] == "true"
