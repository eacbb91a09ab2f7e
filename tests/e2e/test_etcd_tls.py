"""dnsdisco against an etcd run the way production clusters are: mutual TLS and auth.

etcd: --client-cert-auth with a test CA, auth enabled, a `dnsdisco-serve` role that may
only read /skydns/, a `registrar-hello` role that may write only hello.svc.local's keys.
dnsdisco presents its own client certificate (CN dnsdisco-client, not an etcd user, so
without its token it could do nothing) and logs in with a password given through
--etcd-password-file or DNSDISCO_ETCD_PASSWORD. The passwords must appear in no output.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest

from tests.support.etcdproc import EtcdProcess, TLSFiles, make_tls
from tests.support.harness import ServeProcess, addresses, child_env, dnsdisco_cmd, wait_for

SERVE_PW = "serve-pw-" + secrets.token_hex(6)
REG_PW = "reg-pw-" + secrets.token_hex(6)
ROOT_PW = "root-pw-" + secrets.token_hex(6)
OUTPUTS: list[tuple[str, str]] = []    # (what, captured stdout+stderr) of every process run here


def client_cert(pki: str, ca: TLSFiles, cn: str) -> TLSFiles:
    """A client certificate for `cn`, signed by the test CA (whose key make_tls left in pki)."""
    p = lambda name: os.path.join(pki, name)  # noqa: E731
    with open(p("client.cnf"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for cmd in (
        ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", p(f"{cn}.key"), "-out", p(f"{cn}.csr"), "-subj", f"/CN={cn}"],
        ["x509", "-req", "-in", p(f"{cn}.csr"), "-CA", ca.ca, "-CAkey", p("ca.key"),
         "-CAcreateserial", "-out", p(f"{cn}.pem"), "-days", "2", "-extfile", p("client.cnf")],
    ):
        subprocess.run(["openssl", *cmd], check=True, capture_output=True, timeout=30)
    return TLSFiles(ca.ca, p(f"{cn}.pem"), p(f"{cn}.key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    base = tmp_path_factory.mktemp("pki")
    node = make_tls(str(base / "node"))
    client = client_cert(str(base / "node"), node, "dnsdisco-client")
    as_serve_user = client_cert(str(base / "node"), node, "dnsdisco-serve")
    other_ca = make_tls(str(base / "other"))
    return {"node": node, "client": client, "serve_cn": as_serve_user, "other": other_ca, "dir": base}


@pytest.fixture(scope="module")
def secure_etcd(pki):
    """etcd with mutual TLS and auth. etcdctl here uses the CN=root node certificate, which
    etcd maps to the root user (--client-cert-auth), so set-up needs no password."""
    proc = EtcdProcess("secure", tls=pki["node"]).start()
    ctl = proc.etcdctl
    ctl("user", "add", f"root:{ROOT_PW}")
    ctl("role", "add", "dnsdisco-serve")
    ctl("role", "grant-permission", "dnsdisco-serve", "read", "--prefix=true", "/skydns/")
    ctl("user", "add", f"dnsdisco-serve:{SERVE_PW}")
    ctl("user", "grant-role", "dnsdisco-serve", "dnsdisco-serve")
    ctl("role", "add", "registrar-hello")
    ctl("role", "grant-permission", "registrar-hello", "readwrite", "--prefix=true", "/skydns/local/svc/hello/")
    ctl("user", "add", f"reg-hello:{REG_PW}")
    ctl("user", "grant-role", "reg-hello", "registrar-hello")
    ctl("auth", "enable")
    ctl("put", "/skydns/local/svc/web/a", '{"host":"10.0.0.1","port":80}')
    yield proc
    proc.cleanup()


def tls_flags(pki) -> list[str]:
    c = pki["client"]
    return ["--etcd-cacert", c.ca, "--etcd-cert", c.cert, "--etcd-key", c.key]


@pytest.fixture(scope="module")
def serve(secure_etcd, pki):
    pwfile = pki["dir"] / "serve.pw"
    pwfile.write_text(SERVE_PW + "\n")
    os.chmod(pwfile, 0o600)
    proc = ServeProcess(secure_etcd.endpoint, *tls_flags(pki), "--etcd-user", "dnsdisco-serve",
                        "--etcd-password-file", str(pwfile), "--log-level", "debug")
    proc.start()
    yield proc
    proc.stop()
    OUTPUTS.append(("serve", proc.log()))


def run(*args, env=None, timeout=30) -> subprocess.CompletedProcess:
    out = subprocess.run(dnsdisco_cmd(*args), env=child_env(env), capture_output=True, text=True,
                         timeout=timeout)
    OUTPUTS.append((" ".join(args[:2]), out.stdout + out.stderr))
    return out


def one_clear_line(out: subprocess.CompletedProcess, command: str) -> str:
    assert out.returncode != 0, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith(f"dnsdisco {command}: ")]
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_serve_with_read_only_user_serves_records_and_updates(serve, secure_etcd):
    reply = serve.query("web.svc.local")
    assert addresses(reply) == ["10.0.0.1"]
    secure_etcd.etcdctl("put", "/skydns/local/svc/web/b", '{"host":"10.0.0.2"}')
    wait_for(lambda: addresses(serve.query("web.svc.local")) == ["10.0.0.1", "10.0.0.2"], 5,
             what="a live update over TLS")


def test_status_with_the_password_in_the_environment(secure_etcd, pki):
    out = run("status", "--etcd", secure_etcd.endpoint, *tls_flags(pki), "--etcd-user", "dnsdisco-serve",
              "--format", "json", "web.svc.local", env={"DNSDISCO_ETCD_PASSWORD": SERVE_PW})
    assert out.returncode == 0, out.stderr
    assert {r["key"] for r in json.loads(out.stdout)["records"]} >= {"/skydns/local/svc/web/a"}


def test_certificate_common_name_as_the_user(secure_etcd, pki):
    """No password at all: with --client-cert-auth etcd takes the certificate's CN as the user."""
    c = pki["serve_cn"]
    out = run("status", "--etcd", secure_etcd.endpoint, "--etcd-cacert", c.ca, "--etcd-cert", c.cert,
              "--etcd-key", c.key, "web.svc.local")
    assert out.returncode == 0 and "/skydns/local/svc/web/a" in out.stdout, out.stderr
    out = run("register", "hello.svc.local", "--port", "80", "--address", "10.0.0.9", "--id", "r3",
              "--etcd", secure_etcd.endpoint, "--etcd-cacert", c.ca, "--etcd-cert", c.cert, "--etcd-key", c.key)
    assert "denied" in one_clear_line(out, "register")


