"""Dockerfile, .dockerignore, compose.yaml and the systemd unit agree with the code.

No container engine is needed: the files are read and every command line and DNSDISCO_*
variable in them is checked against the real option table and CLI parser. Building the image
where `docker` can reach a working engine is tests/e2e/test_deploy_files.py.
"""
from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dnsdisco import cli, config

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
UNIT = ROOT / "deploy" / "dnsdisco.service"
DOCKERIGNORE = ROOT / ".dockerignore"


# ---------------------------------------------------------------- helpers

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):           # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def dockerfile_env() -> dict[str, str]:
    env = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                name, sep, value = item.partition("=")
                assert sep, f"Dockerfile: write ENV as NAME=value, got {item!r}"
                env[name] = value
    return env


def exec_form(word: str) -> list[str]:
    (rest,) = [r for w, r in dockerfile_instructions() if w == word]
    return json.loads(rest)


def unit_entries() -> list[tuple[str, str, str]]:
    """(section, key, value) of the systemd unit, in order."""
    section, out = "", []
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def unit_values(key: str) -> list[str]:
    return [v for _s, k, v in unit_entries() if k == key]


def compose() -> dict:
    yaml = pytest.importorskip("yaml", reason="pyyaml is needed to read compose.yaml")
    return yaml.safe_load(COMPOSE.read_text())


def option_for(command: str, env_name: str) -> config.Option:
    by_env = {o.env: o for o in config.options_for(command)}
    assert env_name in by_env, (f"{env_name} is not a setting of `dnsdisco {command}` "
                                f"(known: {', '.join(sorted(by_env))})")
    return by_env[env_name]


def check_env(command: str, env: dict[str, str], where: str) -> None:
    """Every DNSDISCO_* variable is an option of `command` and parses with its parser."""
    ours = {k: v for k, v in env.items() if k.startswith(config.ENV_PREFIX)}
    for name, value in ours.items():
        option_for(command, name)
    try:
        config.load(command, env={k: str(v) for k, v in ours.items()})
    except config.ConfigError as exc:
        pytest.fail(f"{where}: {exc}")
    except ModuleNotFoundError as exc:   # a parser's module that lands with another area
        pytest.skip(f"{where}: cannot check the values yet: {exc}")


def check_argv(argv: list[str], where: str) -> None:
    """`dnsdisco ARGV...` is accepted by the real parser, and its values by the option parsers."""
    command = argv[0]
    if command not in cli.COMMANDS:
        pytest.skip(f"{where}: `dnsdisco {command}` is not in this checkout's CLI yet")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = cli.build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `dnsdisco {shlex.join(argv)}` is rejected: {(err.getvalue().strip().splitlines() or [''])[-1]}")
    flags = {o.name: getattr(args, o.name, None) for o in config.options_for(command)}
    try:
        config.load(command, flags, env={})
    except config.ConfigError as exc:
        pytest.fail(f"{where}: {exc}")
    except ModuleNotFoundError as exc:
        pytest.skip(f"{where}: cannot check the values yet: {exc}")


def dnsdisco_argv(cmd: list[str]) -> list[str] | None:
    """The arguments after `dnsdisco` / `python -m dnsdisco`, or None for another program."""
    if cmd and Path(cmd[0]).name == "dnsdisco":
        return cmd[1:]
    if len(cmd) >= 3 and Path(cmd[0]).name.startswith("python") and cmd[1:3] == ["-m", "dnsdisco"]:
        return cmd[3:]
    return None


def as_list(value) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


# ---------------------------------------------------------------- Dockerfile

