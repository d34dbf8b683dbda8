"""The ``keycloak`` provider against the IdP fixture mounted at Keycloak's paths
(``--keycloak-realm e2e``: issuer ``http://host:port/realms/e2e``, endpoints under
``/protocol/openid-connect/``), configured with MXCP's keys only (``server_url`` with a trailing
slash, ``realm``, no ``scope``: the default ``openid profile email`` is used).

Two realms: one that puts ``realm_access`` in the ID token and userinfo, and one like a default
Keycloak realm (``--keycloak-jwt-access-tokens``), where only the JWT access token carries it and
mxgate must read it from the verified access token.

What the core receives (the ``x-mxcp-user-assertion`` the echo upstream recorded): provider
``keycloak``; Keycloak's ``groups`` as sent plus the realm roles as ``role:<name>``; the realm roles
as ``permissions`` (what CEL can see: MXCP 0.12.3 has no ``user.groups``); ``capabilities`` from
``claim_mappings`` on ``realm_access.roles`` and ``groups``; ``ext`` usable at the realm's userinfo,
also after the realm's 2 s access token expired (provider refresh); no email for a user whose
address the realm marks ``email_verified: false`` or sends without ``email_verified``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

import browser
from support import IDP_CLIENT_ID, SECRET_ENV, RecordingUpstream, Stack, header_values

REALM = "e2e"
CLAIM_MAPPINGS = {
    "realm_access.roles": {"admin": ["tools.admin"], "mcp-user": ["tools.read"]},
    "groups": {"engineering": ["eng"]},
}


def keycloak_auth_block(idp_issuer: str) -> dict[str, Any]:
    server_url = idp_issuer.removesuffix(f"/realms/{REALM}") + "/"
    return {
        "provider": "keycloak",
        "keycloak": {
            "client_id": IDP_CLIENT_ID,
            "client_secret": "${" + SECRET_ENV + "}",
            "realm": REALM,
            "server_url": server_url,
            "callback_path": "/callback",
            "claim_mappings": CLAIM_MAPPINGS,
        },
    }


@pytest.fixture(scope="module", params=["roles-in-id-token", "roles-in-jwt-access-token"])
def keycloak_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   echo_upstream: RecordingUpstream) -> Iterator[Stack]:  # fmt: skip
    idp_args = ["--keycloak-realm", REALM, "--access-token-ttl", "2"]
    if request.param == "roles-in-jwt-access-token":
        idp_args.append("--keycloak-jwt-access-tokens")
    with Stack(tmp_path_factory.mktemp(f"keycloak-{request.param}"), echo_upstream.url,
               auth=keycloak_auth_block, idp_args=tuple(idp_args)) as stack:  # fmt: skip
        yield stack


def _assertion(stack: Stack, upstream: RecordingUpstream, token: str) -> dict[str, Any]:
    """The assertion the upstream received for one request with ``token``, verified with mxgate's JWKS."""
    marker = uuid.uuid4().hex
    r = httpx.get(f"{stack.url}/mcp/who?id={marker}", headers={"authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    [req] = upstream.find(lambda q: marker in q["path"])
    [assertion] = header_values(req, "x-mxcp-user-assertion")
    kid = jwt.get_unverified_header(assertion)["kid"]
    keys = {k["kid"]: k for k in httpx.get(stack.url + "/.well-known/jwks.json", timeout=10).json()["keys"]}
    key = jwt.PyJWK(keys[kid]).key
    return jwt.decode(assertion, key, algorithms=["EdDSA"], audience="mxcp-core", issuer=stack.url)


def _userinfo(stack: Stack, provider_token: str) -> httpx.Response:
    url = f"{stack.idp.issuer}/protocol/openid-connect/userinfo"
    return httpx.get(url, headers={"authorization": f"Bearer {provider_token}"}, timeout=10)


def test_alice_reaches_the_core_with_groups_roles_and_capabilities(
    keycloak_stack: Stack, echo_upstream: RecordingUpstream
) -> None:
    login = browser.login(keycloak_stack.url)
    claims = _assertion(keycloak_stack, echo_upstream, login.tokens["access_token"])
    assert claims["provider"] == "keycloak"
    assert (claims["sub"], claims["username"], claims["email"]) == ("alice", "alice", "alice@example.test")
    assert claims["groups"] == ["engineering", "role:mcp-user", "role:admin"], claims
    assert claims["permissions"] == ["mcp-user", "admin"], claims
    assert claims["capabilities"] == ["eng", "tools.admin", "tools.read"], claims
    assert claims.get("ext"), claims
    me = _userinfo(keycloak_stack, claims["ext"])
    assert me.status_code == 200 and me.json()["sub"] == "alice", me.text

    # Every call went to the realm's endpoints, built from server_url + realm.
    log = keycloak_stack.idp.log()
    prefix = f"/realms/{REALM}/protocol/openid-connect"
    assert re.search(rf"GET {prefix}/auth 303 route=authorization", log), log[-2000:]
    assert re.search(rf"POST {prefix}/token 200 route=token grant_type=authorization_code", log), log[-2000:]
    assert re.search(rf"GET {prefix}/userinfo 200 route=userinfo", log), log[-2000:]


def test_bob_has_only_his_roles(keycloak_stack: Stack, echo_upstream: RecordingUpstream) -> None:
    login = browser.login(keycloak_stack.url, login_hint="bob")
    claims = _assertion(keycloak_stack, echo_upstream, login.tokens["access_token"])
    assert (claims["provider"], claims["username"]) == ("keycloak", "bob")
    assert claims["groups"] == ["sales", "role:mcp-user"], claims
    assert claims["permissions"] == ["mcp-user"], claims
    assert claims["capabilities"] == ["tools.read"], claims


@pytest.mark.parametrize("user", ["carol", "dan"])
def test_an_address_not_marked_verified_is_not_the_email(
    keycloak_stack: Stack, echo_upstream: RecordingUpstream, user: str
) -> None:
    # carol: email_verified false; dan: no email_verified (a realm without the claim's mapper).
    login = browser.login(keycloak_stack.url, login_hint=user)
    claims = _assertion(keycloak_stack, echo_upstream, login.tokens["access_token"])
    assert (claims["provider"], claims["username"]) == ("keycloak", user)
    assert "email" not in claims, claims
    assert _userinfo(keycloak_stack, claims["ext"]).json()["email"] == f"{user}@example.test", "the realm sent it"


def test_provider_token_is_refreshed_after_the_realm_token_expires(
    keycloak_stack: Stack, echo_upstream: RecordingUpstream
) -> None:
    login = browser.login(keycloak_stack.url)
    token = login.tokens["access_token"]
    ext = _assertion(keycloak_stack, echo_upstream, token)["ext"]
    assert _userinfo(keycloak_stack, ext).status_code == 200

    deadline = time.monotonic() + 10
    while _userinfo(keycloak_stack, ext).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.25)  # until the realm's 2 s token is dead
    assert _userinfo(keycloak_stack, ext).status_code == 401

    claims = _assertion(keycloak_stack, echo_upstream, token)
    fresh = _userinfo(keycloak_stack, claims["ext"])
    assert fresh.status_code == 200 and fresh.json()["sub"] == "alice", (fresh.status_code, fresh.text)
    # The user is unchanged by the refresh.
    assert claims["permissions"] == ["mcp-user", "admin"]
    assert "grant_type=refresh_token" in keycloak_stack.idp.log()

    # mxgate's own refresh token works for this provider too.
    r = browser.refresh(keycloak_stack.url, login.client_id, login.tokens["refresh_token"])
    assert r.status_code == 200, r.text
    assert _assertion(keycloak_stack, echo_upstream, r.json()["access_token"])["provider"] == "keycloak"
