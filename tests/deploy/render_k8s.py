"""Writes deploy/k8s/mxgate.yaml: the Helm chart rendered with deploy/k8s/values.yaml, without
Helm's own labels and comments, so the plain manifests run exactly the chart's sidecar.

    target/py/deploy/bin/python tests/deploy/render_k8s.py          # write
    target/py/deploy/bin/python tests/deploy/render_k8s.py --check  # fail if out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from support import REPO, documents, helm_template  # noqa: E402

OUT = REPO / "deploy" / "k8s" / "mxgate.yaml"
VALUES = REPO / "deploy" / "k8s" / "values.yaml"
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
HEADER = """\
# mxgate next to an MXCP core in one pod, as plain manifests (namespace `mcp`). Generated from the
# Helm chart (helm/mxgate) with deploy/k8s/values.yaml by tests/deploy/render_k8s.py; edit those,
# not this file. See deploy/k8s/README.md.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the config files in the ConfigMap) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def strip(doc: dict) -> dict:
    labels = doc["metadata"].get("labels", {})
    for key in HELM_LABELS:
        labels.pop(key, None)
    annotations = doc["metadata"].get("annotations") or {}
    annotations.pop("helm.sh/resource-policy", None)
    if "annotations" in doc["metadata"] and not annotations:
        del doc["metadata"]["annotations"]
    return doc


def render() -> str:
    docs = [strip(d) for d in documents(helm_template([VALUES], release="mxgate", namespace="mcp").stdout)]
    order = ["ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Service", "Deployment", "NetworkPolicy"]
    docs.sort(key=lambda d: order.index(d["kind"]) if d["kind"] in order else len(order))
    body = "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=120) for d in docs)
    return HEADER + "---\n" + body


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(REPO)} is out of date: run tests/deploy/render_k8s.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
