"""`mxgate sessions list|revoke` against a running mxgate, through its admin socket in the data
directory (mode 0600): an administrator sees who is logged in and ends sessions by user or by id."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest

import browser
from support import IDP_CLIENT_SECRET, MXGATE_BIN, SECRET_ENV, RecordingUpstream, Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("sessions-cli"), echo_upstream.url) as s:
        yield s


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, SECRET_ENV: IDP_CLIENT_SECRET}
    return subprocess.run([str(MXGATE_BIN), "sessions", *args, "--config", str(stack.gateway.config_path)],
                          env=env, capture_output=True, text=True, timeout=30)  # fmt: skip


def _works(stack: Stack, token: str) -> bool:
    r = httpx.get(f"{stack.url}/mcp/x?id={uuid.uuid4().hex}", headers={"authorization": f"Bearer {token}"}, timeout=10)
    return r.status_code == 200


def test_list_and_revoke_sessions_by_user_and_by_id(stack: Stack) -> None:
    socket = stack.gateway.data_dir / "admin.sock"
    assert stat.S_IMODE(socket.stat().st_mode) == 0o600

    logins = [browser.login(stack.url) for _ in range(3)]
    listed = _cli(stack, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    sessions = json.loads(listed.stdout)
    assert len(sessions) == 3 and {s["username"] for s in sessions} == {"alice"}, sessions
    assert all(s["email"] == "alice@example.test" and s["user"] == "oidc:alice" for s in sessions)
    assert {s["client_id"] for s in sessions} == {lg.client_id for lg in logins}
    assert "mxg_" not in listed.stdout, "no token is ever listed"

    table = _cli(stack, "list", "--user", "alice@example.test")
    assert table.returncode == 0 and table.stdout.count("alice@example.test") == 3, table.stdout

    one = next(s for s in sessions if s["client_id"] == logins[0].client_id)
    r = _cli(stack, "revoke", "--session", one["session_id"])
    assert r.returncode == 0 and "revoked 1 session" in r.stdout, (r.stdout, r.stderr)
    assert not _works(stack, logins[0].tokens["access_token"])
    assert _works(stack, logins[1].tokens["access_token"])

    r = _cli(stack, "revoke", "--user", "alice")
    assert r.returncode == 0 and "revoked 2 session" in r.stdout, (r.stdout, r.stderr)
    assert not any(_works(stack, lg.tokens["access_token"]) for lg in logins)
    assert json.loads(_cli(stack, "list", "--json").stdout) == []


def test_cli_says_clearly_when_mxgate_is_not_running(tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("no-server")
    (workdir / "mxcp.yml").write_text("mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\n")
    config = workdir / "mxgate.yml"
    config.write_text("upstream: http://127.0.0.1:9\nmxcp_config: mxcp.yml\n")
    r = subprocess.run([str(MXGATE_BIN), "sessions", "list", "--config", str(config)],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 2
    assert "admin socket" in r.stderr and "is `mxgate serve` running" in r.stderr, r.stderr
