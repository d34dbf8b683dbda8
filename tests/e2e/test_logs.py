"""Secrets and tokens never appear in mxgate's logs, even at debug level."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest

import browser
from support import IDP_CLIENT_SECRET, RecordingUpstream, Stack, header_values


@pytest.fixture(scope="module")
def debug_stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("debug-logs"), echo_upstream.url, log_level="debug") as stack:
        yield stack


def test_no_secret_or_token_in_debug_logs(debug_stack: Stack, echo_upstream: RecordingUpstream) -> None:
    stack = debug_stack
    secrets: dict[str, str] = {"IdP client secret": IDP_CLIENT_SECRET}

    reg = httpx.post(stack.url + "/register", timeout=10, json={
        "redirect_uris": [browser.DEFAULT_REDIRECT_URI], "token_endpoint_auth_method": "client_secret_post",
        "grant_types": ["authorization_code", "refresh_token"],
    }).json()  # fmt: skip
    secrets["client secret"] = reg["client_secret"]
    b = browser.Browser()
    lg = browser.login(stack.url, client_id=reg["client_id"], browser=b, redeem_code=False)
    csrf = b.client.cookies.get("mxgate-csrf")
    if csrf:
        secrets["csrf token"] = csrf
    login_cookie = b.client.cookies.get("mxgate-login")
    if login_cookie:
        secrets["login cookie"] = login_cookie
    idp_callback = next(s.url for s in lg.auth.steps if s.url.startswith(stack.url + "/callback"))
    secrets["IdP code"] = browser._params(idp_callback)["code"]
    secrets["code"] = lg.auth.code
    secrets["PKCE verifier"] = lg.verifier
    r = httpx.post(stack.url + "/token", timeout=10, data={
        "grant_type": "authorization_code", "code": lg.auth.code, "redirect_uri": lg.redirect_uri,
        "client_id": reg["client_id"], "client_secret": reg["client_secret"], "code_verifier": lg.verifier,
    })  # fmt: skip
    assert r.status_code == 200, r.text
    tokens = r.json()
    secrets["access token"] = tokens["access_token"]
    secrets["refresh token"] = tokens["refresh_token"]

    marker = uuid.uuid4().hex
    p = httpx.get(f"{stack.url}/mcp/x?id={marker}", timeout=10,
                  headers={"authorization": f"Bearer {tokens['access_token']}"})  # fmt: skip
    assert p.status_code == 200
    [req] = echo_upstream.find(lambda q: marker in q["path"])
    assertion = header_values(req, "x-mxcp-user-assertion")[0]
    secrets["assertion"] = assertion
    secrets["assertion signature"] = assertion.rsplit(".", 1)[1]
    secrets["provider access token (ext)"] = jwt.decode(assertion, options={"verify_signature": False})["ext"]

    # A confidential client must authenticate to refresh: first without, then with its secret.
    browser.refresh(stack.url, reg["client_id"], tokens["refresh_token"])
    httpx.post(stack.url + "/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": reg["client_id"], "client_secret": reg["client_secret"],
    })  # fmt: skip
    # Failed attempts carry secrets too.
    httpx.get(stack.gateway.mcp_url, headers={"authorization": "Bearer mxg_at_wrongwrongwrongwrong"}, timeout=10)
    secrets["wrong token"] = "mxg_at_wrongwrongwrongwrong"
    b.close()

    log = stack.gateway.log()
    assert "DEBUG" in log, "debug logging is not on; the check would be weak"
    leaked = {name: _first_line_with(log, value) for name, value in secrets.items() if value and value in log}
    assert not leaked, "found in mxgate's debug log:\n" + "\n".join(f"  {k}: {v}" for k, v in leaked.items())


def _first_line_with(log: str, value: str) -> str:
    line = next(line for line in log.splitlines() if value in line)
    return line[:160] + " ..."
