"""The Helm chart (helm/mxgate) and the plain manifests (deploy/k8s): `helm lint`, rendering over
every values file in helm/mxgate/ci, validation of every rendered manifest against the
Kubernetes 1.31 schemas (kubernetes-validate, strict), checkov with no failed check, and what
the chart promises: the core on 127.0.0.1 with only mxgate's port in the Service, hardened
security contexts, probes on /healthz and /readyz, one replica for the redb store, and a sidecar
patch that adds mxgate to an existing core Deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import CHART, CHECKOV, HELM, KUBECTL, KUBERNETES_VERSION, REPO, documents, find, helm_template, run

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
POD_TEST = CHART / "ci" / "pod-test-values.yaml"
WRAP = CHART / "ci" / "wrap-values.yaml"
EXISTING_CORE = Path(__file__).parent / "fixtures" / "existing-core.yaml"
K8S_DIR = REPO / "deploy" / "k8s"
# Kinds outside the Kubernetes schemas (CRDs of other projects).
CRD_KINDS = {"ServiceMonitor"}


def rendered(values: Path) -> list[dict[str, Any]]:
    return documents(helm_template([values]).stdout)


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]


def patched_existing_core(tmp_path: Path) -> dict[str, Any]:
    """The wrap mode end to end: render with the wrap values, take the sidecar patch out of its
    ConfigMap and apply it to the existing Deployment with `kubectl patch --local` (a real
    strategic merge)."""
    docs = documents(helm_template([POD_TEST, WRAP], set_values=["mxgate.existingSecret=mxgate-demo-secrets"]).stdout)
    patch = find(docs, "ConfigMap", "mxgate-sidecar-patch")["data"]["patch.yaml"]
    (tmp_path / "patch.yaml").write_text(patch)
    existing = [d for d in documents(EXISTING_CORE.read_text()) if d["kind"] == "Deployment"]
    (tmp_path / "existing.yaml").write_text(yaml.safe_dump(existing[0]))
    out = run([KUBECTL, "patch", "--local", "-f", tmp_path / "existing.yaml", "--type", "strategic",
               "--patch-file", tmp_path / "patch.yaml", "-o", "json"])  # fmt: skip
    return json.loads(out.stdout)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint(values: Path) -> None:
    out = run([HELM, "lint", "--strict", CHART, "-f", values])
    assert "0 chart(s) failed" in out.stdout


def test_every_manifest_validates_against_the_kubernetes_schemas(tmp_path: Path) -> None:
    files = []
    for values in CI_VALUES:
        f = tmp_path / f"{values.stem}.yaml"
        f.write_text(helm_template([values]).stdout)
        files.append(f)
    wrapped = tmp_path / "wrapped-deployment.yaml"
    wrapped.write_text(yaml.safe_dump(patched_existing_core(tmp_path)))
    files += [wrapped, EXISTING_CORE, K8S_DIR / "mxgate.yaml"]
    out = run([REPO / "target/py/deploy/bin/kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, *files], check=False)
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("ERROR")]
    assert out.returncode == 0 and not errors, out.stdout + out.stderr
    unvalidated = {line.split("kind ")[1].split()[0] for line in out.stdout.splitlines() if "Couldn't find schema" in line}
    assert unvalidated <= CRD_KINDS, unvalidated
    validated = sum(1 for line in out.stdout.splitlines() if " passed for resource " in line)
    expected = sum(1 for f in files for d in documents(Path(f).read_text()) if d["kind"] not in CRD_KINDS)
    assert validated == expected, out.stdout


def test_service_monitor_shape() -> None:
    docs = rendered(CHART / "ci" / "full-values.yaml")
    sm = find(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    service = find(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    assert not [d for d in rendered(CHART / "ci" / "default-values.yaml") if d["kind"] == "ServiceMonitor"]


def test_checkov_finds_no_failed_check(tmp_path: Path) -> None:
    scan = tmp_path / "scan"
    scan.mkdir()
    for values in CI_VALUES:
        (scan / f"{values.stem}.yaml").write_text(helm_template([values]).stdout)
    (scan / "wrapped-deployment.yaml").write_text(yaml.safe_dump(patched_existing_core(tmp_path)))
    (scan / "k8s-mxgate.yaml").write_text((K8S_DIR / "mxgate.yaml").read_text())
    out = run([CHECKOV, "--compact", "--skip-download", "--framework", "kubernetes", "-d", scan,
               "--output", "json"], check=False, timeout=600)  # fmt: skip
    report = json.loads(out.stdout)
    report = report if isinstance(report, dict) else report[0]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert not failed, failed
    assert report["summary"]["passed"] > 300, report["summary"]
    for skipped in report["results"]["skipped_checks"]:
        assert skipped["check_id"] in {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_35"}, skipped["check_id"]
        assert len(skipped.get("check_result", {}).get("suppress_comment", "")) > 20, skipped


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_containers_are_hardened(values: Path, tmp_path: Path) -> None:
    docs = rendered(values)
    specs = pod_specs(docs)
    if values == WRAP:
        specs = [patched_existing_core(tmp_path)["spec"]["template"]["spec"]]
        mxgate_only = True
    else:
        mxgate_only = False
    assert specs
    for spec in specs:
        assert spec["automountServiceAccountToken"] is False or mxgate_only
        for c in spec["containers"]:
            if mxgate_only and c["name"] != "mxgate":
                continue
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", c["name"]
            assert "limits" in c["resources"] and "requests" in c["resources"], c["name"]


def test_core_listens_on_loopback_and_only_mxgate_is_in_the_service() -> None:
    docs = rendered(CHART / "ci" / "default-values.yaml")
    config = find(docs, "ConfigMap")["data"]
    core_config = yaml.safe_load(config["core-config.yml"])
    assert core_config["transport"]["http"] == {"host": "127.0.0.1", "port": 8001}
    assert core_config["projects"]["my-project"]["profiles"]["default"]["auth"] == {"provider": "none"}
    gateway = yaml.safe_load(config["mxgate.yml"])
    assert gateway["upstream"] == "http://127.0.0.1:8001"
    assert gateway["listen"] == "0.0.0.0:8000"
    assert gateway["data_dir"] == "/data"
    assert gateway["mxcp_config"] == "/etc/mxgate/config/mxcp-config.yml"
    assert gateway["store"] == {"type": "redb", "purge_interval": "5m"}
    service = find(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    (spec,) = pod_specs(docs)
    containers = {c["name"]: c for c in spec["containers"]}
    assert set(containers) == {"core", "mxgate"}
    assert "ports" not in containers["core"]
    assert containers["mxgate"]["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    mounts = {m["mountPath"]: m["name"] for m in containers["mxgate"]["volumeMounts"]}
    assert mounts["/etc/mxgate/config"] == "mxgate-config" and mounts["/data"] == "mxgate-data"
    assert containers["mxgate"]["args"] == ["serve", "--config", "/etc/mxgate/config/mxgate.yml"]
    env = {e["name"]: e["value"] for e in containers["core"]["env"]}
    assert env["MXGATE_JWKS_URL"] == "http://127.0.0.1:8000/.well-known/jwks.json"
    assert env["MXGATE_ASSERTION_ISSUER"] == "https://mcp.example.com"
    policy = find(docs, "NetworkPolicy")
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


def test_probes_and_persistence() -> None:
    docs = rendered(CHART / "ci" / "default-values.yaml")
    (spec,) = pod_specs(docs)
    mxgate = next(c for c in spec["containers"] if c["name"] == "mxgate")
    assert mxgate["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert mxgate["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert mxgate["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    data = next(v for v in spec["volumes"] if v["name"] == "mxgate-data")
    pvc = find(docs, "PersistentVolumeClaim")
    assert data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert find(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}

    ephemeral = rendered(CHART / "ci" / "ephemeral-values.yaml")
    assert not [d for d in ephemeral if d["kind"] == "PersistentVolumeClaim"]
    (spec,) = pod_specs(ephemeral)
    assert next(v for v in spec["volumes"] if v["name"] == "mxgate-data") == {"name": "mxgate-data", "emptyDir": {}}
    assert find(ephemeral, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


@pytest.mark.parametrize(("sets", "message"), [
    (["workload.replicaCount=2"], "the redb store on a PersistentVolumeClaim serves one replica"),
    (["mxgate.config.public_url="], "mxgate.config.public_url is required"),
    (["workload.create=false"], "workload.create: false needs workload.existingPodLabels"),
    (["podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=1", "podDisruptionBudget.maxUnavailable=1"],
     "set minAvailable or maxUnavailable, not both"),
])  # fmt: skip
def test_bad_values_fail_with_a_clear_message(sets: list[str], message: str) -> None:
    out = helm_template(set_values=sets, check=False)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_several_replicas_without_persistence_render() -> None:
    docs = documents(helm_template(set_values=["workload.replicaCount=3", "persistence.enabled=false"]).stdout)
    deployment = find(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}


def test_wrap_mode_patches_an_existing_core_deployment(tmp_path: Path) -> None:
    docs = documents(helm_template([POD_TEST, WRAP], set_values=["mxgate.existingSecret=mxgate-demo-secrets"]).stdout)
    assert not [d for d in docs if d["kind"] == "Deployment"]
    assert find(docs, "Service")["spec"]["selector"] == {"app": "my-core"}
    assert find(docs, "NetworkPolicy")["spec"]["podSelector"] == {"matchLabels": {"app": "my-core"}}
    assert "core-config.yml" not in find(docs, "ConfigMap", "mxgate")["data"]

    deployment = patched_existing_core(tmp_path)
    spec = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    assert sorted(containers) == ["core", "mxgate", "oidc-provider"]
    core_env = {e["name"]: e["value"] for e in containers["core"]["env"]}
    assert core_env["MXCP_CONFIG"] == "/etc/mxcp/config.yml", "the existing env is kept"
    assert core_env["MXGATE_ASSERTION_ISSUER"] == "http://127.0.0.1:8000"
    assert core_env["MXGATE_JWKS_URL"] == "http://127.0.0.1:8000/.well-known/jwks.json"
    assert containers["core"]["image"] == "mxgate/mxcp-core-demo:local", "the core is unchanged"
    volumes = {v["name"] for v in spec["volumes"]}
    assert volumes == {"core-config", "core-data", "core-tmp", "mxgate-config", "mxgate-secrets", "mxgate-data"}
    assert spec["securityContext"]["fsGroup"] == 65532
    assert spec["securityContext"]["runAsNonRoot"] is True, "the existing pod security context is kept"


def test_deploy_k8s_is_the_chart_rendered() -> None:
    """deploy/k8s/mxgate.yaml is `helm template` with deploy/k8s/values.yaml, without Helm's own
    labels (tests/deploy/render_k8s.py writes it): the plain manifests run the same sidecar."""
    out = run([REPO / "target/py/deploy/bin/python", Path(__file__).parent / "render_k8s.py", "--check"], check=False)
    assert out.returncode == 0, out.stdout + out.stderr
