"""The Helm chart (helm/mxgate) and the plain manifests (deploy/k8s): `helm lint`, rendering over
every values file in helm/mxgate/ci, validation of every rendered manifest against the
Kubernetes 1.31 schemas (kubernetes-validate, strict), checkov with no failed check, and what
the chart promises: the core on 127.0.0.1 with only mxgate's port in the Service, hardened
security contexts, probes on /healthz and /readyz, one replica for the redb store, several on the
Redis store (the mxgate.yml mxgate reads, the password from a Secret, no volume claim), and a
sidecar patch that adds mxgate to an existing core Deployment."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import CHART, CHECKOV, HELM, KUBECTL, KUBERNETES_VERSION, REPO, documents, find, helm_template, run

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
POD_TEST = CHART / "ci" / "pod-test-values.yaml"
WRAP = CHART / "ci" / "wrap-values.yaml"
REDIS = CHART / "ci" / "redis-values.yaml"
EXISTING_CORE = Path(__file__).parent / "fixtures" / "existing-core.yaml"
K8S_DIR = REPO / "deploy" / "k8s"
# Kinds outside the Kubernetes schemas (CRDs of other projects).
CRD_KINDS = {"ServiceMonitor"}


def rendered(values: Path) -> list[dict[str, Any]]:
    return documents(helm_template([values]).stdout)


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]


def gateway_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The mxgate.yml mxgate reads, from the chart's ConfigMap."""
    return yaml.safe_load(find(docs, "ConfigMap", "mxgate")["data"]["mxgate.yml"])


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


DASHBOARD = REPO / "deploy" / "grafana" / "mxgate-dashboard.json"
# What mxgate exports (src/metrics/mod.rs), as Prometheus names them.
MXGATE_METRICS = {
    "mxgate_requests_total", "mxgate_authentications_total", "mxgate_logins_total",
    "mxgate_provider_refreshes_total", "mxgate_active_sessions", "mxgate_rate_limited_total",
    "mxgate_assertions_minted_total", "mxgate_tokens_issued_total", "mxgate_tokens_refreshed_total",
    "mxgate_tokens_revoked_total", "mxgate_build_info",
    *(f"mxgate_{h}_seconds_{s}" for h in ("upstream_duration", "store_duration") for s in ("bucket", "sum", "count")),
}  # fmt: skip
DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h)", duration))


