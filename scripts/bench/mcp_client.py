"""Small clients for scripts/bench.sh (run with target/py/client/bin/python).

  mcp_client.py token URL
      Logs in through mxgate at URL without a person (public client, PKCE S256, mxgate's
      consent page approved, the local OpenID provider fixture logs alice in without a form)
      and prints the mxgate access token. Uses tests/e2e/browser.py's get_token.

  mcp_client.py fastmcp-token URL
      The same login through FastMCP's OAuth proxy at URL (scripts/bench/fastmcp_proxy.py): DCR,
      PKCE S256, FastMCP's consent page approved (its `action=approve` button), the IdP fixture,
      FastMCP's callback; prints the FastMCP-issued access token.

  mcp_client.py session URL [--token T] [--host H] [--expect S]
      MCP handshake on URL (the /mcp endpoint): `initialize`, then `notifications/initialized`;
      then one `tools/call whoami` as a check (its text goes to stderr; with --expect the
      result must contain S). Prints the mcp-session-id on stdout.

  mcp_client.py check URL [--token T] [--host H] [--expect S]
      One POST like the static-upstream load: must answer 200 (and contain S).

  mcp_client.py logins URL --count N
      One public client registered, then N complete logins of it as `token` does them (authorize
      → IdP → callback → consent → token), one after another in this process: the login flow of
      a returning client, which registers once (the bench measures mxgate's and its store's CPU
      during the N logins; the registration comes before).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import urljoin

import httpx

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_VERSION = "2025-06-18"


def fail(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


def token(url: str) -> str:
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from browser import get_token  # noqa: PLC0415  (tests/e2e is not a package)

    tokens = get_token(url.rstrip("/"))
    access = tokens.get("access_token")
    if not access:
        fail(f"no access_token in the token response: {sorted(tokens)}")
    return access


def logins(url: str, count: int) -> None:
    """`count` logins of one registered public client (see the module doc)."""
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from browser import DEFAULT_REDIRECT_URI, login, register  # noqa: PLC0415

    url = url.rstrip("/")
    client_id = register(url, DEFAULT_REDIRECT_URI)["client_id"]
    for _ in range(count):
        if not login(url, client_id=client_id).tokens.get("access_token"):
            fail("a login gave no access_token")


def fastmcp_token(url: str) -> str:
    """A FastMCP access token: the login of `token`, with FastMCP's consent form, whose submit
    buttons are `action=approve|deny` (mxgate's are `decision=...`)."""
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from browser import Browser, FlowError, login, parse_forms  # noqa: PLC0415

    class FastMCPBrowser(Browser):
        def submit_consent(self, page: httpx.Response, decision: str | None = None) -> httpx.Response:
            forms = [f for f in parse_forms(page.text) if f.method == "post"]
            if not forms or ("action", "approve") not in forms[0].buttons:
                raise FlowError(f"no FastMCP consent form with action=approve at {page.url}:\n{page.text[:2000]}")
            data = dict(forms[0].fields, action="approve")
            return self.client.post(urljoin(str(page.url), forms[0].action or str(page.url)), data=data)

    with FastMCPBrowser() as browser:
        tokens = login(url.rstrip("/"), browser=browser).tokens
    access = tokens.get("access_token")
    if not access:
        fail(f"no access_token in FastMCP's token response: {sorted(tokens)}")
    return access


def headers(args: argparse.Namespace) -> dict[str, str]:
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if args.token:
        h["authorization"] = "Bearer " + args.token
    if args.host:
        h["host"] = args.host
    return h


def rpc_messages(response: httpx.Response) -> list[dict]:
    """The JSON-RPC messages of a JSON or SSE response."""
    ctype = response.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        return [response.json()]
    out = []
    for line in response.text.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data:
                out.append(json.loads(data))
    return out


def session(args: argparse.Namespace) -> str:
    h = headers(args)
    with httpx.Client(timeout=30.0) as c:
        r = c.post(args.url, headers=h, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                       "clientInfo": {"name": "mxgate-bench", "version": "1"}},
        })  # fmt: skip
        if r.status_code != 200:
            fail(f"initialize at {args.url}: {r.status_code} {r.text[:500]}")
        sid = r.headers.get("mcp-session-id")
        if not sid:
            fail(f"initialize at {args.url}: no mcp-session-id in {dict(r.headers)}")
        h["mcp-session-id"] = sid
        h["mcp-protocol-version"] = PROTOCOL_VERSION
        r = c.post(args.url, headers=h, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        if r.status_code not in (200, 202):
            fail(f"notifications/initialized at {args.url}: {r.status_code} {r.text[:500]}")
        r = c.post(args.url, headers=h, json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}},
        })  # fmt: skip
        if r.status_code != 200:
            fail(f"tools/call whoami at {args.url}: {r.status_code} {r.text[:500]}")
        msgs = rpc_messages(r)
        result = next((m for m in msgs if m.get("id") == 2), None)
        if result is None or "result" not in result or result["result"].get("isError"):
            fail(f"tools/call whoami at {args.url}: unexpected answer {msgs}")
        text = json.dumps(result["result"].get("structuredContent") or result["result"].get("content"))
        print(f"whoami via {args.url}: {text}", file=sys.stderr)
        if args.expect and args.expect not in r.text:
            fail(f"tools/call whoami at {args.url}: {args.expect!r} not in the answer {r.text[:500]}")
        return sid


def check(args: argparse.Namespace) -> None:
    r = httpx.post(args.url, headers=headers(args), timeout=10.0,
                   content=b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}')  # fmt: skip
    if r.status_code != 200:
        fail(f"POST {args.url}: {r.status_code} {r.text[:500]}")
    if args.expect and args.expect not in r.text:
        fail(f"POST {args.url}: {args.expect!r} not in the answer {r.text[:500]}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["token", "fastmcp-token", "session", "check", "logins"])
    p.add_argument("--count", type=int, default=1)
    p.add_argument("url")
    p.add_argument("--token")
    p.add_argument("--host")
    p.add_argument("--expect")
    args = p.parse_args()
    if args.command == "token":
        print(token(args.url))
    elif args.command == "fastmcp-token":
        print(fastmcp_token(args.url))
    elif args.command == "logins":
        logins(args.url, args.count)
    elif args.command == "session":
        print(session(args))
    else:
        check(args)


if __name__ == "__main__":
    main()
