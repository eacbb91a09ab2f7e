"""Issue 22, the live catalogue page: `/` on --http, `/v1/services[/<name>]`, `/v1/skipped`.

The JSON endpoints against what etcd holds, through a real etcd and a real `dnsdisco serve`;
the page in a real headless Chromium, which must see a new instance appear without a reload
and render hostile etcd strings as text. The pure parts (which names are services, the index
kept from touched names, paging, the query rate) are tests/unit/ops/test_catalogue.py.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.cdp import Chromium, chromium_path
from tests.support.etcdproc import free_port
from tests.support.harness import ServeProcess, wait_for


# ---------------------------------------------------------------- JSON against etcd

PREFIX = "/cat"


def http_get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(port: int, path: str):
    code, headers, body = http_get(port, path)
    assert headers["Content-Type"] == "application/json", (path, headers)
    return code, json.loads(body)


def services_in_etcd(etcd, bad_keys: set) -> dict:
    """What the catalogue must show, read from etcd itself: service name -> {id: fields}.
    The test data puts instances at <prefix>/local/svc/<service>/<id> and single records at
    <prefix>/local/svc/<service>."""
    out = json.loads(etcd.etcdctl("get", PREFIX + "/", "--prefix", "-w", "json"))
    services: dict[str, dict] = {}
    for kv in out.get("kvs", []):
        key = base64.b64decode(kv["key"]).decode()
        if key in bad_keys:
            continue
        value = json.loads(base64.b64decode(kv["value"]))
        labels = key[len(PREFIX) + 1:].split("/")
        assert labels[:2] == ["local", "svc"], key
        service, ident = (labels[2], labels[3]) if len(labels) == 4 else (labels[2], "")
        services.setdefault(f"{service}.svc.local", {})[ident] = {
            "host": value["host"], "port": value.get("port", 0), "priority": value.get("priority", 10),
            "weight": value.get("weight", 100), "ttl": value.get("ttl", 30), "text": value.get("text", ""),
            "key": key}
    return services


def shown(service: dict) -> dict:
    return {i["id"]: {f: i[f] for f in ("host", "port", "priority", "weight", "ttl", "text", "key")}
            for i in service["instances"]}


def all_services(port: int, limit: int = 2) -> dict:
    """Every service through the paged list, `limit` at a time."""
    out, offset = {}, 0
    while True:
        code, doc = get_json(port, f"/v1/services?offset={offset}&limit={limit}")
        assert code == 200 and doc["limit"] == limit
        out.update({s["name"]: shown(s) for s in doc["services"]})
        offset += limit
        if offset >= doc["total"]:
            assert len(out) == doc["total"]
            return out


def matches_etcd(port: int, etcd, bad_keys: set) -> bool:
    return all_services(port) == services_in_etcd(etcd, bad_keys)


def test_json_endpoints_serve_what_etcd_holds(etcd):
    p = PREFIX + "/local/svc"
    etcd.etcdctl("put", f"{p}/hello/a", json.dumps({"host": "10.0.0.1", "port": 80, "ttl": 5}))
    etcd.etcdctl("put", f"{p}/hello/b", json.dumps({"host": "10.0.0.2", "port": 8080, "priority": 20, "weight": 5}))
    etcd.etcdctl("put", f"{p}/db", json.dumps({"host": "fd00::5", "port": 5432}))
    etcd.etcdctl("put", f"{p}/api/x1", json.dumps({"host": "10.0.0.3", "port": 443, "text": "v=2"}))
    etcd.etcdctl("put", f"{p}/broken/z", json.dumps({"host": "999.1.1.1", "port": 80}))
    etcd.etcdctl("put", f"{p}/gone/z", "not json")
    bad = {f"{p}/broken/z", f"{p}/gone/z"}
    http = free_port()
    with ServeProcess(etcd.endpoint, "--prefix", PREFIX, "--http", f"127.0.0.1:{http}") as srv:
        wait_for(lambda: get_json(http, "/v1/status")[1]["sync"]["state"] == "live", 10, what="sync")
        assert all_services(http) == services_in_etcd(etcd, bad)
        assert set(all_services(http)) == {"hello.svc.local", "db.svc.local", "api.svc.local"}

        # one service: the same entry as in the list, with every instance
        code, one = get_json(http, "/v1/services/hello.svc.local")
        assert code == 200 and shown(one) == services_in_etcd(etcd, bad)["hello.svc.local"]
        assert get_json(http, "/v1/services/HELLO.svc.local.")[1]["name"] == "hello.svc.local"
        code, doc = get_json(http, "/v1/services/nothere.svc.local")
        assert code == 404 and "nothere.svc.local" in doc["error"]
        assert get_json(http, "/v1/services/a..b")[0] == 400

        # skipped values with the reason, and the state block
        code, skipped = get_json(http, "/v1/skipped")
        assert code == 200 and [s["key"] for s in skipped["skipped"]] == [f"{p}/broken/z", f"{p}/gone/z"]
        assert "999.1.1.1" in skipped["skipped"][0]["reason"] and "not JSON" in skipped["skipped"][1]["reason"]
        status = get_json(http, "/v1/status")[1]
        revision = json.loads(etcd.etcdctl("get", "x", "-w", "json"))["header"]["revision"]
        assert status["sync"]["revision"] == revision and status["sync"]["connected"] is True
        assert status["counts"] == {"services": 3, "records": 4, "skipped": 2}
        assert status["zones"] == [{"name": "svc.local", "ttl": 30, "neg_ttl": 5, "services": 3}]
        assert status["sync"]["seconds_since_change"] is not None

        # query rate: queries sent now show up in the total
        before = status["queries"]["total"]
        for _ in range(20):
            srv.query("hello.svc.local", "A")
        assert get_json(http, "/v1/status")[1]["queries"]["total"] >= before + 20

        # unchanged catalogue: 304 for a client that has this version
        code, headers, _ = http_get(http, "/v1/services")
        assert code == 200
        assert http_get(http, "/v1/services", {"If-None-Match": headers["ETag"]})[0] == 304

        # read-only
        req = urllib.request.Request(f"http://127.0.0.1:{http}/v1/services", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=3)
        assert exc.value.code == 405

        # it follows etcd: an instance added, one removed, a lease expiring, a bad value fixed
        etcd.etcdctl("put", f"{p}/hello/c", json.dumps({"host": "10.0.0.7", "port": 80}))
        etcd.etcdctl("del", f"{p}/hello/a")
        lease = etcd.etcdctl("lease", "grant", "2").split()[1]
        etcd.etcdctl("put", f"{p}/leased/i", json.dumps({"host": "10.0.0.8", "port": 80}), "--lease", lease)
        etcd.etcdctl("put", f"{p}/broken/z", json.dumps({"host": "10.1.1.1", "port": 80}))
        etcd.etcdctl("del", f"{p}/gone/z")
        bad.clear()
        wait_for(lambda: matches_etcd(http, etcd, bad), 10, 0.2, "the catalogue to show the changes")
        assert "leased.svc.local" in all_services(http)
        assert http_get(http, "/v1/services", {"If-None-Match": headers["ETag"]})[0] == 200
        wait_for(lambda: get_json(http, "/v1/skipped")[1]["total"] == 0, 5, what="no skipped value left")
        wait_for(lambda: "leased.svc.local" not in all_services(http), 10, 0.2, "the lease to expire")
        assert matches_etcd(http, etcd, bad)
        assert get_json(http, "/v1/services/leased.svc.local")[0] == 404

        # etcd gone: the state says so and the last snapshot is still listed; back: live again
        etcd.stop()
        try:
            wait_for(lambda: get_json(http, "/v1/status")[1]["sync"]["state"] == "stale", 15, 0.2, "stale")
            assert "hello.svc.local" in all_services(http)
        finally:
            etcd.restart()
        wait_for(lambda: get_json(http, "/v1/status")[1]["sync"]["state"] == "live", 15, 0.2, "live again")


# ---------------------------------------------------------------- the page in Chromium

def artifacts_dir() -> str:
    """Where the screenshots go: $DNSDISCO_TEST_ARTIFACTS (CI) or a fresh temporary folder."""
    path = os.environ.get("DNSDISCO_TEST_ARTIFACTS") or tempfile.mkdtemp(prefix="dnsdisco-page-")
    os.makedirs(path, exist_ok=True)
    return path


def row(page, instance: str):
    """The cells of an instance's row as text, or None while it is not on the page."""
    return page.evaluate(
        f"(() => {{ const r = document.querySelector('[data-instance=\"' + CSS.escape({json.dumps(instance)}) + '\"]');"
        " return r && [...r.cells].map(c => c.firstChild.textContent); })()")


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_page_in_chromium_follows_etcd_without_a_reload(etcd, kv, record_property):
    prefix = "/catpage"                 # its own: the module's etcd keeps other tests' keys
    p = prefix + "/local/svc"
    etcd.etcdctl("put", f"{p}/web/one", json.dumps({"host": "10.0.0.1", "port": 80, "ttl": 5}))
    etcd.etcdctl("put", f"{p}/web/two", json.dumps({"host": "10.0.0.2", "port": 8080, "priority": 20}))
    # hostile strings from etcd: markup in a name and in a value, a bad value whose key has markup
    xss = '<img src=x onerror="window.__xss=1">'
    etcd.etcdctl("put", f"{p}/web/three", json.dumps({"host": "10.0.0.3", "port": 80, "text": xss}))
    etcd.etcdctl("put", f"{p}/<b>bold/i", json.dumps({"host": "10.0.0.4"}))
    etcd.etcdctl("put", f"{p}/<script>x/i", json.dumps({"host": "10.0.0.5", "port": "<svg onload=alert(1)>"}))
    http = free_port()
    shots = artifacts_dir()
    with ServeProcess(etcd.endpoint, "--prefix", prefix, "--http", f"127.0.0.1:{http}") as srv, \
            Chromium() as browser:
        page = browser.new_page(1280, 900)
        page.goto(f"http://127.0.0.1:{http}/")
        page.evaluate("window.__loaded_once = true")       # gone if the page ever reloads
        page.wait_for("document.querySelector('[data-service=\"web.svc.local\"]') !== null",
                      what="web.svc.local on the page")
        page.wait_for("document.querySelector('#sync-badge').textContent === 'live'")
        assert row(page, "one.web.svc.local") == ["one", "10.0.0.1", "80", "10 / 100", "5 s", "A SRV"]
        assert row(page, "two.web.svc.local") == ["two", "10.0.0.2", "8080", "20 / 100", "30 s", "A SRV"]

        # a put in etcd shows up on the open page, without a reload
        etcd.etcdctl("put", f"{p}/web/four", json.dumps({"host": "10.0.0.44", "port": 9090}))
        page.wait_for("document.querySelector('[data-instance=\"four.web.svc.local\"]') !== null",
                      timeout=30, what="the new instance")
        assert row(page, "four.web.svc.local")[:3] == ["four", "10.0.0.44", "9090"]
        assert page.evaluate("window.__loaded_once") is True
        etcd.etcdctl("del", f"{p}/web/two")
        page.wait_for("document.querySelector('[data-instance=\"two.web.svc.local\"]') === null",
                      what="the deleted instance to go")

        # hostile strings are text: no element made from them, no script run, shown literally
        text = page.evaluate("document.body.innerText")
        assert xss in text and "<b>bold.svc.local" in text and "<script>x" in text
        assert page.evaluate("document.querySelectorAll('img, svg, b, script:not([src])').length") == 0
        assert page.evaluate("window.__xss === undefined")
        assert page.evaluate("document.querySelector('#skipped-list [data-key]').dataset.key") == f"{p}/<script>x/i"

        # the filter box narrows the list
        page.evaluate("(() => { const f = document.querySelector('#filter'); f.value = 'WEB';"
                      " f.dispatchEvent(new Event('input')); })()")
        page.wait_for("document.querySelectorAll('[data-service]').length === 1", what="the filter")
        page.evaluate("(() => { const f = document.querySelector('#filter'); f.value = '';"
                      " f.dispatchEvent(new Event('input')); })()")
        page.wait_for("document.querySelectorAll('[data-service]').length === 2", what="the filter cleared")
        desktop = page.screenshot(os.path.join(shots, "catalogue-desktop.png"))

        phone = browser.new_page(390, 844, mobile=True)
        phone.goto(f"http://127.0.0.1:{http}/")
        phone.wait_for("document.querySelector('[data-instance=\"four.web.svc.local\"]') !== null")
        # nothing wider than the phone's screen: no sideways scrolling
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        mobile = phone.screenshot(os.path.join(shots, "catalogue-phone.png"))
        print(f"\nscreenshots: {desktop} {mobile}")
        record_property("screenshots", f"{desktop} {mobile}")
        phone_problems = phone.problems()
        phone.close()                   # the desktop tab is in front again
        page.call("Page.bringToFront")
        # more services than fit one page: a pager, and its second page
        for i in range(60):
            kv.put(f"{p}/many{i:02d}/i", json.dumps({"host": f"10.2.0.{i}"}).encode())
        page.wait_for("document.querySelector('#page-info').textContent === 'page 1 of 2'"
                      " && !document.querySelector('#pager').hidden", timeout=30, what="the pager")
        assert page.evaluate("document.querySelectorAll('[data-service]').length") == 50
        page.evaluate("document.querySelector('#next').click()")
        page.wait_for("document.querySelector('#page-info').textContent === 'page 2 of 2'", what="page 2")
        assert page.evaluate("document.querySelectorAll('[data-service]').length") == 62 - 50
        assert page.evaluate("document.querySelector('[data-service]').dataset.service") == "many49.svc.local"   # after <b>bold and many00-48

        assert page.problems() == [] and phone_problems == []

        # an open page (polling) does not hold up a clean stop
        started = time.monotonic()
        assert srv.stop() == 0
        assert time.monotonic() - started < 2.5
        page.wait_for("!document.querySelector('#offline').hidden", what="the page to notice the server is gone")
    assert os.path.getsize(desktop) > 10_000 and os.path.getsize(mobile) > 10_000


def test_the_built_package_ships_the_page(tmp_path):
    """A non-editable install has the static files: setuptools' build step (what a wheel is
    made from) copies them as package data. Built from a fresh copy, so no egg-info left by
    an earlier build can list them instead."""
    root = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "dnsdisco", src / "dnsdisco", ignore=shutil.ignore_patterns("__pycache__"))
    res = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
                          "-d", str(tmp_path / "out")], cwd=src, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for file in ("index.html", "app.js", "style.css"):
        assert (tmp_path / "out" / "dnsdisco" / "ops" / "static" / file).read_bytes() == \
            (root / "dnsdisco" / "ops" / "static" / file).read_bytes()