def test_registrar_user_writes_its_service_only(serve, secure_etcd, pki, tmp_path):
    # the wrapped command shows what it inherits: never the password
    shown = tmp_path / "shown"
    args = ["register", "hello.svc.local", "--port", "80", "--address", "10.0.0.9", "--id", "r1", "--ttl", "3",
            "--etcd", secure_etcd.endpoint, *tls_flags(pki), "--etcd-user", "reg-hello",
            "--", "sh", "-c", f'echo "child-sees:[$DNSDISCO_ETCD_PASSWORD]"; touch {shown}; exec sleep 30']
    proc = subprocess.Popen(dnsdisco_cmd(*args), env=child_env({"DNSDISCO_ETCD_PASSWORD": REG_PW}),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: addresses(serve.query("hello.svc.local")) == ["10.0.0.9"], 10,
                 what="the registrar's record to be served")
        wait_for(shown.exists, 10, what="the wrapped command to show its environment")
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=15)
        OUTPUTS.append(("register reg-hello", output))
    assert proc.returncode == 128 + 15, output    # the wrapped command's SIGTERM status
    assert "child-sees:[]" in output and "deregistered" in output, output   # the lease was revoked
    wait_for(lambda: serve.query("hello.svc.local").rcode() == 3, 5, what="deregistration")
    # the same user may not register another service
    out = run(*["register", "web.svc.local", "--port", "80", "--address", "10.0.0.9", "--id", "r1",
                "--etcd", secure_etcd.endpoint, *tls_flags(pki), "--etcd-user", "reg-hello"],
              env={"DNSDISCO_ETCD_PASSWORD": REG_PW})
    line = one_clear_line(out, "register")
    assert "denied" in line and "reg-hello" in line and "/skydns/local/svc/web/r1" in line


def test_serve_user_cannot_register(secure_etcd, pki):
    out = run("register", "hello.svc.local", "--port", "80", "--address", "10.0.0.9", "--id", "r2",
              "--etcd", secure_etcd.endpoint, *tls_flags(pki), "--etcd-user", "dnsdisco-serve",
              env={"DNSDISCO_ETCD_PASSWORD": SERVE_PW})
    line = one_clear_line(out, "register")
    assert "denied" in line and "dnsdisco-serve" in line
    assert secure_etcd.etcdctl("get", "--prefix", "/skydns/local/svc/hello/") == ""


