"""The consent page and the browser bindings of the login: not frameable, CSRF-protected,
deny goes back to the client, the callback only works in the browser that started the login."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import httpx
import pytest

import browser
from browser import Browser, parse_forms
from support import Stack

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
