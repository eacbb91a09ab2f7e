"""Opening the listen sockets: address family, buffer sizes, SO_REUSEPORT, port 0 for both
protocols, and a bind failure turned into a message an operator can act on (who holds the
port, how to get a low port without root).
"""
from __future__ import annotations

import errno
import os
import socket as _stdsocket
import time
from typing import Optional

from gevent import socket as gsocket

from dnsdisco.dns.names import format_hostport

UDP_RCVBUF = 4 * 1024 * 1024   # absorbs bursts (the kernel caps it at rmem_max unless root)
UDP_SNDBUF = 1 * 1024 * 1024
TCP_BACKLOG = 1024
PORT_ZERO_ATTEMPTS = 32


class BindError(Exception):
    """A listen address that cannot be bound; the message names it and says what to do."""


def bind_pair(host: str, port: int, reuse_port: bool, raw_socket) -> tuple[int, int, object, object]:
    """(family, port, UDP socket, TCP listening socket) bound on one address. The UDP socket
    is a `raw_socket` (the unpatched class: the listeners drive it by hand) and non-blocking.
    Port 0: a port free for both protocols (TCP's pick, then UDP on it). BindError naming
    the address and what to do when it cannot be bound."""
    family, sockaddr = _family_of(host, port)
    if port != 0:
        udp = _open_udp(family, sockaddr, host, port, reuse_port, raw_socket)
        try:
            tcp = _open_tcp(family, sockaddr, host, port, reuse_port)
        except BaseException:
            udp.close()
            raise
        return family, port, udp, tcp
    last: Exception | None = None
    for _ in range(PORT_ZERO_ATTEMPTS):
        tcp = _open_tcp(family, sockaddr, host, 0, reuse_port)
        chosen = tcp.getsockname()[1]
        try:
            udp = _open_udp(family, sockaddr, host, chosen, reuse_port, raw_socket)
        except BindError as exc:
            tcp.close()
            last = exc
            continue
        return family, chosen, udp, tcp
    raise BindError(f"cannot find a port free for both UDP and TCP on {host} "
                    f"after {PORT_ZERO_ATTEMPTS} tries (last: {last})")


def _who_uses(proto: str, port: int) -> str:
    """Best effort: 'pid 123 (dnsmasq)' holding a socket on `port`, from /proc; '' if unknown."""
    try:
        inodes = set()
        for table in (proto, proto + "6"):
            try:
                with open(f"/proc/net/{table}") as fh:
                    next(fh, None)
                    for line in fh:
                        fields = line.split()
                        if len(fields) < 10:
                            continue
                        local_port = int(fields[1].rsplit(":", 1)[1], 16)
                        # TCP: only listeners (state 0A) hold the port for us
                        if local_port == port and (proto == "udp" or fields[3] == "0A"):
                            inodes.add(fields[9])
            except OSError:
                continue
        if not inodes:
            return ""
        wanted = {f"socket:[{i}]" for i in inodes}
        deadline = time.monotonic() + 0.5
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or time.monotonic() > deadline:
                continue
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                        with open(f"/proc/{pid}/comm") as fh:
                            return f"pid {pid} ({fh.read().strip()})"
            except OSError:
                continue
        return "a socket of another user's process" if os.geteuid() != 0 else ""
    except Exception:  # never let the diagnosis hide the real error
        return ""


def bind_error(exc: OSError, host: str, port: int, proto: str) -> BindError:
    """Turn a bind OSError into a message an operator can act on."""
    where = f"{format_hostport(host, port)} ({proto.upper()})"
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        msg = f"cannot listen on {where}: permission denied"
        if port < 1024:
            msg += (f"; ports below 1024 need privilege: use a high port (e.g. --listen "
                    f"{format_hostport(host, 5353)}), or grant the capability with "
                    f"`setcap cap_net_bind_service=+ep <python binary>` or, under systemd, "
                    f"AmbientCapabilities=CAP_NET_BIND_SERVICE")
    elif code == errno.EADDRINUSE:
        who = _who_uses(proto, port)
        msg = (f"cannot listen on {where}: the address is already in use"
               f"{' by ' + who if who else ' by another socket'}"
               f" (another DNS server such as systemd-resolved, dnsmasq or a second dnsdisco?);"
               f" stop it or choose another --listen port")
    elif code == errno.EADDRNOTAVAIL:
        msg = f"cannot listen on {where}: no interface on this host has the address {host}"
    elif code in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
        msg = f"cannot listen on {where}: this host does not support the address family of {host}"
    else:
        msg = f"cannot listen on {where}: {exc.strerror or exc}"
    return BindError(msg)


def _family_of(host: str, port: int) -> tuple[int, tuple]:
    try:
        infos = _stdsocket.getaddrinfo(host, port, 0, _stdsocket.SOCK_DGRAM, 0,
                                       _stdsocket.AI_PASSIVE | _stdsocket.AI_NUMERICHOST)
    except _stdsocket.gaierror:
        try:
            infos = _stdsocket.getaddrinfo(host, port, 0, _stdsocket.SOCK_DGRAM, 0, _stdsocket.AI_PASSIVE)
        except _stdsocket.gaierror as exc:
            raise BindError(f"cannot listen on {format_hostport(host, port)}: {host!r} is not an address ({exc})") from None
    family, _type, _proto, _canon, sockaddr = infos[0]
    return family, sockaddr


def _set_buffer(sock, force_opt: Optional[int], opt: int, size: int) -> None:
    """Ask for a large buffer; as root SO_*BUFFORCE passes the rmem_max/wmem_max cap."""
    if force_opt is not None:
        try:
            sock.setsockopt(_stdsocket.SOL_SOCKET, force_opt, size)
            return
        except OSError:
            pass
    try:
        sock.setsockopt(_stdsocket.SOL_SOCKET, opt, size)
    except OSError:
        pass


def _open_udp(family: int, sockaddr: tuple, host: str, port: int, reuse_port: bool, raw_socket):
    def setup(sock) -> None:
        _set_buffer(sock, getattr(_stdsocket, "SO_RCVBUFFORCE", None), _stdsocket.SO_RCVBUF, UDP_RCVBUF)
        _set_buffer(sock, getattr(_stdsocket, "SO_SNDBUFFORCE", None), _stdsocket.SO_SNDBUF, UDP_SNDBUF)
    sock = _bound(raw_socket(family, _stdsocket.SOCK_DGRAM), "udp", sockaddr, host, port, reuse_port, setup)
    sock.setblocking(False)
    return sock


def _open_tcp(family: int, sockaddr: tuple, host: str, port: int, reuse_port: bool = False):
    def setup(sock) -> None:
        sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
    sock = _bound(gsocket.socket(family, _stdsocket.SOCK_STREAM), "tcp", sockaddr, host, port, reuse_port, setup)
    try:
        sock.listen(TCP_BACKLOG)
    except OSError as exc:
        sock.close()
        raise bind_error(exc, host, port, "tcp") from None
    return sock


def _bound(sock, proto: str, sockaddr: tuple, host: str, port: int, reuse_port: bool, setup):
    """`sock` with its options set (IPv6 only for an IPv6 address, so a v4 listener on the
    same port is separate) and bound; closed and a BindError when that fails."""
    try:
        if reuse_port:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
        if sock.family == _stdsocket.AF_INET6:
            sock.setsockopt(_stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY, 1)
        setup(sock)
        sock.bind(sockaddr[:1] + (port,) + sockaddr[2:])
    except OSError as exc:
        sock.close()
        raise bind_error(exc, host, port, proto) from None
    return sock
