"""Command line: `dnsdisco serve | register | status`, built from config.OPTIONS.

Importing this module loads little besides argparse: the settings table (config), the log
setup and the rest are imported once `main` runs, after it holds Ctrl-C (StartupInterrupt),
so that a Ctrl-C in the first moments of a start-up ends it as quietly as a later one.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import TYPE_CHECKING, Callable

from dnsdisco import __version__

if TYPE_CHECKING:
    from dnsdisco.config import Option

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
        "  dnsdisco serve --listen 127.0.0.1:5300            # embedded etcd if none runs\n"
        "  dnsdisco serve --etcd http://10.0.0.5:2379 --zone svc.local --listen 0.0.0.0:53\n"
        "  dnsdisco serve --config dnsdisco.toml --check-config   # validate the settings, exit 0 or 2\n"
        "  etcdctl put /skydns/local/svc/hello/a '{\"host\":\"10.0.0.7\",\"port\":8080}'\n"
        "  dig @127.0.0.1 -p 5300 hello.svc.local; dig @127.0.0.1 -p 5300 SRV hello.svc.local",
    ),
    "register": (
        "dnsdisco.register.command", "run_register",
        "keep a service instance registered in etcd while it runs (and is healthy)",
        "Writes <prefix>/<reversed NAME>/<id> = {\"host\":..,\"port\":..,\"ttl\":..} bound to a lease and\n"
        "keeps the lease alive (about every TTL/3); re-grants and re-writes it when the lease is lost.\n"
        "The record's DNS TTL (--dns-ttl, default half the lease) is never longer than the lease.\n"
        "SIGTERM/SIGINT revoke the lease: the record disappears at once; after a crash it\n"
        "disappears within TTL. SIGUSR1 drains: the record goes, the process (and CMD) keep running.\n"
        "With --check-http/--check-tcp/--check-grpc/--check-cmd (several may be given; all must pass)\n"
        "the record exists only while the checks pass, counted with --check-rise/--check-fall.\n"
        "With `-- CMD ARGS...` it runs CMD, registers while CMD runs, forwards\n"
        "SIGTERM/SIGINT/SIGHUP to it and exits with its status.",
        "examples:\n"
        "  dnsdisco register hello.svc.local --address 10.0.0.7 --port 8080\n"
        "  dnsdisco register hello.svc.local --port 8080 --ttl 10 --dns-ttl 2\n"
        "  dnsdisco register hello.svc.local --port 8080 --check-http http://127.0.0.1:8080/health\n"
        "  dnsdisco register hello.svc.local --port 8080 --check-tcp 127.0.0.1:8080 --check-interval 2\n"
        "  dnsdisco register greeter.svc.local --port 50051 --check-grpc 127.0.0.1:50051/helloworld.Greeter \\\n"
        "      --check-rise 2 --check-fall 3 --check-timeout 1\n"
        "  dnsdisco register hello.svc.local --port 8080 -- python3 -m http.server 8080\n"
        "  kill -USR1 <pid>; sleep <dns-ttl>; kill -TERM <pid>     # drain, then stop\n"
        "  dig @127.0.0.1 -p 5300 SRV hello.svc.local          # with `dnsdisco serve --listen 127.0.0.1:5300`",
    ),
    "status": (
        "dnsdisco.ops.status", "run_status",
        "show what dnsdisco serves from etcd now: records, types, TTLs, source keys, bad values",
        "Reads the etcd prefix and parses it exactly as `serve` does: one line per record (name,\n"
        "types, TTL, value, source key) and every value the server skips, with the reason.\n"
        "With NAME: only the records that answer NAME (the value at NAME and its instances one\n"
        "label below), and why it answers as it does.",
        "examples:\n"
        "  dnsdisco status --etcd http://10.0.0.5:2379\n"
        "  dnsdisco status hello.svc.local          # exit 1 when the name does not exist\n"
        "  dnsdisco status --format json | jq '.records[] | .name'\n"
        "  dnsdisco status --format zone svc.local > svc.local.zone   # the zone as served\n"
        "  dig @127.0.0.1 -p 5300 hello.svc.local   # what `dnsdisco serve --listen 127.0.0.1:5300` answers",
    ),
}


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    from dnsdisco.ops.status import add_arguments
    add_arguments(parser)


def _register_arguments(parser: argparse.ArgumentParser) -> None:
    """NAME, then optionally `-- CMD ARGS...`: everything after the first `--` is the command,
    so the wrapped command's own options (`--port 9`) are never read as ours."""
    parser.add_argument("name", metavar="NAME", help="service name, e.g. hello.svc.local")
    parser.usage = "dnsdisco register NAME [options] [-- CMD ARGS...]"
    parser.epilog = (parser.epilog or "") + (
        "\n\nwrapper mode: everything after `--` is the command to run (CMD ARGS...)")
    parse_known_args = parser.parse_known_args

    def split_at_dashes(args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        wrapped: list[str] = []
        if "--" in args:
            cut = args.index("--")
            args, wrapped = args[:cut], args[cut + 1:]
        ns, extras = parse_known_args(args, namespace)
        ns.wrapped = wrapped
        return ns, extras

    parser.parse_known_args = split_at_dashes


# command -> function(parser) adding arguments that are not settings (positionals, `-- CMD`)
EXTRA_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "register": _register_arguments,
    "status": _status_arguments,
}


