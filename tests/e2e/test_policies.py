"""Roles and policies at the gate, with the real MXCP core, the MCP SDK client and the OpenID
provider fixture:

* ``role_mappings`` makes alice (group ``engineering``) ``admin``: the core's own CEL policy of
  the MXCP guide (``user.role != 'admin'`` → deny, tool ``admin_report``) lets her through and
  denies bob, whom no mapping names.
* A login rule on the email domain refuses erin (``erin@other.test``) at the callback: a 403
  stating the rule's reason, and a ``login_failed`` audit line; no code is issued.
* A tool rule hides ``request_headers`` from ``tools/list`` and refuses ``tools/call`` of it
  (a JSON-RPC error with the reason) while ``whoami`` works; a rule that fails to evaluate
  (it reads an argument the call does not send) denies ``company_only``.
* With the body read for the rules, the core still gets every request byte for byte (bodies
  beyond Pingora's 64 KiB retry buffer too), and a denied request never reaches it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

import browser
from browser import Browser, FlowError, SdkHandlers
from sdk_client import MemoryStorage, oauth_provider
from support import MXGATE_BIN, McpHttp, RecordingUpstream, Stack, jsonrpc_response

REDIRECT_URI = "http://127.0.0.1:9/sdk-callback"
DOMAIN_REASON = "other.test accounts may not sign in here"
TOOL_REASON = "request_headers is not for MCP clients"

POLICIES: list[dict[str, Any]] = [
    {"condition": "user.email.endsWith('@other.test')", "action": "deny", "reason": DOMAIN_REASON},
    {"condition": "tool.name == 'request_headers'", "action": "deny", "reason": TOOL_REASON},
    # Errors for a call without `region`: fail closed, so company_only is denied (and hidden).
    {"condition": "tool.name == 'company_only' && tool.arguments.region == 'eu'", "action": "deny",
     "reason": "no EU data"},
]  # fmt: skip
ROLE_MAPPINGS = {"oidc": {"groups": {"engineering": {"role": "admin", "permissions": ["reports:read"]}}}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra = {"policies": POLICIES, "role_mappings": ROLE_MAPPINGS}
    with Stack(tmp_path_factory.mktemp("policies"), with_core=True, gateway_extra=extra) as s:
        yield s


def _response(mcp: McpHttp, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    r = mcp.request_raw("tools/call", {"name": name, "arguments": arguments or {}})
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    return jsonrpc_response(r, mcp._next_id)


def _core_denied(message: dict[str, Any]) -> bool:
    return "error" in message or bool(message.get("result", {}).get("isError"))


def test_role_mapping_makes_alice_admin_for_the_cores_own_policy(stack: Stack) -> None:
    alice = browser.login(stack.url)
    bob = browser.login(stack.url, login_hint="bob")
    with McpHttp(stack.gateway.mcp_url, alice.tokens["access_token"]) as mcp:
        mcp.initialize()
        assert mcp.call_tool("admin_report") == "admin report for alice"
        # admin_only also needs the mapped permission.
        assert mcp.call_tool("admin_only") == "reports for alice"
    with McpHttp(stack.gateway.mcp_url, bob.tokens["access_token"]) as mcp:
        mcp.initialize()
        denied = _response(mcp, "admin_report")
    assert _core_denied(denied), denied
    assert "admin report" not in json.dumps(denied)
    # The core decided (its own reason), not mxgate.
    assert "Admins only" in json.dumps(denied), denied


def test_a_login_rule_refuses_erin_with_its_reason(stack: Stack) -> None:
    with pytest.raises(FlowError) as refused:
        browser.login(stack.url, login_hint="erin")
    text = str(refused.value)
    assert "/callback" in text and "with 403" in text, text
    assert DOMAIN_REASON in text, text
    # `mxgate log` shows the refusal with the rule's reason.
    audit_file = stack.gateway.data_dir / "audit" / "audit.jsonl"
    deadline = time.monotonic() + 10
    while True:
        shown = subprocess.run([str(MXGATE_BIN), "log", "--file", str(audit_file), "--event", "login_failed",
                                "--user", "erin@other.test", "--json"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        records = [json.loads(line) for line in shown.stdout.splitlines()]
        if records or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [r["event"] for r in records] == ["login_failed"], shown.stdout
    assert DOMAIN_REASON in records[0]["reason"] and records[0]["email"] == "erin@other.test", records
    table = subprocess.run([str(MXGATE_BIN), "log", "--file", str(audit_file), "--event", "login_failed"],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    assert "login_failed" in table.stdout and DOMAIN_REASON in table.stdout, table.stdout


async def _sdk_session(mcp_url: str, handlers: SdkHandlers, storage: MemoryStorage) -> dict[str, Any]:
    provider = oauth_provider(mcp_url, handlers, storage, "mxgate e2e (policies)")
    out: dict[str, Any] = {}
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(auth=provider, timeout=20) as http:
            async with streamable_http_client(mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    out["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
                    out["whoami"] = await session.call_tool("whoami", {})
                    try:
                        out["request_headers"] = await session.call_tool("request_headers", {})
                    except MCPError as e:
                        out["request_headers_error"] = str(e)
                    try:
                        out["company_only"] = await session.call_tool("company_only", {})
                    except MCPError as e:
                        out["company_only_error"] = str(e)
    return out


def test_a_tool_rule_hides_and_refuses_one_tool_for_the_sdk_client(stack: Stack) -> None:
    handlers = SdkHandlers(Browser(), REDIRECT_URI)
    try:
        out = anyio.run(_sdk_session, stack.gateway.mcp_url, handlers, MemoryStorage())
    finally:
        handlers.browser.close()
    assert "whoami" in out["tools"] and "admin_report" in out["tools"], out["tools"]
    assert "request_headers" not in out["tools"], out["tools"]
    assert "company_only" not in out["tools"], "a rule that fails on the missing argument hides it"
    assert not out["whoami"].is_error, out["whoami"]
    assert TOOL_REASON in out.get("request_headers_error", ""), out
    assert "could not be evaluated" in out.get("company_only_error", ""), out
    assert "policy rule could not be evaluated" in stack.gateway.log(), "the failing rule is logged"


def test_denials_are_json_rpc_errors_and_audited(stack: Stack) -> None:
    alice = browser.login(stack.url)
    with McpHttp(stack.gateway.mcp_url, alice.tokens["access_token"]) as mcp:
        mcp.initialize()
        denied = _response(mcp, "request_headers")
        assert denied["error"]["message"] == TOOL_REASON, denied
        assert denied["error"]["code"] == -32003
        # The same rule with a different tool: allowed, and the core answers.
        assert mcp.call_tool("whoami")["username"] == "alice"
        # A batch with one denied message is denied whole.
        batch = [
            {"jsonrpc": "2.0", "id": 900, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}},
            {"jsonrpc": "2.0", "id": 901, "method": "tools/call", "params": {"name": "request_headers"}},
        ]
        r = mcp.client.post(mcp.mcp_url, content=json.dumps(batch), headers=mcp._headers())
        assert r.status_code == 200, r.text
        assert sorted(m["id"] for m in r.json()) == [900, 901] and all("error" in m for m in r.json()), r.text
        listed = mcp.request_raw("tools/list", {})
        tools = [t["name"] for t in jsonrpc_response(listed, mcp._next_id)["result"]["tools"]]
        assert "request_headers" not in tools and "whoami" in tools, tools
    log = stack.gateway.log()
    assert "request_denied" in log, log[-3000:]
    assert TOOL_REASON in log


# --- the body, replayed ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, RecordingUpstream]]:
    upstream = RecordingUpstream().start()
    extra = {"policies": [{"condition": "tool.name == 'forbidden'", "action": "deny", "reason": "no"}]}
    with Stack(tmp_path_factory.mktemp("policies-echo"), upstream.url, gateway_extra=extra) as s:
        yield s, upstream
    upstream.stop()


def _post(stack: Stack, token: str, body: bytes, **headers: str) -> httpx.Response:
    h = {"authorization": f"Bearer {token}", "content-type": "application/json", **headers}
    return httpx.post(stack.gateway.mcp_url, content=body, headers=h, timeout=30)


@pytest.mark.parametrize("size", [10, 64 * 1024 - 100, 64 * 1024 + 1, 300 * 1024])
def test_the_core_gets_the_body_byte_for_byte(echo: tuple[Stack, RecordingUpstream], size: int) -> None:
    stack, upstream = echo
    token = browser.get_token(stack.url)["access_token"]
    call = {"jsonrpc": "2.0", "id": size, "method": "tools/call",
            "params": {"name": "allowed", "arguments": {"pad": "x" * size}}}  # fmt: skip
    body = json.dumps(call).encode()
    r = _post(stack, token, body)
    assert r.status_code == 200, r.text
    got = upstream.find(lambda q: q["body"] and json.loads(q["body"]).get("id") == size)
    assert len(got) == 1 and got[0]["body"] == body, (len(got), [len(g["body"]) for g in got])


def test_a_denied_request_never_reaches_the_core(echo: tuple[Stack, RecordingUpstream]) -> None:
    stack, upstream = echo
    token = browser.get_token(stack.url)["access_token"]
    before = len(upstream.requests)
    for size in (10, 200 * 1024):
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "forbidden", "arguments": {"pad": "x" * size}}}  # fmt: skip
        r = _post(stack, token, json.dumps(call).encode())
        assert r.status_code == 200 and r.json()["error"]["message"] == "no", r.text
    assert len(upstream.requests) == before, upstream.requests[before:]


def test_a_body_too_large_to_read_or_replay_is_refused(echo: tuple[Stack, RecordingUpstream]) -> None:
    stack, upstream = echo
    token = browser.get_token(stack.url)["access_token"]
    before = len(upstream.requests)
    too_big = b'{"pad":"' + b"x" * (1024 * 1024) + b'"}'
    assert _post(stack, token, too_big).status_code == 413
    # Chunked (no Content-Length) beyond the 64 KiB that can be replayed.
    chunks = iter([b'{"pad":"', b"x" * (100 * 1024), b'"}'])
    r = httpx.post(stack.gateway.mcp_url, content=chunks, timeout=30,
                   headers={"authorization": f"Bearer {token}", "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 413, r.text
    assert len(upstream.requests) == before


def test_rules_not_on_rpc_leave_bodies_unread(tmp_path: Path) -> None:
    upstream = RecordingUpstream().start()
    extra = {"policies": [{"condition": "user.username == 'bob'", "action": "deny", "reason": "not bob"}]}
    try:
        with Stack(tmp_path, upstream.url, gateway_extra=extra) as s:
            with pytest.raises(FlowError) as refused:
                browser.login(s.url, login_hint="bob")
            assert "not bob" in str(refused.value)
            token = browser.get_token(s.url)["access_token"]
            r = _post(s, token, b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
            assert r.status_code == 200 and r.json()["ok"], r.text
    finally:
        upstream.stop()
