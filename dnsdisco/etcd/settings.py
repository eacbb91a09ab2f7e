"""From a command's settings to a connected, checked etcd client: TLS files, user, password.

`serve`, `register` and `status` (and the Python API) all come through here, so they take
the same settings and fail the same way: a setting that cannot work (an unreadable file,
a rejected password, a TLS handshake etcd refuses, a role without the needed permission)
becomes one `StartupError` line that names the problem; the caller prints
`dnsdisco <command>: <message>` and exits non-zero, without a traceback. `serve` takes only
the checked settings (`kv_settings`, no gRPC) and runs `check_access` on its helper process
(etcd/helper.ProcessKV): its own process never loads gRPC.

The password never comes from a flag (it would show in `ps`): it is the secret setting
`etcd_password` (env DNSDISCO_ETCD_PASSWORD or the config file) or the first line of
`--etcd-password-file`. Once read it is registered with the log filter, so no log line
shows it, and it is removed from error messages.

Importing this module sets GRPC_VERBOSITY=ERROR unless it is set, before gRPC loads, so
gRPC's C core does not print a line per failed TLS handshake; import it before etcd/client.py.
"""
from __future__ import annotations

import logging
import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

PASSWORD_ENV = "DNSDISCO_ETCD_PASSWORD"
DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
SECURITY_DOC = "docs/etcd-security.md"


class StartupError(Exception):
    """An etcd setting that cannot work; the message is one line naming the problem."""


# ---------------------------------------------------------------- settings

def _setting(cfg, name: str, default=""):
    try:
        return cfg[name]
    except KeyError:
        return default


