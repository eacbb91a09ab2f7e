"""The tests' port picker: servers the tests restart on their own port (etcd) must find it
free, so it hands out ports below the kernel's range for outgoing connections, each once."""
from __future__ import annotations

import socket

from tests.support.netns import _below_ephemeral, free_port


def test_free_ports_lie_below_the_range_outgoing_connections_take_and_are_not_repeated():
    first, last = _below_ephemeral()
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    assert last == low - 1 and 1024 <= first < last
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(first <= port <= last for port in ports)
    with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:    # free for both
        tcp.bind(("127.0.0.1", ports[-1]))
        udp.bind(("127.0.0.1", ports[-1]))
