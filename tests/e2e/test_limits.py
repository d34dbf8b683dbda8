"""The bounds of `limits` and `rate_limits` (mxgate.yml), on a running mxgate:

* the OAuth endpoints answer 429 with `Retry-After` and an OAuth JSON error past their rate, per
  client address and per OAuth client;
* MCP session ids are bound only when the core issues them: a made-up or oversized id gets 404
  and never reaches the core, a user holds at most `mcp_sessions_per_user`, and a flood of
  900 KB session ids does not grow mxgate's memory;
* a client that sends its request header slowly is cut off after `header_timeout`, one that
  sends its body slowly after `body_timeout`, and one address holds at most
  `max_connections_per_address` connections.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import browser
from support import UNLIMITED_RATES, McpHttp, RecordingUpstream, Stack


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    rates = {
        "per_address": {**UNLIMITED_RATES["per_address"], "register": 3},
        "per_client": {**UNLIMITED_RATES["per_client"], "token": 4},
    }
    limits = {"header_timeout": "2s", "body_timeout": "2s", "max_connections_per_address": 6}
    with Stack(tmp_path_factory.mktemp("limited"), echo_upstream.url,
               gateway_extra={"rate_limits": rates, "limits": limits}) as stack:  # fmt: skip
        yield stack


def _register(stack: Stack) -> httpx.Response:
    return httpx.post(stack.url + "/register", timeout=10, json={
        "redirect_uris": [browser.DEFAULT_REDIRECT_URI], "token_endpoint_auth_method": "none"})  # fmt: skip


def test_registration_is_rate_limited_per_address(limited: Stack) -> None:
    answers = [_register(limited) for _ in range(5)]
    assert [r.status_code for r in answers[:3]] == [201, 201, 201], [r.text for r in answers]
    refused = answers[3]
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"] == "temporarily_unavailable"
    assert refused.headers["content-type"].startswith("application/json")
    # Another endpoint is counted apart.
    assert httpx.get(limited.url + "/.well-known/oauth-authorization-server", timeout=10).status_code == 200


def test_the_token_endpoint_is_rate_limited_per_client(limited: Stack) -> None:
    client = "mxc_made_up_client"
    statuses = [
        httpx.post(limited.url + "/token", data={"grant_type": "refresh_token", "refresh_token": "x",
                                                 "client_id": client}, timeout=10).status_code
        for _ in range(6)
    ]  # fmt: skip
    assert statuses[:4] == [401] * 4, statuses  # unknown client: invalid_client
    assert statuses[4:] == [429, 429], statuses


# --- MCP sessions -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def few_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("few-sessions"), with_core=True,
               gateway_extra={"limits": {"mcp_sessions_per_user": 2}}) as stack:  # fmt: skip
        yield stack


def test_only_session_ids_the_core_issued_are_accepted(few_sessions: Stack) -> None:
    token = browser.get_token(few_sessions.url)["access_token"]
    with McpHttp(few_sessions.gateway.mcp_url, token) as made_up:
        made_up.session_id = uuid.uuid4().hex
        r = made_up.request_raw("tools/list", {})
        assert r.status_code == 404 and r.json()["error"] == "not_found", r.text
        made_up.session_id = "x" * 129
        assert made_up.request_raw("tools/list", {}).status_code == 404
        made_up.session_id = None
    sessions = []
    for _ in range(3):
        mcp = McpHttp(few_sessions.gateway.mcp_url, token)
        mcp.initialize()
        sessions.append(mcp)
    try:
        oldest, *newer = sessions
        assert oldest.request_raw("tools/list", {}).status_code == 404, "beyond mcp_sessions_per_user: dropped"
        for mcp in newer:
            assert mcp.call_tool("whoami")["username"] == "alice"
    finally:
        sessions[0].session_id = None  # already forgotten; do not DELETE it
        for mcp in sessions:
            mcp.close()


def test_a_flood_of_huge_session_ids_does_not_grow_memory(
    echo_stack: Stack, echo_upstream: RecordingUpstream
) -> None:
    token = browser.get_token(echo_stack.url)["access_token"]
    proc = echo_stack.gateway.proc
    assert proc is not None
    with httpx.Client(timeout=30) as client:
        def flood(n: int) -> None:
            for i in range(n):
                r = client.post(echo_stack.url + "/mcp", content=b"{}", headers={
                    "authorization": f"Bearer {token}", "content-type": "application/json",
                    "mcp-session-id": f"{i:08d}" + "s" * 900_000})  # fmt: skip
                assert r.status_code == 404, r.text[:200]

        flood(10)  # warm up allocator pools
        before = _rss_kib(proc.pid)
        flood(100)
        grown_mib = (_rss_kib(proc.pid) - before) / 1024
    # 100 ids of 900 KB would be ~86 MiB if they were kept (the defect this guards against).
    assert grown_mib < 20, f"RSS grew by {grown_mib:.1f} MiB"
    assert not echo_upstream.find(lambda q: q["path"] == "/mcp" and any(
        n.lower() == "mcp-session-id" and len(v) > 1000 for n, v in q["headers"])), "an unknown session reached the core"


# --- slow clients and connections -------------------------------------------------------------


def _wait_closed(s: socket.socket, limit: float) -> float:
    """Seconds until the server closes `s` (or `limit` if it does not)."""
    started = time.monotonic()
    s.settimeout(0.25)
    while time.monotonic() - started < limit:
        try:
            if s.recv(4096) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return limit


def test_a_slow_header_is_cut_off(limited: Stack) -> None:
    with socket.create_connection(("127.0.0.1", limited.gateway.port)) as s:
        started = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        while time.monotonic() - started < 8:
            try:
                s.sendall(b"X-Slow: a\r\n")  # a byte at a time would do; a line keeps it short
            except OSError:
                closed = True
                break
            s.settimeout(0.5)
            try:
                if s.recv(4096) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
        took = time.monotonic() - started
    assert closed and took < 5, f"a header dribbled for {took:.1f} s was not cut off (header_timeout is 2 s)"


def test_a_kept_alive_connection_may_idle_before_its_next_request(limited: Stack) -> None:
    with socket.create_connection(("127.0.0.1", limited.gateway.port), timeout=10) as s:
        request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{limited.gateway.port}\r\n\r\n".encode()
        s.sendall(request)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(3)  # longer than header_timeout, shorter than idle_timeout
        s.sendall(request)
        assert s.recv(4096).startswith(b"HTTP/1.1 200"), "the header clock starts with the next request"


def test_a_slow_body_is_cut_off(limited: Stack) -> None:
    with socket.create_connection(("127.0.0.1", limited.gateway.port), timeout=10) as s:
        s.sendall(f"POST /token HTTP/1.1\r\nHost: 127.0.0.1:{limited.gateway.port}\r\n"
                  "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type".encode())  # fmt: skip
        started = time.monotonic()
        answer = s.recv(4096)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert took < 5, took


def test_one_address_holds_a_bounded_number_of_connections(limited: Stack) -> None:
    port = limited.gateway.port
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", port))
        assert _wait_closed(extra, 3) < 3, "the 7th connection from one address was kept"
        extra.close()
        held.pop().close()
        time.sleep(0.3)
        r = httpx.get(limited.url + "/healthz", timeout=5)
        assert r.status_code == 200, "a place freed is usable again"
    finally:
        for s in held:
            s.close()
