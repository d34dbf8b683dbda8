"""What reaches the core: header hygiene on the wire (echo upstream) and in the real core.

* client-sent identity headers (any case, ``_`` for ``-``) never reach the core; exactly one
  ``x-mxcp-user-assertion`` does, minted by mxgate and verifiable with its JWKS;
* the client's bearer token never reaches the core;
* Host is rewritten to the upstream, Origin is dropped, X-Forwarded-* / X-Real-IP are set by
  mxgate (client-sent values are not trusted), mxgate's own cookies are removed.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from browser import Login
from support import McpHttp, RecordingUpstream, Stack, header_values

FORGED = [
    ("x-mxcp-user-assertion", "forged-lower"),
    ("X-MXCP-USER-ASSERTION", "forged-upper"),
    ("x_mxcp_user_assertion", "forged-underscore"),
    ("X-Mxcp-User_Assertion", "forged-mixed"),
    ("x-mxcp-user-email", "mallory@evil.example"),
    ("X_MXCP_USER_NAME", "mallory"),
    ("x-mxcp-user-id", "mallory"),
]
FORGED_VALUES = {v for _, v in FORGED}


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-")


def _jwks(stack: Stack) -> dict[str, Any]:
    r = httpx.get(stack.url + "/.well-known/jwks.json", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def verify_assertion(token: str, stack: Stack) -> dict[str, Any]:
    """Verify an assertion with mxgate's published JWKS, as the core adapter does."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA", header
    keys = {k["kid"]: k for k in _jwks(stack)["keys"]}
    assert header.get("kid") in keys, (header, list(keys))
    key = jwt.PyJWK(keys[header["kid"]]).key
    return jwt.decode(token, key, algorithms=["EdDSA"], audience="mxcp-core", issuer=stack.url)


def _send_through(stack: Stack, upstream: RecordingUpstream, token: str, *, method: str = "GET",
                  extra: list[tuple[str, str]] | None = None) -> dict[str, Any]:  # fmt: skip
    """One request through mxgate to the echo upstream; returns what the upstream received."""
    marker = uuid.uuid4().hex
    path = f"/mcp/probe?id={marker}"
    r = httpx.request(method, stack.url + path, timeout=10, content=b'{"x":1}' if method == "POST" else None,
                      headers=[("authorization", f"Bearer {token}"), *(extra or [])])  # fmt: skip
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    assert r.json() == {"ok": True, "path": path}, r.text
    seen = upstream.find(lambda req: req["path"] == path)
    assert len(seen) == 1, seen
    return seen[0]


def test_forged_identity_headers_never_reach_the_upstream(
    echo_stack: Stack, echo_upstream: RecordingUpstream, echo_login: Login
) -> None:
    gw = echo_stack.gateway
    received = _send_through(echo_stack, echo_upstream, echo_login.tokens["access_token"], extra=[
        *FORGED,
        ("Origin", gw.url),  # the public origin: allowed, and still dropped before the core
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Real-IP", "6.6.6.6"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("Cookie", "mxgate-csrf=c1; keep=1; mxgate-login=l1; mxgate-consent-abc=yes"),
    ])  # fmt: skip
    headers = received["headers"]

    # Exactly one assertion, under the canonical name, and it is mxgate's.
    identity = [(n, v) for n, v in headers if _normalized(n).startswith("x-mxcp-user-")]
    assertions = [v for n, v in identity if n.lower() == "x-mxcp-user-assertion"]
    assert len(assertions) == 1, f"expected exactly one assertion header, got {identity}"
    assert not [n for n, _ in identity if "_" in n], f"underscore variants reached the upstream: {identity}"
    assert not FORGED_VALUES & {v for _, v in identity}, f"forged values reached the upstream: {identity}"

    claims = verify_assertion(assertions[0], echo_stack)
    assert claims["iss"] == gw.url
    assert claims["aud"] == "mxcp-core"
    assert claims["sub"] == "alice"
    assert claims["username"] == "alice"
    assert claims["email"] == "alice@example.test"
    assert claims["provider"] == "oidc"
    assert claims["client_id"] == echo_login.client_id
    assert "mxcp:access" in claims["scope"].split()
    assert claims.get("sid"), claims
    assert claims.get("ext"), "the provider access token (ext) is missing"
    assert claims["iat"] <= time.time() + 5 < claims["exp"], claims

    # Never the client's credentials; Host/Origin/X-Forwarded-* as the core needs them.
    assert not header_values(received, "authorization"), headers
    assert header_values(received, "host") == [f"127.0.0.1:{echo_upstream.port}"], headers
    assert not header_values(received, "origin"), headers
    assert header_values(received, "x-forwarded-for") == ["127.0.0.1"], headers
    assert header_values(received, "x-real-ip") == ["127.0.0.1"], headers
    assert header_values(received, "x-forwarded-proto") == ["http"], headers
    assert header_values(received, "x-forwarded-host") == [f"127.0.0.1:{gw.port}"], headers

    cookies = "; ".join(header_values(received, "cookie"))
    assert "keep=1" in cookies, f"foreign cookies must pass: {cookies!r}"
    assert "mxgate-" not in cookies, f"mxgate's cookies reached the upstream: {cookies!r}"


