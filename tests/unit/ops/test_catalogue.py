"""Issue 22, the live catalogue: its pure parts in-process (which names are services, the index
kept from touched names, paging, the query rate). The JSON endpoints against a real etcd and
`dnsdisco serve`, and the page in Chromium, are tests/e2e/test_catalogue.py."""
from __future__ import annotations

import json
import random

import pytest

from dnsdisco.ops.catalogue import Catalogue, QueryRate, ServiceIndex, is_service, service_names
from dnsdisco.dns.snapshot import Snapshot, ZoneConfig

ZONES = [ZoneConfig("svc.local"), ZoneConfig("other.test", ttl=60)]


def put(key: str, **value) -> tuple[str, bytes]:
    return key, json.dumps(value).encode()


# ---------------------------------------------------------------- pure parts

def test_services_are_names_with_instances_or_a_record_below_an_apex():
    snap = Snapshot.build("/p", ZONES, 7, [
        put("/p/local/svc/hello/a", host="10.0.0.1", port=80),
        put("/p/local/svc/hello/b", host="10.0.0.2", port=80, ttl=5),
        put("/p/local/svc/hello", host="10.0.0.9"),              # the service's own value
        put("/p/local/svc/db", host="fd00::5"),                   # right below the apex: a service of one
        put("/p/local/svc/deep/x/y", host="10.0.0.3"),            # y.x.deep: a service x.deep of one instance
        put("/p/local/svc", host="10.0.0.4"),                     # the apex's own value: not a service
        put("/p/test/other/web/1", host="10.0.1.1", port=443),
        put("/p/org/elsewhere/www", host="10.0.2.2"),             # outside every zone: not served
    ])
    assert service_names(snap) == ["db.svc.local", "hello.svc.local", "web.other.test", "x.deep.svc.local"]
    assert not is_service(snap, "svc.local") and not is_service(snap, "deep.svc.local")
    cat = Catalogue()
    cat.tracking(lambda s, t: None)(snap, None)
    hello = cat.service("hello.svc.local")
    assert [(i["id"], i["host"], i["port"], i["ttl"]) for i in hello["instances"]] == [
        ("", "10.0.0.9", 0, 30), ("a", "10.0.0.1", 80, 30), ("b", "10.0.0.2", 80, 5)]
    assert hello["instance_count"] == 3 and hello["zone"] == "svc.local"
    assert cat.service("web.other.test")["instances"][0]["ttl"] == 60      # the zone's default TTL
    assert cat.service("svc.local") is None and cat.service("www.elsewhere.org") is None
    assert {z["name"]: z["services"] for z in cat.status()["zones"]} == {"svc.local": 3, "other.test": 1}


def test_the_index_kept_from_touched_names_equals_a_fresh_listing():
    """Random puts and deletes, applied the way the Syncer applies them: after every swap the
    incrementally kept index lists exactly what a full rebuild lists."""
    rng = random.Random(22)
    keys = [f"/p/local/svc/s{i}" + suffix for i in range(12) for suffix in ("", "/a", "/b", "/a/x")]
    keys += [f"/p/test/other/o{i}/i" for i in range(4)] + ["/p/local/svc"]
    snap = Snapshot.build("/p", ZONES, 1, [])
    index = ServiceIndex()
    index.swapped(snap, None)
    assert index.current() == ([], {})
    for step in range(400):
        batch = []
        for _ in range(rng.choice((1, 1, 2, 5))):
            key = rng.choice(keys)
            batch.append((key, None) if rng.random() < 0.4 else put(key, host=f"10.0.0.{rng.randrange(1, 255)}"))
        snap, touched, _ = snap.apply(step + 2, batch)
        index.swapped(snap, touched)
        if rng.random() < 0.5:   # a reader does not look after every swap
            continue
        names, per_zone = index.current()
        assert names == service_names(snap), f"after step {step}: {batch}"
        expected = {}
        for name in names:
            expected[snap.zone_of(name).name] = expected.get(snap.zone_of(name).name, 0) + 1
        assert {z: n for z, n in per_zone.items() if n} == expected


def test_a_big_catalogue_is_sent_a_page_at_a_time():
    snap = Snapshot.build("/p", ZONES, 3, [put(f"/p/local/svc/s{i:05d}/{j}", host="10.0.0.1", port=80)
                                          for i in range(3000) for j in range(2)])
    cat = Catalogue()
    cat.tracking(lambda s, t: None)(snap, None)

    def get(path, query=""):
        out = {}

        def start(status, headers):
            out["status"], out["headers"] = status, dict(headers)
        body = b"".join(cat({"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": "GET"}, start))
        return int(out["status"].split()[0]), json.loads(body) if body else None, out["headers"]

    code, doc, headers = get("/v1/services")
    assert code == 200 and doc["total"] == 3000 and len(doc["services"]) == 100   # the default page
    assert headers["Content-Type"] == "application/json" and headers["X-Content-Type-Options"] == "nosniff"
    assert doc["services"][0]["name"] == "s00000.svc.local"
    seen = []
    for offset in range(0, 3000, 1000):
        seen += [s["name"] for s in get("/v1/services", f"offset={offset}&limit=1000")[1]["services"]]
    assert seen == [f"s{i:05d}.svc.local" for i in range(3000)]
    code, doc, _ = get("/v1/services", "q=S0299")          # the filter: a substring, any letter case
    assert code == 200 and doc["total"] == 10 and all("s0299" in s["name"] for s in doc["services"])
    for bad in ("limit=1001", "limit=-1", "offset=x"):
        code, doc, _ = get("/v1/services", bad)
        assert code == 400 and bad.split("=")[0] in doc["error"], bad


def test_query_rate_averages_the_last_ten_seconds():
    rate = QueryRate(0.0, 0)
    assert rate.observe(0.0, 0) == (None, 0.0)
    for second in range(1, 31):          # 100 queries a second, then 10
        total = 100 * min(second, 20) + 10 * max(0, second - 20)
        per_second, span = rate.observe(float(second), total)
        if second == 5:
            assert per_second == pytest.approx(100) and span == 5
    assert per_second == pytest.approx(10) and 10 <= span <= 11
    assert len(rate.samples) <= 12
