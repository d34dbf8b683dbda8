"""What mxgate refuses before anything reaches the core, on the wire (raw sockets where the HTTP
client would not send it):

* DNS rebinding: a foreign `Host` (421) or `Origin` (403) never reaches the core, even with a
  valid token; loopback names are interchangeable on a loopback public URL.
* HTTP framing: no `Host`, `Transfer-Encoding` other than `chunked`, a malformed chunk → 400 and
  a closed connection, never a 500; valid framing (chunk sizes with leading zeros) works.
* CORS: answered by mxgate; allowed origins get `Access-Control-Allow-Origin` and the exposed
  MCP headers on 401s and proxied answers; others are refused.
* Proxy information a client sends (`X-Forwarded-Port`, `X-Original-URL`, `Forwarded`, `_`
  spellings, …) never reaches the core, nor does a bare `x-mxcp-user`.
* The core's own address in a `Location` is rewritten to the public URL.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from browser import Login, get_token
from support import RecordingUpstream, Stack, header_values

APP_ORIGIN = "http://app.example"


def _raw(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Sends raw bytes; returns what came back and whether the server closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out, True
                out += chunk
        except socket.timeout:
            return out, False


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def _mcp(stack: Stack, token: str, marker: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/mcp/probe?id={marker}", timeout=10,
                     headers={"authorization": f"Bearer {token}", **headers})  # fmt: skip


# --- DNS rebinding ----------------------------------------------------------------------------


def test_a_foreign_host_or_origin_never_reaches_the_core(
    echo_stack: Stack, echo_upstream: RecordingUpstream, echo_login: Login
) -> None:
    token = echo_login.tokens["access_token"]
    port = echo_stack.gateway.port
    refused = [
        (_mcp(echo_stack, token, m1 := uuid.uuid4().hex, host="evil.example.com"), 421, m1),
        (_mcp(echo_stack, token, m2 := uuid.uuid4().hex, host=f"evil.example.com:{port}"), 421, m2),
        (_mcp(echo_stack, token, m3 := uuid.uuid4().hex, origin="http://evil.example.com"), 403, m3),
        (_mcp(echo_stack, token, m4 := uuid.uuid4().hex, origin=f"http://evil.example.com:{port}"), 403, m4),
        (_mcp(echo_stack, token, m5 := uuid.uuid4().hex, origin="null"), 403, m5),
    ]
    for response, status, marker in refused:
        assert response.status_code == status, (response.status_code, response.text)
        assert response.json()["error"] in ("invalid_host", "invalid_origin"), response.text
        assert not echo_upstream.find(lambda q, m=marker: m in q["path"]), "a refused request reached the core"

    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        ok = _mcp(echo_stack, token, uuid.uuid4().hex, host=host, origin=f"http://{host}")
        assert ok.status_code == 200, (host, ok.status_code, ok.text)
    # Health checks answer under any name (probes use the pod address).
    assert httpx.get(echo_stack.url + "/healthz", headers={"host": "10.1.2.3:8000"}, timeout=10).status_code == 200


# --- HTTP framing -----------------------------------------------------------------------------


def test_malformed_framing_gets_400_and_a_closed_connection(echo_stack: Stack, echo_upstream: RecordingUpstream) -> None:
    port, host = echo_stack.gateway.port, f"Host: 127.0.0.1:{echo_stack.gateway.port}\r\n".encode()
    form = b"Content-Type: application/x-www-form-urlencoded\r\n"
    cases = {
        "no Host in HTTP/1.1": b"GET /.well-known/oauth-authorization-server HTTP/1.1\r\n\r\n",
        "two Host headers": b"GET /.well-known/jwks.json HTTP/1.1\r\n" + host + host + b"\r\n",
        "identity, chunked": b"POST /token HTTP/1.1\r\n" + host + form
        + b"Transfer-Encoding: identity, chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
        "gzip then chunked lines": b"POST /token HTTP/1.1\r\n" + host + form
        + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
        "bad chunk size at an OAuth endpoint": b"POST /token HTTP/1.1\r\n" + host + form
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabcde\r\n0\r\n\r\n",
        "bad chunk size towards the core": b"POST /mcp HTTP/1.1\r\n" + host
        + b"Authorization: Bearer x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabcde\r\n0\r\n\r\n",
    }  # fmt: skip
    for name, request in cases.items():
        response, closed = _raw(port, request)
        status = _status(response)
        assert status == 400 or (status == 401 and "towards the core" in name), (name, response[:300])
        if status == 400:
            assert closed, f"{name}: the connection must be closed after malformed framing"
    # Valid framing works: leading zeros in a chunk size, and plain chunked.
    for size in (b"0005", b"5"):
        response, _ = _raw(port, b"POST /token HTTP/1.1\r\n" + host + form
                           + b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\nabcde\r\n0\r\n\r\n")  # fmt: skip
        assert _status(response) in (400, 401) and b'"error"' in response, response[:300]
        assert b"proxy_error" not in response and b"Transfer-Encoding must" not in response


# --- CORS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cors_stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("cors"), echo_upstream.url,
               gateway_extra={"allowed_origins": [APP_ORIGIN]}) as stack:  # fmt: skip
        yield stack


def test_allowed_origins_can_read_the_challenge_and_the_session_id(
    cors_stack: Stack, echo_upstream: RecordingUpstream
) -> None:
    preflight = httpx.request("OPTIONS", cors_stack.url + "/mcp", timeout=10, headers={
        "origin": APP_ORIGIN, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, mcp-protocol-version",
    })  # fmt: skip
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
    for header in ("authorization", "content-type", "mcp-session-id", "mcp-protocol-version", "last-event-id"):
        assert header in preflight.headers["access-control-allow-headers"]

    challenge = httpx.post(cors_stack.url + "/mcp", headers={"origin": APP_ORIGIN}, timeout=10)
    assert challenge.status_code == 401
    assert challenge.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "www-authenticate" in challenge.headers["access-control-expose-headers"]

    token = get_token(cors_stack.url)["access_token"]
    proxied = _mcp(cors_stack, token, uuid.uuid4().hex, origin=APP_ORIGIN)
    assert proxied.status_code == 200, proxied.text
    assert proxied.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "mcp-session-id" in proxied.headers["access-control-expose-headers"]

    token_endpoint = httpx.post(cors_stack.url + "/token", data={"grant_type": "x"}, headers={"origin": APP_ORIGIN},
                                timeout=10)  # fmt: skip
    assert token_endpoint.headers["access-control-allow-origin"] == APP_ORIGIN

    evil = "http://evil.example"
    assert httpx.request("OPTIONS", cors_stack.url + "/mcp", timeout=10, headers={
        "origin": evil, "access-control-request-method": "POST"}).status_code == 403  # fmt: skip
    refused = _mcp(cors_stack, token, uuid.uuid4().hex, origin=evil)
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    other = httpx.post(cors_stack.url + "/token", data={"grant_type": "x"}, headers={"origin": evil}, timeout=10)
    assert "access-control-allow-origin" not in other.headers
    # The public documents are readable from anywhere.
    prm = httpx.get(cors_stack.url + "/.well-known/oauth-protected-resource/mcp", headers={"origin": evil}, timeout=10)
    assert prm.headers["access-control-allow-origin"] == "*"


# --- proxy information ------------------------------------------------------------------------


def test_client_sent_proxy_information_never_reaches_the_core(
    echo_stack: Stack, echo_upstream: RecordingUpstream, echo_login: Login
) -> None:
    forged = "6.6.6.6"
    names = [
        "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Uri", "X-Forwarded-Server", "X-Forwarded-Ssl",
        "X-Original-URL", "X-Rewrite-URL", "X-Real-IP", "Forwarded", "True-Client-IP", "CF-Connecting-IP",
        "x_forwarded_for", "x_forwarded_host", "x_forwarded_proto", "x_real_ip", "X_Forwarded_Port",
        "x-mxcp-user", "x_mxcp_user", "x-mxcp-username", "x_mxcp_user_assertion",
    ]  # fmt: skip
    marker = uuid.uuid4().hex
    r = httpx.get(f"{echo_stack.url}/mcp/probe?id={marker}", timeout=10,
                  headers=[("authorization", f"Bearer {echo_login.tokens['access_token']}"),
                           *((n, forged) for n in names)])  # fmt: skip
    assert r.status_code == 200, r.text
    [seen] = echo_upstream.find(lambda q: marker in q["path"])
    leaked = [(n, v) for n, v in seen["headers"] if forged in v]
    assert not leaked, f"client-sent proxy information reached the core: {leaked}"
    assert header_values(seen, "x-forwarded-for") == ["127.0.0.1"]


# --- Location ---------------------------------------------------------------------------------


def test_the_cores_own_address_in_a_location_becomes_the_public_url(core_stack: Stack, core_login: Login) -> None:
    assert core_stack.core is not None
    r = httpx.get(core_stack.url + "/mcp/", timeout=10, follow_redirects=False,
                  headers={"authorization": f"Bearer {core_login.tokens['access_token']}",
                           "accept": "application/json, text/event-stream"})  # fmt: skip
    location = r.headers.get("location")
    if r.status_code in (301, 302, 307, 308):
        assert location and not location.startswith(core_stack.core.url), location
        assert location.startswith(core_stack.url) or location.startswith("/"), location
    else:  # the core answered directly; then no Location may name it either
        assert not (location or "").startswith(core_stack.core.url), r.headers
