"""The namespace harness works: unmodified clients inside use the resolv.conf we give them.

dnsmasq stands in for dnsdisco on 127.0.0.1:53 inside a fresh namespace; the host's
resolv.conf and port 53 are never touched.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.netns import Netns, dnsmasq_command, netns_available

available, why = netns_available()
pytestmark = pytest.mark.skipif(not available, reason=f"network namespaces unavailable: {why}")


@pytest.fixture(scope="module")
def ns(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("netns")
    with Netns("ddsmoke", resolv_conf="nameserver 127.0.0.1\nsearch svc.test\noptions timeout:1 attempts:1\n") as ns:
        ns.popen(dnsmasq_command(port=53, workdir=workdir, records=[
            "example.test,192.0.2.10,2001:db8::10", "hello.svc.test,192.0.2.20"]))
        ns.wait_until(["dig", "+short", "+time=1", "+tries=1", "@127.0.0.1", "example.test"], timeout=10)
        yield ns


def test_resolv_conf_is_the_namespaces(ns):
    assert ns.run(["cat", "/etc/resolv.conf"]).stdout.startswith("nameserver 127.0.0.1\n")
    assert open("/etc/resolv.conf").read() != ns.run(["cat", "/etc/resolv.conf"]).stdout


def test_getent_resolves_through_resolv_conf(ns):
    res = ns.run(["getent", "ahosts", "example.test"])
    assert res.returncode == 0, res.stderr
    addresses = {line.split()[0] for line in res.stdout.splitlines()}
    assert addresses == {"192.0.2.10", "2001:db8::10"}
    res = ns.run(["getent", "hosts", "hello"])          # via `search svc.test`
    assert res.returncode == 0 and res.stdout.split()[:2] == ["192.0.2.20", "hello.svc.test"], res


def test_python_getaddrinfo_resolves(ns):
    code = ("import socket; print(sorted({ai[4][0] for ai in "
            "socket.getaddrinfo('example.test', 80, proto=socket.IPPROTO_TCP)}))")
    res = ns.run([sys.executable, "-c", code])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "['192.0.2.10', '2001:db8::10']"


def test_unknown_name_fails_cleanly(ns):
    assert ns.run(["getent", "hosts", "nothing.invalid"]).returncode == 2


def test_netns_cleans_up_after_itself(tmp_path):
    with Netns("ddclean") as other:
        name, etc_dir = other.name, other.etc_dir
        proc = other.popen(["sleep", "30"])
        assert name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert (etc_dir / "resolv.conf").exists()
    assert proc.poll() is not None
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not etc_dir.exists()


def test_netns_cleans_up_when_the_test_fails():
    with pytest.raises(RuntimeError):
        with Netns("ddfail") as other:
            name, etc_dir = other.name, other.etc_dir
            other.popen(["sleep", "30"])
            raise RuntimeError("the test failed")
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not etc_dir.exists()
