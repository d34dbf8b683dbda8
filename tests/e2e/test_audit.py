"""The audit log (``audit:`` in mxgate.yml, ``mxgate log``) against the real MXCP core, the MCP
SDK client and the OpenID provider fixture: a login, a tool call, a refresh, a revocation and a
logout leave the right records, in order, with the user, the client id and the client's address,
and no token anywhere in the file; ``mxgate log`` filters, prints JSON lines unchanged, follows
the file as it grows, and refuses bad input with exit code 2; failed logins carry their reason."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import jwt
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

import browser
from browser import Browser, SdkHandlers
from sdk_client import MemoryStorage, oauth_provider
from support import IDP_CLIENT_SECRET, MXGATE_BIN, SECRET_ENV, RecordingUpstream, Stack, header_values

REDIRECT_URI = "http://127.0.0.1:9/audit-callback"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("audit"), with_core=True) as s:
        yield s


def _audit_file(stack: Stack) -> Path:
    return stack.gateway.data_dir / "audit" / "audit.jsonl"


def _records(stack: Stack) -> list[dict[str, Any]]:
    path = _audit_file(stack)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _wait_for(stack: Stack, found: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The records once ``found(records)`` holds (the writer flushes within moments)."""
    deadline = time.monotonic() + timeout
    while True:
        records = _records(stack)
        if found(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def _log(stack: Stack, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, SECRET_ENV: IDP_CLIENT_SECRET}
    return subprocess.run([str(MXGATE_BIN), "log", "--config", str(stack.gateway.config_path), *args],
                          env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip


async def _sdk_session(mcp_url: str, handlers: SdkHandlers, storage: MemoryStorage) -> Any:
    """The SDK logs in on its own (401 -> metadata -> registration -> PKCE) and calls a tool."""
    provider = oauth_provider(mcp_url, handlers, storage, "mxgate e2e (audit)")
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(auth=provider, timeout=20) as http:
            async with streamable_http_client(mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    result = await session.call_tool("whoami", {})
    assert not result.is_error, result
    return result.structured_content


def test_a_session_from_login_to_logout_is_audited_in_order_without_any_token(stack: Stack) -> None:
    handlers = SdkHandlers(Browser(), REDIRECT_URI)
    storage = MemoryStorage()
    try:
        whoami = anyio.run(_sdk_session, stack.gateway.mcp_url, handlers, storage)
    finally:
        handlers.browser.close()
    assert storage.client_info is not None and storage.tokens is not None
    client_id = storage.client_info.client_id
    code = handlers.results[0].code
    issued = storage.tokens
    assert whoami["username"] == "alice" and whoami["has_external_token"], whoami

    refreshed = browser.refresh(stack.url, client_id, issued.refresh_token)
    assert refreshed.status_code == 200, refreshed.text
    refreshed_tokens = refreshed.json()
    revoked = httpx.post(stack.url + "/revoke", timeout=10,
                         data={"token": refreshed_tokens["access_token"], "client_id": client_id})  # fmt: skip
    assert revoked.status_code == 200, revoked.text
    again = browser.refresh(stack.url, client_id, refreshed_tokens["refresh_token"]).json()
    out = httpx.post(stack.url + "/logout", headers={"authorization": f"Bearer {again['access_token']}"}, timeout=10)
    assert out.status_code == 200, out.text

    records = _wait_for(stack, lambda rs: any(r["event"] == "logout" and r.get("client_id") == client_id for r in rs))
    mine = [r for r in records if r.get("client_id") == client_id]
    assert [r["event"] for r in mine] == [
        "client_registered", "consent_given", "login_succeeded", "token_issued",
        "token_refreshed", "token_revoked", "token_refreshed", "token_revoked", "logout",
    ], mine  # fmt: skip
    assert all(r["client_addr"] == "127.0.0.1" for r in mine), mine
    for r in mine[2:]:
        assert (r["user"], r["username"], r["email"], r["provider"]) == (
            "oidc:alice", "alice", "alice@example.test", "oidc"), r  # fmt: skip
    sessions = {r["session_id"] for r in mine[2:]}
    assert len(sessions) == 1, "one session from login to logout"
    assert "access token revoked" in mine[5]["reason"] and mine[8]["reason"] == "this session ended", mine
    assert all(r["time_ms"] <= s["time_ms"] for r, s in zip(mine, mine[1:])), "in time order"

    text = _audit_file(stack).read_text()
    secrets = {
        "authorization code": code,
        "first access token": issued.access_token, "first refresh token": issued.refresh_token,
        "second access token": refreshed_tokens["access_token"], "second refresh token": refreshed_tokens["refresh_token"],
        "third access token": again["access_token"], "third refresh token": again["refresh_token"],
    }  # fmt: skip
    for name, secret in secrets.items():
        assert secret and secret not in text, f"the {name} is in the audit file"
    assert "mxg_" not in text and "eyJ" not in text, "no token, ID token or assertion of any kind"

    path = _audit_file(stack)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_provider_token_never_reaches_the_audit_file(
    echo_stack: Stack, echo_upstream: RecordingUpstream
) -> None:
    # The echo upstream records the assertion, whose `ext` is the provider's access token.
    login = browser.login(echo_stack.url)
    marker = uuid.uuid4().hex
    token = login.tokens["access_token"]
    r = httpx.get(f"{echo_stack.url}/mcp/audit?id={marker}", headers={"authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    [seen] = echo_upstream.find(lambda q: marker in q["path"])
    [assertion] = header_values(seen, "x-mxcp-user-assertion")
    provider_token = jwt.decode(assertion, options={"verify_signature": False})["ext"]
    assert browser.refresh(echo_stack.url, login.client_id, login.tokens["refresh_token"]).status_code == 200

    records = _wait_for(echo_stack, lambda rs: any(
        r["event"] == "token_refreshed" and r.get("client_id") == login.client_id for r in rs))  # fmt: skip
    assert [r["event"] for r in records if r.get("client_id") == login.client_id][-3:] == [
        "login_succeeded", "token_issued", "token_refreshed"]  # fmt: skip
    text = _audit_file(echo_stack).read_text()
    for name, secret in {"provider access token": provider_token, "assertion": assertion, "access token": token,
                         "refresh token": login.tokens["refresh_token"], "code": login.auth.code}.items():  # fmt: skip
        assert secret and secret not in text, f"the {name} is in the audit file"


def test_failed_logins_are_audited_with_their_reason(stack: Stack) -> None:
    # A callback whose state mxgate never issued (forged, or from another login).
    r = httpx.get(stack.url + "/callback", params={"code": "x", "state": "forged-state"}, timeout=10)
    assert r.status_code == 400
    # The IdP refuses: the login_hint names no user it knows.
    client_id = browser.register(stack.url, REDIRECT_URI)["client_id"]
    _, challenge = browser.pkce_pair()
    url = browser.authorization_url(stack.url, client_id, REDIRECT_URI, challenge, "s1", login_hint="mallory")
    with Browser() as b:
        denied = b.authorize(url, REDIRECT_URI)
    assert denied.error == "access_denied", denied.params

    records = _wait_for(stack, lambda rs: any(
        r["event"] == "login_failed" and r.get("client_id") == client_id for r in rs))  # fmt: skip
    forged = [r for r in records if r["event"] == "login_failed" and "state" in r.get("reason", "")
              and "client_id" not in r]  # fmt: skip
    assert forged and forged[-1]["client_addr"] == "127.0.0.1", records[-5:]
    [at_idp] = [r for r in records if r["event"] == "login_failed" and r.get("client_id") == client_id]
    assert "access_denied" in at_idp["reason"] and at_idp["client_addr"] == "127.0.0.1", at_idp

    shown = _log(stack, "--event", "login_failed", "--client", client_id)
    assert shown.returncode == 0, shown.stderr
    [row] = shown.stdout.splitlines()[1:]
    assert "login_failed" in row and client_id in row and "access_denied" in row, shown.stdout


def test_mxgate_log_filters_prints_tables_or_the_json_lines_and_refuses_bad_input(stack: Stack) -> None:
    login = browser.login(stack.url)
    _wait_for(stack, lambda rs: any(r["event"] == "token_issued" and r.get("client_id") == login.client_id for r in rs))

    logins = _log(stack, "--since", "1h", "--event", "login_succeeded")
    assert logins.returncode == 0, logins.stderr
    header, *rows = logins.stdout.splitlines()
    assert header.split() == ["TIME", "EVENT", "USER", "CLIENT", "ADDRESS", "REASON"]
    assert rows and all(row.split()[1] == "login_succeeded" and row.split()[2] == "alice" for row in rows), rows
    assert any(login.client_id in row and "127.0.0.1" in row for row in rows), rows
    assert rows[0][:4].isdigit() and rows[0].split()[0].endswith("Z"), "RFC 3339 UTC times"

    by_user = _log(stack, "--user", "alice@example.test", "--client", login.client_id, "--json")
    assert by_user.returncode == 0, by_user.stderr
    lines = by_user.stdout.splitlines()
    file_lines = _audit_file(stack).read_text().splitlines()
    assert lines and all(line in file_lines for line in lines), "--json prints the lines as written"
    assert [json.loads(line)["event"] for line in lines] == ["login_succeeded", "token_issued"], lines
    assert _log(stack, "--user", "bob", "--client", login.client_id, "--json").stdout == ""
    future = _log(stack, "--since", "2999-01-01T00:00:00Z", "--json")
    assert future.returncode == 0 and future.stdout == ""

    unknown = _log(stack, "--event", "login")
    assert unknown.returncode == 2 and "unknown event `login`" in unknown.stderr, unknown.stderr
    assert "login_succeeded" in unknown.stderr and "token_revoked" in unknown.stderr, "the known events are listed"
    bad_since = _log(stack, "--since", "yesterday")
    assert bad_since.returncode == 2 and "neither a duration" in bad_since.stderr, bad_since.stderr


def test_mxgate_log_follow_prints_records_written_after_it_started(stack: Stack) -> None:
    env = {**os.environ, SECRET_ENV: IDP_CLIENT_SECRET}
    proc = subprocess.Popen([str(MXGATE_BIN), "log", "--config", str(stack.gateway.config_path), "--follow",
                             "--json", "--event", "client_registered"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        time.sleep(1.0)  # it has read what was there and is waiting
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        client_id = browser.register(stack.url, REDIRECT_URI)["client_id"]
        deadline = time.monotonic() + 10
        while not any(client_id in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(client_id in line for line in lines), lines[-5:]
        assert all(json.loads(line)["event"] == "client_registered" for line in lines)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_audit_stdout_copies_each_record_to_standard_output(
    tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream
) -> None:
    extra = {"audit": {"stdout": True, "path": "audit-elsewhere/log.jsonl", "max_size": "1MiB"}}
    with Stack(tmp_path_factory.mktemp("audit-stdout"), echo_upstream.url, gateway_extra=extra) as s:
        client_id = browser.register(s.url, REDIRECT_URI)["client_id"]
        path = s.gateway.workdir / "audit-elsewhere" / "log.jsonl"

        def printed() -> list[str]:
            return [line for line in s.gateway.log().splitlines() if line.startswith("{") and client_id in line]

        deadline = time.monotonic() + 10
        while not printed() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = printed()
        assert lines and json.loads(lines[0])["event"] == "client_registered", s.gateway.log()[-2000:]
        assert lines[0] in path.read_text().splitlines(), "the same line in the file, at audit.path"
