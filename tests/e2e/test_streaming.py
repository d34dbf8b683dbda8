"""Streaming: an SSE event from the upstream reaches the client before the upstream ends the
stream. The upstream sends ``first``, then blocks until the test releases it; if mxgate buffered
the response the read below would time out (10 s) and the test fails instead of hanging."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from browser import Login
from support import RecordingUpstream, Stack


def _events(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.startswith("data:"):
            yield line[5:].strip()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_sse_event_arrives_before_the_upstream_finishes(
    echo_stack: Stack, echo_upstream: RecordingUpstream, echo_login: Login, method: str
) -> None:
    key = uuid.uuid4().hex
    gate = echo_upstream.gate(key)
    headers = {"authorization": f"Bearer {echo_login.tokens['access_token']}", "accept": "text/event-stream"}
    timeout = httpx.Timeout(10.0)
    first: str | None = None
    try:
        with httpx.Client(timeout=timeout) as client:
            with client.stream(method, f"{echo_stack.url}/sse?id={key}", headers=headers,
                               content=b"{}" if method == "POST" else None) as r:  # fmt: skip
                assert r.status_code == 200, r.read()
                assert r.headers["content-type"].startswith("text/event-stream"), r.headers
                events = _events(r.iter_lines())
                first = next(events)
                assert first == "first"
                assert not gate.is_set()
                gate.set()  # now let the upstream send the second event and finish
                assert list(events) == ["second"]
    except httpx.ReadTimeout:
        pytest.fail(
            f"read timed out ({'after' if first else 'before'} the first event) while the upstream held "
            "the stream open: mxgate buffers the response"
        )
    finally:
        gate.set()
    assert not [e for e in echo_upstream.sse_errors if key in e], echo_upstream.sse_errors


def test_sequential_requests_keep_one_upstream_connection(
    echo_stack: Stack, echo_upstream: RecordingUpstream, echo_login: Login
) -> None:
    """One client sending requests one after another, with a pause between them as an MCP
    client waiting on a stream does, is served over one pooled upstream connection. With
    Pingora's per-thread runtimes (`work_stealing` off) and two threads, the pool's watcher of an
    idle connection sits on a random thread; taking the connection back then races with it, and
    a lost race drops the connection and connects anew ("failed to acquire reusable stream"),
    which delayed SSE first events (BENCHMARKS.md, "SSE time to first event")."""
    run = uuid.uuid4().hex
    headers = {"authorization": f"Bearer {echo_login.tokens['access_token']}"}
    requests = 200
    with httpx.Client(timeout=10.0) as client:
        for i in range(requests):
            r = client.post(f"{echo_stack.url}/reuse?run={run}&i={i}", headers=headers, content=b"{}")
            assert r.status_code == 200, r.text
            time.sleep(0.02)  # long enough for mxgate's threads to park
    peers = [r["peer"] for r in echo_upstream.find(lambda r: f"run={run}&" in r["path"])]
    assert len(peers) == requests
    # The first request may take any pooled connection (earlier tests leave some); then one.
    switches = sum(1 for a, b in zip(peers, peers[1:]) if a != b)
    assert switches == 0, f"{switches} of {requests - 1} requests went over another upstream connection"