def read_password(cfg) -> str | None:
    """The etcd password: `--etcd-password-file` (first line) or the secret `etcd_password`
    setting (DNSDISCO_ETCD_PASSWORD or the config file); giving both is an error."""
    path = _setting(cfg, "etcd_password_file")
    value = _setting(cfg, "etcd_password")
    if path and value:
        raise StartupError(f"the etcd password is given twice ({PASSWORD_ENV} or the config file, and "
                           f"--etcd-password-file {path}); give one")
    if not path:
        return value or None
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise StartupError(f"cannot read --etcd-password-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise StartupError(f"--etcd-password-file {path} is not UTF-8 text") from None
    password = text.splitlines()[0] if text.splitlines() else ""
    if not password:
        raise StartupError(f"--etcd-password-file {path} is empty")
    return password


def _check_files(ca: str, cert: str, key: str) -> None:
    """Name the flag and the file that cannot be read, before any connection is tried."""
    from dnsdisco.etcd.types import EtcdConfigError, read_pem
    for flag, path in (("--etcd-cacert", ca), ("--etcd-cert", cert), ("--etcd-key", key)):
        if path:
            try:
                read_pem(path, flag)
            except EtcdConfigError as exc:
                raise StartupError(str(exc)) from None
    if bool(cert) != bool(key):
        raise StartupError("--etcd-cert and --etcd-key go together (the client certificate and its key)")


def kv_settings(cfg, *, endpoints: list[str] | None = None, timeout: float | None = None,
                scrub_env: bool = False, on_secret=None) -> dict:
    """The settings of a KV (`KV(**settings)`) for the command's etcd settings, checked
    without gRPC: `serve` hands them to its helper process (etcd/helper.py). Raises StartupError
    for a setting that cannot work.

    endpoints: overrides cfg.etcd (e.g. the embedded etcd); default cfg.etcd, else
    http://127.0.0.1:2379. timeout: overrides cfg.etcd_timeout. scrub_env: drop the
    password from os.environ once read, so child processes (a wrapped command, a health
    check) do not inherit it. on_secret: called with the password read, so the caller's logs can
    mask it (etcd/ does not import the log setup).
    """
    password = read_password(cfg)
    if password and on_secret is not None:
        on_secret(password)           # the caller's log redaction (ops.logs.add_secret)
    if scrub_env:
        os.environ.pop(PASSWORD_ENV, None)
    user = _setting(cfg, "etcd_user") or None
    if user and not password:
        raise StartupError(f"--etcd-user {user} needs a password: set {PASSWORD_ENV} or give "
                           "--etcd-password-file")
    if password and not user:
        raise StartupError("an etcd password is given but no --etcd-user")
    ca, cert, key = (_setting(cfg, "etcd_cacert"), _setting(cfg, "etcd_cert"), _setting(cfg, "etcd_key"))
    _check_files(ca, cert, key)
    default = DEFAULT_ENDPOINT.replace("http:", "https:") if ca or cert else DEFAULT_ENDPOINT
    endpoints = list(endpoints or _setting(cfg, "etcd", None) or [default])
    from dnsdisco.etcd.types import EtcdError, check_settings
    try:
        return check_settings(endpoints,
                              timeout=float(timeout if timeout is not None else _setting(cfg, "etcd_timeout", 5.0)),
                              ca=ca or None, cert=cert or None, key=key or None, user=user, password=password)
    except (EtcdError, ValueError) as exc:
        raise StartupError(_scrub(str(exc), password)) from None


def connect(cfg, *, log: logging.Logger | None = None, endpoints: list[str] | None = None,
            timeout: float | None = None, scrub_env: bool = False, on_secret=None):
    """A KV for the command's etcd settings (kv_settings, whose arguments these are).
    Raises StartupError for a setting that cannot work."""
    settings = kv_settings(cfg, endpoints=endpoints, timeout=timeout, scrub_env=scrub_env, on_secret=on_secret)
    from dnsdisco.etcd.client import KV, EtcdError
    try:
        return KV(**settings)
    except (EtcdError, ValueError) as exc:
        raise StartupError(_scrub(str(exc), settings["password"])) from None


# ---------------------------------------------------------------- reachability

def unreachable(endpoints: list[str], timeout: float = 1.5) -> str | None:
    """None when at least one endpoint accepts a TCP connection within `timeout` seconds
    (all are tried at once), else one line naming every endpoint and why. A quick answer for
    the one-shot commands: gRPC alone would retry until the etcd timeout and then report its
    own wording."""
    import socket
    import threading
    from dnsdisco.dns.names import parse_hostport
    from dnsdisco.etcd.types import parse_endpoint
    problems: dict[str, str] = {}
    reached = threading.Event()

    def probe(url: str) -> None:
        shown, target = parse_endpoint(url)
        try:
            with socket.create_connection(parse_hostport(target), timeout=timeout):
                reached.set()
        except ConnectionRefusedError:
            problems[shown] = "connection refused"
        except socket.timeout:
            problems[shown] = f"no answer within {timeout:g}s"
        except OSError as exc:
            problems[shown] = exc.strerror or str(exc)

    threads = [threading.Thread(target=probe, args=(url,), daemon=True) for url in endpoints]
    for thread in threads:
        thread.start()
    deadline = timeout + 0.5
    for thread in threads:
        thread.join(deadline)
        if reached.is_set():
            return None
    if reached.is_set():
        return None
    shown = ", ".join(f"{url} ({problems.get(parse_endpoint(url)[0], 'no answer')})" for url in endpoints)
    hint = "is it running? give --etcd URL for another one"
    if any(parse_endpoint(url)[0] in (DEFAULT_ENDPOINT, DEFAULT_ENDPOINT.replace("http:", "https:"))
           for url in endpoints):
        hint = ("`dnsdisco serve` runs an embedded etcd there while it runs: start it first, "
                "or give --etcd URL")
    return f"cannot reach etcd at {shown}; {hint}"


# ---------------------------------------------------------------- start-up check

def check_access(kv, where: str, write: bool, *, log: logging.Logger | None = None,
                 timeout: float | None = None) -> bool:
    """Ask etcd once whether this client may do its job, without changing anything.

    write=False (serve, status): read the range under the prefix `where`.
    write=True (register): read and write the key `where` (a transaction whose condition
    never holds, so etcd checks the permissions of its put but never applies it).

    Returns True when etcd said yes, False when no endpoint answered within `timeout`
    (default: the client's timeout; the caller's loop retries and reports the outage).
    Raises StartupError for rejected credentials, missing permissions and failed TLS
    handshakes: waiting will not fix those.
    """
    log = log or logging.getLogger("dnsdisco.etcd")
    from dnsdisco.etcd.types import EtcdAuthError, EtcdError, EtcdUnavailable
    password = getattr(kv, "_password", None)
    saved = kv.timeout
    if timeout is not None:
        kv.timeout = min(saved, timeout)   # start-up only: nothing else uses kv yet
    try:
        if write:
            kv.check_write(where)
        else:
            kv.check_read(where)
    except EtcdAuthError as exc:
        raise StartupError(_scrub(_auth_message(str(exc), write), password)) from None
    except EtcdUnavailable as exc:
        tls = tls_problem(str(exc), kv)
        if tls:
            raise StartupError(_scrub(tls, password)) from None
        # the caller's loop reports the outage itself (once); do not say it twice
        log.debug("start-up check: etcd not reachable yet (%s)", _scrub(str(exc), password))
        return False
    except EtcdError as exc:
        raise StartupError(_scrub(str(exc), password)) from None
    finally:
        kv.timeout = saved
    return True


def explain(exc: Exception, kv=None) -> str:
    """One line for an etcd error met outside check_access (e.g. by `status`)."""
    from dnsdisco.etcd.types import EtcdAuthError
    text = str(exc)
    password = getattr(kv, "_password", None)
    if isinstance(exc, EtcdAuthError):
        return _scrub(_auth_message(text, False), password)
    return _scrub(tls_problem(text, kv) or text, password)


def _auth_message(text: str, write: bool) -> str:
    if "denied" in text:
        need = "read and write on its key" if write else "read on the prefix"
        return f"{text} (the role needs {need}; see {SECURITY_DOC})"
    return text


# gRPC reports a failed handshake inside the "last error" of UNAVAILABLE; pick it out
_TLS_HINTS = (
    ("CERTIFICATE_VERIFY_FAILED", "etcd's server certificate is not signed by --etcd-cacert"),
    ("Peer name", "etcd's server certificate does not name the endpoint's host"),
    ("BAD_CERTIFICATE", "etcd refused our client certificate, or we sent none: give --etcd-cert and "
                        "--etcd-key signed by a CA in etcd's --trusted-ca-file"),
    ("CERTIFICATE_REQUIRED", "etcd requires a client certificate (--etcd-cert/--etcd-key)"),
    ("Handshake read failed", "no TLS answer: does etcd serve https at that address?"),
    ("WRONG_VERSION_NUMBER", "no TLS answer: does etcd serve https at that address?"),
)


def tls_problem(text: str, kv=None) -> str | None:
    """A one-line TLS explanation if `text` (an EtcdUnavailable message) is a failed handshake."""
    if "andshake" not in text and "SSL_ERROR" not in text:
        return None
    hint = next((h for marker, h in _TLS_HINTS if marker in text), "TLS handshake failed")
    endpoints = ", ".join(getattr(kv, "endpoints", []) or [])
    detail = text.rsplit("OPENSSL_internal:", 1)[-1] if "OPENSSL_internal:" in text else text.rsplit(": ", 1)[-1]
    detail = detail.strip()
    if detail.endswith(": OK"):          # gRPC appends the status of the last read
        detail = detail[:-4]
    where = f" with {endpoints}" if endpoints else ""
    return f"TLS handshake{where} failed: {hint} ({detail})"


def _scrub(text: str, password: str | None) -> str:
    text = " ".join(text.split())      # one line, whatever the layers below wrote
    return text.replace(password, "***") if password else text
