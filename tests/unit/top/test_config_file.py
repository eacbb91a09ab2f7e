"""The config file (issue 22): the shipped example holds every setting with its default and
stays current; unknown keys are all reported at once with a suggestion; a key of another
command under [command] is refused naming its command; `serve --check-config` exits 0 or 2."""
from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from dnsdisco import config
from dnsdisco.config import COMMANDS, OPTIONS, ConfigError, example_toml, load, options_for
from tests.support.harness import ROOT, child_env, dnsdisco_cmd

EXAMPLE = ROOT / "dnsdisco.example.toml"
PACKAGED = ROOT / "dnsdisco" / "dnsdisco.example.toml"


def test_example_is_current_in_the_repository_and_the_package():
    text = example_toml()
    for path in (EXAMPLE, PACKAGED):
        assert path.read_text() == text, (f"{path} is stale: run python3 -m dnsdisco.config --write-example")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "dnsdisco.example.toml" in pyproject["tool"]["setuptools"]["package-data"]["dnsdisco"]


def test_example_holds_every_setting_with_its_help_in_its_table():
    raw = tomllib.loads(EXAMPLE.read_text())
    text = EXAMPLE.read_text()
    tables = {"": text.split("\n[", 1)[0]}
    for part in text.split("\n[")[1:]:
        name, body = part.split("]", 1)
        tables[name] = body
    for opt in OPTIONS:
        where = "" if set(opt.commands) == set(COMMANDS) else None
        homes = [""] if where == "" else list(opt.commands)
        for home in homes:
            body = tables[home]
            assert f"\n{opt.name} = " in body or f"\n# {opt.name} = " in body, (opt.name, home)
            assert f"env {opt.env}" in body, (opt.name, home)
            first_words = opt.help.split()[0]
            assert f"# {first_words}" in body, (opt.name, home)
            if opt.default not in (None, "") and not (isinstance(opt.default, list) and not opt.default):
                values = raw if home == "" else raw[home]
                assert opt.name in values, f"{opt.name} has a default but is not set in [{home}]"


@pytest.mark.parametrize("command", COMMANDS)
def test_example_round_trips_to_the_defaults(command):
    from_file = load(command, {}, env={}, config_path=str(EXAMPLE))
    defaults = load(command, {}, env={})
    assert dict(from_file) == dict(defaults)
    set_in_file = [name for name in from_file if from_file.source(name) == "file"]
    assert len(set_in_file) >= len(options_for(command)) // 2, set_in_file   # the file really says them


def test_a_changed_value_is_read_from_the_example(tmp_path):
    text = EXAMPLE.read_text().replace("\nneg_ttl = 5\n", "\nneg_ttl = 9\n")
    assert "neg_ttl = 9" in text
    path = tmp_path / "copy.toml"
    path.write_text(text)
    cfg = load("serve", {}, env={}, config_path=str(path))
    assert cfg.neg_ttl == 9 and cfg.source("neg_ttl") == "file"


def test_write_example_regenerates_both_copies(tmp_path, monkeypatch):
    targets = [str(tmp_path / "root.toml"), str(tmp_path / "pkg.toml")]
    monkeypatch.setattr(config, "example_paths", lambda: targets)
    assert config.main(["--write-example"]) == 0
    assert all(Path(t).read_text() == example_toml() for t in targets)
    assert config.main([]) == 2


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "dnsdisco.toml"
    path.write_text(text)
    return str(path)


def test_every_unknown_key_at_once_with_a_suggestion(tmp_path):
    path = _write(tmp_path, 'lisen = ["127.0.0.1:5300"]\ncolour = 1\n[serve]\nzonez = "x"\n'
                            'neg-tll = 4\n[serv]\nttl = 3\n')
    with pytest.raises(ConfigError) as info:
        load("serve", {}, env={}, config_path=path)
    message = str(info.value)
    assert "5 problems" in message
    assert "unknown setting 'lisen' (did you mean 'listen'?)" in message
    assert "unknown setting 'colour'" in message
    assert "unknown setting 'zonez' under [serve] (did you mean 'zone'?)" in message
    assert "unknown setting 'neg-tll' under [serve] (did you mean 'neg_ttl'?)" in message
    assert "unknown table [serv] (did you mean [serve]?)" in message


def test_a_key_of_another_command_under_a_table_is_refused_naming_it(tmp_path):
    path = _write(tmp_path, '[serve]\nport = 80\ncheck-http = "http://127.0.0.1/"\nformat = "json"\n')
    with pytest.raises(ConfigError) as info:
        load("serve", {}, env={}, config_path=path)
    message = str(info.value)
    assert "'port' under [serve] is a setting of `dnsdisco register`" in message and "move it to [register]" in message
    assert "'check-http' under [serve] is a setting of `dnsdisco register`" in message
    assert "'format' under [serve] is a setting of `dnsdisco status`" in message
    # a shared file: top-level keys of other commands are for them, and their tables too
    shared = _write(tmp_path, 'etcd = ["http://127.0.0.1:2379"]\nport = 80\n[register]\nid = "a"\n'
                              '[serve]\nneg_ttl = 7\n')
    assert load("serve", {}, env={}, config_path=shared).neg_ttl == 7
    assert load("register", {}, env={}, config_path=shared).port == 80


def _check(*args: str):
    return subprocess.run(dnsdisco_cmd("serve", "--check-config", *args), env=child_env(), capture_output=True,
                          text=True, timeout=30)


def test_check_config_exits_0_for_the_example_and_2_for_bad_settings(tmp_path):
    ok = _check("--config", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("dnsdisco serve: settings OK") and str(EXAMPLE) in ok.stdout
    bad = _check("--config", _write(tmp_path, 'lisen = "127.0.0.1:5300"\n[serve]\nport = 80\n'))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "did you mean 'listen'" in bad.stderr and "`dnsdisco register`" in bad.stderr
    assert _check("--neg-ttl", "-1").returncode == 2
    zones = _check("--zones-dir", str(tmp_path / "missing"))
    assert zones.returncode == 2 and "missing" in zones.stderr
    loop = _check("--listen", "127.0.0.1:5300", "--forward", "127.0.0.1:5300")
    assert loop.returncode == 2 and "loop" in loop.stderr
