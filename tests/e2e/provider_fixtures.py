"""The local provider fixtures (``tests/fixtures/<provider>/server.py``: GitHub, Atlassian,
Salesforce) as processes, and an mxgate stack logged in through one of them.

:func:`provider_stack` starts the fixture with mxgate's callback URL as the registered redirect
URI, then an mxgate (:class:`support.Stack`) whose MXCP ``auth`` block and
``provider_overrides`` point at the fixture. The stack's oidc-provider IdP still starts and is
not used. :func:`assertion` makes one request through mxgate and returns the verified claims of
the ``x-mxcp-user-assertion`` the upstream received.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt

from support import REPO, Process, RecordingUpstream, Stack, header_values, logs


class ProviderFixture(Process):
    """``tests/fixtures/<provider>/server.py --port 0 ...``; ready when it prints ``ready <url>``."""

    def __init__(self, provider: str, workdir: Path, *args: str) -> None:
        self.name = f"{provider}-fixture"
        super().__init__(workdir)
        self.provider = provider
        self.args = args
        self.url = ""

    def command(self) -> list[str]:
        script = REPO / "tests" / "fixtures" / self.provider / "server.py"
        return [sys.executable, "-u", str(script), "--port", "0", *self.args]

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.check_alive()
            m = re.search(r"^ready (\S+)$", self.log(), re.M)
            if m:
                self.url = m.group(1)
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start:\n{self.log()}")

    def requests(self, path: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """The requests the fixture saw (optionally only to ``path`` and with matching fields)."""
        seen = httpx.get(self.url + "/_fixture/requests", timeout=10).json()
        return [
            r for r in seen
            if (path is None or r["path"] == path) and all(r.get(k) == v for k, v in match.items())
        ]  # fmt: skip


class ProviderStack:
    """An mxgate stack and the provider fixture it logs in through."""

    def __init__(self, stack: Stack, fixture: ProviderFixture) -> None:
        self.stack = stack
        self.fixture = fixture

    @property
    def url(self) -> str:
        return self.stack.url

    def logs(self) -> str:
        return logs(self.fixture, *self.stack.processes)


@contextmanager
def provider_stack(
    workdir: Path,
    upstream: str,
    provider: str,
    auth: Callable[[str], dict[str, Any]],
    *fixture_args: str,
    overrides: Callable[[str], dict[str, str]] | None = None,
    gateway_extra: dict[str, Any] | None = None,
) -> Iterator[ProviderStack]:
    """``auth(fixture_url)`` gives the MXCP ``auth`` block, ``overrides(fixture_url)`` the
    ``provider_overrides`` entry of the provider."""
    fixture: ProviderFixture | None = None

    def auth_block(_idp_issuer: str) -> dict[str, Any]:
        assert fixture is not None
        return auth(fixture.url)

    stack = Stack(workdir / "stack", upstream, auth=auth_block)
    fixture = ProviderFixture(provider, workdir / provider, "--redirect-uri", stack.gateway.callback_url,
                              *fixture_args)  # fmt: skip
    with fixture:
        extra = dict(gateway_extra or {})
        if overrides:
            extra["provider_overrides"] = {provider: overrides(fixture.url)}
        stack.gateway.extra = extra
        with stack:
            yield ProviderStack(stack, fixture)


def verified_claims(stack_url: str, assertion_jwt: str) -> dict[str, Any]:
    """The assertion's claims, verified against mxgate's JWKS (EdDSA, ``kid``)."""
    keys = {k["kid"]: k for k in httpx.get(stack_url + "/.well-known/jwks.json", timeout=10).json()["keys"]}
    key = jwt.PyJWK(keys[jwt.get_unverified_header(assertion_jwt)["kid"]]).key
    return jwt.decode(assertion_jwt, key, algorithms=["EdDSA"], audience="mxcp-core", issuer=stack_url)


def assertion(stack_url: str, upstream: RecordingUpstream, token: str) -> dict[str, Any]:
    """One request through mxgate with ``token``; the verified assertion the upstream received."""
    marker = uuid.uuid4().hex
    r = httpx.get(f"{stack_url}/mcp/whoami?id={marker}", headers={"authorization": f"Bearer {token}"}, timeout=15)
    assert r.status_code == 200, (r.status_code, r.text)
    [request] = upstream.find(lambda q: marker in q["path"])
    [value] = header_values(request, "x-mxcp-user-assertion")
    return verified_claims(stack_url, value)