def test_service_monitor_shape() -> None:
    """The ServiceMonitor is a CRD (no schema in kubernetes-validate): its shape is checked here,
    as the Prometheus Operator reads it: it selects the chart's Service, whose `admin` port goes
    to mxgate's admin listener, and scrapes /metrics there."""
    docs = rendered(CHART / "ci" / "full-values.yaml")
    sm = find(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm) == {"apiVersion", "kind", "metadata", "spec"}
    assert sm["metadata"]["name"] and sm["metadata"]["namespace"]
    assert sm["metadata"]["labels"]["release"] == "prometheus", "the labels Prometheus selects by"
    assert set(sm["spec"]) == {"selector", "endpoints"}
    service = find(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"] == [{"port": "admin", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    (endpoint,) = sm["spec"]["endpoints"]
    assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
    assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["admin"] == {"name": "admin", "port": 9464, "targetPort": "admin", "protocol": "TCP"}
    mxgate = next(c for c in pod_specs(docs)[0]["containers"] if c["name"] == "mxgate")
    assert {"name": "admin", "containerPort": 9464, "protocol": "TCP"} in mxgate["ports"]
    assert gateway_config(docs)["admin_listen"] == "0.0.0.0:9464"
    for values in (CHART / "ci" / "default-values.yaml", POD_TEST):
        assert not [d for d in rendered(values) if d["kind"] == "ServiceMonitor"]


def test_metrics_off_by_default_and_their_port_only_for_the_monitoring() -> None:
    default = rendered(CHART / "ci" / "default-values.yaml")
    assert "admin_listen" not in gateway_config(default)
    assert [p["name"] for p in find(default, "Service")["spec"]["ports"]] == ["http"]
    assert not [d for d in default if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]

    full = rendered(CHART / "ci" / "full-values.yaml")
    ingress = find(full, "NetworkPolicy")["spec"]["ingress"]
    admin = [rule for rule in ingress if rule["ports"] == [{"port": "admin", "protocol": "TCP"}]]
    assert admin == [{"ports": [{"port": "admin", "protocol": "TCP"}], "from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}]  # fmt: skip
    ingress_paths = find(full, "Ingress")["spec"]["rules"][0]["http"]["paths"]
    assert {p["backend"]["service"]["port"]["name"] for p in ingress_paths} == {"http"}, "admin never on the Ingress"

    # Wrap mode: the sidecar patch carries the admin port too.
    docs = documents(helm_template([POD_TEST, WRAP], set_values=["metrics.enabled=true"]).stdout)
    patch = yaml.safe_load(find(docs, "ConfigMap", "mxgate-sidecar-patch")["data"]["patch.yaml"])
    mxgate = next(c for c in patch["spec"]["template"]["spec"]["containers"] if c["name"] == "mxgate")
    assert {"name": "admin", "containerPort": 9464, "protocol": "TCP"} in mxgate["ports"]


def test_dashboard_configmap_holds_the_grafana_dashboard() -> None:
    docs = rendered(CHART / "ci" / "full-values.yaml")
    cm = find(docs, "ConfigMap", "mxgate-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1", "the Grafana sidecar's label"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "MCP"}
    assert json.loads(cm["data"]["mxgate-dashboard.json"]) == json.loads(DASHBOARD.read_text())


def test_dashboard_is_grafana_json_over_mxgates_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    assert dashboard["__inputs"] == [{"name": "DS_PROMETHEUS", "label": "Prometheus",
                                      "description": "The Prometheus that scrapes mxgate's admin listener",
                                      "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}]  # fmt: skip
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource", "provisioned (sidecar) copies resolve it too"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    used: set[str] = set()
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys() and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\bmxgate_[a-z_]+", target["expr"]))
    assert used <= MXGATE_METRICS, used - MXGATE_METRICS
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("request", "status", "authentication", "login", "session", "upstream", "store", "rate-limit"):
        assert topic in titles, topic
    assert any("histogram_quantile" in t["expr"] for p in panels for t in p["targets"])


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


REDB_REPLICAS = "workload.replicaCount 2 needs store.type: redis: the redb store serves one replica"
NO_ENCRYPTION_KEY = ("store.type: redis needs the MXCP config's "
                     "projects.my-project.profiles.default.auth.persistence.auth_encryption_key")


@pytest.mark.parametrize(("sets", "message"), [
    (["workload.replicaCount=2"], REDB_REPLICAS),
    (["workload.replicaCount=2", "persistence.enabled=false"], REDB_REPLICAS),
    (["store.type=postgres"], 'store.type "postgres" is not a store: redb (one replica) or redis'),
    (["mxgate.config.public_url="], "mxgate.config.public_url is required"),
    (["workload.create=false"], "workload.create: false needs workload.existingPodLabels"),
    (["podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=1", "podDisruptionBudget.maxUnavailable=1"],
     "set minAvailable or maxUnavailable, not both"),
    (["serviceMonitor.enabled=true"], "serviceMonitor moved to metrics.serviceMonitor"),
    (["metrics.serviceMonitor.enabled=true"], "metrics.serviceMonitor.enabled needs metrics.enabled"),
    (["metrics.enabled=true", "metrics.port=8000"], "metrics.port 8000 is mxgate.port: the admin listener needs its own port"),
])  # fmt: skip
def test_bad_values_fail_with_a_clear_message(sets: list[str], message: str) -> None:
    out = helm_template(set_values=sets, check=False)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


@pytest.mark.parametrize(("sets", "message"), [
    (["store.redis.url="], "store.type: redis needs exactly one of store.redis.url (one server), "
                           "store.redis.cluster (node URLs) and store.redis.sentinel ({urls, service}); given: none"),
    (["store.redis.cluster[0]=redis://n1:6379"], "exactly one of store.redis.url"),
    (["store.redis.url=", "store.redis.sentinel.urls[0]=redis://s1:26379"], "store.redis.sentinel needs urls"),
    (["store.redis.url=http://redis:6379"], '"http://redis:6379" is not a Redis URL'),
    (["store.redis.url=redis://:hunter2@redis:6379"], "put no password in a Redis URL"),
    (["persistence.existingClaim=old-data"], "persistence.existingClaim is not used with store.type: redis"),
    (["mxgate.mxcpConfig.projects.my-project.profiles.default.auth.persistence=null"], NO_ENCRYPTION_KEY),
    (["mxgate.mxcpConfig.projects.my-project.profiles.default.auth.persistence.auth_encryption_key="], NO_ENCRYPTION_KEY),
])  # fmt: skip
def test_bad_redis_values_fail_with_a_clear_message(sets: list[str], message: str) -> None:
    out = helm_template([REDIS], set_values=sets, check=False)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_redis_store_renders_what_mxgate_reads() -> None:
    """ci/redis-values.yaml: three replicas on one Redis; mxgate.yml's store section is the one
    mxgate parses (src/config/gateway_file.rs), its password a `${VAR}` reference to an env var
    filled from the Secret's key; /data is an emptyDir (no claim); pods are replaced one by one."""
    docs = rendered(REDIS)
    gateway = gateway_config(docs)
    assert gateway["store"] == {
        "type": "redis",
        "url": "rediss://redis.mcp.svc.cluster.local:6379/0",
        "key_prefix": "mxgate-prod:",
        "outage_grace": "30s",
        "password": "${MXGATE_REDIS_PASSWORD}",
        "purge_interval": "5m",
    }
    assert gateway["data_dir"] == "/data"
    deployment = find(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    spec = deployment["spec"]["template"]["spec"]
    assert next(v for v in spec["volumes"] if v["name"] == "mxgate-data") == {"name": "mxgate-data", "emptyDir": {}}
    mxgate = next(c for c in spec["containers"] if c["name"] == "mxgate")
    password = [e for e in mxgate["env"] if e["name"] == "MXGATE_REDIS_PASSWORD"]
    assert password == [{"name": "MXGATE_REDIS_PASSWORD",
                         "valueFrom": {"secretKeyRef": {"name": "redis-credentials", "key": "password"}}}]  # fmt: skip
    assert "envFrom" not in mxgate, "only the password is in the environment"
    assert find(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    mxcp = yaml.safe_load(find(docs, "ConfigMap", "mxgate")["data"]["mxcp-config.yml"])
    auth = mxcp["projects"]["my-project"]["profiles"]["default"]["auth"]
    assert auth["persistence"]["auth_encryption_key"] == "file:///etc/mxgate/secrets/auth-encryption-key"


def test_redis_cluster_and_sentinel_and_no_password() -> None:
    base = ["store.redis.url=", "store.redis.existingSecret="]
    cluster = documents(helm_template([REDIS], set_values=[
        *base, "store.redis.cluster[0]=redis://n1:6379", "store.redis.cluster[1]=redis://n2:6379"]).stdout)  # fmt: skip
    store = gateway_config(cluster)["store"]
    assert store["cluster"] == ["redis://n1:6379", "redis://n2:6379"]
    assert "url" not in store and "sentinel" not in store and "password" not in store
    mxgate = next(c for c in pod_specs(cluster)[0]["containers"] if c["name"] == "mxgate")
    assert "MXGATE_REDIS_PASSWORD" not in {e["name"] for e in mxgate["env"]}
    assert "checkov.io/skip3" not in find(cluster, "Deployment")["metadata"]["annotations"]

    sentinel = documents(helm_template([REDIS], set_values=[
        *base, "store.redis.sentinel.urls[0]=redis://s1:26379", "store.redis.sentinel.service=mymaster"]).stdout)  # fmt: skip
    store = gateway_config(sentinel)["store"]
    assert store["sentinel"] == {"urls": ["redis://s1:26379"], "service": "mymaster"}
    assert "url" not in store and "cluster" not in store


def test_redis_in_wrap_mode_puts_the_password_env_and_an_empty_dir_in_the_patch() -> None:
    docs = documents(helm_template([REDIS, WRAP], set_values=["mxgate.config.project=my-project"]).stdout)
    assert not [d for d in docs if d["kind"] in ("Deployment", "PersistentVolumeClaim")]
    patch = yaml.safe_load(find(docs, "ConfigMap", "mxgate-sidecar-patch")["data"]["patch.yaml"])
    spec = patch["spec"]["template"]["spec"]
    mxgate = next(c for c in spec["containers"] if c["name"] == "mxgate")
    env = {e["name"]: e for e in mxgate["env"]}
    assert env["MXGATE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-credentials", "key": "password"}
    assert {"name": "mxgate-data", "emptyDir": {}} in spec["volumes"]


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
