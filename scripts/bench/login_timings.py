"""N logins through mxgate, one after another, each exactly as `mcp_client.py logins` makes them
(tests/e2e/browser.py: one public client registered first, then for each login the browser walks
authorize → IdP → callback → consent and the code is redeemed at /token), with every HTTP
request timed (the registration's line counts once).

  login_timings.py URL --count N [--warmup W]

Prints on stdout one line per request kind: `<kind>\t<count per login>\t<median ms>\t<p90 ms>`
(kinds: `mxgate GET /authorize`, `idp GET /auth`, ..., and `login (total)`). A request is timed
from sending it to having read its whole body, so the callback's line includes mxgate's own
round trips to the IdP (code exchange, userinfo). Run with target/py/client/bin/python.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from browser import DEFAULT_REDIRECT_URI, Browser, authorization_url, pkce_pair  # noqa: E402


class TimedTransport(httpx.HTTPTransport):
    """An httpx transport that records, per request kind, the time to the end of the body."""

    def __init__(self, gateway: str, times: dict[str, list[float]]) -> None:
        super().__init__()
        self.gateway = httpx.URL(gateway)
        self.times = times

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        start = time.perf_counter()
        response = super().handle_request(request)
        response.read()
        who = "mxgate" if request.url.port == self.gateway.port else "idp"
        path = request.url.path
        if who == "idp":  # the fixture's interaction URLs carry a random id
            path = "/" + path.strip("/").split("/")[0]
        self.times[f"{who} {request.method} {path}"].append(time.perf_counter() - start)
        return response


def register(url: str, times: dict[str, list[float]]) -> str:
    """A new public client's id."""
    with httpx.Client(transport=TimedTransport(url, times), timeout=15) as client:  # a new connection, as httpx.post
        r = client.post(url + "/register", json={
            "client_name": "login-timings", "redirect_uris": [DEFAULT_REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })  # fmt: skip
        if r.status_code != 201:
            sys.exit(f"registration failed: {r.status_code} {r.text}")
        return r.json()["client_id"]


def one_login(url: str, client_id: str, times: dict[str, list[float]]) -> None:
    redirect_uri = DEFAULT_REDIRECT_URI
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    with Browser() as browser:
        browser.client.close()
        browser.client = httpx.Client(follow_redirects=False, timeout=15, transport=TimedTransport(url, times))
        auth = browser.authorize(authorization_url(url, client_id, redirect_uri, challenge, state), redirect_uri)
    if auth.state != state or not auth.code:
        sys.exit(f"bad authorization response: {auth.params}")
    with httpx.Client(transport=TimedTransport(url, times), timeout=15) as client:
        r = client.post(url + "/token", data={
            "grant_type": "authorization_code", "code": auth.code, "redirect_uri": redirect_uri,
            "client_id": client_id, "code_verifier": verifier, "resource": url + "/mcp",
        })  # fmt: skip
        if r.status_code != 200 or "access_token" not in r.json():
            sys.exit(f"token request failed: {r.status_code} {r.text}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--count", type=int, default=30)
    p.add_argument("--warmup", type=int, default=0, help="logins before the timed ones (not reported)")
    args = p.parse_args()
    url = args.url.rstrip("/")
    times: dict[str, list[float]] = defaultdict(list)
    client_id = register(url, times)
    for _ in range(args.warmup):
        one_login(url, client_id, defaultdict(list))
    for _ in range(args.count):
        start = time.perf_counter()
        one_login(url, client_id, times)
        times["login (total)"].append(time.perf_counter() - start)
    for kind, values in sorted(times.items(), key=lambda kv: (kv[0] == "login (total)", kv[0])):
        values.sort()
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        print(f"{kind}\t{len(values) / args.count:g}\t{statistics.median(values) * 1000:.2f}\t{p90 * 1000:.2f}")


if __name__ == "__main__":
    main()
