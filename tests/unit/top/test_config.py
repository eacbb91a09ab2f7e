"""Settings: flag > DNSDISCO_* env > TOML file > default, with errors that name the input."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from dnsdisco import cli
from dnsdisco.config import OPTIONS, SECTIONS, ConfigError, load, parse_listen, parse_prefix

from tests.support.harness import ROOT, child_env, dnsdisco_cmd


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:5300", ("127.0.0.1", 5300)),
    ("[::1]:5300", ("::1", 5300)),
    ("0.0.0.0", ("0.0.0.0", 53)),
    ("[::]", ("::", 53)),
])
def test_listen_addresses(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text,message", [
    ("127.0.0.1:99999", "outside 0..65535"),
    ("::1:53", "[ADDRESS]:PORT"),
    ("host.example:53", "IP address"),
    ("127.0.0.1:abc", "not a port"),
    ("[::1", "missing ']'"),
])
def test_bad_listen_addresses_are_named(text, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_listen(text)


@pytest.mark.parametrize("text,expected", [("/skydns", "/skydns"), ("/skydns/", "/skydns"), ("/", ""), ("/a/b", "/a/b")])
def test_prefixes(text, expected):
    assert parse_prefix(text) == expected


def test_precedence_flag_env_file_default(tmp_path: Path):
    conf = tmp_path / "dnsdisco.toml"
    conf.write_text('ttl = 11\nprefix = "/fromfile"\nzone = ["a.test", "b.test"]\n[serve]\nneg_ttl = 7\n')
    env = {"DNSDISCO_TTL": "22", "DNSDISCO_ZONE": "env.test,other.test"}
    cfg = load("serve", {"ttl": "33"}, env=env, config_path=str(conf))
    assert (cfg.ttl, cfg.source("ttl")) == (33, "flag")
    assert (cfg.zone, cfg.source("zone")) == (["env.test", "other.test"], "env")
    assert (cfg.prefix, cfg.source("prefix")) == ("/fromfile", "file")
    assert (cfg.neg_ttl, cfg.source("neg_ttl")) == (7, "file")
    assert (cfg.listen, cfg.source("listen")) == ([("127.0.0.1", 53)], "default")
    with pytest.raises(AttributeError):
        cfg.ttl = 5


@pytest.mark.parametrize("flags,env,file_text,message", [
    ({"ttl": "-1"}, {}, None, "--ttl: -1 is below the minimum 0"),
    ({}, {"DNSDISCO_TTL": "soon"}, None, "DNSDISCO_TTL='soon': 'soon' is not a whole number"),
    ({}, {}, "ttl = 'x'\n", "ttl: 'x' is not a whole number"),
    ({}, {}, "colour = 1\n", "unknown setting 'colour'"),
    ({}, {}, "ttl = \n", "not valid TOML"),
    ({"zone": ["bad..zone"]}, {}, None, "empty label"),
    ({"etcd": ["ftp://x"]}, {}, None, "http:// or https://"),
])
def test_bad_settings_name_the_input(tmp_path, flags, env, file_text, message):
    path = None
    if file_text is not None:
        path = tmp_path / "c.toml"
        path.write_text(file_text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load("serve", flags, env=env, config_path=str(path) if path else None)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="no such file"):
        load("serve", {}, env={}, config_path="/nonexistent/dnsdisco.toml")


def test_every_option_has_help_and_a_valid_default():
    for opt in OPTIONS:
        assert opt.help, opt.name
        if opt.default not in (None, "") and not opt.many:
            # the default survives its own parser (so --help never advertises an invalid value)
            assert opt.parse(opt.default) is not None or opt.default is None


def test_every_command_has_help_that_lists_its_settings(capsys):
    for command in cli.COMMANDS:
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        for opt in OPTIONS:
            if command in opt.commands and opt.flag:
                assert opt.cli in out, (command, opt.cli)


def test_readme_documents_every_flag():
    readme = (ROOT / "README.md").read_text()
    missing = [opt.cli for opt in OPTIONS if opt.flag and opt.cli not in readme]
    assert not missing, f"README.md does not mention {missing}"


def test_readme_settings_tables_follow_the_sections():
    """README's tables per command: a bold title per section that has settings of the command,
    then its rows, in the order of config.SECTIONS (as --help and the example file)."""
    tables = (ROOT / "README.md").read_text().split("<!-- settings-table -->", 1)[1]
    for command in cli.COMMANDS:
        body = tables.split(f"#### `dnsdisco {command}`", 1)[1].split("\n#### ", 1)[0]
        found = re.findall(r"^\*\*(.+?)\*\*|^\|[^\n]*?`(DNSDISCO_\w+)`", body, re.M)
        expected = []
        for section in SECTIONS:
            own = [opt for opt in section.options if command in opt.commands]
            if own:
                expected += [(section.title, "")] + [("", opt.env) for opt in own]
        assert found == expected, command


def test_help_groups_settings_by_section(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    sections = [section for section in SECTIONS if any("serve" in o.commands for o in section.options)]
    starts = [out.index("\n" + section.title + ":\n") for section in sections]
    assert starts == sorted(starts)
    for section, start, end in zip(sections, starts, starts[1:] + [len(out)]):
        for opt in section.options:
            if "serve" in opt.commands and opt.flag:
                listed = re.search(rf"\n  {re.escape(opt.cli)}[ \n]", out).start()
                assert start < listed < end, (section.title, opt.cli)


def test_bad_flag_exits_2_with_a_clear_line():
    out = subprocess.run(dnsdisco_cmd("serve", "--ttl", "forever"), capture_output=True, text=True,
                         env=child_env(), timeout=30)
    assert out.returncode == 2
    assert "--ttl: 'forever' is not a whole number" in out.stderr
    assert "Traceback" not in out.stderr


def test_python_m_and_no_command():
    out = subprocess.run(dnsdisco_cmd(), capture_output=True, text=True, env=child_env(), timeout=30)
    assert out.returncode == 2 and "serve" in out.stderr
