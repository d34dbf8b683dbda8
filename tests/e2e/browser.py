"""A headless "browser" for mxgate's authorization flow, and a token helper.

:class:`Browser` is an httpx client with a cookie jar that never follows redirects on its
own: it walks the chain itself, approves (or denies) mxgate's consent page by parsing the
form, and stops as soon as a ``Location`` points at the client's ``redirect_uri`` (nothing
needs to listen there), returning ``code``, ``state`` and ``iss``.

Use it

* standalone: ``Browser().authorize(url, redirect_uri)`` -> :class:`AuthResponse`;
* with the MCP SDK: ``SdkHandlers(browser, redirect_uri)`` gives ``redirect_handler`` and
  ``callback_handler`` for ``mcp.client.auth.OAuthClientProvider``;
* to just get a token: :func:`get_token` (registers a public client, does PKCE S256, returns
  the token response), or :func:`login` for the client id, verifier etc. as well.

Only the standard library and httpx are needed (the SDK import is lazy).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Callable
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

DEFAULT_REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted


class FlowError(AssertionError):
    """The chain did not end at the redirect URI as expected; carries the steps taken."""


@dataclass
class Step:
    method: str
    url: str
    status: int
    location: str | None


@dataclass
class AuthResponse:
    """Where the chain stopped: the client's redirect URI (or the ``stop_at`` target)."""

    url: str
    params: dict[str, str]
    steps: list[Step] = field(default_factory=list)

    @property
    def code(self) -> str | None:
        return self.params.get("code")

    @property
    def state(self) -> str | None:
        return self.params.get("state")

    @property
    def iss(self) -> str | None:
        return self.params.get("iss")

    @property
    def error(self) -> str | None:
        return self.params.get("error")


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str]
    buttons: list[tuple[str, str]]  # (name, value) of submit buttons


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower(), {}, []))
        elif self.forms and tag in ("input", "button"):
            kind = a.get("type", "submit" if tag == "button" else "text").lower()
            if kind == "submit":
                if "name" in a:
                    self.forms[-1].buttons.append((a["name"], a.get("value", "")))
            elif "name" in a:
                self.forms[-1].fields[a["name"]] = a.get("value", "")


def parse_forms(html: str) -> list[Form]:
    p = _FormParser()
    p.feed(html)
    return p.forms


def _same_endpoint(url: str, target: str) -> bool:
    """``url`` is ``target`` plus a query (scheme, host, port and path equal)."""
    a, b = urlsplit(url), urlsplit(target)
    return (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)


def _params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


class Browser:
    """A cookie-keeping HTTP client that walks an OAuth authorization chain by hand."""

    def __init__(self, decision: str = "approve", timeout: float = 15.0, max_steps: int = 15) -> None:
        self.client = httpx.Client(follow_redirects=False, timeout=timeout)
        self.decision = decision
        self.max_steps = max_steps
        self.last_consent: httpx.Response | None = None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit_consent(self, page: httpx.Response, decision: str | None = None) -> httpx.Response:
        """Post mxgate's consent form (hidden fields kept) with ``decision``."""
        forms = [f for f in parse_forms(page.text) if f.method == "post"]
        if not forms:
            raise FlowError(f"no POST form on the page {page.url} ({page.status_code}):\n{page.text[:2000]}")
        form = forms[0]
        data = dict(form.fields)
        decision = decision or self.decision
        if form.buttons:
            names = {n for n, _ in form.buttons}
            if (("decision", decision) not in form.buttons) and "decision" in names:
                raise FlowError(f"consent form has no decision={decision} button: {form.buttons}")
        data["decision"] = decision
        return self.client.post(urljoin(str(page.url), form.action or str(page.url)), data=data)

    def authorize(self, url: str, redirect_uri: str, *, decision: str | None = None,
                  stop_at: Callable[[str], bool] | None = None) -> AuthResponse:  # fmt: skip
        """GET ``url`` and follow redirects (approving consent) until a Location matches
        ``redirect_uri`` (or ``stop_at(location)`` is true). Never requests that last URL."""
        steps: list[Step] = []
        response = self.client.get(url)
        for _ in range(self.max_steps):
            location = response.headers.get("location")
            steps.append(Step(response.request.method, str(response.request.url), response.status_code, location))
            if response.is_redirect and location:
                target = urljoin(str(response.request.url), location)
                if _same_endpoint(target, redirect_uri) or (stop_at and stop_at(target)):
                    return AuthResponse(target, _params(target), steps)
                response = self.client.get(target)
                continue
            if response.status_code == 200 and "text/html" in response.headers.get("content-type", ""):
                if any(f.method == "post" for f in parse_forms(response.text)):
                    self.last_consent = response
                    response = self.submit_consent(response, decision)
                    continue
            trail = "\n".join(f"  {s.method} {s.url} -> {s.status} {s.location or ''}" for s in steps)
            raise FlowError(
                f"authorization chain stopped at {response.request.url} with {response.status_code}:\n"
                f"{trail}\n{response.text[:2000]}"
            )
        raise FlowError(f"more than {self.max_steps} steps: {steps}")


