"""Who may have names forwarded: the default ACL (loopback and private networks) and custom lists.
The ACL in a forwarding Responder is tests/e2e/test_forward.py."""
from __future__ import annotations

import ipaddress

import pytest

from dnsdisco.net.acl import Acl, Networks


# ---------------------------------------------------------------- ACL

@pytest.mark.parametrize("ip, allowed", [
    ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
    ("10.1.2.3", True), ("172.16.0.1", True), ("172.31.255.255", True), ("172.32.0.1", False),
    ("192.168.1.1", True), ("192.169.0.1", False), ("fd12::1", True), ("fc00::1", True),
    ("8.8.8.8", False), ("2001:db8::1", False), ("fe80::1%eth0", False),
    ("::ffff:10.0.0.1", True), ("::ffff:8.8.8.8", False), ("::ffff:127.0.0.1", True),
    ("not-an-ip", False), ("", False),
])
def test_default_acl(ip, allowed):
    acl = Acl()
    assert acl.allows(ip) is allowed
    assert acl.allows(ip) is allowed       # second answer comes from the per-address cache


@pytest.mark.parametrize("ip, inside", [
    ("192.0.2.7", True), ("192.0.3.7", False),
    ("::ffff:192.0.2.7", True),              # a dual-stack socket's IPv4 client
    ("2001:db8:1::5", True), ("2001:db8:1::5%eth0", True), ("2001:db8:2::5", False),
    ("::ffff:198.51.100.1", True),           # listed as an IPv6 network of mapped addresses
    ("bogus", False), ("", False),
])
def test_networks_one_matcher(ip, inside):
    """The matcher of --allow, --rrl-exempt and --transfer-allow."""
    nets = Networks(["192.0.2.0/24", "2001:db8:1::/48", "::ffff:198.51.100.0/120"])
    assert nets.contains(ip) is inside
    assert nets.contains(ip) is inside       # from the memo


def test_custom_acl_and_errors():
    acl = Acl(["203.0.113.0/24", ipaddress.ip_network("2001:db8::/32"), "198.51.100.7"])
    assert acl.allows("203.0.113.9") and acl.allows("2001:db8::5") and acl.allows("198.51.100.7")
    assert not acl.allows("127.0.0.1") and not acl.allows("198.51.100.8")
    assert acl.allows("::ffff:203.0.113.200")
    assert not Acl([]).allows("127.0.0.1")
    with pytest.raises(ValueError, match="'10.0.0.0/33' is not an address or CIDR block"):
        Acl(["10.0.0.0/33"])
