"""One frozen configuration per command: flag > DNSDISCO_* env > TOML file > default.

Every option is declared once, in a section of SECTIONS (OPTIONS lists them all, in that
order); the CLI, the environment, the config file, `--help`, README's tables and the example
file all read that table, so a setting has one name, one parser and one help text.

Longer than 500 lines on purpose: the table of every setting is most of it, and it stays in
one place with the code that reads it (parsers, loading, the example file) so that adding a
setting touches one file.
"""
from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from dnsdisco.dns.names import format_hostport, parse_address_port, parse_hostport, parse_port
from dnsdisco.net.acl import DEFAULT_ALLOW, parse_network

ENV_PREFIX = "DNSDISCO_"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the setting and its source."""


# ---------------------------------------------------------------- value parsers



def parse_listen(text: str) -> tuple[str, int]:
    return parse_address_port(text, 53, names=("localhost",),
                              hint="listen on an IP address (e.g. 127.0.0.1:5300 or [::1]:5300)")


def parse_etcd_url(text: str) -> str:
    text = str(text).strip()
    if "://" not in text:
        text = "http://" + text
    scheme, rest = text.split("://", 1)
    if scheme not in ("http", "https"):
        raise ValueError(f"{text!r}: etcd endpoints are http:// or https:// URLs")
    parse_hostport(rest.rstrip("/"), default_port=2379)
    return f"{scheme}://{rest.rstrip('/')}"


def _number(convert: Callable[[str], Any], kind: str, low, high) -> Callable[[Any], Any]:
    def parse(text: Any):
        if isinstance(text, bool):      # TOML true is no number, though Python's int() takes it
            raise ValueError(f"{text!r} is not {kind}")
        try:
            value = convert(str(text).strip())
        except ValueError:
            raise ValueError(f"{text!r} is not {kind}") from None
        if low is not None and value < low:
            raise ValueError(f"{value} is below the minimum {low}")
        if high is not None and value > high:
            raise ValueError(f"{value} is above the maximum {high}")
        return value
    return parse


def parse_int(low: int | None = None, high: int | None = None) -> Callable[[Any], int]:
    return _number(int, "a whole number", low, high)


def parse_float(low: float | None = None, high: float | None = None) -> Callable[[Any], float]:
    return _number(float, "a number", low, high)


def parse_bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not true or false")


def parse_str(text: Any) -> str:
    return str(text)


def parse_zone(text: str) -> str:
    from dnsdisco.dns.names import BadName, normalize
    try:
        zone = normalize(str(text))
    except BadName as exc:
        raise ValueError(str(exc)) from None
    if not zone:
        raise ValueError("the root zone cannot be served")
    return zone


def parse_prefix(text: str) -> str:
    text = str(text).strip()
    if not text.startswith("/"):
        raise ValueError(f"{text!r}: an etcd prefix starts with '/' (e.g. /skydns)")
    return "/" + text.strip("/") if text.strip("/") else ""


# -- production (http, logs): parsers for the rows of that block below

def parse_http(text: Any) -> tuple[str, int] | None:
    """`HOST:PORT` of the metrics/health endpoint; "off" (or empty) turns it off."""
    text = str(text).strip()
    if text.lower() in ("", "off", "none", "false", "no"):
        return None
    return parse_address_port(text, 9153, names=("localhost",),
                              hint="serve HTTP on an IP address (e.g. 127.0.0.1:9153)")


def parse_ip(text: Any) -> str:
    """An IPv4 or IPv6 address, in its normal form."""
    try:
        return str(ipaddress.ip_address(str(text).strip()))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None



def parse_choice(*choices: str) -> Callable[[Any], str]:
    def parse(text: Any) -> str:
        value = str(text).strip().lower()
        if value not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value
    return parse


# -- register: parsers of register/record.py and register/checks.py

def _register_parser(name: str, module: str) -> Callable[[Any], Any]:
    """A parser from dnsdisco.register.<module>, imported when used (keeps this module light)."""
    def parse(text: Any) -> Any:
        import importlib
        return getattr(importlib.import_module(f"dnsdisco.register.{module}"), name)(str(text))
    parse.__name__ = name
    return parse


# ---------------------------------------------------------------- the option table

@dataclass(frozen=True)
class Option:
    name: str                      # config key; flag --name-with-dashes; env DNSDISCO_NAME
    parse: Callable[[Any], Any]
    default: Any
    help: str
    commands: tuple[str, ...]
    many: bool = False             # repeatable flag, comma list in env, array in TOML
    metavar: str | None = None
    secret: bool = False           # never printed or logged
    flag: bool = True              # False: env/file only (e.g. passwords)
    is_switch: bool = False        # --flag without a value
    section: str = ""              # the title of its Section (set from SECTIONS)

    @property
    def cli(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


@dataclass(frozen=True)
class Section:
    """A group of options: `--help` shows them under `title`, README's settings tables and
    the example file follow the same order (gunicorn's settings are kept the same way)."""
    title: str
    about: str
    options: list[Option]


SERVE = ("serve",)
REGISTER = ("register",)
STATUS = ("status",)
ETCD_USERS = ("serve", "register", "status")

SECTIONS: list[Section] = [
    Section("etcd", "the etcd that holds the records: where, how long to wait, TLS and login", [
        Option("etcd", parse_etcd_url, [], "etcd endpoint URL(s); several fail over. Default: an etcd on "
               "127.0.0.1:2379, or (serve only) an embedded one started for you", ETCD_USERS, many=True, metavar="URL[,URL...]"),
        Option("prefix", parse_prefix, "/skydns", "etcd key prefix of the records (CoreDNS/SkyDNS layout)", ETCD_USERS, metavar="PATH"),
        Option("etcd_timeout", parse_float(0.1), 5.0, "seconds to wait for one etcd call", ETCD_USERS, metavar="SECONDS"),
        Option("etcd_cacert", parse_str, "", "CA certificate (PEM) that signed etcd's server certificate; "
               "endpoints are then https://", ETCD_USERS, metavar="FILE"),
        Option("etcd_cert", parse_str, "", "client certificate (PEM) for etcd's mutual TLS (--client-cert-auth); "
               "with --etcd-key", ETCD_USERS, metavar="FILE"),
        Option("etcd_key", parse_str, "", "private key (PEM) of --etcd-cert", ETCD_USERS, metavar="FILE"),
        Option("etcd_user", parse_str, "", "etcd user to log in as; the password comes from DNSDISCO_ETCD_PASSWORD "
               "or --etcd-password-file, never from a flag", ETCD_USERS, metavar="NAME"),
        Option("etcd_password_file", parse_str, "", "file whose first line is the password of --etcd-user",
               ETCD_USERS, metavar="FILE"),
        Option("etcd_password", parse_str, "", "password of --etcd-user (environment or config file only)",
               ETCD_USERS, secret=True, flag=False),
        Option("embedded_etcd", parse_bool, True, "start a local etcd when none is given and none answers on 127.0.0.1:2379", SERVE, metavar="BOOL"),
        Option("state_dir", parse_str, "", "where the embedded etcd keeps its data (default ~/.local/state/dnsdisco)", SERVE, metavar="DIR"),
        Option("snapshot_file", parse_str, "", "file serve saves its records to when it stops and answers from "
               "at its next start until its first listing is built, negative answers SERVFAIL meanwhile; "
               "used when saved from the same etcd, prefix and zones within 10 minutes of etcd's last "
               "answer (docs/operations.md; empty = off)", SERVE, metavar="FILE"),
    ]),
    Section("zones and records", "what is served: zones, zone files, the default nameserver, TTLs", [
        Option("zone", parse_zone, ["svc.local"], "zone to answer authoritatively (repeatable)", SERVE + STATUS, many=True, metavar="NAME"),
        Option("zones_dir", parse_str, "", "directory of RFC 1035 zone files (NAME.zone) served beside etcd", SERVE + STATUS, metavar="DIR"),
        Option("ns_address", parse_ip, [], "address of the default nameserver ns.dns.<zone>, served as its A/AAAA and as "
               "glue so the zone is never lame (repeatable; default: the specific --listen addresses)", SERVE + STATUS,
               many=True, metavar="ADDR"),
        Option("ttl", parse_int(0, 2**31 - 1), 30, "TTL of records that set none", SERVE + STATUS, metavar="SECONDS"),
        Option("neg_ttl", parse_int(0, 2**31 - 1), 5, "negative-answer TTL (SOA minimum), kept short so new services show up fast", SERVE + STATUS, metavar="SECONDS"),
    ]),
    Section("listening and answering", "where queries are answered, the reply cache, how TCP clients are held", [
        Option("listen", parse_listen, [("127.0.0.1", 53)], "address to answer on, UDP and TCP (repeatable; "
               "[::1]:5300 for IPv6; status: gives the default NS its addresses, as in serve)", SERVE + STATUS, many=True,
               metavar="HOST:PORT"),
        Option("cache_size", parse_int(1000, 10_000_000), 100_000, "distinct questions whose packed replies "
               "are kept for repeats (about 0.5 KB of memory each; the oldest go 1,024 at a time when full)", SERVE,
               metavar="N"),
        Option("precompute_budget", parse_int(0, 1_000_000), 0, "MiB of replies packed ahead in idle time "
               "after each full sync (A and SRV of every service, A of every instance), so first queries "
               "are cache hits; it stops earlier at 7/8 of --cache-size, so raise both (0 = off)", SERVE,
               metavar="MIB"),
        Option("tcp_idle_timeout", parse_float(0.1), 10.0, "seconds an idle TCP connection is kept open", SERVE, metavar="SECONDS"),
        Option("tcp_max_conns", parse_int(1), 1000, "open TCP connections at most", SERVE, metavar="N"),
        Option("tcp_max_per_client", parse_int(0), 64, "open TCP connections at most per client address "
               "(IPv6: per /64); 0 = no per-client cap", SERVE, metavar="N"),
        Option("tcp_read_timeout", parse_float(0.1), 2.0, "seconds to receive one whole TCP message once it "
               "has begun, and to send one reply; slower clients are cut (slowloris)", SERVE, metavar="SECONDS"),
        Option("tcp_max_inflight", parse_int(1, 1000), 16, "queries answered at once per TCP connection; "
               "reading pauses beyond it", SERVE, metavar="N"),
    ]),
    Section("forwarding", "names outside our zones, for the clients allowed to ask", [
        Option("forward", lambda text: parse_upstream_item(text), [], "upstream resolver(s) for names outside our zones, "
               "tried in order with fail-over: ADDRESS, ADDRESS:PORT, [IPv6]:PORT, or resolv.conf:PATH for the nameservers "
               "of a file (repeatable). Default: no forwarding (REFUSED)", SERVE, many=True, metavar="UPSTREAM[,UPSTREAM...]"),
        Option("allow", parse_network, [parse_network(c) for c in DEFAULT_ALLOW],
               "client networks that may use forwarding; others get REFUSED for outside names (repeatable)",
               SERVE, many=True, metavar="CIDR"),
        Option("forward_timeout", parse_float(0.05), 1.5, "seconds to wait for one upstream try before the next", SERVE, metavar="SECONDS"),
        Option("forward_cache_size", parse_int(0), 10000, "forwarded answers kept in the cache at most (0 = no cache)", SERVE, metavar="N"),
    ]),
    Section("zone transfers", "AXFR/IXFR to secondaries, TSIG, NOTIFY (docs/transfers.md)", [
        Option("transfer_allow", parse_network, [], "client networks that may transfer zones (AXFR/IXFR) "
               "(repeatable); default none: every transfer is REFUSED", SERVE, many=True, metavar="CIDR"),
        Option("transfer_require_tsig", parse_bool, False, "transfers must also be signed with a key of "
               "--tsig-key-file / DNSDISCO_TSIG_KEYS (RFC 8945)", SERVE, is_switch=True),
        Option("tsig_key_file", parse_str, "", "file of TSIG keys, one 'name algorithm secret' line each "
               "(hmac-sha256, hmac-sha512, ...; base64 secret as tsig-keygen prints it)", SERVE, metavar="FILE"),
        Option("tsig_keys", parse_str, "", "TSIG keys as 'name algorithm secret' entries separated by ';' "
               "(environment or config file only)", SERVE, secret=True, flag=False),
        Option("notify", lambda text: _notify_target(text), [], "secondary to send NOTIFY to when a zone changes "
               "(repeatable; signed with the first TSIG key when keys are configured)", SERVE, many=True,
               metavar="ADDR[:PORT]"),
        Option("ixfr_journal_size", lambda text: _journal_size(text), (1000, 32 << 20), "bound of the IXFR "
               "journal: ENTRIES or ENTRIES:BYTES (K, M, G); older serials get the whole zone", SERVE,
               metavar="N[:BYTES]"),
    ]),
    Section("limits and abuse", "hostile etcd data, mass expiry, response rate limiting", [
        Option("max_value_bytes", parse_int(64), 65536, "etcd values larger than this are skipped with a "
               "warning naming the key", SERVE + STATUS, metavar="BYTES"),
        Option("max_records_per_name", parse_int(1), 1000, "instances served at most under one name (the "
               "first N by key); more are ignored with a warning naming the name", SERVE + STATUS, metavar="N"),
        Option("hold_fraction", parse_float(0.0, 1.0), 0.3, "mass-expiry guard: when deletions remove more than "
               "this share of a zone's records within --hold-window (and at least 10), keep serving them (a fault between "
               "the fleet and etcd, not a fleet that died at once); 0 turns the guard off", SERVE, metavar="FRACTION"),
        Option("hold_window", parse_float(0.1), 10.0, "mass-expiry guard: the window in which deletions are counted "
               "(default one default lease TTL: a cut-off fleet's leases all expire within it)", SERVE, metavar="SECONDS"),
        Option("hold_max", parse_float(0.0), 60.0, "mass-expiry guard: the longest a held record is still served; the hold "
               "ends earlier once half of the held records register again", SERVE, metavar="SECONDS"),
        Option("rrl_rate", parse_int(0), 0, "response rate limiting: UDP responses per second to one client "
               "/24 (IPv6 /56) for one name and type; 0 = off. TCP is never limited", SERVE, metavar="N"),
        Option("rrl_slip", parse_int(0, 10), 2, "with --rrl-rate: every Nth limited response goes out "
               "truncated (TC) so real clients retry over TCP; 0 = drop all, 1 = truncate all", SERVE, metavar="N"),
        Option("rrl_exempt", parse_network, [], "client networks never rate limited (repeatable)", SERVE,
               many=True, metavar="CIDR"),
    ]),
    Section("operations and logs", "HTTP endpoints, readiness, log lines", [
        Option("http", parse_http, None, "serve the live service catalogue page (/), its JSON (/v1/services), /metrics, "
               "/healthz and /readyz on this address (e.g. 127.0.0.1:9153); off by default", SERVE, metavar="HOST:PORT"),
        Option("max_stale", parse_float(0.0), 30.0, "/readyz answers 503 once etcd has been unreachable this long "
               "(DNS answers keep coming from the last snapshot)", SERVE, metavar="SECONDS"),
        Option("log_level", parse_choice("debug", "info", "warning", "error"), "info", "debug, info, warning or error", ETCD_USERS, metavar="LEVEL"),
        Option("log_format", parse_choice("plain", "json"), "plain", "log lines as plain text or one JSON object each",
               ETCD_USERS, metavar="plain|json"),
        Option("log_queries", parse_bool, False, "log one line per query (off: never a line per query)", SERVE,
               is_switch=True),
    ]),
    Section("register", "the record `dnsdisco register` keeps in etcd", [
        Option("address", _register_parser("check_host", "record"), "", "address (or host name) to register; default: this "
               "host's primary non-loopback address", REGISTER, metavar="IP"),
        Option("port", parse_port, None, "service port, published in the SRV record (0: address only, no SRV)",
               REGISTER, metavar="N"),
        Option("ttl", _register_parser("lease_ttl", "record"), 10, "lease TTL: the record disappears this long after the "
               "registrar dies; the lease is refreshed about every TTL/3 (minimum 2)", REGISTER, metavar="SECONDS"),
        Option("dns_ttl", parse_int(0, 2**31 - 1), None, "DNS TTL written in the record: how long caches keep "
               "the answer; at most the lease TTL (default: half of it, at least 1)", REGISTER, metavar="SECONDS"),
        Option("id", _register_parser("check_id", "record"), "", "instance id, the last key label (<id>.<NAME> in DNS); "
               "default <hostname>-<port>", REGISTER, metavar="ID"),
        Option("priority", parse_int(0, 65535), None, "SRV priority (lower is preferred; served default 10)",
               REGISTER, metavar="N"),
        Option("weight", parse_int(0, 65535), None, "SRV weight among equal priorities (served default 100)",
               REGISTER, metavar="N"),
        Option("text", parse_str, "", "TXT record text", REGISTER, metavar="TEXT"),
    ]),
    Section("health checks", "when `dnsdisco register` keeps the record: only while every check passes", [
        Option("check_http", _register_parser("check_url", "checks"), "", "health check: the record exists only while GET URL "
               "answers 2xx/3xx", REGISTER, metavar="URL"),
        Option("check_tcp", _register_parser("check_hostport", "checks"), [], "health check: the record exists only while a "
               "TCP connection to HOST:PORT opens (repeatable)", REGISTER, many=True, metavar="HOST:PORT"),
        Option("check_grpc", _register_parser("check_grpc_target", "checks"), [], "health check: the record exists only while "
               "grpc.health.v1 Check of SERVICE answers SERVING (repeatable)", REGISTER, many=True,
               metavar="HOST:PORT[/SERVICE]"),
        Option("check_cmd", parse_str, "", "health check: the record exists only while this shell command exits 0",
               REGISTER, metavar="CMD"),
        Option("check_interval", parse_float(0.1), 5.0, "seconds between health checks; one check may take "
               "this long (0.5 to 10 s)",
               REGISTER, metavar="SECONDS"),
        Option("check_timeout", parse_float(0.1), None, "seconds one probe may take (default: the interval, "
               "0.5 to 10 s)", REGISTER, metavar="SECONDS"),
        Option("check_rise", parse_int(1, 1000), 1, "passes in a row before an unhealthy instance is registered",
               REGISTER, metavar="N"),
        Option("check_fall", parse_int(1, 1000), 2, "failures in a row before a healthy instance is removed (2: "
               "one flaky probe removes nothing)", REGISTER, metavar="N"),
    ]),
    Section("status", "what `dnsdisco status` prints", [
        Option("format", parse_choice("text", "json", "zone"), "text", "output: aligned text, one JSON document, "
               "or (zone) the zone as served, as an RFC 1035 master file (NAME is then the zone)",
               STATUS, metavar="text|json|zone"),
    ]),
]

# each option knows its section; OPTIONS holds them all, in section order
SECTIONS = [replace(sec, options=[replace(opt, section=sec.title) for opt in sec.options]) for sec in SECTIONS]
OPTIONS: list[Option] = [opt for sec in SECTIONS for opt in sec.options]


def _notify_target(text: str) -> tuple[str, int]:
    from dnsdisco.net.notify import parse_target
    return parse_target(text)


def _journal_size(text) -> tuple[int, int]:
    if isinstance(text, tuple):
        return text
    from dnsdisco.net.journal import parse_size
    return parse_size(text)


def parse_upstream_item(text: str) -> str:
    """Check one --forward item now (reading a resolv.conf:PATH file); upstreams.parse_upstreams
    turns the checked items into (address, port) pairs."""
    from dnsdisco.net.upstreams import parse_upstream
    parse_upstream(str(text))
    return str(text).strip()


def options_for(command: str) -> list[Option]:
    return [o for o in OPTIONS if command in o.commands]


# ---------------------------------------------------------------- loading

class Config(Mapping[str, Any]):
    """A frozen set of settings with attribute access; `source(name)` says where each came from."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str]):
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))
        object.__setattr__(self, "_sources", MappingProxyType(dict(sources)))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is frozen")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def source(self, name: str) -> str:
        return self._sources[name]


def _split_env_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_value(opt: Option, raw: Any, where: str) -> Any:
    try:
        if opt.many:
            if isinstance(raw, str):
                items = _split_env_list(raw)
            elif isinstance(raw, (list, tuple)):
                items = []
                for item in raw:
                    items.extend(_split_env_list(item) if isinstance(item, str) else [item])
            else:
                items = [raw]
            return [opt.parse(item) for item in items]
        return opt.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def read_file(path: str) -> dict[str, Any]:
    """Read a TOML config file; keys are option names (dashes or underscores)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"--config {path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML: {exc}") from None
    # allow a [serve] / [register] table as well as top-level keys
    return data


