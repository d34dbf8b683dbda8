"""People in a real browser (Debian Chromium, driven by Playwright; no downloaded browser):
opening a page behind mxgate without a session sends them through the sign-in and back, with an
HttpOnly session cookie; their requests reach the core with the same signed assertion an MCP
client's would; logout ends the session. With several providers (`extra_providers`: here the
OIDC provider of the MXCP config and a GitHub fixture), the sign-in page lets them choose, and the
session keeps the provider chosen (the assertion says which)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import jwt
import pytest

from provider_fixtures import ProviderFixture
from support import RecordingUpstream, Stack, header_values

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
GITHUB_ID, GITHUB_SECRET = "mxgate-github", "github-secret"

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser_ctx() -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ])  # fmt: skip
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def two_providers(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("two-providers")
    stack = Stack(workdir / "stack", echo_upstream.url)
    github = ProviderFixture("github", workdir / "github", "--redirect-uri", stack.url + "/callback/github")
    with github:
        stack.gateway.extra = {
            "extra_providers": [{"provider": "github", "github": {
                "client_id": GITHUB_ID, "client_secret": GITHUB_SECRET, "callback_path": "/callback/github",
                "auth_url": f"{github.url}/login/oauth/authorize",
                "token_url": f"{github.url}/login/oauth/access_token", "scope": "read:user user:email",
            }}],
            "provider_overrides": {"github": {"api_url": github.url}},
        }  # fmt: skip
        with stack:
            yield stack


def _seen_assertion(upstream: RecordingUpstream, marker: str) -> dict:
    [request] = upstream.find(lambda q: marker in q["path"])
    [value] = header_values(request, "x-mxcp-user-assertion")
    assert not header_values(request, "cookie") or "mxgate-session" not in header_values(request, "cookie")[0]
    return jwt.decode(value, options={"verify_signature": False})


def test_a_person_signs_in_in_the_browser_and_reaches_the_core(
    browser_ctx, echo_stack: Stack, echo_upstream: RecordingUpstream
) -> None:
    context = browser_ctx.new_context()
    page = context.new_page()
    marker = uuid.uuid4().hex
    response = page.goto(f"{echo_stack.url}/mcp/dashboard?id={marker}")
    assert response is not None and response.ok, (response.status if response else None, page.url)
    assert page.url == f"{echo_stack.url}/mcp/dashboard?id={marker}", "back where the person started"
    claims = _seen_assertion(echo_upstream, marker)
    assert claims["sub"] == "alice" and claims["email"] == "alice@example.test"
    assert claims["client_id"] == "mxgate-browser"

    [cookie] = [c for c in context.cookies() if c["name"] == "mxgate-session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"

    again = uuid.uuid4().hex
    page.goto(f"{echo_stack.url}/mcp/other?id={again}")
    assert _seen_assertion(echo_upstream, again)["sub"] == "alice", "the cookie carries the session"

    page.goto(f"{echo_stack.url}/logout")
    page.get_by_role("button", name="Sign out").click()  # a GET only asks (CSRF-safe sign-out)
    page.wait_for_load_state()
    assert "Signed out" in page.content()
    assert not [c for c in context.cookies() if c["name"] == "mxgate-session"]
    page.goto(f"{echo_stack.url}/mcp/after?id={uuid.uuid4().hex}")
    # Signed out: the next page load goes through the provider again (it signs alice in at once).
    assert "/mcp/after" in page.url
    context.close()


def test_with_several_providers_the_person_chooses(
    browser_ctx, two_providers: Stack, echo_upstream: RecordingUpstream
) -> None:
    context = browser_ctx.new_context()
    page = context.new_page()
    marker = uuid.uuid4().hex
    page.goto(f"{two_providers.url}/mcp/home?id={marker}")
    # Each provider is labelled by its display name: GitHub, and the OIDC issuer's host.
    github_link = page.get_by_text("Sign in with GitHub", exact=True)
    assert "/login" in page.url and github_link.count() == 1, page.content()
    idp_host = urlsplit(two_providers.idp.issuer).netloc
    assert page.get_by_text(f"Sign in with {idp_host}", exact=True).count() == 1, page.content()
    github_link.click()
    page.wait_for_url(f"{two_providers.url}/mcp/home?id={marker}")
    claims = _seen_assertion(echo_upstream, marker)
    assert claims["provider"] == "github" and claims["username"] == "alice", claims
    context.close()
