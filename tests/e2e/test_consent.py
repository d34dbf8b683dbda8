"""The consent page and the browser bindings of the login: not frameable, CSRF-protected,
deny goes back to the client, the callback only works in the browser that started the login.
The page says who asks (a self-registered name is marked unverified), where the browser returns
(the full redirect URI) and where the person signs in (the provider's display name). A remembered
approval is the approver's alone, covers only the scopes approved, and browser logout forgets it."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import browser
from browser import Browser, parse_forms
from support import RecordingUpstream, Stack, oidc_auth_block

REDIRECT_URI = browser.DEFAULT_REDIRECT_URI


@dataclass
class ConsentPage:
    browser: Browser
    client_id: str
    state: str
    verifier: str
    response: httpx.Response

    @property
    def fields(self) -> dict[str, str]:
        return parse_forms(self.response.text)[0].fields


@pytest.fixture
def consent(echo_stack: Stack) -> ConsentPage:
    """A fresh browser looking at the consent page of a freshly registered client."""
    b = Browser()
    client_id = browser.register(echo_stack.url, REDIRECT_URI, name="Consent <Test> & Co")["client_id"]
    verifier, challenge = browser.pkce_pair()
    state = secrets.token_urlsafe(12)
    r = b.client.get(browser.authorization_url(echo_stack.url, client_id, REDIRECT_URI, challenge, state))
    assert r.status_code == 200, (r.status_code, r.headers, r.text[:500])
    yield ConsentPage(b, client_id, state, verifier, r)
    b.close()


def _assert_refused_page(r: httpx.Response, status: int = 403) -> None:
    assert r.status_code == status, (r.status_code, r.headers, r.text[:500])
    assert "location" not in r.headers, r.headers
    assert r.headers.get("content-type", "").startswith("text/html"), r.headers


def test_consent_page_is_not_frameable_and_sets_a_csrf_cookie(consent: ConsentPage) -> None:
    r = consent.response
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers.get("x-frame-options") == "DENY", r.headers
    csp = r.headers.get("content-security-policy", "")
    assert re.search(r"(^|;)\s*frame-ancestors 'none'\s*(;|$)", csp), csp
    assert "no-store" in r.headers.get("cache-control", ""), r.headers
    cookie = r.headers.get("set-cookie", "")
    assert cookie.startswith("mxgate-csrf="), cookie
    attrs = [a.strip().lower() for a in cookie.split(";")[1:]]
    assert "httponly" in attrs and "samesite=lax" in attrs and "path=/" in attrs, cookie
    # The form: posts to /consent, carries the transaction and the CSRF token of the cookie.
    forms = parse_forms(r.text)
    assert len(forms) == 1 and forms[0].method == "post" and forms[0].action == "/consent", forms
    assert forms[0].fields["csrf_token"] == cookie.split(";")[0].split("=", 1)[1]
    assert forms[0].fields["transaction"]
    assert ("decision", "approve") in forms[0].buttons and ("decision", "deny") in forms[0].buttons
    # The client's name is shown, HTML-escaped.
    assert "Consent &lt;Test&gt; &amp; Co" in r.text
    assert "<Test>" not in r.text


def test_consent_without_the_csrf_cookie_is_refused(echo_stack: Stack, consent: ConsentPage) -> None:
    other = httpx.post(echo_stack.url + "/consent", timeout=10, data={**consent.fields, "decision": "approve"})
    _assert_refused_page(other)


def test_consent_with_a_wrong_csrf_token_is_refused(echo_stack: Stack, consent: ConsentPage) -> None:
    fields = {**consent.fields, "decision": "approve", "csrf_token": browser.pkce_pair()[0][:43]}
    _assert_refused_page(consent.browser.client.post(echo_stack.url + "/consent", data=fields))
    # The cookie alone, with the token of another browser, is not enough either.
    other = Browser()
    other_page = other.client.get(str(consent.response.url))
    other_token = parse_forms(other_page.text)[0].fields["csrf_token"]
    other.close()
    fields = {**consent.fields, "decision": "approve", "csrf_token": other_token}
    _assert_refused_page(consent.browser.client.post(echo_stack.url + "/consent", data=fields))


def test_consent_with_an_unknown_transaction_is_refused(echo_stack: Stack, consent: ConsentPage) -> None:
    fields = {**consent.fields, "decision": "approve", "transaction": "0" * 32}
    _assert_refused_page(consent.browser.client.post(echo_stack.url + "/consent", data=fields), 400)


def test_deny_returns_access_denied_to_the_client(echo_stack: Stack, consent: ConsentPage) -> None:
    r = consent.browser.submit_consent(consent.response, "deny")
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    location = r.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    params = browser._params(location)
    assert params["error"] == "access_denied", params
    assert params["state"] == consent.state, params
    assert params["iss"] == echo_stack.url, params
    assert "code" not in params
    # The transaction is spent: approving it afterwards does not start a login.
    again = consent.browser.submit_consent(consent.response, "approve")
    _assert_refused_page(again, 400)


def test_callback_in_another_browser_is_refused_without_spending_the_login(
    echo_stack: Stack, consent: ConsentPage
) -> None:
    callback = echo_stack.url + "/callback"
    at_callback = consent.browser.authorize(
        str(consent.response.url), REDIRECT_URI, stop_at=lambda u: u.startswith(callback + "?")
    )
    assert at_callback.url.startswith(callback + "?") and at_callback.code, at_callback.params

    # A different browser (no mxgate-login cookie) arrives with the IdP's response.
    stranger = httpx.get(at_callback.url, timeout=10, follow_redirects=False)
    _assert_refused_page(stranger)

    # ... and the stranger could not spend it: the browser that started the login still finishes it.
    own = consent.browser.client.get(at_callback.url)
    assert own.status_code in (302, 303) and own.headers["location"].startswith(REDIRECT_URI), own.headers
    assert browser._params(own.headers["location"])["state"] == consent.state


def test_callback_replay_is_refused(echo_stack: Stack, consent: ConsentPage) -> None:
    callback = echo_stack.url + "/callback"
    at_callback = consent.browser.authorize(
        str(consent.response.url), REDIRECT_URI, stop_at=lambda u: u.startswith(callback + "?")
    )
    first = consent.browser.client.get(at_callback.url)
    assert first.status_code in (302, 303) and first.headers["location"].startswith(REDIRECT_URI), first.headers
    assert browser._params(first.headers["location"])["state"] == consent.state
    replay = consent.browser.client.get(at_callback.url)
    _assert_refused_page(replay, 400)


def test_idp_error_is_relayed_to_the_client(echo_stack: Stack, consent: ConsentPage) -> None:
    """The IdP answers the login with an error: the client gets an OAuth error with its state."""
    at_idp = consent.browser.authorize(
        str(consent.response.url), REDIRECT_URI, stop_at=lambda u: u.startswith(echo_stack.idp.issuer + "/auth?")
    )
    idp_state = at_idp.params["state"]
    assert idp_state != consent.state, "mxgate must use its own state towards the IdP"
    r = consent.browser.client.get(echo_stack.url + "/callback", params={
        "error": "access_denied", "error_description": "user cancelled", "state": idp_state,
        "iss": echo_stack.idp.issuer,
    })  # fmt: skip
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    params = browser._params(r.headers["location"])
    assert r.headers["location"].startswith(REDIRECT_URI + "?"), r.headers
    assert params["error"] == "access_denied" and params["state"] == consent.state, params
    assert "code" not in params


def test_approval_is_remembered_per_browser_and_client(echo_stack: Stack) -> None:
    with Browser() as b:
        lg = browser.login(echo_stack.url, browser=b)
        assert b.last_consent is not None
        b.last_consent = None
        # Same browser, same client: straight to the IdP, no consent page.
        again = browser.login(echo_stack.url, browser=b, client_id=lg.client_id)
        assert b.last_consent is None, "consent asked again in the same browser"
        assert again.auth.steps[0].status in (302, 303), again.auth.steps[0]
        # Same browser, another client: asked again.
        browser.login(echo_stack.url, browser=b)
        assert b.last_consent is not None, "consent of one client was reused for another"
    with Browser() as fresh:
        browser.login(echo_stack.url, browser=fresh, client_id=lg.client_id)
        assert fresh.last_consent is not None, "consent reused across browsers"


@pytest.mark.parametrize("case", ["foreign iss", "missing iss"])
def test_callback_checks_the_idp_iss_parameter(echo_stack: Stack, consent: ConsentPage, case: str) -> None:
    """RFC 9207 §2.4: the IdP advertises ``authorization_response_iss_parameter_supported``, so
    mxgate (the IdP's client) must reject a response whose ``iss`` is not the IdP's issuer, or
    that has no ``iss`` (mix-up defence). No code may reach the MCP client."""
    idp_meta = httpx.get(echo_stack.idp.issuer + "/.well-known/openid-configuration", timeout=10).json()
    assert idp_meta["authorization_response_iss_parameter_supported"] is True
    callback = echo_stack.url + "/callback"
    at_callback = consent.browser.authorize(
        str(consent.response.url), REDIRECT_URI, stop_at=lambda u: u.startswith(callback + "?")
    )
    assert at_callback.iss == echo_stack.idp.issuer, at_callback.params
    params = dict(at_callback.params)
    if case == "foreign iss":
        params["iss"] = "http://127.0.0.1:1/attacker-as"
    else:
        del params["iss"]
    r = consent.browser.client.get(callback, params=params)
    location = r.headers.get("location", "")
    assert "code=" not in location, (
        f"mxgate accepted an IdP authorization response with {case} and sent the client a code: "
        f"{r.status_code} {location}"
    )
    assert r.status_code >= 400 or browser._params(location).get("error"), (r.status_code, r.headers)


# --- what the page says ------------------------------------------------------------------------


def test_consent_page_marks_a_self_registered_name_as_unverified(consent: ConsentPage) -> None:
    """Anyone can register "Claude Desktop": a registered name is shown as the client's claim."""
    text = consent.response.text
    assert "the application calling itself “Consent &lt;Test&gt; &amp; Co”" in text, text
    assert "“Consent &lt;Test&gt; &amp; Co” <small>(name given by the application, not verified)</small>" in text
    assert "<b>Consent &lt;Test&gt; &amp; Co</b>" not in text, "a claimed name is never shown as trusted"


def test_consent_page_shows_the_full_redirect_uri_escaped(echo_stack: Stack) -> None:
    # `<`, `>` and `"` cannot be registered at all (RFC 3986); `&` and `'` can, and need escaping.
    refused = httpx.post(echo_stack.url + "/register", timeout=10, json={
        "redirect_uris": ['http://127.0.0.1:9/callback/<app>?next="x"'], "token_endpoint_auth_method": "none"})  # fmt: skip
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_redirect_uri", refused.text
    redirect_uri = "http://127.0.0.1:9/callback/%3Capp%3E?tenant=a&next='x'"
    client_id = browser.register(echo_stack.url, redirect_uri)["client_id"]
    _, challenge = browser.pkce_pair()
    with Browser() as b:
        r = b.client.get(browser.authorization_url(echo_stack.url, client_id, redirect_uri, challenge, "s"))
    assert r.status_code == 200, (r.status_code, r.text[:500])
    # As the browser will be sent there (parsed, percent-encoded), and HTML-escaped.
    # As the browser will be sent there (parsed: `'` percent-encoded), and HTML-escaped (`&`).
    shown = "http://127.0.0.1:9/callback/%3Capp%3E?tenant=a&next=%27x%27"
    assert f"<code>{html.escape(shown, quote=False)}</code>" in r.text, r.text
    assert "tenant=a&next=" not in r.text, "the query is HTML-escaped"
    assert "<app>" not in r.text


def test_consent_page_names_the_provider_by_its_display_name(echo_stack: Stack, consent: ConsentPage) -> None:
    """The generic OIDC provider without a `provider_name` is shown by its issuer's host, not by
    its key `oidc` (which the form still submits where there are several)."""
    idp_host = urlsplit(echo_stack.idp.issuer).netloc
    text = consent.response.text
    assert f"You will sign in with <b>{idp_host}</b>" in text, text
    assert "<b>oidc</b>" not in text


# --- remembered approvals ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def scoped_stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    """A stack whose MXCP config has the public client `scoped-app` with two scopes."""

    def auth(issuer: str) -> dict[str, Any]:
        block = oidc_auth_block(issuer)
        block["clients"] = [{
            "client_id": "scoped-app", "name": "Scoped App", "redirect_uris": [REDIRECT_URI],
            "scopes": ["mxcp:access", "mxcp:admin"],
        }]  # fmt: skip
        return block

    with Stack(tmp_path_factory.mktemp("consent-scopes"), echo_upstream.url, auth=auth) as stack:
        yield stack


def _approval_cookies(b: Browser) -> list[str]:
    return [c.name for c in b.client.cookies.jar if c.name.startswith("mxgate-consent-")]


def _asked(b: Browser) -> bool:
    """Whether the last authorization showed the consent page (and forget that it did)."""
    asked, b.last_consent = b.last_consent is not None, None
    return asked


def test_a_remembered_approval_is_not_used_for_another_user(echo_stack: Stack) -> None:
    with Browser() as b:
        alice = browser.login(echo_stack.url, browser=b)
        assert _asked(b) and _approval_cookies(b), "alice approved, and it is remembered"

        # Same browser and client: no page for alice's approval, but bob signs in at the IdP.
        _, challenge = browser.pkce_pair()
        url = browser.authorization_url(echo_stack.url, alice.client_id, REDIRECT_URI, challenge, "s2",
                                        login_hint="bob")  # fmt: skip
        callback = echo_stack.url + "/callback"
        at_callback = b.authorize(url, REDIRECT_URI, stop_at=lambda u: u.startswith(callback + "?"))
        assert not _asked(b)
        r = b.client.get(at_callback.url)
        _assert_refused_page(r)
        assert "you signed in as bob" in r.text, r.text
        assert not _approval_cookies(b), "the approval that did not fit is forgotten"

        # Starting again asks bob, and then remembers bob's approval for bob.
        browser.login(echo_stack.url, browser=b, client_id=alice.client_id, login_hint="bob")
        assert _asked(b), "bob was not asked"
        browser.login(echo_stack.url, browser=b, client_id=alice.client_id, login_hint="bob")
        assert not _asked(b)


def test_a_remembered_approval_covers_no_more_scopes(scoped_stack: Stack) -> None:
    with Browser() as b:
        browser.login(scoped_stack.url, browser=b, client_id="scoped-app", scope="mxcp:access")
        assert _asked(b)
        browser.login(scoped_stack.url, browser=b, client_id="scoped-app", scope="mxcp:access")
        assert not _asked(b), "the same scopes: remembered"
        wider = browser.login(scoped_stack.url, browser=b, client_id="scoped-app", scope="mxcp:access mxcp:admin")
        assert _asked(b), "more scopes than were approved were granted without asking"
        assert wider.tokens["scope"].split() == ["mxcp:access", "mxcp:admin"], wider.tokens
        browser.login(scoped_stack.url, browser=b, client_id="scoped-app", scope="mxcp:admin")
        assert not _asked(b), "the wider approval covers each of its scopes"


def test_consent_page_names_a_configured_client_as_configured(scoped_stack: Stack) -> None:
    _, challenge = browser.pkce_pair()
    with Browser() as b:
        r = b.client.get(browser.authorization_url(scoped_stack.url, "scoped-app", REDIRECT_URI, challenge, "s"))
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert "Allow <b>Scoped App</b> to use this MCP server" in r.text, r.text
    assert "set up on this server by its administrator" in r.text and "not verified" not in r.text


def _sign_in_to_the_gateway(stack: Stack, b: Browser) -> None:
    """A browser session (`/login`), so that /logout asks for confirmation."""
    b.authorize(stack.url + "/login?return_to=%2Fhome", stack.url + "/home")
    assert [c for c in b.client.cookies.jar if c.name == "mxgate-session"], list(b.client.cookies.jar)


@pytest.mark.parametrize("signed_in", [False, True], ids=["no session", "confirmed sign-out"])
def test_browser_logout_forgets_remembered_approvals(echo_stack: Stack, signed_in: bool) -> None:
    """The signed-out page says "mxgate has forgotten this browser's sign-in and approvals"."""
    with Browser() as b:
        lg = browser.login(echo_stack.url, browser=b)
        assert _asked(b) and _approval_cookies(b)
        if signed_in:
            _sign_in_to_the_gateway(echo_stack, b)
            ask = b.client.get(echo_stack.url + "/logout")
            assert ask.status_code == 200, ask.text[:300]
            out = b.client.post(echo_stack.url + "/logout", data=parse_forms(ask.text)[0].fields)
        else:
            out = b.client.get(echo_stack.url + "/logout")
        assert out.status_code == 200 and "forgotten this browser's sign-in and approvals" in out.text, out.text
        assert not _approval_cookies(b), out.headers.get_list("set-cookie")
        browser.login(echo_stack.url, browser=b, client_id=lg.client_id)
        assert _asked(b), "an approval survived the sign-out"
