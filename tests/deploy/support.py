"""Helpers of the deploy tests: running commands, waiting for HTTP endpoints, logging in with the
official MCP SDK client (scripts/demo_client.py, in its own process), rendering the Helm chart.

Every container, network and volume a test makes is labelled ``mxgate-deploy-test`` so that a
test can check it left nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / "target" / "deploy" / "bin" / "helm"
KUBECTL = REPO / "target" / "deploy" / "bin" / "kubectl"
CHART = REPO / "helm" / "mxgate"
CLIENT_PYTHON = REPO / "target" / "py" / "client" / "bin" / "python"
CHECKOV = REPO / "target" / "py" / "checkov" / "bin" / "checkov"
KUBERNETES_VERSION = "1.31.0"
TEST_LABEL = "mxgate-deploy-test"
TAG = os.environ.get("MXGATE_IMAGE_TAG", "local")
IMAGES = {
    "mxgate": f"mxgate/mxgate:{TAG}",
    "core": f"mxgate/mxcp-core:{TAG}",
    "core-demo": f"mxgate/mxcp-core-demo:{TAG}",
    "idp": f"mxgate/oidc-provider:{TAG}",
}
# The demo's fixed addresses (as `make demo`): mxgate and the OpenID provider's issuer.
DEMO_PORTS = (8000, 9400)


def run(cmd: list[str | Path], *, timeout: float = 300, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Runs ``cmd``; on failure (with ``check``) raises with its output."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["docker", *args], timeout=timeout, check=check)


def inspect(name: str) -> dict[str, Any]:
    return json.loads(docker("inspect", name).stdout)[0]


def require_images(*keys: str) -> None:
    missing = [IMAGES[k] for k in keys if docker("image", "inspect", IMAGES[k], check=False).returncode != 0]
    assert not missing, f"images missing: {missing}; build them with `make image`"


def require_free_ports(ports: tuple[int, ...] = DEMO_PORTS) -> None:
    busy = []
    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    assert not busy, f"127.0.0.1 ports {busy} are in use (an earlier `make demo`?); the demo needs them free"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, *, timeout: float = 60, status: int = 200, logs: Any = None) -> httpx.Response:
    """GETs ``url`` until it answers ``status``; on timeout raises with ``logs()`` when given."""
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=3)
            if r.status_code == status:
                return r
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer {status} within {timeout} s (last: {last})\n{logs() if logs else ''}")


def login_whoami(mcp_url: str) -> dict[str, Any]:
    """Runs scripts/demo_client.py (the MCP Python SDK: discovery, registration, PKCE login through
    the consent page and the provider, tools/call whoami) and returns whoami's answer."""
    proc = run([CLIENT_PYTHON, REPO / "scripts" / "demo_client.py", mcp_url], timeout=180, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"demo client failed ({proc.returncode}):\n{out[-6000:]}"
    m = re.search(r"^whoami → (\{.*\})$", proc.stdout, re.M)
    assert m, f"no whoami answer in:\n{out[-4000:]}"
    return json.loads(m.group(1))


def helm_template(values: list[Path] | None = None, *, release: str = "mxgate", namespace: str = "mcp",
                  set_values: list[str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd: list[str | Path] = [HELM, "template", release, CHART, "--namespace", namespace]
    for v in values or []:
        cmd += ["-f", v]
    for s in set_values or []:
        cmd += ["--set", s]
    return run(cmd, timeout=60, check=check)


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def leftovers(label: str = TEST_LABEL) -> dict[str, list[str]]:
    """Containers, networks and volumes still carrying ``label``."""
    found = {}
    for kind, fmt in (("container", "{{.Names}}"), ("network", "{{.Name}}"), ("volume", "{{.Name}}")):
        args = [kind, "ls", "--filter", f"label={label}", "--format", fmt]
        if kind == "container":
            args = ["ps", "-a", "--filter", f"label={label}", "--format", fmt]
        found[kind] = [x for x in docker(*args).stdout.split() if x]
    return found
