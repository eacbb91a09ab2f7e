"""The mass-expiry guard: pure rules (tables, a fake clock). The run against real etcd and serve is tests/e2e/test_guard.py."""
from __future__ import annotations

from dnsdisco.etcd.guard import ExpiryGuard


def zone_of(key: str):
    return "svc.local" if key.startswith("/skydns/local/svc/") else None


class Served:
    """What the snapshot serves, updated the way the Syncer applies the guard's output."""

    def __init__(self, n: int):
        self.values = {self.key(i): b'{"host":"10.0.0.%d"}' % (i % 250) for i in range(n)}

    @staticmethod
    def key(i: int) -> str:
        return f"/skydns/local/svc/web/i{i}"

    def apply(self, events):
        for key, value in events:
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = value


def guard(fraction=0.3, window=10.0, hold_max=60.0, n=100):
    g = ExpiryGuard(fraction, window, hold_max, zone_of)
    g.reset({"svc.local": n})
    return g


def deletes(keys):
    return [(key, None) for key in keys]


def test_a_single_deletion_goes_at_once():
    served, g = Served(100), guard()
    out, begun = g.batch(deletes([Served.key(0)]), served.values.get, now=0.0)
    assert out == deletes([Served.key(0)]) and begun == [] and not g.holds


def test_deletions_under_the_fraction_go_at_once_even_in_a_burst():
    served, g = Served(100), guard()
    out, begun = g.batch(deletes(Served.key(i) for i in range(25)), served.values.get, now=0.0)
    assert len(out) == 25 and not begun


def test_a_mass_deletion_in_one_batch_is_held():
    served, g = Served(200), guard(n=200)
    out, begun = g.batch(deletes(Served.key(i) for i in range(100)), served.values.get, now=0.0)
    assert out == [] and begun == ["svc.local"] and g.held_count == 100


def test_deletions_spread_over_batches_are_put_back_when_the_threshold_is_crossed():
    served, g = Served(100), guard()
    applied = []
    for i in range(40):                              # one by one, as lease expiries arrive
        out, begun = g.batch(deletes([Served.key(i)]), served.values.get, now=i * 0.01)
        served.apply(out)
        applied.extend(out)
    assert g.holds and g.held_count == 40
    assert all(Served.key(i) in served.values for i in range(40))      # every one served again
    assert served.values[Served.key(3)] == b'{"host":"10.0.0.3"}'


def test_deletions_older_than_the_window_do_not_count():
    served, g = Served(100), guard(window=1.0)
    for i in range(40):
        out, _ = g.batch(deletes([Served.key(i)]), served.values.get, now=i * 2.0)
        served.apply(out)
    assert not g.holds and len(served.values) == 60


def test_fewer_than_the_minimum_never_hold():
    served, g = Served(9), guard(n=9)
    out, begun = g.batch(deletes(Served.key(i) for i in range(9)), served.values.get, now=0.0)
    assert len(out) == 9 and not begun


def test_released_after_hold_max_with_the_held_records_deleted():
    served, g = Served(200), guard(n=200, hold_max=5.0)
    out, _ = g.batch(deletes(Served.key(i) for i in range(100)), served.values.get, now=0.0)
    assert g.release(4.9) == []
    [(hold, deletions, why)] = g.release(5.0)
    assert sorted(deletions) == sorted(deletes(Served.key(i) for i in range(100))) and "hold-max" in why
    assert not g.holds


def test_registered_again_leaves_the_hold_and_the_fleet_back_ends_it():
    served, g = Served(200), guard(n=200)
    g.batch(deletes(Served.key(i) for i in range(100)), served.values.get, now=0.0)
    back = [(Served.key(i), b'{"host":"10.1.0.1"}') for i in range(30)]
    out, _ = g.batch(back, served.values.get, now=1.0)
    assert out == back and g.held_count == 70
    assert g.release(1.0) == []
    more = [(Served.key(i), b'{"host":"10.1.0.1"}') for i in range(30, 50)]
    g.batch(more, served.values.get, now=2.0)
    [(hold, deletions, why)] = g.release(2.0)
    assert len(deletions) == 50 and "back" in why


def test_further_deletions_during_a_hold_are_held_too():
    served, g = Served(200), guard(n=200)
    g.batch(deletes(Served.key(i) for i in range(100)), served.values.get, now=0.0)
    out, _ = g.batch(deletes([Served.key(150)]), served.values.get, now=1.0)
    assert out == [] and g.held_count == 101


def test_off_with_fraction_zero():
    served, g = Served(200), guard(fraction=0.0, n=200)
    events = deletes(Served.key(i) for i in range(200))
    assert g.batch(events, served.values.get, now=0.0) == (events, [])


def test_outside_every_zone_never_held():
    g = guard()
    events = deletes(f"/skydns/other/x{i}" for i in range(100))
    out, begun = g.batch(events, lambda key: b"{}", now=0.0)
    assert out == events and not begun