def test_wrong_password_stops_serve_with_one_line(secure_etcd, pki):
    out = run("serve", "--listen", "127.0.0.1:0", "--etcd", secure_etcd.endpoint, *tls_flags(pki),
              "--etcd-user", "dnsdisco-serve", env={"DNSDISCO_ETCD_PASSWORD": "wrong-" + SERVE_PW})
    line = one_clear_line(out, "serve")
    assert "rejected the credentials" in line and "dnsdisco-serve" in line


@pytest.mark.parametrize("flag", ["--etcd-cacert", "--etcd-cert", "--etcd-key", "--etcd-password-file"])
def test_unreadable_file_is_named(secure_etcd, pki, flag, tmp_path):
    args = {"--etcd-cacert": pki["client"].ca, "--etcd-cert": pki["client"].cert,
            "--etcd-key": pki["client"].key, "--etcd-password-file": None}
    args[flag] = missing = str(tmp_path / "missing.pem")
    flat = [x for k, v in args.items() if v for x in (k, v)]
    out = run("serve", "--listen", "127.0.0.1:0", "--etcd", secure_etcd.endpoint, *flat,
              "--etcd-user", "dnsdisco-serve",
              env=None if flag == "--etcd-password-file" else {"DNSDISCO_ETCD_PASSWORD": SERVE_PW})
    line = one_clear_line(out, "serve")
    assert f"{flag} {missing}" in line and "No such file" in line


def test_tls_handshake_failures_are_explained(secure_etcd, pki):
    no_cert = run("serve", "--listen", "127.0.0.1:0", "--etcd", secure_etcd.endpoint, "--etcd-timeout", "1",
                  "--etcd-cacert", pki["client"].ca, "--etcd-user", "dnsdisco-serve",
                  env={"DNSDISCO_ETCD_PASSWORD": SERVE_PW})
    assert "client certificate" in one_clear_line(no_cert, "serve")
    other = pki["other"]
    wrong_ca = run("status", "--etcd", secure_etcd.endpoint, "--etcd-timeout", "1", "--etcd-cacert", other.ca,
                   "--etcd-cert", other.cert, "--etcd-key", other.key)
    assert "not signed by --etcd-cacert" in one_clear_line(wrong_ca, "status")


def test_passwords_appear_in_no_output(serve):
    serve.stop()                      # flush and collect the serve log now
    OUTPUTS.append(("serve", serve.log()))
    assert len(OUTPUTS) >= 8
    for what, text in OUTPUTS:
        for pw in (SERVE_PW, REG_PW, ROOT_PW):
            assert pw not in text, f"{what} printed a password:\n{text}"


# ---------------------------------------------------------------- pure parts of etcdconf

def test_password_sources(tmp_path):
    from dnsdisco.config import load
    from dnsdisco.etcd.settings import StartupError, read_password
    f = tmp_path / "pw"
    f.write_text("first-line\nignored\n")
    assert read_password(load("serve", {"etcd_password_file": str(f)}, env={})) == "first-line"
    assert read_password(load("serve", {}, env={"DNSDISCO_ETCD_PASSWORD": "from-env"})) == "from-env"
    assert read_password(load("serve", {}, env={})) is None
    with pytest.raises(StartupError, match="given twice"):
        read_password(load("serve", {"etcd_password_file": str(f)}, env={"DNSDISCO_ETCD_PASSWORD": "x"}))
    f.write_text("\n")
    with pytest.raises(StartupError, match="is empty"):
        read_password(load("serve", {"etcd_password_file": str(f)}, env={}))



def test_password_flag_is_refused_without_echoing_it():
    # not taken as an abbreviation of --etcd-password-file either (which would print it as a path)
    out = run("serve", "--etcd-password", SERVE_PW, "--etcd", "http://127.0.0.1:9")
    assert out.returncode == 2 and "--etcd-password is not accepted" in out.stderr
    assert SERVE_PW not in out.stderr


def test_tls_failures_are_told_apart():
    from dnsdisco.etcd.settings import tls_problem
    last = "last error: UNKNOWN: ipv4:127.0.0.1:1: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: " \
           "error:1000007d:SSL routines:OPENSSL_internal:"
    assert "not signed by --etcd-cacert" in tls_problem(last + "CERTIFICATE_VERIFY_FAILED: unable to get: OK")
    assert "client certificate" in tls_problem(last + "SSLV3_ALERT_BAD_CERTIFICATE: OK")
    assert "does etcd serve https" in tls_problem("UNAVAILABLE: ipv4:127.0.0.1:1: Handshake read failed (Socket closed)")
    assert tls_problem("UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused") is None
