"""Log lines: plain shape, JSON parse line by line, secret masking, bad settings."""
from __future__ import annotations

import io
import json
import logging
import re

import pytest

from dnsdisco.ops import logs
from dnsdisco.config import ConfigError, load

PLAIN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                   r"[\w.]+: .*$")


@pytest.fixture
def capture():
    """setup() into a buffer; restore the root logger afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("dnsdisco").level
    buf = io.StringIO()

    def configure(level="info", fmt="plain", secrets=()):
        buf.seek(0); buf.truncate()
        logs.setup(level, fmt, buf, secrets=secrets)
        return buf
    yield configure
    if logs._installed is not None:
        root.removeHandler(logs._installed)
        logs._installed = None
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("dnsdisco").setLevel(saved[2])
    logs._secret_filter._secrets.clear()


def lines(buf: io.StringIO) -> list[str]:
    return buf.getvalue().splitlines()


def test_plain_shape(capture):
    buf = capture("info", "plain")
    log = logging.getLogger("dnsdisco.etcd.sync")
    log.info("first sync done", extra=logs.fields(revision=42, records=1000, etcd="http://127.0.0.1:2379"))
    log.warning("bad value", extra=logs.fields(key="/skydns/local/svc/x y", error='not "JSON"'))
    log.debug("hidden at info")
    out = lines(buf)
    assert len(out) == 2
    assert all(PLAIN.match(line) for line in out), out
    assert out[0].endswith(" INFO dnsdisco.etcd.sync: first sync done revision=42 records=1000 "
                           "etcd=http://127.0.0.1:2379")
    assert 'key="/skydns/local/svc/x y" error="not \\"JSON\\""' in out[1]


def test_one_line_per_event_even_with_newlines_and_exceptions(capture):
    buf = capture("debug", "plain")
    log = logging.getLogger("dnsdisco.dns.records")
    log.warning("key %s is bad", "/skydns/a\nFAKE 2026-01-01T00:00:00Z ERROR injected")
    try:
        raise ValueError("two\nlines")
    except ValueError:
        log.exception("handler failed")
    out = lines(buf)
    assert len(out) == 2
    assert "\\n" in out[0] and "ValueError" in out[1] and "exc=" in out[1]


def test_json_lines_parse_one_by_one(capture):
    buf = capture("debug", "json")
    log = logging.getLogger("dnsdisco.etcd.sync")
    log.info("first sync done", extra=logs.fields(revision=42, records=3, msg="clashing field"))
    log.debug("a\nmultiline %s", "message")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("oops")
    logging.getLogger("dnsdisco").info("q \u2028 sep")
    objs = [json.loads(line) for line in lines(buf)]
    assert len(objs) == 4
    first = objs[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert (first["level"], first["logger"], first["msg"]) == ("info", "dnsdisco.etcd.sync", "first sync done")
    assert (first["revision"], first["records"], first["msg_"]) == (42, 3, "clashing field")
    assert objs[1]["msg"] == "a\nmultiline message" and objs[1]["level"] == "debug"
    assert objs[2]["level"] == "error" and "ZeroDivisionError" in objs[2]["exc"]


def test_library_loggers_only_warn(capture):
    buf = capture("debug", "plain")
    logging.getLogger("grpc._channel").info("chatty library")
    logging.getLogger("grpc._channel").warning("library trouble")
    logging.getLogger("dnsdisco.x").debug("our debug")
    text = buf.getvalue()
    assert "chatty library" not in text and "library trouble" in text and "our debug" in text


def test_setup_twice_replaces_the_handler(capture):
    capture("info", "plain")
    buf = capture("info", "json")
    logging.getLogger("dnsdisco").info("once")
    assert len(lines(buf)) == 1 and json.loads(lines(buf)[0])["msg"] == "once"


@pytest.mark.parametrize("level, fmt, words", [
    ("verbose", "plain", "--log-level 'verbose'"),
    ("info", "xml", "--log-format 'xml'"),
])
def test_bad_level_or_format_is_a_value_error(level, fmt, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        logs.setup(level, fmt, io.StringIO())


def test_log_format_option_is_checked_when_loading():
    assert load("serve", env={"DNSDISCO_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="DNSDISCO_LOG_FORMAT='xml'"):
        load("serve", env={"DNSDISCO_LOG_FORMAT": "xml"})


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_secrets_never_appear(capture, fmt):
    buf = capture("debug", fmt, secrets=["hunter2-pass"])
    logs.add_secret(b"file-secret")
    log = logging.getLogger("dnsdisco.etcd.client")
    log.info("connecting with password %s", "hunter2-pass")
    log.info("auth", extra=logs.fields(password="hunter2-pass", other="x-file-secret-y", n=3))
    try:
        raise PermissionError("rejected hunter2-pass")
    except PermissionError:
        log.exception("login failed")
    text = buf.getvalue()
    assert "hunter2-pass" not in text and "file-secret" not in text
    assert text.count("***") >= 4


def test_secret_values_come_from_secret_options(monkeypatch):
    from dnsdisco import config
    monkeypatch.setattr(config, "OPTIONS", config.OPTIONS + [
        config.Option("etcd_password", config.parse_str, "", "test", ("serve",), secret=True, flag=False)])
    cfg = config.load("serve", env={"DNSDISCO_ETCD_PASSWORD": "pw-from-env"})
    assert config.secret_values(cfg) == ["pw-from-env"]


def test_query_log_line(capture):
    buf = capture("info", "plain")
    logs.QueryLog()(("127.0.0.1", 40000), "udp", "hello.svc.local", "A", "NOERROR", 0.00005)
    (line,) = lines(buf)
    assert line.endswith("dnsdisco.query: query client=127.0.0.1:40000 transport=udp qname=hello.svc.local "
                         "qtype=A rcode=NOERROR ms=0.05")
