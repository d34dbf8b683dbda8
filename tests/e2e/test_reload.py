"""SIGHUP reloads the configuration without dropping a session or a connection: a new
`required_scopes` applies to a token issued before it, a provider client secret read from a
`file://` reference is read again, a broken file is refused while the running configuration keeps
serving, and a restart-only setting is named as waiting for a restart. An event stream open
across every reload keeps flowing."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import browser
from support import IDP_CLIENT_SECRET, RecordingUpstream, Stack, oidc_auth_block

SECRET_FILE = "idp-client-secret.txt"


class Settings:
    """What the test changes between reloads."""

    required_scopes: list[str] = ["mxcp:access"]


def _auth(workdir: Path) -> Any:
    def auth(issuer: str) -> dict:
        block = oidc_auth_block(issuer)
        block["oidc"]["client_secret"] = f"file://{workdir / SECRET_FILE}"
        return {**block, "authorization": {"required_scopes": list(Settings.required_scopes)}}

    return auth


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("reload")
    (workdir / SECRET_FILE).write_text(IDP_CLIENT_SECRET + "\n")
    with Stack(workdir, echo_upstream.url, auth=_auth(workdir)) as stack:
        yield stack


def _reload(stack: Stack, expect: str) -> str:
    """Sends SIGHUP and waits for the log line that answers it; returns the new log text."""
    gateway = stack.gateway
    assert gateway.proc is not None
    before = len(gateway.log())
    gateway.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = gateway.log()[before:]
        if expect in new:
            return new
        time.sleep(0.05)
    raise AssertionError(f"no {expect!r} after SIGHUP:\n{gateway.log()[before:]}")


def _write(stack: Stack) -> None:
    assert stack.idp.issuer
    stack.gateway.write_config(stack.idp.issuer)


def _call(stack: Stack, token: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/mcp/x?id={uuid.uuid4().hex}", headers={"authorization": f"Bearer {token}"}, timeout=10)


class OpenStream:
    """An event stream through mxgate, held open by the upstream until released."""

    def __init__(self, stack: Stack, upstream: RecordingUpstream, token: str) -> None:
        self.key = uuid.uuid4().hex
        self.gate = upstream.gate(self.key)
        self.events: list[str] = []
        self.error: BaseException | None = None
        self.first = threading.Event()
        url = f"{stack.url}/sse?id={self.key}"
        self.thread = threading.Thread(target=self._read, args=(url, token), daemon=True)
        self.thread.start()
        assert self.first.wait(10), "the stream did not start"

    def _read(self, url: str, token: str) -> None:
        try:
            headers = {"authorization": f"Bearer {token}"}
            with httpx.stream("GET", url, headers=headers, timeout=30) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(line[6:])
                        self.first.set()
        except BaseException as e:  # reported by finish()
            self.error = e
            self.first.set()

    def finish(self) -> list[str]:
        self.gate.set()
        self.thread.join(10)
        assert self.error is None, repr(self.error)
        return self.events


def test_reloads_keep_sessions_and_connections_and_refuse_a_broken_file(
    stack: Stack, echo_upstream: RecordingUpstream
) -> None:
    lg = browser.login(stack.url, scope="mxcp:access")
    token = lg.tokens["access_token"]
    assert _call(stack, token).status_code == 200
    stream = OpenStream(stack, echo_upstream, token)

    # A broken file: refused, and the running configuration keeps serving the same session.
    good = stack.gateway.config_path.read_text()
    stack.gateway.config_path.write_text(good + "\nthis is: [not yaml\n")
    refused = _reload(stack, "configuration not reloaded")
    assert "mxgate.yml" in refused, refused
    assert "config_rejected" in refused, "an audit record says why"
    assert _call(stack, token).status_code == 200
    assert httpx.get(stack.url + "/readyz", timeout=5).status_code == 200

    # A new `required_scopes` applies to the token issued before it: still known (403, not 401).
    Settings.required_scopes = ["mxcp:access", "mxcp:admin"]
    try:
        _write(stack)
        _reload(stack, "configuration reloaded")
        r = _call(stack, token)
        assert r.status_code == 403 and r.json()["error"] == "insufficient_scope", r.text
        assert 'scope="mxcp:access mxcp:admin"' in r.headers["www-authenticate"]
    finally:
        Settings.required_scopes = ["mxcp:access"]
        _write(stack)
        _reload(stack, "configuration reloaded")
    assert _call(stack, token).status_code == 200, "back to the first configuration"

    # The stream opened before the three reloads still flows.
    assert stream.finish() == ["first", "second"]


def test_a_rotated_provider_secret_is_read_again(stack: Stack) -> None:
    secret_file = stack.workdir / SECRET_FILE
    secret_file.write_text("not-the-secret\n")
    try:
        _reload(stack, "configuration reloaded")
        with pytest.raises(browser.FlowError):
            browser.login(stack.url, scope="mxcp:access")
    finally:
        secret_file.write_text(IDP_CLIENT_SECRET + "\n")
    _reload(stack, "configuration reloaded")
    assert browser.login(stack.url, scope="mxcp:access").tokens["access_token"]


def test_a_restart_only_setting_is_kept_and_named(stack: Stack) -> None:
    running_port = stack.gateway.port
    stack.gateway.extra = {**stack.gateway.extra, "threads": 1}
    try:
        _write(stack)
        said = _reload(stack, "take effect at the next restart")
        assert "threads" in said, said
    finally:
        stack.gateway.extra = {k: v for k, v in stack.gateway.extra.items() if k != "threads"}
        _write(stack)
        _reload(stack, "configuration reloaded")
    assert stack.gateway.port == running_port
    assert httpx.get(stack.url + "/healthz", timeout=5).status_code == 200
