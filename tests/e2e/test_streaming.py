"""Streaming: an SSE event from the upstream reaches the client before the upstream ends the
stream. The upstream sends ``first``, then blocks until the test releases it; if mxgate buffered
the response the read below would time out (10 s) and the test fails instead of hanging."""

from __future__ import annotations

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
