"""Transparency: the MCP conformance suite's server scenarios give the same results against the
demo MXCP core directly and through mxgate.

The suite is npm's ``@modelcontextprotocol/conformance`` (pinned in
``tests/conformance/package.json``, run with the Node 22 of npm's ``node`` package; both
installed by ``scripts/setup.sh``). ``server --suite all --url <url>`` runs every server
scenario (pending ones included) and writes each scenario's checks to ``<out>/server-<name>-<time>/
checks.json``. A scenario passes when none of its checks failed and at least one succeeded.

Three runs:

* **direct**: the demo core (``mxgate_core serve`` on ``demo/core``) at its own ``/mcp``;
* **provider none**: through mxgate with ``auth: {provider: none}`` (a plain proxy) in front
  of that same core;
* **real login**: through mxgate with the ``oidc`` provider at the local OpenID provider
  (the shared ``core_stack``), logged in as alice. The suite has no option for extra headers
  (0.1.16: ``server`` takes only ``--url``, ``--scenario``, ``--suite``, ``--spec-version``,
  ``--expected-failures``, ``-o``, ``--verbose``, and its MCP client is built from the URL
  alone), so ``tests/conformance/bearer.mjs`` is preloaded (``node --import``): it replaces
  undici's global dispatcher with one that adds ``Authorization: Bearer <token>`` to every
  request to mxgate, which covers both the MCP SDK's ``fetch`` and the ``undici.request`` of
  the dns-rebinding scenario.

The demo core is an MXCP server with four tools, not the suite's reference server, so most
scenarios fail in every run; what matters is that the same ones pass. ``PASSING_DIRECTLY``
records today's direct passes, so a change of the core, the fixture or the suite shows.

``dns-rebinding-protection`` sends two ``initialize`` POSTs without a session, each with
``Host: H`` and ``Origin: http://H``: H = ``evil.example.com`` must get a 4xx, H = the URL's
own ``host:port`` a 2xx. The core answers the first with 421 (the MCP SDK's Host check); mxgate
must refuse it itself, since it sends the core its own ``Host`` and no ``Origin``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import browser
from support import REPO, Stack

SUITE_DIR = REPO / "tests" / "conformance"
NODE = SUITE_DIR / "node_modules" / ".bin" / "node"  # Node 22, npm's `node` package
SUITE = SUITE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
BEARER_PRELOAD = SUITE_DIR / "bearer.mjs"
SUITE_TIMEOUT = 240.0

# What the demo core passes directly with @modelcontextprotocol/conformance 0.1.16, --suite all
# (32 scenarios). The tools-call ones pass because 0.1.16 accepts any text result, including
# "Unknown tool: ..." with isError.
PASSING_DIRECTLY = {
    "server-initialize",
    "ping",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-error",
    "server-sse-multiple-streams",
    "resources-list",
    "prompts-list",
    "dns-rebinding-protection",
}
DNS_REBINDING = "dns-rebinding-protection"
SUMMARY_LINE = re.compile(r"^[✓✗] (\S+): (\d+) passed, (\d+) failed$", re.M)
RESULT_DIR = re.compile(r"^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")


@dataclass
class SuiteRun:
    """One run of the suite: every scenario's checks (from its checks.json files)."""

    name: str
    url: str
    checks: dict[str, list[dict[str, Any]]] = field(repr=False)
    seconds: float

    @property
    def passed(self) -> set[str]:
        return {name for name, checks in self.checks.items() if scenario_passed(checks)}

    def failures(self, scenario: str) -> list[str]:
        return [
            f"{c['id']}: {c.get('errorMessage', '')} {json.dumps(c.get('details', {}))[:400]}"
            for c in self.checks.get(scenario, []) if c["status"] == "FAILURE"
        ]  # fmt: skip


def scenario_passed(checks: list[dict[str, Any]]) -> bool:
    statuses = {c["status"] for c in checks}
    return "FAILURE" not in statuses and "SUCCESS" in statuses