COMMANDS = ("serve", "register", "status")


def _closest(word: str, choices: Iterable[str]) -> str | None:
    import difflib
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return close[0] if close else None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = _closest(word, choices)
    return f" (did you mean {close!r}?)" if close else ""


def file_settings(raw: Mapping[str, Any], command: str, config_path: str) -> dict[str, Any]:
    """The settings of `command` in a parsed config file: top-level keys, then its own
    [command] table over them. Top-level keys of other commands are skipped (one file may
    serve every command); a [command] table holds that command's settings only.

    Every problem is reported at once in one ConfigError: unknown keys and tables with a
    did-you-mean, and keys under [command] that belong to another command, naming it.
    """
    opts = {o.name for o in options_for(command)}
    every = {o.name for o in OPTIONS}
    problems: list[str] = []
    values: dict[str, Any] = {}

    def owners(name: str) -> list[str]:
        return [c for c in COMMANDS if any(o.name == name and c in o.commands for o in OPTIONS)]

    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in COMMANDS:
                close = _closest(key, COMMANDS)
                problems.append(f"unknown table [{key}] (did you mean [{close}]?)" if close else
                                f"unknown table [{key}] (tables are {', '.join(f'[{c}]' for c in COMMANDS)})")
            continue
        name = key.replace("-", "_")
        if name in opts:
            values[name] = value
        elif name not in every:
            problems.append(f"unknown setting {key!r}{_did_you_mean(name, every)}")
        # else: a setting of another command in a shared file
    section = raw.get(command)
    if isinstance(section, dict):
        for key, value in section.items():
            name = key.replace("-", "_")
            if name in opts:
                values[name] = value
            elif name in every:
                belongs = owners(name)
                problems.append(f"{key!r} under [{command}] is a setting of "
                                f"{' and '.join(f'`dnsdisco {c}`' for c in belongs)}, not of `dnsdisco {command}`"
                                f"; move it to [{belongs[0]}]")
            else:
                problems.append(f"unknown setting {key!r} under [{command}]{_did_you_mean(name, opts)}")
    if problems:
        if len(problems) == 1:
            raise ConfigError(f"--config {config_path}: {problems[0]}")
        raise ConfigError(f"--config {config_path}: {len(problems)} problems:" +
                          "".join(f"\n  - {problem}" for problem in problems))
    return values