def test_entrypoint_is_the_packages_console_script():
    entrypoint = exec_form("ENTRYPOINT")
    assert entrypoint == ["dnsdisco", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint[0] in scripts, f"no console script {entrypoint[0]!r} in pyproject.toml"
    module, _, function = scripts[entrypoint[0]].partition(":")
    assert callable(getattr(__import__(module, fromlist=[function]), function))
    check_argv(entrypoint[1:], "Dockerfile ENTRYPOINT")


def test_base_image_user_and_capability():
    instructions = dockerfile_instructions()
    args = {r.split("=", 1)[0]: r.split("=", 1)[1] for w, r in instructions if w == "ARG" and "=" in r}
    bases = [r.split()[0] for w, r in instructions if w == "FROM"]
    assert bases and all(b in ("${PYTHON_IMAGE}", "python:3.11-slim") for b in bases)
    assert args.get("PYTHON_IMAGE", "python:3.11-slim") == "python:3.11-slim"
    users = [r for w, r in instructions if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    runs = " ".join(r for w, r in instructions if w == "RUN")
    assert "setcap cap_net_bind_service=+ep /usr/local/bin/dnsdisco-python" in runs
    # the console script must run under the interpreter that holds the capability
    assert "dnsdisco-python -m pip install" in runs and "#!/usr/local/bin/dnsdisco-python" in runs


def test_dockerfile_env_are_real_settings_with_valid_values():
    env = dockerfile_env()
    check_env("serve", env, "Dockerfile ENV")
    assert config.parse_listen(env["DNSDISCO_LISTEN"]) == ("0.0.0.0", 53)
    assert config.parse_http(env["DNSDISCO_HTTP"])[0] == "0.0.0.0"


def test_healthcheck_probes_readyz_on_the_configured_http_port():
    (health,) = [r for w, r in dockerfile_instructions() if w == "HEALTHCHECK"]
    command = json.loads(health[health.index("CMD") + 3:].strip())
    assert command[0] == "python" and command[1] == "-c"
    code = command[2]
    assert "/readyz" in code and "DNSDISCO_HTTP" in code
    http_port = config.parse_http(dockerfile_env()["DNSDISCO_HTTP"])[1]
    fallback = re.search(r"'DNSDISCO_HTTP',\s*'([^']+)'", code).group(1)
    assert config.parse_http(fallback)[1] == http_port
    compile(code, "HEALTHCHECK", "exec")
    exposed = " ".join(r for w, r in dockerfile_instructions() if w == "EXPOSE").split()
    assert {"53/udp", "53/tcp", f"{http_port}/tcp"} <= set(exposed)


def test_healthcheck_code_passes_on_200_and_fails_on_503():
    """Run the HEALTHCHECK one-liner against a real /readyz (exit 0 when ready, 1 when not)."""
    import types
    import gevent
    from dnsdisco.ops.http import start_http
    from dnsdisco.ops.metrics import NullMetrics
    (health,) = [r for w, r in dockerfile_instructions() if w == "HEALTHCHECK"]
    code = json.loads(health[health.index("CMD") + 3:].strip())[2]
    state = types.SimpleNamespace(ready=False, connected=False, last_contact=None)
    server = start_http(("127.0.0.1", 0), NullMetrics(), lambda: state, max_stale=30)
    try:
        def probe() -> int:
            env = dict(os.environ, DNSDISCO_HTTP=f"0.0.0.0:{server.port}")
            return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                  timeout=20).returncode
        pool = gevent.get_hub().threadpool
        assert pool.spawn(probe).get(timeout=30) == 1
        state.ready = state.connected = True
        assert pool.spawn(probe).get(timeout=30) == 0
    finally:
        server.stop()


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the patterns used here: last match wins, ! re-includes."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatchcase(p, pattern[3:]) for p in parts)
        else:
            matched = any(fnmatch.fnmatchcase(p, pattern) for p in prefixes)
        if matched:
            result = not negate
    return result


def test_dockerignore_sends_the_package_and_nothing_else():
    patterns = [l.strip() for l in DOCKERIGNORE.read_text().splitlines()
                if l.strip() and not l.strip().startswith("#")]
    needed = ["pyproject.toml"] + [str(p.relative_to(ROOT)) for p in (ROOT / "dnsdisco").glob("*.py")]
    for path in needed:
        assert not ignored(path, patterns), f".dockerignore drops {path}, which the build needs"
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("readme")
    if readme:
        assert not ignored(readme, patterns), f".dockerignore drops {readme} named in pyproject.toml"
    for path in [".git/config", "tests/test_deploy_files.py", "bench/run.py", "state/etcd/member",
                 "dnsdisco/__pycache__/cli.cpython-311.pyc", "compose.yaml"]:
        assert ignored(path, patterns), f".dockerignore lets {path} into the build context"


# ---------------------------------------------------------------- compose.yaml

def compose_services_running_dnsdisco() -> list[tuple[str, list[str], dict]]:
    """(service, argv after `dnsdisco`, environment) for each service that runs our image."""
    doc = compose()
    image_entrypoint = exec_form("ENTRYPOINT")
    out = []
    for name, svc in doc["services"].items():
        if "build" not in svc:
            continue
        entrypoint = as_list(svc.get("entrypoint")) or image_entrypoint
        argv = dnsdisco_argv(entrypoint + as_list(svc.get("command")))
        assert argv is not None, f"compose service {name} builds our image but does not run dnsdisco"
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        out.append((name, argv, {k: str(v) for k, v in env.items()}))
    return out


def test_compose_parses_and_has_the_demo_services():
    doc = compose()
    services = doc["services"]
    assert {"etcd", "dnsdisco", "hello"} <= set(services)
    etcd_image = services["etcd"]["image"]
    assert re.fullmatch(r"(quay\.io/coreos/etcd|gcr\.io/etcd-development/etcd):v3\.5\.\d+", etcd_image)
    dns = services["dnsdisco"]
    assert dns["environment"]["DNSDISCO_ETCD"] == "http://etcd:2379"
    published = {p.rsplit(":", 1)[-1] for p in dns["ports"]}
    assert {"53/udp", "53/tcp"} <= published and any(p.startswith("9153") for p in published)
    assert "NET_BIND_SERVICE" in dns.get("cap_add", [])


@pytest.mark.parametrize("service", ["dnsdisco", "hello"])
def test_compose_commands_and_variables_are_accepted(service):
    found = {name: (argv, env) for name, argv, env in compose_services_running_dnsdisco()}
    argv, env = found[service]
    command = argv[0]
    check_env(command, env, f"compose.yaml service {service}")
    check_argv(argv, f"compose.yaml service {service}")


def test_compose_hello_registers_its_own_address():
    doc = compose()
    hello = doc["services"]["hello"]
    argv = dnsdisco_argv(as_list(hello["entrypoint"]) + as_list(hello["command"]))
    assert argv[:2] == ["register", "hello.svc.local"]
    address = argv[argv.index("--address") + 1]
    assert hello["networks"]["demo"]["ipv4_address"] == address
    port = argv[argv.index("--port") + 1]
    child = argv[argv.index("--") + 1:]
    assert child[-1] == port and "http.server" in child


def test_compose_dnsdisco_port_matches_its_http_setting():
    doc = compose()
    dns = doc["services"]["dnsdisco"]
    env = {**dockerfile_env(), **{k: str(v) for k, v in dns["environment"].items()}}
    http_port = config.parse_http(env["DNSDISCO_HTTP"])[1]
    assert any(p.rsplit(":", 1)[-1] in (str(http_port), f"{http_port}/tcp") for p in dns["ports"])


# ---------------------------------------------------------------- systemd unit

def test_unit_has_the_production_settings():
    entries = {(s, k): v for s, k, v in unit_entries()}
    service = {k: v for (s, k), v in entries.items() if s == "Service"}
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "-/etc/default/dnsdisco"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root")
    assert service["ProtectSystem"] == "strict"
    assert ("Install", "WantedBy") in entries


def test_unit_execstart_and_variables_are_accepted():
    (exec_start,) = unit_values("ExecStart")
    cmd = shlex.split(exec_start.lstrip("-@:+!"))
    assert cmd[0].startswith("/"), "systemd needs an absolute path in ExecStart"
    argv = dnsdisco_argv(cmd)
    assert argv is not None and argv[0] == "serve"
    check_argv(argv, "deploy/dnsdisco.service ExecStart")
    env = {}
    for value in unit_values("Environment"):
        for item in shlex.split(value):
            name, _, val = item.partition("=")
            env[name] = val.replace("%S", "/var/lib")
    check_env("serve", env, "deploy/dnsdisco.service Environment=")


def test_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that the ExecStart binary exists; point it at one that does
    text = UNIT.read_text().replace("ExecStart=/usr/local/bin/dnsdisco", f"ExecStart={os.path.realpath(sys.executable)}")
    unit = tmp_path / "dnsdisco.service"
    unit.write_text(text)
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [l for l in (result.stdout + result.stderr).splitlines() if l.strip()]
    assert result.returncode == 0 and not complaints, "\n".join(complaints)
