"""Reading a KV watch stream in tests (tests/etcd/test_client.py and test_helper.py)."""
from __future__ import annotations

import threading


def collect(stream, n_events, timeout=5.0):
    """Read batches until n_events events arrived (bounded by cancelling the stream)."""
    timer = threading.Timer(timeout, stream.cancel)
    timer.start()
    events, batches = [], []
    try:
        for batch in stream:
            batches.append(batch)
            events.extend(batch.events)
            if len(events) >= n_events:
                break
    finally:
        timer.cancel()
        stream.cancel()
    assert len(events) >= n_events, f"got {events} in {timeout}s"
    return events, batches