def load(command: str, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         config_path: str | None = None) -> Config:
    """Merge the four sources for `command`. `flags` holds only the flags the user gave."""
    flags = dict(flags or {})
    env = os.environ if env is None else env
    opts = {o.name: o for o in options_for(command)}
    file_values: dict[str, Any] = {}
    if config_path is None:
        config_path = env.get(ENV_PREFIX + "CONFIG") or None
    if config_path:
        file_values = file_settings(read_file(config_path), command, config_path)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, opt in opts.items():
        if name in flags and flags[name] is not None:
            values[name] = _parse_value(opt, flags[name], opt.cli)
            sources[name] = "flag"
        elif opt.env in env and env[opt.env] != "":
            shown = "(hidden)" if opt.secret else repr(env[opt.env])
            values[name] = _parse_value(opt, env[opt.env], f"{opt.env}={shown}")
            sources[name] = "env"
        elif name in file_values:
            values[name] = _parse_value(opt, file_values[name], f"--config {config_path}: {name}")
            sources[name] = "file"
        else:
            default = opt.default
            values[name] = list(default) if isinstance(default, list) else default
            sources[name] = "default"
    return Config(values, sources)


def describe(cfg: Config, names: Iterable[str] | None = None) -> str:
    """One line of the effective settings for the log; secrets are never shown."""
    secret = {o.name for o in OPTIONS if o.secret}
    parts = []
    for name in names or cfg:
        value = "***" if name in secret and cfg[name] else cfg[name]
        parts.append(f"{name}={value}")
    return " ".join(parts)


