"""`dnsdisco status` (and the other commands' usage) where no etcd answers: one clear line,
the usage on a bad flag, examples on port 5300. Listing records from a real etcd is
tests/etcd/test_status.py."""
from __future__ import annotations

import subprocess

from tests.support.harness import child_env, dnsdisco_cmd


def test_unreachable_etcd_is_one_line():
    out = subprocess.run(dnsdisco_cmd("status", "--etcd", "http://127.0.0.1:9", "--etcd-timeout", "0.5"),
                         env=child_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert out.stderr.startswith("dnsdisco status: ") and "127.0.0.1:9" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_no_etcd_running_is_one_line_within_2s_with_a_hint():
    """Nothing on the default endpoint: name it, say how to get one, fast."""
    from tests.support.etcdproc import port_is_free
    import time
    if not port_is_free(2379):
        import pytest
        pytest.skip("something listens on 127.0.0.1:2379 on this machine")
    started = time.monotonic()
    out = subprocess.run(dnsdisco_cmd("status"), env=child_env(), capture_output=True, text=True, timeout=30)
    took = time.monotonic() - started
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnsdisco status: cannot reach etcd at http://127.0.0.1:2379")
    assert "dnsdisco serve" in lines[0] and "--etcd" in lines[0]
    assert took < 2.0 + 1.0, took       # the command's own budget is 2 s; the rest is Python start-up
    named = subprocess.run(dnsdisco_cmd("status", "--etcd", "http://127.0.0.1:9"), env=child_env(),
                           capture_output=True, text=True, timeout=30)
    assert named.returncode == 1 and "http://127.0.0.1:9 (connection refused)" in named.stderr
    assert "dnsdisco serve" not in named.stderr    # an etcd the user named: no embedded hint


def test_bad_flag_prints_the_subcommands_usage():
    for command, *given in (("status",), ("serve",), ("register", "hello.svc.local")):
        out = subprocess.run(dnsdisco_cmd(command, *given, "--no-such-flag"), env=child_env(),
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2
        assert out.stderr.startswith(f"usage: dnsdisco {command}"), out.stderr
        assert f"dnsdisco {command}: error: unrecognized arguments: --no-such-flag" in out.stderr


def test_help_examples_use_port_5300():
    import re
    for command in ("serve", "register", "status"):
        text = subprocess.run(dnsdisco_cmd(command, "--help"), env=child_env(), capture_output=True,
                              text=True, timeout=30).stdout
        examples = text.split("examples:", 1)[1]
        digs = [line for line in examples.splitlines() if "dig " in line]
        assert digs, f"{command} --help has no dig example"
        for line in digs:
            assert all(port == "5300" for port in re.findall(r"-p (\d+)", line)), line
            assert line.count("dig ") == line.count("-p 5300"), line
        assert "5353" not in examples
