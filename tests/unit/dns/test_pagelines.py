"""pagelines.PageReader: a page of the etcd helper's `key TAB value` lines read into rows of
one or two plain siblings, the other lines, and the plain-looking lines that go elsewhere."""
from __future__ import annotations

import socket

import pytest

from dnsdisco.dns.pagelines import PageReader, plain_directory


def _row(where, parent, first, host, port, second=b"", host2=None, port2=0):
    """A row as `read` gives it, from readable parts."""
    address = socket.inet_aton(host)
    address2 = socket.inet_aton(host2) if host2 else b"\0\0\0\0"
    return (where, parent, first, second, address, port.to_bytes(2, "big"), address2,
            port2.to_bytes(2, "big"), int.from_bytes(address, "big"), int.from_bytes(address2, "big"), b"")


def _other(line):
    return (b"", b"", b"", b"", b"\0\0\0\0", b"\0\0", b"\0\0\0\0", b"\0\0", 0, 0, line)


A = b'/skydns/local/svc/a/i0\t{"host":"10.0.0.1","port":80}'
A1 = b'/skydns/local/svc/a/i1\t{"host": "10.0.0.2", "port": 81}'
A2 = b'/skydns/local/svc/a/i2\t{ "host" : "10.0.0.3" , "port" : 0 }'
B = b'/skydns/local/svc/b/x\t{"host":"10.0.1.1","port":65535}'
V6 = b'/skydns/local/svc/a/v6\t{"host":"fd00::1","port":80}'


@pytest.mark.parametrize("lines, rows, pending", [
    ([A], [_row(b"local/svc/", b"a", b"i0", "10.0.0.1", 80)], []),
    # two siblings are one row, whatever spaces their values hold; a third starts the next row
    ([A, A1], [_row(b"local/svc/", b"a", b"i0", "10.0.0.1", 80, b"i1", "10.0.0.2", 81)], []),
    ([A, A1, A2], [_row(b"local/svc/", b"a", b"i0", "10.0.0.1", 80, b"i1", "10.0.0.2", 81),
                   _row(b"local/svc/", b"a", b"i2", "10.0.0.3", 0)], []),
    # lines of two parents are two rows; a line of another shape is a row of its own
    ([A, B], [_row(b"local/svc/", b"a", b"i0", "10.0.0.1", 80), _row(b"local/svc/", b"b", b"x", "10.0.1.1", 65535)], []),
    ([A, V6, B], [_row(b"local/svc/", b"a", b"i0", "10.0.0.1", 80), _other(V6),
                  _row(b"local/svc/", b"b", b"x", "10.0.1.1", 65535)], []),
    # an empty directory part; a key with upper case, or at the prefix itself, is another shape
    ([b'/skydns/local/x\t{"host":"10.0.0.1","port":1}'], [_row(b"", b"local", b"x", "10.0.0.1", 1)], []),
    ([b'/skydns/local/svc/a/I0\t{"host":"10.0.0.1","port":1}'],
     [_other(b'/skydns/local/svc/a/I0\t{"host":"10.0.0.1","port":1}')], []),
    ([b'/skydns/x\t{"host":"10.0.0.1","port":1}'], [_other(b'/skydns/x\t{"host":"10.0.0.1","port":1}')], []),
    # a host or port out of range: that record goes to pending with its line's own value
    ([A, b'/skydns/local/svc/a/i1\t{"host":"10.0.0.256","port":1}'],
     [_row(b"local/svc/", b"a", b"i0", "10.0.0.1", 80)],
     [("/skydns/local/svc/a/i1", b'{"host":"10.0.0.256","port":1}')]),
    ([b'/skydns/local/svc/a/i0\t{ "host":"10.0.0.1","port":65536 }', A1],
     [_row(b"local/svc/", b"a", b"i1", "10.0.0.2", 81)],
     [("/skydns/local/svc/a/i0", b'{ "host":"10.0.0.1","port":65536 }')]),
    ([b'/skydns/local/svc/a/i0\t{"host":"1.2.3.400","port":1}', b'/skydns/local/svc/a/i1\t{"host":"1.2.3.4","port":99999}'],
     [], [("/skydns/local/svc/a/i0", b'{"host":"1.2.3.400","port":1}'),
          ("/skydns/local/svc/a/i1", b'{"host":"1.2.3.4","port":99999}')]),
    # a directory part with an empty label or one over 63 octets: both lines of the row
    ([b'/skydns/local//a/i0\t{"host":"10.0.0.1","port":1}', b'/skydns/local//a/i1\t{"host":"10.0.0.2","port":1}', B],
     [_row(b"local/svc/", b"b", b"x", "10.0.1.1", 65535)],
     [("/skydns/local//a/i0", b'{"host":"10.0.0.1","port":1}'), ("/skydns/local//a/i1", b'{"host":"10.0.0.2","port":1}')]),
])
def test_a_page_is_read_into_rows(lines, rows, pending):
    reader = PageReader("/skydns/")
    got_rows, got_pending, source = reader.read(b"\n".join(lines))
    assert list(got_rows) == rows
    assert got_pending == pending
    assert source.pair(lines[-1].partition(b"\t")[0]) == (lines[-1].partition(b"\t")[0].decode(),
                                                           lines[-1].partition(b"\t")[2])


@pytest.mark.parametrize("where, plain", [
    (b"", True), (b"a/", True), (b"local/svc/", True), (b"v" * 63 + b"/", True),
    (b"v" * 64 + b"/", False), (b"/", False), (b"a//", False), (b"/a/", False),
])
def test_plain_directory(where, plain):
    assert plain_directory(where) is plain
