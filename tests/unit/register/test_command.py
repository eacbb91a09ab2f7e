"""`dnsdisco register`: argument errors are one clear line with status 2, a wrapped command
that cannot run is status 127 (both before any etcd is reached)."""
from __future__ import annotations

import subprocess

import pytest

from tests.support.harness import child_env, dnsdisco_cmd


# ---------------------------------------------------------------- command line errors

@pytest.mark.parametrize("args, message", [
    (["hello.svc.local"], "--port is required"),
    (["hello.svc.local", "--port", "70000"], "--port: port 70000 is outside 0..65535"),
    (["hello.svc.local", "--port", "80", "--ttl", "1"], "etcd's minimum lease TTL"),
    (["hello..svc.local", "--port", "80"], "empty label"),
    (["hello", "--port", "80"], "full service name"),
    (["hello.svc.local", "--port", "80", "--id", "a.b"], "not a DNS label"),
    (["hello.svc.local", "--port", "80", "--check-http", "localhost:80"], "not an http"),
    (["hello.svc.local", "--port", "80", "--address", "10.0.0.1/24"], "neither an address nor a host name"),
])
def test_usage_errors_are_one_clear_line(args, message):
    out = subprocess.run(dnsdisco_cmd("register", *args, "--etcd", "http://127.0.0.1:9"), env=child_env(),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_wrapped_command_that_does_not_exist():
    out = subprocess.run(dnsdisco_cmd("register", "hello.svc.local", "--port", "80", "--address", "127.0.0.1",
                                      "--etcd", "http://127.0.0.1:9", "--", "/nonexistent/cmd"),
                         env=child_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 127 and "cannot run '/nonexistent/cmd'" in out.stderr
