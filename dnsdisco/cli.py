"""Command line: `dnsdisco serve | register | status`, built from config.OPTIONS."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

from . import __version__
from .config import ConfigError, Option, load, options_for

DESCRIPTION = """\
dnsdisco answers DNS for services registered in etcd (CoreDNS/SkyDNS key format).
Every setting is also read from DNSDISCO_<NAME> in the environment and from a TOML
file given with --config; a flag wins over the environment, which wins over the file."""

# command -> (module, function, one-line help, longer description, epilog)
COMMANDS: dict[str, tuple[str, str, str, str, str]] = {
    "serve": (
        "dnsdisco.app", "run_serve",
        "answer DNS for the zones from an etcd prefix",
        "Lists the etcd prefix once, then watches it, and answers A, AAAA, SRV, TXT, CNAME,\n"
        "MX, PTR, SOA and NS over UDP and TCP from memory.",
        "examples:\n"
        "  dnsdisco serve --listen 127.0.0.1:5353            # embedded etcd if none runs\n"
        "  dnsdisco serve --etcd http://10.0.0.5:2379 --zone svc.local --listen 0.0.0.0:53\n"
        "  etcdctl put /skydns/local/svc/hello/a '{\"host\":\"10.0.0.7\",\"port\":8080}'\n"
        "  dig @127.0.0.1 -p 5353 hello.svc.local; dig @127.0.0.1 -p 5353 SRV hello.svc.local",
    ),
}

# command -> function(parser) adding arguments that are not settings (positionals, `-- CMD`)
EXTRA_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def _add_option(parser: argparse.ArgumentParser, opt: Option) -> None:
    if not opt.flag:
        return
    default = opt.default
    if opt.many:
        shown = ",".join(_show(v) for v in default) if default else "none"
    else:
        shown = _show(default) if default not in ("", None) else "none"
    help_text = f"{opt.help} [env {opt.env}; default {shown}]"
    if opt.is_switch:
        parser.add_argument(opt.cli, dest=opt.name, action="store_const", const=True, default=None, help=help_text)
    elif opt.many:
        parser.add_argument(opt.cli, dest=opt.name, action="append", default=None, metavar=opt.metavar, help=help_text)
    else:
        parser.add_argument(opt.cli, dest=opt.name, default=None, metavar=opt.metavar, help=help_text)


def _show(value) -> str:
    if isinstance(value, tuple) and len(value) == 2:
        host, port = value
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dnsdisco", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dnsdisco {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_mod, _fn, help_line, description, epilog) in COMMANDS.items():
        p = sub.add_parser(name, help=help_line, description=description, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", metavar="FILE", default=None,
                       help="TOML file of settings (keys are the option names) [env DNSDISCO_CONFIG]")
        for opt in options_for(name):
            _add_option(p, opt)
        extra = EXTRA_ARGUMENTS.get(name)
        if extra:
            extra(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    flags = {o.name: getattr(args, o.name, None) for o in options_for(args.command)}
    try:
        cfg = load(args.command, flags, config_path=args.config)
    except ConfigError as exc:
        print(f"dnsdisco {args.command}: {exc}", file=sys.stderr)
        return 2
    module, function, *_ = COMMANDS[args.command]
    run = getattr(importlib.import_module(module), function)
    return int(run(cfg, args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
