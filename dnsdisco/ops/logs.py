"""Log lines: one line per event, plain text or JSON, never a secret.

Modules log through the standard `logging` module under the `dnsdisco.` namespace and
pass structured values with `extra=fields(...)`:

    log = logging.getLogger("dnsdisco.etcd.sync")
    log.info("first sync done", extra=fields(revision=42, records=1000))

`setup(level, fmt)` installs one handler on the root logger that writes, per event, either

    2026-11-24T22:00:00.123Z INFO dnsdisco.etcd.sync: first sync done revision=42 records=1000

(`plain`: UTC time with milliseconds, level, logger, message, then key=value pairs; a value
with spaces, quotes, `=` or control characters is written as a JSON string, so a line can
always be split back into its fields), or

    {"ts": "2026-11-24T22:00:00.123Z", "level": "info", "logger": "dnsdisco.etcd.sync",
     "msg": "first sync done", "revision": 42, "records": 1000}

(`json`: one object per line; fields sit at the top level beside ts, level, logger and
msg; a field named like one of those (or `exc`) is written with a trailing underscore).
An exception (`log.exception`, `exc_info=True`) becomes the field `exc`, its traceback
escaped onto the same line. Newlines and other control characters in messages (etcd keys
and query names are data from outside) are escaped, so one event is always one line.

Secrets: the values of secret settings (options with `secret=True`, e.g. the etcd
password) and any value given to `add_secret()` (a password read from a file) are
replaced by `***` wherever they would appear in a line, message, field or traceback.

Noise: library loggers (gevent, grpc) only pass warnings and errors even at `debug`.
Queries are logged only when `--log-queries` is on, through `QueryLog`. Each bad etcd
value is logged once per key (etcd/sync.py keeps the keys it has reported).
"""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any, Iterable, Mapping, TextIO

from dnsdisco.dns.names import format_hostport


LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}
FORMATS = ("plain", "json")
RESERVED = frozenset(("ts", "level", "logger", "msg", "exc"))
MASK = "***"

# Characters that would break a line or a terminal: C0 controls and DEL, escaped.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
_BARE_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                       "_.:/@[]+-,*%#()")


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """`extra=` argument carrying structured fields: `log.info("msg", extra=fields(key=k))`."""
    return {"fields": values}


# ---------------------------------------------------------------- parsing settings

def parse_level(text: Any) -> int:
    value = str(text).strip().lower()
    if value not in LEVELS:
        raise ValueError(f"--log-level {text!r}: expected one of debug, info, warning, error")
    return LEVELS[value]


def parse_format(text: Any) -> str:
    value = str(text).strip().lower()
    if value not in FORMATS:
        raise ValueError(f"--log-format {text!r}: expected plain or json")
    return value


# ---------------------------------------------------------------- secrets

class SecretFilter(logging.Filter):
    """Replaces every known secret value in a record by `***` before any formatter sees it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: Any) -> None:
        if isinstance(secret, bytes):
            secret = secret.decode("utf-8", "replace")
        if isinstance(secret, str) and secret and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)  # mask "abc123" before "abc"

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg = self.mask(record.getMessage())
        record.args = None
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            record.fields = {k: v if isinstance(v, (int, float, bool, type(None))) else self.mask(
                _plain_value(v) if not isinstance(v, str) else v) for k, v in extra.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True



# ---------------------------------------------------------------- formatters

def _timestamp(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


def _exception_text(record: logging.LogRecord) -> str | None:
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    parts = [p for p in (record.exc_text, record.stack_info) if p]
    return "\n".join(parts) if parts else None


def _record_fields(record: logging.LogRecord) -> Mapping[str, Any]:
    extra = getattr(record, "fields", None)
    return extra if isinstance(extra, Mapping) else {}


def _plain_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if not isinstance(value, str):
        if isinstance(value, (list, tuple, dict)):
            try:
                return json.dumps(value, ensure_ascii=False, default=str)
            except (TypeError, ValueError):
                pass
        value = str(value)
    if value and all(ch in _BARE_SAFE for ch in value):
        return value
    return json.dumps(value, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """`TIME LEVEL logger: message key=value ...` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().translate(_ESCAPES)
        parts = [_timestamp(record.created), record.levelname, f"{record.name}:", message]
        for key, value in _record_fields(record).items():
            parts.append(f"{str(key).translate(_ESCAPES).replace(' ', '_')}={_plain_value(value)}")
        exc = _exception_text(record)
        if exc:
            parts.append(f"exc={json.dumps(exc, ensure_ascii=False)}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the fields, and exc if any."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {"ts": _timestamp(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "msg": record.getMessage()}
        for key, value in _record_fields(record).items():
            key = str(key)
            while key in obj or key in RESERVED:
                key += "_"
            obj[key] = value
        exc = _exception_text(record)
        if exc:
            obj["exc"] = exc
        # ensure_ascii keeps U+2028/U+2029 escaped too, so a line is a line for every reader
        return json.dumps(obj, default=str, ensure_ascii=True)


# ---------------------------------------------------------------- setup

_installed: logging.Handler | None = None
_secret_filter = SecretFilter()


def setup(level: str = "info", fmt: str = "plain", stream: TextIO | None = None,
          secrets: Iterable[str] = ()) -> logging.Handler:
    """Send every log event to `stream` (stderr) as one line; call again to reconfigure.

    Raises ValueError naming the setting for an unknown level or format.
    """
    global _installed
    numeric = parse_level(level)
    formatter = JsonFormatter() if parse_format(fmt) == "json" else PlainFormatter()
    for secret in secrets:
        _secret_filter.add(secret)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter)
    handler.addFilter(_secret_filter)
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    _installed = handler
    # libraries: warnings and errors only; dnsdisco: the chosen level
    root.setLevel(max(numeric, logging.WARNING))
    logging.getLogger("dnsdisco").setLevel(numeric)
    logging.captureWarnings(True)
    return handler


def add_secret(value: Any) -> None:
    """Mask `value` in every later log line (e.g. a password read from a file)."""
    _secret_filter.add(value)


# ---------------------------------------------------------------- per-query lines

class QueryLog:
    """One INFO line per query on `dnsdisco.query`; built only when --log-queries is on."""

    def __init__(self, logger: logging.Logger | str = "dnsdisco.query") -> None:
        self.log = logging.getLogger(logger) if isinstance(logger, str) else logger

    def __call__(self, client: tuple, transport: str, qname: str, qtype: str | int, rcode: str | int,
                 seconds: float | None = None) -> None:
        values: dict[str, Any] = {"client": format_hostport(client[0], client[1]) if client else "-",
                                  "transport": transport, "qname": qname, "qtype": qtype, "rcode": rcode}
        if seconds is not None:
            values["ms"] = round(seconds * 1000, 3)
        self.log.info("query", extra={"fields": values})


def fail(command: str, message: str, code: int = 1) -> int:
    """A command's error as its user reads it: one line `dnsdisco COMMAND: message` on stderr
    (no traceback), and the exit code to return (2: bad input, 1: the world failed)."""
    print(f"dnsdisco {command}: {message}", file=sys.stderr)
    return code