def outcomes(checks: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    """Check id -> (status, error message); the suite's messages hold no ports or times."""
    return {c["id"]: (c["status"], c.get("errorMessage")) for c in checks}


def run_suite(name: str, url: str, out_dir: Path, bearer: str | None = None) -> SuiteRun:
    """``conformance server --suite all --url <url>``; with ``bearer``, every request to the
    URL's origin carries it (see ``tests/conformance/bearer.mjs``)."""
    if not SUITE.exists() or not NODE.exists():
        pytest.fail(f"the conformance suite is not installed ({SUITE_DIR}/node_modules): run scripts/setup.sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MXGATE_", "NODE_"))}
    preload: list[str] = []
    if bearer:
        origin = re.match(r"^https?://[^/]+", url)
        assert origin, url
        env.update(MXGATE_CONFORMANCE_BEARER=bearer, MXGATE_CONFORMANCE_ORIGIN=origin.group(0))
        preload = ["--import", BEARER_PRELOAD.as_uri()]
    out_dir.mkdir(parents=True)
    started = time.monotonic()
    proc = subprocess.run(
        [str(NODE), *preload, str(SUITE), "server", "--suite", "all", "--url", url, "-o", str(out_dir)],
        cwd=SUITE_DIR, env=env, capture_output=True, text=True, timeout=SUITE_TIMEOUT,
    )  # fmt: skip
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    if bearer:
        output = output.replace(bearer, "<token>")
    # Exit status 1 only says that some scenario failed; the summary says which ran.
    summary = SUMMARY_LINE.findall(proc.stdout)
    assert proc.returncode in (0, 1) and summary, f"suite run {name} broke ({proc.returncode}):\n{output[-6000:]}"
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in sorted(out_dir.iterdir()):
        m = RESULT_DIR.match(result.name)
        assert m, f"unexpected result directory {result}"
        checks[m.group(1)] = json.loads((result / "checks.json").read_text())
    assert sorted(checks) == sorted(s for s, _, _ in summary), (sorted(checks), summary)
    run = SuiteRun(name, url, checks, seconds)
    print(f"conformance run {name}: {len(checks)} scenarios, {len(run.passed)} passed, {seconds:.1f} s")
    return run


def differences(direct: SuiteRun, through: SuiteRun) -> str:
    """Each scenario whose outcome differs, with the failed checks of the failing side."""
    lines = []
    for scenario in sorted(direct.passed ^ through.passed):
        side, failures = (through, through.failures(scenario)) if scenario in direct.passed else (
            direct, direct.failures(scenario))  # fmt: skip
        lines.append(f"{scenario}: fails {side.name}:\n    " + "\n    ".join(failures or ["(no check ran)"]))
    return "\n".join(lines)


# --- the runs (each once per module) -------------------------------------------------------


@pytest.fixture(scope="module")
def none_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The demo core behind mxgate with ``auth: {provider: none}``."""
    with Stack(tmp_path_factory.mktemp("conformance-none"), with_core=True,
               auth=lambda _idp: {"provider": "none"}) as stack:  # fmt: skip
        yield stack


@pytest.fixture(scope="module")
def direct_run(none_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    assert none_stack.core is not None
    return run_suite("direct", none_stack.core.url + "/mcp", tmp_path_factory.mktemp("suite") / "direct")


@pytest.fixture(scope="module")
def none_run(none_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    return run_suite("through mxgate (provider none)", none_stack.gateway.mcp_url,
                     tmp_path_factory.mktemp("suite") / "none")  # fmt: skip


@pytest.fixture(scope="module")
def login_run(core_stack: Stack, core_login: browser.Login, tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    return run_suite("through mxgate (oidc login)", core_stack.gateway.mcp_url,
                     tmp_path_factory.mktemp("suite") / "login", bearer=core_login.tokens["access_token"])  # fmt: skip


# --- the tests -------------------------------------------------------------------------------


def test_direct_passes_are_the_recorded_ones(direct_run: SuiteRun) -> None:
    assert len(direct_run.checks) == 32, sorted(direct_run.checks)
    gained, lost = direct_run.passed - PASSING_DIRECTLY, PASSING_DIRECTLY - direct_run.passed
    assert not gained and not lost, f"gained: {sorted(gained)}, lost: {sorted(lost)}\n" + "\n".join(
        f"{s}: {direct_run.failures(s)}" for s in sorted(lost)
    )


@pytest.mark.parametrize("through", ["none_run", "login_run"])
def test_same_scenarios_pass_through_mxgate(through: str, direct_run: SuiteRun, request: pytest.FixtureRequest) -> None:
    run: SuiteRun = request.getfixturevalue(through)
    assert set(run.checks) == set(direct_run.checks)
    assert run.passed == direct_run.passed, f"{run.name} differs from direct:\n{differences(direct_run, run)}"
    # Stricter: every check ends the same way, failed ones with the same message.
    for scenario, checks in direct_run.checks.items():
        assert outcomes(run.checks[scenario]) == outcomes(checks), f"{scenario} differs {run.name}"


@pytest.mark.parametrize("through", ["none_run", "login_run"])
def test_dns_rebinding_protection_through_mxgate(through: str, request: pytest.FixtureRequest) -> None:
    run: SuiteRun = request.getfixturevalue(through)
    statuses = {c["id"]: c["status"] for c in run.checks[DNS_REBINDING]}
    assert statuses == {
        "localhost-host-rebinding-rejected": "SUCCESS",
        "localhost-host-valid-accepted": "SUCCESS",
    }, f"{run.name}: " + "\n".join(run.failures(DNS_REBINDING))