def _add_option(parser, opt: Option) -> None:
    if not opt.flag:
        if opt.secret:
            # A hidden flag that is refused: without it argparse would take `--etcd-password X`
            # as an abbreviation of `--etcd-password-file X` and print the password as a path.
            parser.add_argument(opt.cli, dest="refused_" + opt.name, default=None, help=argparse.SUPPRESS)
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
        from dnsdisco.dns.names import format_hostport
        return format_hostport(*value)
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    from dnsdisco.config import SECTIONS
    parser = argparse.ArgumentParser(prog="dnsdisco", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dnsdisco {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = {}         # name -> its parser, for errors in that command's own usage
    for name, (_mod, _fn, help_line, description, epilog) in COMMANDS.items():
        p = sub.add_parser(name, help=help_line, description=description, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", metavar="FILE", default=None,
                       help="TOML file of settings (keys are the option names) [env DNSDISCO_CONFIG]")
        for section in SECTIONS:        # --help shows the settings by section, in the table's order
            own = [opt for opt in section.options if name in opt.commands]
            if own:
                group = p.add_argument_group(section.title, section.about)
                for opt in own:
                    _add_option(group, opt)
        if name == "serve":
            p.add_argument("--check-config", action="store_true", default=False,
                           help="check the settings (flags, environment, --config file, zone files, "
                                "--forward) and exit: 0 when they are usable, 2 when not")
        extra = EXTRA_ARGUMENTS.get(name)
        if extra:
            extra(p)
        parser.commands[name] = p
    return parser


class StartupInterrupt:
    """A Ctrl-C while a command starts (settings, imports, gevent's patching), held until the
    command can act on it where it is safe: serve once gevent handles SIGINT (`hand_over`),
    the other commands just before they run (`release`).

    Why not Python's own KeyboardInterrupt: it is raised between any two bytecodes of whatever
    runs, and two such places during serve's start-up made a quiet stop impossible:
    - code that exec() or eval() runs from a string (collections.namedtuple and dataclasses
      build their methods so while modules are imported, e.g. ssl's when gevent patches it):
      CPython 3.11 then records the interrupt as unhandled for good (pythonrun.c run_mod), and
      after main caught it and returned 0 the interpreter killed itself with SIGINT at exit
      (exit status -2, nothing printed);
    - gevent's monkey.patch_all: _thread replaced but threading not yet, and the interpreter's
      exit hung in threading._shutdown.
    A SIGINT that is ignored (SIG_IGN, as for a background job) stays ignored, and outside the
    main thread (main called from a thread) nothing is held: signal handlers cannot be set there.
    """

    def __init__(self):
        self.pressed = False
        self._then = None
        self._previous = None
        self._held = False
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            return
        try:
            self._previous = signal.signal(signal.SIGINT, self._press)
        except ValueError:          # not the main thread
            return
        self._held = True

    def _press(self, _signum, _frame) -> None:
        self.pressed = True
        if self._then is not None:
            self._then()

    def hand_over(self, then: Callable[[], None]) -> bool:
        """The command handles SIGINT itself from now on (serve: gevent's handler, installed
        before this call). True when Ctrl-C was pressed already. A press whose handler had not
        run yet when the command's own replaced it still counts: it calls `then`."""
        self._held = False
        self._then = then
        return self.pressed

    def release(self) -> bool:
        """Python's own handler (KeyboardInterrupt) again, unless the command took SIGINT over;
        True when Ctrl-C was pressed while it was held."""
        if self._held:
            self._held = False
            # None: the handler before was not set from Python (an embedding program's)
            signal.signal(signal.SIGINT, signal.SIG_DFL if self._previous is None else self._previous)
        return self.pressed


def main(argv: list[str] | None = None) -> int:
    ctrl_c = StartupInterrupt()
    try:
        return _main(argv, ctrl_c)
    except KeyboardInterrupt:
        # Ctrl-C after a command started running but before it set up its own handling:
        # the user asked to stop, which is not an error worth a traceback
        return stopped_by_ctrl_c()
    finally:
        ctrl_c.release()


def stopped_by_ctrl_c() -> int:
    """Ctrl-C before a command was running: a line end after the terminal's ^C, and exit 0."""
    print("", file=sys.stderr)
    return 0


def _main(argv: list[str] | None, ctrl_c: StartupInterrupt) -> int:
    from dnsdisco.config import ConfigError, load, options_for, secret_values
    from dnsdisco.ops import logs
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse hands a subcommand's unknown flags back to the top level, which would print
        # the top-level usage: show the usage of the command that was meant
        (parser.commands.get(args.command) or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    for opt in options_for(args.command):
        if getattr(args, "refused_" + opt.name, None) is not None:
            return logs.fail(args.command, f"{opt.cli} is not accepted (a command line is visible to every "
                             f"user): set {opt.env} or use {opt.cli}-file", 2)
    flags = {o.name: getattr(args, o.name, None) for o in options_for(args.command)}
    try:
        cfg = load(args.command, flags, config_path=args.config)
    except ConfigError as exc:
        return logs.fail(args.command, str(exc), 2)
    try:
        # one log setup for every command; the values of secret settings never reach a line
        logs.setup(cfg.log_level, getattr(cfg, "log_format", "plain"), secrets=secret_values(cfg))
    except ValueError as exc:
        return logs.fail(args.command, str(exc), 2)
    if getattr(args, "check_config", False):
        from dnsdisco.app import check_config
        if ctrl_c.release():
            return stopped_by_ctrl_c()
        return check_config(cfg, args)
    from dnsdisco.etcd import settings  # noqa: F401  sets GRPC_VERBOSITY before any command loads gRPC
    module, function, *_ = COMMANDS[args.command]
    run = getattr(importlib.import_module(module), function)
    if args.command == "serve":      # serve takes a held Ctrl-C over once gevent handles SIGINT
        return int(run(cfg, args, ctrl_c=ctrl_c) or 0)
    if ctrl_c.release():
        return stopped_by_ctrl_c()
    return int(run(cfg, args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
