"""Startup: misconfiguration fails fast with a clear message (no traceback, no server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import DEMO_DIR, ISSUER

EX_CONFIG = 78
AUTH_ENABLED_CONFIG = """\
mxcp: 1
projects:
  mxgate-demo-core:
    profiles:
      default:
        auth:
          provider: github
          github:
            client_id: demo
            client_secret: demo
            scope: read:user
            callback_path: /github/callback
            auth_url: https://github.com/login/oauth/authorize
            token_url: https://github.com/login/oauth/access_token
          persistence:
            type: sqlite
            path: {db}
"""


def _serve(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mxgate_core serve`` on the demo project and wait for it to exit."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MXGATE_", "MXCP_"))}
    base.update(
        MXCP_CONFIG=str(DEMO_DIR / "config.yml"),
        MXCP_DUCKDB_PATH=str(tmp_path / "core.duckdb"),
        MXCP_DISABLE_ANALYTICS="1",
    )
    base.update(env)
    command = [sys.executable, "-m", "mxgate_core", "serve", "--port", "1"]
    return subprocess.run(command, cwd=DEMO_DIR, env=base, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MXGATE_JWKS_URL": "http://127.0.0.1:1/jwks.json"}, "MXGATE_ASSERTION_ISSUER is required"),
        ({"MXGATE_ASSERTION_ISSUER": ISSUER}, "no key source"),
        (
            {
                "MXGATE_ASSERTION_ISSUER": ISSUER,
                "MXGATE_JWKS_URL": "http://x/j",
                "MXGATE_ASSERTION_SECRET": "s" * 40,
            },
            "set exactly one key source",
        ),
        ({"MXGATE_ASSERTION_ISSUER": ISSUER, "MXGATE_ASSERTION_SECRET": "short"}, "at least 32 bytes"),
        (
            {"MXGATE_ASSERTION_ISSUER": ISSUER, "MXGATE_JWKS_URL": "file:///etc/passwd"},
            "must be an http(s) URL",
        ),
    ],
    ids=["no-issuer", "no-key-source", "two-key-sources", "short-secret", "bad-jwks-url"],
)
def test_misconfiguration_fails_at_startup(env: dict[str, str], message: str, tmp_path: Path) -> None:
    result = _serve(env, tmp_path)
    assert result.returncode == EX_CONFIG, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_secret_is_not_echoed(tmp_path: Path) -> None:
    secret = "tiny-secret"
    result = _serve({"MXGATE_ASSERTION_ISSUER": ISSUER, "MXGATE_ASSERTION_SECRET": secret}, tmp_path)
    assert result.returncode == EX_CONFIG
    assert secret not in result.stderr + result.stdout


def test_core_auth_must_be_off(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(AUTH_ENABLED_CONFIG.format(db=tmp_path / "oauth.db"))
    env = {"MXGATE_ASSERTION_ISSUER": ISSUER, "MXGATE_JWKS_URL": "http://127.0.0.1:1/jwks.json"}
    result = _serve(dict(env, MXCP_CONFIG=str(config)), tmp_path)
    assert result.returncode != 0
    assert "MXCP auth must be disabled" in result.stdout + result.stderr


def test_usage_without_serve() -> None:
    result = subprocess.run([sys.executable, "-m", "mxgate_core"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "usage: mxgate-core serve" in result.stderr