def secret_values(cfg: Mapping[str, Any]) -> list[str]:
    """The values in `cfg` of every option declared secret, for `setup(secrets=...)`."""
    values: list[str] = []
    for name in dict.fromkeys(opt.name for opt in OPTIONS if opt.secret):   # once per setting
        if name in cfg:
            value = cfg[name]
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if item and str(item) not in values:
                    values.append(str(item))
    return values


# ---------------------------------------------------------------- the example file

EXAMPLE_NAME = "dnsdisco.example.toml"
_EXAMPLE_HEADER = """\
# dnsdisco: every setting of the config file, with its default and what it does.
#
# Generated from the option table in dnsdisco/config.py; regenerate it with
#     python3 -m dnsdisco.config --write-example
# (tests/unit/top/test_config_file.py fails when this file is stale). Do not edit it by hand: copy it.
#
# Use it with `dnsdisco COMMAND --config FILE` (or DNSDISCO_CONFIG=FILE); check it with
# `dnsdisco serve --config FILE --check-config`. A flag wins over DNSDISCO_<NAME> in the
# environment, which wins over this file, which wins over the default.
# Keys at the top apply to every command that has them; the [serve], [register] and [status]
# tables hold the settings of that command alone. Keys may be written with - or _.
# Every value below is the default; a line left commented has no default (unset).
"""


