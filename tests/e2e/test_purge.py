"""Expired states, codes, tokens and sessions are removed by mxgate's background task (here every
second, `store.purge_interval: 1s`), seen through `mxgate sessions stats` (entries per store table,
expired ones not yet purged included). Registered clients, which do not expire, stay."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

import browser
from support import IDP_CLIENT_SECRET, MXGATE_BIN, SECRET_ENV, RecordingUpstream, Stack

SHORT = {"access_token_ttl": "2s", "refresh_token_ttl": "2s", "session_ttl": "2s",
         "authorization_code_ttl": "2s", "login_ttl": "2s"}  # fmt: skip


@pytest.fixture(scope="module")
def purging(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("purge"), echo_upstream.url, tokens=SHORT,
               gateway_extra={"store": {"purge_interval": "1s"}}) as stack:  # fmt: skip
        yield stack


def _entries(stack: Stack) -> dict[str, int]:
    r = subprocess.run([str(MXGATE_BIN), "sessions", "stats", "--config", str(stack.gateway.config_path)],
                       env={**os.environ, SECRET_ENV: IDP_CLIENT_SECRET}, capture_output=True, text=True,
                       timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_expired_entries_are_purged_and_clients_stay(purging: Stack) -> None:
    login = browser.login(purging.url)  # a client, a session, its tokens and its index entry
    _, challenge = browser.pkce_pair()  # and a consent transaction left unanswered
    page = httpx.get(browser.authorization_url(purging.url, login.client_id, login.redirect_uri, challenge, "s"),
                     timeout=10)  # fmt: skip
    assert page.status_code == 200
    before = _entries(purging)
    assert before["sessions"] >= 1 and before["tokens"] >= 2 and before["consent_transactions"] >= 1, before
    assert before["clients"] == 1

    deadline = time.monotonic() + 15
    after = before
    while time.monotonic() < deadline:
        after = _entries(purging)
        if not any(after[t] for t in ("sessions", "tokens", "codes", "consent_transactions", "login_states",
                                      "user_sessions")):  # fmt: skip
            break
        time.sleep(0.5)
    assert after["sessions"] == after["tokens"] == after["codes"] == 0, after
    assert after["consent_transactions"] == after["login_states"] == after["user_sessions"] == 0, after
    assert after["clients"] == 1, "registered clients do not expire"
