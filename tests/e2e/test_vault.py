"""`vault://path#key` references in the MXCP user config, resolved from a Vault KV engine (the
`vault` block: enabled, address, token_env) — tested with `mxgate check` against a local
fixture that imitates Vault's HTTP API (tests/fixtures/vault)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from support import MXGATE_BIN

from conftest import VAULT_TOKEN as TOKEN


def _check(workdir: Path, vault_url: str, reference: str, *, enabled: bool = True, token: str | None = TOKEN):
    (workdir / "mxcp.yml").write_text(json.dumps({
        "mxcp": 1,
        "vault": {"enabled": enabled, "address": vault_url, "token_env": "E2E_VAULT_TOKEN"},
        "projects": {"p": {"profiles": {"default": {"auth": {
            "provider": "github",
            "github": {"client_id": reference.replace("#client_secret", "#client_id"), "client_secret": reference,
                       "callback_path": "/callback", "auth_url": "https://github.com/login/oauth/authorize",
                       "token_url": "https://github.com/login/oauth/access_token"},
        }}}}},
    }))  # fmt: skip
    (workdir / "mxgate.yml").write_text("upstream: http://127.0.0.1:9\nmxcp_config: mxcp.yml\n")
    env = {k: v for k, v in os.environ.items() if k != "E2E_VAULT_TOKEN"}
    if token is not None:
        env["E2E_VAULT_TOKEN"] = token
    return subprocess.run([str(MXGATE_BIN), "check", "--config", str(workdir / "mxgate.yml")],
                          env=env, capture_output=True, text=True, timeout=30)  # fmt: skip


@pytest.mark.parametrize(("reference", "client_id"), [
    ("vault://secret/oauth#client_secret", "from-kv2-intuitive"),
    ("vault://secret/legacy#client_secret", "from-kv2-mxcp-path"),
    ("vault://kv/app#client_secret", "from-kv1"),
])  # fmt: skip
def test_references_resolve_from_kv2_and_kv1(tmp_path: Path, vault: str, reference: str, client_id: str) -> None:
    r = _check(tmp_path, vault, reference)
    assert r.returncode == 0, r.stderr
    assert f"client_id: {client_id}" in r.stdout, r.stdout
    assert "secret" not in r.stdout.split("client_secret:")[1].split("\n")[0].replace("redacted", ""), r.stdout


@pytest.mark.parametrize(("reference", "kwargs", "message"), [
    ("vault://secret/oauth#nope", {}, "key `nope` not found"),
    ("vault://secret/missing#client_secret", {}, "no Vault secret at `secret/missing`"),
    ("vault://secret/oauth#client_secret", {"token": "wrong"}, "permission denied"),
    ("vault://secret/oauth#client_secret", {"token": None}, "E2E_VAULT_TOKEN is not set"),
    ("vault://secret/oauth#client_secret", {"enabled": False}, "no `vault` block with `enabled: true`"),
    ("vault://secret/oauth", {}, "vault://path/to/secret#key"),
])  # fmt: skip
def test_vault_errors_name_the_problem(tmp_path: Path, vault: str, reference: str, kwargs: dict, message: str) -> None:
    r = _check(tmp_path, vault, reference, **kwargs)
    assert r.returncode == 2, r.stdout
    assert message in r.stderr, r.stderr
    assert "mxcp.yml" in r.stderr