def _toml_value(value: Any) -> str | None:
    """A default as TOML, or None when TOML cannot say it (unset)."""
    import json
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple) and len(value) == 2:           # (host, port)
        return json.dumps(format_hostport(*value))
    if isinstance(value, list):
        items = [_toml_value(v) for v in value]
        return None if None in items else "[" + ", ".join(items) + "]"
    return json.dumps(str(value))


def _example_lines(opt: Option) -> list[str]:
    import textwrap
    lines = [f"# {line}" for line in textwrap.wrap(opt.help, 92, break_on_hyphens=False, break_long_words=False)]
    where = (f"flag {opt.cli}, " if opt.flag else "no flag, ") + f"env {opt.env}"
    lines.append(f"# ({where})")
    shown = _toml_value(opt.default)
    usable = shown is not None
    if usable:
        try:       # the value must read back as the default, or it is shown commented
            parsed = _parse_value(opt, tomllib.loads(f"v = {shown}")["v"], opt.name)
            usable = parsed == opt.default
        except (ConfigError, tomllib.TOMLDecodeError):
            usable = False
    if usable:
        lines.append(f"{opt.name} = {shown}")
    else:
        lines.append(f"# {opt.name} = {opt.metavar or '...'}    # not set by default")
    return lines


def example_toml() -> str:
    """The text of dnsdisco.example.toml, from OPTIONS: shared settings at the top, then a
    table per command with its own."""
    shared = [o for o in OPTIONS if set(o.commands) == set(COMMANDS)]
    out = [_EXAMPLE_HEADER]
    out.append("# ======== every command\n")
    out.extend(_example_sections(shared))
    for command in COMMANDS:
        own = [o for o in options_for(command) if o not in shared]
        out.append(f"\n[{command}]\n")
        out.extend(_example_sections(own))
    return "\n".join(out)


def _example_sections(options: list[Option]) -> list[str]:
    """The example's lines for `options`, under a comment line per section."""
    out = []
    for section in SECTIONS:
        own = [o for o in options if o.section == section.title]
        if own:
            out.append(f"# ---- {section.title}: {section.about}\n")
            out.extend("\n".join(_example_lines(opt)) + "\n" for opt in own)
    return out


def example_paths() -> list[str]:
    """Where the example is kept: the repository root (for readers) and the package (so an
    installed dnsdisco ships it)."""
    package = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(os.path.dirname(package), EXAMPLE_NAME), os.path.join(package, EXAMPLE_NAME)]


def main(argv: list[str] | None = None) -> int:
    """`python3 -m dnsdisco.config --write-example`: (re)write both copies of the example."""
    import sys
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["--write-example"]:
        print("usage: python3 -m dnsdisco.config --write-example", file=sys.stderr)
        return 2
    text = example_toml()
    for path in example_paths():
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
