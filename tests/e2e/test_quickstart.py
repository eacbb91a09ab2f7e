"""README's quickstart, run as a new user would: a fresh clone, Debian's system Python (which
refuses `pip install` outside a virtual environment, PEP 668), the two commands as written.

The first command must answer `dig`; the second must install the test extra and collect the
suite (running the suite from inside the suite would recurse). `.ci/run` must run the very
same test command.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from pathlib import Path
import shutil

import pytest

from tests.support.harness import ROOT, wait_for
from tests.support.netns import free_port
from tests.support.etcdproc import port_is_free

SYSTEM_PYTHON = "/usr/bin/python3"


def quickstart_commands(readme: str) -> list[str]:
    """The command lines of README's first code block under '## Quickstart'."""
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_two_quickstart_commands_and_ci_runs_the_test_one():
    commands = quickstart_commands((ROOT / "README.md").read_text())
    assert len(commands) == 2, commands
    assert "dnsdisco serve" in commands[0] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    runs = [line for line in ci if "pytest" in line and not line.lstrip().startswith("#")]
    assert runs, ".ci/run runs no pytest"
    # the line may only add `|| status=$?` (to report pytest's "no tests" exit 5)
    assert runs[0].split(" || ")[0] == commands[1], (runs[0], commands[1])


def _externally_managed_python() -> str | None:
    """Debian's system python3 if it is marked EXTERNALLY-MANAGED and can make a venv."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return None
    out = subprocess.run([SYSTEM_PYTHON, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not Path(out.stdout.strip(), "EXTERNALLY-MANAGED").exists():
        return None
    return SYSTEM_PYTHON


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    python = _externally_managed_python()
    if python is None:
        pytest.skip(f"no externally managed system Python at {SYSTEM_PYTHON} (PEP 668) on this OS")
    if subprocess.run([python, "-c", "import ensurepip"], capture_output=True).returncode != 0:
        pytest.skip("Debian's python3 cannot make a venv here: apt-get install python3-venv (.ci/run does)")
    for tool in ("git", "dig"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not installed")
    where = tmp_path_factory.mktemp("quickstart") / "dnsdisco"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True, timeout=120)
    return where


def _user_env(tmp: Path) -> dict:
    """A login-like environment whose `python3` is Debian's, not this test's interpreter."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DNSDISCO_", "PYTHON", "VIRTUAL_ENV", "PYENV"))}
    env["PATH"] = "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
    env["XDG_STATE_HOME"] = str(tmp / "state")      # the embedded etcd's data, not the user's
    env["HOME"] = str(tmp / "home")
    os.makedirs(env["HOME"], exist_ok=True)
    return env


def test_system_python_refuses_plain_pip(clone):
    """The premise: without a venv, pip refuses (else this test would prove nothing)."""
    out = subprocess.run([SYSTEM_PYTHON, "-m", "pip", "install", "--dry-run", "."], cwd=clone,
                         capture_output=True, text=True, timeout=120, env=_user_env(clone.parent))
    assert out.returncode != 0
    assert "externally-managed-environment" in out.stderr + out.stdout


def test_first_command_serves_a_registered_name(clone, tmp_path):
    command = quickstart_commands((ROOT / "README.md").read_text())[0]
    port = 5300
    if not port_is_free(port):       # another run on this machine: same command, other port
        port = free_port()
        command = command.replace("127.0.0.1:5300", f"127.0.0.1:{port}")
    env = _user_env(tmp_path)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", command], cwd=clone, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    service = f"qs-{uuid.uuid4().hex[:8]}"
    key = f"/skydns/local/svc/{service}/a"
    etcdctl = str(clone / ".venv" / "bin" / "etcdctl")
    try:
        def serving():
            assert proc.poll() is None, f"the command ended with {proc.returncode}:\n{log.read_text()}"
            return "answering for" in log.read_text() and "synced" in log.read_text()
        wait_for(serving, 240, 0.2, "the quickstart server to sync")
        subprocess.run([etcdctl, "--endpoints", "http://127.0.0.1:2379", "put", key,
                        '{"host":"10.0.0.7","port":8080}'], check=True, capture_output=True, timeout=20, env=env)

        def answered():
            out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), f"{service}.svc.local", "+short",
                                  "+time=1", "+tries=1"], capture_output=True, text=True, timeout=10)
            return out.stdout.split() == ["10.0.0.7"]
        wait_for(answered, 15, 0.2, f"dig to answer {service}.svc.local")
        # the installed package (not the clone) ships the example config
        shipped = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c",
                                  "import importlib.resources as r, dnsdisco; "
                                  "print(r.files(dnsdisco).joinpath('dnsdisco.example.toml').read_text())"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=30, env=env)
        assert shipped.returncode == 0 and "[serve]" in shipped.stdout, shipped.stderr
        assert "site-packages" in subprocess.run(
            [str(clone / ".venv" / "bin" / "python"), "-c", "import dnsdisco; print(dnsdisco.__file__)"],
            cwd=tmp_path, capture_output=True, text=True, timeout=30, env=env).stdout
    finally:
        subprocess.run([etcdctl, "--endpoints", "http://127.0.0.1:2379", "del", key],
                       capture_output=True, timeout=20, env=env)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)       # Ctrl-C in the terminal
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait(5)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
    started = re.search(r"started embedded etcd .*?pid (\d+)", text)
    if started:     # the etcd it started is gone with it
        pid = int(started.group(1))
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, 0.1, f"embedded etcd {pid} to stop")


def test_second_command_installs_the_test_extra_and_collects(clone):
    command = quickstart_commands((ROOT / "README.md").read_text())[1]
    install, run = command.rsplit(" && ", 1)
    assert run == ".venv/bin/python -m pytest", run
    env = _user_env(clone.parent)
    out = subprocess.run(["bash", "-c", f"{install} && .venv/bin/python -m pytest --collect-only -q"],
                         cwd=clone, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    counted = re.search(r"(\d+) tests? collected", out.stdout)
    assert counted and int(counted.group(1)) > 100, out.stdout[-2000:]