class SdkHandlers:
    """``redirect_handler`` / ``callback_handler`` for ``mcp.client.auth.OAuthClientProvider``.

    The redirect handler runs the browser (in a worker thread) and keeps the result; the
    callback handler hands it to the SDK as an ``AuthorizationCodeResult``."""

    def __init__(self, browser: Browser, redirect_uri: str) -> None:
        self.browser = browser
        self.redirect_uri = redirect_uri
        self.results: list[AuthResponse] = []
        self.authorization_urls: list[str] = []

    async def redirect_handler(self, authorization_url: str) -> None:
        import anyio

        self.authorization_urls.append(authorization_url)
        result = await anyio.to_thread.run_sync(self.browser.authorize, authorization_url, self.redirect_uri)
        self.results.append(result)

    async def callback_handler(self) -> Any:
        from mcp.client.auth import AuthorizationCodeResult

        result = self.results[-1]
        if not result.code:
            raise FlowError(f"no code in the authorization response: {result.params}")
        return AuthorizationCodeResult(code=result.code, state=result.state, iss=result.iss)


# --------------------------------------------------------------------------------------------
# Plain OAuth helpers


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Login:
    base_url: str
    client_id: str
    redirect_uri: str
    verifier: str
    state: str
    auth: AuthResponse
    tokens: dict[str, Any]
    token_response: httpx.Response


def register(base_url: str, redirect_uri: str = DEFAULT_REDIRECT_URI, *, timeout: float = 15.0,
             name: str = "mxgate-e2e") -> dict[str, Any]:  # fmt: skip
    """Dynamic client registration of a public client (no secret)."""
    r = httpx.post(base_url + "/register", timeout=timeout, json={
        "client_name": name,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })  # fmt: skip
    if r.status_code != 201:
        raise FlowError(f"registration failed: {r.status_code} {r.text}")
    return r.json()


def authorization_url(base_url: str, client_id: str, redirect_uri: str, challenge: str, state: str,
                      **extra: str) -> str:  # fmt: skip
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
        "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
        "resource": base_url + "/mcp",
    }  # fmt: skip
    params.update(extra)
    return str(httpx.URL(base_url + "/authorize", params=params))


def redeem(base_url: str, client_id: str, code: str, verifier: str, redirect_uri: str,
           timeout: float = 15.0) -> httpx.Response:  # fmt: skip
    return httpx.post(base_url + "/token", timeout=timeout, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "client_id": client_id, "code_verifier": verifier, "resource": base_url + "/mcp",
    })  # fmt: skip


def refresh(base_url: str, client_id: str, refresh_token: str, timeout: float = 15.0) -> httpx.Response:
    return httpx.post(base_url + "/token", timeout=timeout, data={
        "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id,
        "resource": base_url + "/mcp",
    })  # fmt: skip


def login(base_url: str, *, redirect_uri: str = DEFAULT_REDIRECT_URI, browser: Browser | None = None,
          client_id: str | None = None, redeem_code: bool = True, **extra: str) -> Login:  # fmt: skip
    """Register (unless ``client_id``), authorize through the browser, redeem the code.
    ``extra`` adds authorization request parameters (e.g. ``login_hint="bob"``)."""
    base_url = base_url.rstrip("/")
    if client_id is None:
        client_id = register(base_url, redirect_uri)["client_id"]
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    own = browser is None
    browser = browser or Browser()
    try:
        url = authorization_url(base_url, client_id, redirect_uri, challenge, state, **extra)
        auth = browser.authorize(url, redirect_uri)
    finally:
        if own:
            browser.close()
    if auth.state != state or not auth.code:
        raise FlowError(f"bad authorization response (sent state {state!r}): {auth.params}")
    if not redeem_code:
        return Login(base_url, client_id, redirect_uri, verifier, state, auth, {}, httpx.Response(0))
    r = redeem(base_url, client_id, auth.code, verifier, redirect_uri)
    if r.status_code != 200:
        raise FlowError(f"token request failed: {r.status_code} {r.text}")
    return Login(base_url, client_id, redirect_uri, verifier, state, auth, r.json(), r)


def get_token(base_url: str) -> dict[str, Any]:
    """A fresh token response (access_token, refresh_token, expires_in, ...) for mxgate at
    ``base_url``, obtained as a newly registered public client with PKCE."""
    return login(base_url).tokens