def test_identity_headers_are_stripped_on_post_too(
    echo_stack: Stack, echo_upstream: RecordingUpstream, echo_login: Login
) -> None:
    received = _send_through(echo_stack, echo_upstream, echo_login.tokens["access_token"], method="POST",
                             extra=FORGED)  # fmt: skip
    identity = [(n, v) for n, v in received["headers"] if _normalized(n).startswith("x-mxcp-user-")]
    assert [n.lower() for n, _ in identity if n.lower() == "x-mxcp-user-assertion"] == ["x-mxcp-user-assertion"], identity
    assert not FORGED_VALUES & {v for _, v in identity}, identity
    assert received["body"] == b'{"x":1}'


def test_bearer_token_never_reaches_the_upstream(
    echo_stack: Stack, echo_upstream: RecordingUpstream, echo_login: Login
) -> None:
    access = echo_login.tokens["access_token"]
    refresh = echo_login.tokens["refresh_token"]
    # Also in lower-case scheme and with a second Authorization header.
    for auth in ([("authorization", f"Bearer {access}")], [("Authorization", f"bearer {access}")]):
        marker = uuid.uuid4().hex
        r = httpx.get(f"{echo_stack.url}/mcp/t?id={marker}", headers=auth, timeout=10)
        assert r.status_code == 200, (auth[0][1][:7], r.status_code, r.text)
    everything = json.dumps([req["headers"] for req in echo_upstream.requests])
    assert access not in everything, "the client's access token reached the upstream"
    assert refresh not in everything, "the client's refresh token reached the upstream"
    for req in echo_upstream.requests:
        assert not header_values(req, "authorization"), req


# --- the real core -------------------------------------------------------------------------


def _forged_assertion(stack: Stack) -> str:
    """An assertion for bob, well formed, with mxgate's kid, signed with somebody else's key."""
    kid = _jwks(stack)["keys"][0]["kid"]
    now = int(time.time())
    claims = {
        "iss": stack.url, "aud": "mxcp-core", "iat": now, "exp": now + 300, "sub": "bob",
        "username": "bob", "email": "bob@example.org", "provider": "oidc", "ext": "stolen",
    }  # fmt: skip
    return jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid})


def test_core_sees_alice_despite_forged_identity_headers(core_stack: Stack, core_login: Login) -> None:
    forged = _forged_assertion(core_stack)
    extra = [
        ("x-mxcp-user-assertion", forged),
        ("X-MXCP-USER-ASSERTION", forged),
        ("x_mxcp_user_assertion", forged),
        ("x-mxcp-user-email", "bob@example.org"),
        ("Origin", core_stack.url),  # allowed (the public origin), and still dropped
    ]
    with McpHttp(core_stack.gateway.mcp_url, core_login.tokens["access_token"]) as mcp:
        mcp.initialize()
        who = mcp.call_tool("whoami", extra)
        # With a second assertion header the core would see nobody (None); with only the
        # forged one, nobody either (bad signature); only mxgate's own one gives alice.
        assert who == {"username": "alice", "email": "alice@example.test", "provider": "oidc",
                       "has_external_token": True}, who  # fmt: skip
        seen = json.loads(mcp.call_tool("request_headers", extra))
    assert not [k for k in seen if _normalized(k).startswith("x-mxcp-user-")], seen
    assert "origin" not in seen, seen


def test_core_never_sees_the_bearer_token(core_stack: Stack, core_login: Login) -> None:
    token = core_login.tokens["access_token"]
    with McpHttp(core_stack.gateway.mcp_url, token) as mcp:
        mcp.initialize()
        raw = mcp.call_tool("request_headers")
    seen = json.loads(raw)
    assert "authorization" not in seen, seen
    assert token not in raw, "the bearer token is visible to the core"
    assert seen["host"] == f"127.0.0.1:{core_stack.core.port}", seen
    assert seen["x-forwarded-for"] == "127.0.0.1", seen
    assert not [k for k in seen if k.startswith("mxgate")], seen


@pytest.mark.parametrize("scheme", ["Basic", "Token"])
def test_non_bearer_authorization_is_refused_and_not_forwarded(
    echo_stack: Stack, echo_upstream: RecordingUpstream, echo_login: Login, scheme: str
) -> None:
    marker = uuid.uuid4().hex
    r = httpx.get(f"{echo_stack.url}/mcp/x?id={marker}", timeout=10,
                  headers={"authorization": f"{scheme} {echo_login.tokens['access_token']}"})  # fmt: skip
    assert r.status_code == 401, (r.status_code, r.text)
    assert not echo_upstream.find(lambda req: marker in req["path"])
