"""Every auth example of MXCP's authentication guide works with mxgate unchanged: each file in
tests/config_parity is an MXCP user config, and `mxgate check` accepts it (the vault example
against the Vault stand-in). A misspelled key is refused with its name."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import VAULT_TOKEN
from support import MXGATE_BIN, REPO

EXAMPLES = REPO / "tests" / "config_parity"
ENV = {
    **{f"{p}_CLIENT_ID": f"{p.lower()}-client-id" for p in ("GITHUB", "ATLASSIAN", "SALESFORCE", "GOOGLE", "KEYCLOAK")},
    **{f"{p}_CLIENT_SECRET": f"{p.lower()}-client-secret" for p in ("GITHUB", "ATLASSIAN", "SALESFORCE", "GOOGLE", "KEYCLOAK")},
    "CLIENT_SECRET": "static-client-secret",
    "VAULT_TOKEN": VAULT_TOKEN,
}


def _check(workdir: Path, user_config: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (workdir / "config.yml").write_text(user_config)
    (workdir / "mxgate.yml").write_text("upstream: http://127.0.0.1:8001\nmxcp_config: config.yml\n")
    return subprocess.run([str(MXGATE_BIN), "check", "--config", str(workdir / "mxgate.yml")],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=30)  # fmt: skip


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yml")))
def test_every_documented_example_is_accepted(tmp_path: Path, vault: str, example: str) -> None:
    r = _check(tmp_path, (EXAMPLES / example).read_text(), {**ENV, "VAULT_ADDR": vault})
    assert r.returncode == 0, f"{example}:\n{r.stderr}"
    for secret in [v for k, v in ENV.items() if "SECRET" in k or "TOKEN" in k] + ["gh-secret"]:
        assert secret not in r.stdout, f"{example} printed a secret"
    provider = next(line.split(":", 1)[1].strip() for line in (EXAMPLES / example).read_text().splitlines()
                    if line.strip().startswith("provider:"))  # fmt: skip
    assert f"provider: {provider.split()[0]}" in r.stdout


def test_a_misspelled_key_is_refused_with_its_name(tmp_path: Path) -> None:
    text = (EXAMPLES / "github.yml").read_text().replace("callback_path:", "callback_pth:")
    r = _check(tmp_path, text, ENV)
    assert r.returncode == 2
    assert "callback_pth" in r.stderr and "config.yml" in r.stderr, r.stderr
