"""Discovery documents as MCP clients need them, and /authorize's PKCE requirements."""

from __future__ import annotations

import httpx
import pytest

import browser
from support import Stack

REDIRECT_URI = browser.DEFAULT_REDIRECT_URI


def _json(url: str) -> dict:
    r = httpx.get(url, timeout=10, follow_redirects=False)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    assert r.headers.get("content-type", "").startswith("application/json"), (url, r.headers)
    return r.json()


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"])
def test_protected_resource_metadata(echo_stack: Stack, path: str) -> None:
    prm = _json(echo_stack.url + path)
    asm = _json(echo_stack.url + "/.well-known/oauth-authorization-server")
    assert prm["resource"] == echo_stack.gateway.mcp_url, prm
    # The MCP SDK compares these as strings: byte-identical, no trailing slash added.
    assert prm["authorization_servers"][0] == asm["issuer"] == echo_stack.url, (prm, asm)
    assert "mxcp:access" in prm.get("scopes_supported", []), prm
    assert prm.get("bearer_methods_supported", ["header"]) == ["header"], prm


def test_authorization_server_metadata(echo_stack: Stack) -> None:
    base = echo_stack.url
    asm = _json(base + "/.well-known/oauth-authorization-server")
    assert asm["issuer"] == base
    assert asm["authorization_endpoint"] == base + "/authorize"
    assert asm["token_endpoint"] == base + "/token"
    assert asm["registration_endpoint"] == base + "/register"
    assert asm["code_challenge_methods_supported"] == ["S256"]
    assert asm["authorization_response_iss_parameter_supported"] is True
    assert asm["response_types_supported"] == ["code"]
    assert {"authorization_code", "refresh_token"} <= set(asm["grant_types_supported"])
    assert "none" in asm["token_endpoint_auth_methods_supported"]
    assert "implicit" not in asm["grant_types_supported"]
    oidc = _json(base + "/.well-known/openid-configuration")
    assert oidc["issuer"] == base and oidc["authorization_endpoint"] == asm["authorization_endpoint"]


def test_jwks_publishes_only_public_ed25519_keys(echo_stack: Stack) -> None:
    jwks = _json(echo_stack.url + "/.well-known/jwks.json")
    assert jwks["keys"], jwks
    for key in jwks["keys"]:
        assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key.get("kid") and key.get("x"), key
        assert "d" not in key, "the JWKS leaks a private key"
    assert (echo_stack.gateway.data_dir / "jwks.json").exists()


def test_health_endpoints(echo_stack: Stack) -> None:
    assert httpx.get(echo_stack.url + "/healthz", timeout=10).status_code == 200
    assert httpx.get(echo_stack.url + "/readyz", timeout=10).status_code == 200


@pytest.mark.parametrize("case, change", [
    ("no PKCE", {"code_challenge": None, "code_challenge_method": None}),
    ("no method", {"code_challenge_method": None}),
    ("plain", {"code_challenge_method": "plain"}),
    ("unknown method", {"code_challenge_method": "S512"}),
    ("short challenge", {"code_challenge": "abc"}),
])  # fmt: skip
def test_authorize_requires_pkce_s256(echo_stack: Stack, case: str, change: dict) -> None:
    client_id = browser.register(echo_stack.url, REDIRECT_URI)["client_id"]
    _, challenge = browser.pkce_pair()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "state": "st-" + case,
        "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    for k, v in change.items():
        if v is None:
            params.pop(k)
        else:
            params[k] = v
    r = httpx.get(echo_stack.url + "/authorize", params=params, timeout=10)
    assert r.status_code in (302, 303), (case, r.status_code, r.text[:300])
    location = r.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    q = browser._params(location)
    assert q["error"] == "invalid_request", (case, q)
    assert q["state"] == "st-" + case, q
    assert q["iss"] == echo_stack.url, q
    assert "code" not in q
    assert "mxgate-csrf" not in r.headers.get("set-cookie", ""), "no consent page for a bad request"


def test_authorize_rejects_unsupported_response_type(echo_stack: Stack) -> None:
    client_id = browser.register(echo_stack.url, REDIRECT_URI)["client_id"]
    _, challenge = browser.pkce_pair()
    url = browser.authorization_url(echo_stack.url, client_id, REDIRECT_URI, challenge, "s-token",
                                    response_type="token")  # fmt: skip
    r = httpx.get(url, timeout=10)
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    q = browser._params(r.headers["location"])
    assert q["error"] == "unsupported_response_type" and q["state"] == "s-token", q
    assert "access_token" not in r.headers["location"]


@pytest.mark.parametrize("body, error", [
    ({"redirect_uris": ["http://evil.example/cb"], "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"),
    ({"redirect_uris": [], "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"),
    ({"redirect_uris": ["javascript:alert(1)"], "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"),
    ({"redirect_uris": ["http://127.0.0.1:9/cb#frag"], "token_endpoint_auth_method": "none"}, "invalid_redirect_uri"),
])  # fmt: skip
def test_registration_refuses_bad_redirect_uris(echo_stack: Stack, body: dict, error: str) -> None:
    r = httpx.post(echo_stack.url + "/register", json=body, timeout=10)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["error"] in (error, "invalid_client_metadata"), r.text
