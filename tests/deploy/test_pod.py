"""The pod the chart renders, run in Docker from the images of `make image` (tests/deploy/pod.py:
one network namespace, the security contexts, ConfigMap/Secret/emptyDir/PVC volumes, as a
kubelet would): with the ConfigMap the chart renders (ci/pod-test-values.yaml, the demo),
every probe passes and the official MCP SDK client logs in through mxgate, whoami is alice.
The same for an existing core Deployment wrapped by the chart's sidecar patch
(ci/wrap-values.yaml, `kubectl patch --local`)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from pod import DockerPod
from support import documents, inspect, find, helm_template, login_whoami, require_free_ports, require_images, wait_http
from test_chart import EXISTING_CORE, POD_TEST, WRAP, patched_existing_core

SECRETS = {"mxgate-demo-secrets": {"oidc-client-secret": "mxgate-secret"}}


def configmaps(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}


def chart_pod() -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    docs = documents(helm_template([POD_TEST]).stdout)
    return find(docs, "Deployment")["spec"]["template"]["spec"], configmaps(docs)


def wrapped_pod(tmp_path: Path) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    docs = documents(helm_template([POD_TEST, WRAP], set_values=["mxgate.existingSecret=mxgate-demo-secrets"]).stdout)
    maps = configmaps(docs) | configmaps(documents(EXISTING_CORE.read_text()))
    return patched_existing_core(tmp_path)["spec"]["template"]["spec"], maps


def wait_probes(pod: DockerPod, spec: dict[str, Any], timeout: float = 90) -> None:
    """Every startup, readiness and liveness probe of every container passes."""
    deadline = time.monotonic() + timeout
    for c in spec["containers"]:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(kind)
            if not probe:
                continue
            while True:
                try:
                    pod.probe(c, probe)
                    break
                except (AssertionError, httpx.HTTPError) as e:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{c['name']} {kind} never passed: {e}\n{pod.logs()}") from e
                    time.sleep(0.5)


@pytest.mark.parametrize("variant", ["chart", "wrapped"])
def test_rendered_pod_logs_alice_in(variant: str, tmp_path: Path) -> None:
    require_images("mxgate", "core-demo", "idp")
    require_free_ports()
    spec, maps = chart_pod() if variant == "chart" else wrapped_pod(tmp_path)
    names = [c["name"] for c in spec["containers"]]
    assert "mxgate" in names and "core" in names
    pod = DockerPod(f"mxgate-pod-test-{uuid.uuid4().hex[:8]}", spec, configmaps=maps, secrets=SECRETS,
                    workdir=tmp_path / "volumes")  # fmt: skip
    try:
        pod.start()
        wait_http("http://127.0.0.1:8000/healthz", logs=pod.logs)
        wait_probes(pod, spec)
        whoami = login_whoami("http://127.0.0.1:8000/mcp")
        assert whoami["username"] == "alice", whoami
        assert whoami["email"] == "alice@example.test", whoami
        assert whoami["has_external_token"] is True, whoami
        # On the pod's own address mxgate answers and the core does not: it listens on the
        # pod's loopback only.
        pod_ip = inspect(pod.containers[0])["NetworkSettings"]["IPAddress"]
        assert httpx.get(f"http://{pod_ip}:8000/healthz", timeout=5).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"http://{pod_ip}:8001/mcp", timeout=5)
    except BaseException:
        print(pod.logs())
        raise
    finally:
        pod.stop()
