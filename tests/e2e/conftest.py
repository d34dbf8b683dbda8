"""Fixtures for mxgate's end-to-end tests: real processes on free ports, always cleaned up.

Shared for the whole run (session scope), because the tests that use them do not change
their configuration:

* ``core_stack``: IdP fixture + mxgate + the real MXCP demo core (``mxgate_core``).
* ``echo_upstream`` / ``echo_stack``: IdP + mxgate in front of an in-process
  :class:`support.RecordingUpstream` that records every header it receives and serves SSE.

Tests that need their own configuration (short token lifetime, restart, core down) build a
:class:`support.Stack` in their module. On a failure, the logs of every stack the test used
are appended to the report (section "logs of ...").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import browser
from support import CORE_PYTHON, IDP_DIR, MXGATE_BIN, REPO, RecordingUpstream, Stack


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [
        f"{p} ({hint})" for p, hint in (
            (MXGATE_BIN, "run `cargo build` in the repository root"),
            (CORE_PYTHON, "run scripts/setup.sh"),
            (IDP_DIR / "node_modules", "run scripts/setup.sh"),
        ) if not Path(p).exists()
    ]  # fmt: skip
    if missing:
        pytest.exit("mxgate e2e prerequisites missing:\n  " + "\n  ".join(missing), returncode=2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when in ("setup", "call") and report.failed:
        seen: set[int] = set()
        for name, value in getattr(item, "funcargs", {}).items():
            if id(value) in seen or not callable(getattr(value, "logs", None)):
                continue
            seen.add(id(value))
            try:
                report.sections.append((f"logs of {name}", value.logs()))
            except Exception as e:  # pragma: no cover
                report.sections.append((f"logs of {name}", f"(unavailable: {e!r})"))


@pytest.fixture(scope="session")
def core_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("core-stack"), with_core=True) as stack:
        yield stack


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def echo_stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("echo-stack"), echo_upstream.url) as stack:
        yield stack


@pytest.fixture(scope="session")
def core_login(core_stack: Stack) -> browser.Login:
    """One logged-in public client (alice) on ``core_stack``; do not revoke its tokens."""
    return browser.login(core_stack.url)


@pytest.fixture(scope="session")
def echo_login(echo_stack: Stack) -> browser.Login:
    """One logged-in public client (alice) on ``echo_stack``; do not revoke its tokens."""
    return browser.login(echo_stack.url)


@pytest.fixture
def fresh_browser() -> Iterator[browser.Browser]:
    with browser.Browser() as b:
        yield b


if os.environ.get("MXGATE_E2E_KEEP_LOGS"):  # pragma: no cover - debugging aid
    @pytest.fixture(scope="session", autouse=True)
    def _print_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
        print("e2e temp dir:", tmp_path_factory.getbasetemp())


# --- a Vault stand-in (tests/fixtures/vault) ---------------------------------------------

VAULT_TOKEN = "s.test-vault-token"
VAULT_SECRETS = {
    "secret": {
        "oauth": {"client_id": "from-kv2-intuitive", "client_secret": "kv2-secret", "github_secret": "gh-secret"},
        "secret/legacy": {"client_id": "from-kv2-mxcp-path", "client_secret": "legacy-secret"},
    },
    "kv": {"app": {"client_id": "from-kv1", "client_secret": "kv1-secret"}},
}


@pytest.fixture(scope="session")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("vault")
    (workdir / "secrets.json").write_text(json.dumps(VAULT_SECRETS))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests/fixtures/vault/server.py"), "--port", "0", "--token", VAULT_TOKEN,
         "--secrets", str(workdir / "secrets.json")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("ready "), line
    yield line.removeprefix("ready ")
    proc.terminate()
    proc.wait(timeout=10)
