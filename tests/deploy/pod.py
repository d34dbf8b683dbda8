"""Runs the pod of a rendered Deployment in Docker, as a kubelet would, closely enough to test it:

- the containers share one network namespace (``--network container:<first>``), so the core
  bound to 127.0.0.1 is reachable from mxgate and from nothing else;
- each container's security context becomes Docker options (``--user``, ``--read-only``,
  ``--cap-drop``, ``no-new-privileges``); ``runAsNonRoot`` with uid 0 is refused as kubelet does;
- the pod's ``fsGroup`` is a supplementary group of every container and owns the writable
  volumes (setgid, group-writable), as kubelet's volume ownership management does;
- volumes: a ConfigMap or Secret becomes a read-only directory with its keys (``items`` and
  modes honoured; Secret files owned by root:fsGroup), an ``emptyDir`` a Docker volume (a tmpfs
  for ``medium: Memory`` used by one container), a PersistentVolumeClaim a Docker volume;
- ``env`` values, ``envFrom`` Secrets, ``workingDir``, ``command``/``args`` and memory/CPU limits.

What it cannot do raises (``valueFrom``, unknown volume kinds): the test then fails rather than
run something other than what the chart renders.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx

from support import TEST_LABEL, docker

HELPER_IMAGE = "mxgate-test/debian:bookworm"


class DockerPod:
    def __init__(self, name: str, pod_spec: dict[str, Any], *, configmaps: dict[str, dict[str, str]],
                 secrets: dict[str, dict[str, str]], workdir: Path) -> None:  # fmt: skip
        self.name = name
        self.spec = pod_spec
        self.configmaps = configmaps
        self.secrets = secrets
        self.workdir = workdir
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.pod_sc = pod_spec.get("securityContext") or {}
        self.fs_group = self.pod_sc.get("fsGroup")

    # --- volumes ---------------------------------------------------------------------------------
    def _users_of(self, volume: str) -> int:
        return sum(1 for c in self.spec["containers"] for m in c.get("volumeMounts", []) if m["name"] == volume)

    def _files_dir(self, volume: dict[str, Any], data: dict[str, str], default_mode: int, group: int | None) -> Path:
        d = self.workdir / volume["name"]
        d.mkdir(parents=True)
        d.chmod(0o755)
        source = volume.get("configMap") or volume.get("secret") or {}
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            assert item["key"] in data, f"volume {volume['name']}: no key {item['key']}"
            f = d / item["path"]
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(data[item["key"]])
            f.chmod(item.get("mode", default_mode))
            if group is not None:
                shutil.chown(f, 0, group)
        return d

    def _docker_volume(self, suffix: str) -> str:
        name = f"{self.name}-{suffix}"
        docker("volume", "create", "--label", TEST_LABEL, name)
        self.volumes.append(name)
        if self.fs_group is not None:
            docker("run", "--rm", "--label", TEST_LABEL, "-v", f"{name}:/v", HELPER_IMAGE,
                   "sh", "-c", f"chgrp {self.fs_group} /v && chmod 2775 /v")  # fmt: skip
        return name

    def _prepare_volumes(self) -> dict[str, tuple[str, Any]]:
        """volume name → ("bind", dir) | ("volume", docker volume) | ("tmpfs", size)."""
        prepared: dict[str, tuple[str, Any]] = {}
        for v in self.spec.get("volumes", []):
            if "configMap" in v:
                data = self.configmaps[v["configMap"]["name"]]
                prepared[v["name"]] = ("bind", self._files_dir(v, data, v["configMap"].get("defaultMode", 0o644), None))
            elif "secret" in v:
                data = self.secrets[v["secret"]["secretName"]]
                prepared[v["name"]] = ("bind", self._files_dir(v, data, v["secret"].get("defaultMode", 0o644), self.fs_group))
            elif "emptyDir" in v:
                empty = v["emptyDir"] or {}
                if empty.get("medium") == "Memory" and self._users_of(v["name"]) == 1:
                    prepared[v["name"]] = ("tmpfs", empty.get("sizeLimit", "64Mi").replace("Mi", "m"))
                else:
                    prepared[v["name"]] = ("volume", self._docker_volume(v["name"]))
            elif "persistentVolumeClaim" in v:
                prepared[v["name"]] = ("volume", self._docker_volume("pvc-" + v["persistentVolumeClaim"]["claimName"]))
            else:
                raise NotImplementedError(f"volume kind of {v}")
        return prepared

    # --- containers ------------------------------------------------------------------------------
    def _security_args(self, c: dict[str, Any]) -> list[str]:
        sc = {**{k: v for k, v in self.pod_sc.items() if k in ("runAsUser", "runAsGroup", "runAsNonRoot")},
              **(c.get("securityContext") or {})}  # fmt: skip
        uid = sc.get("runAsUser")
        assert uid is not None, f"{c['name']}: no runAsUser (the image's user would be used)"
        if sc.get("runAsNonRoot"):
            assert uid != 0, f"{c['name']}: runAsNonRoot with uid 0: kubelet refuses to start it"
        args = ["--user", f"{uid}:{sc.get('runAsGroup', uid)}"]
        if self.fs_group is not None:
            args += ["--group-add", str(self.fs_group)]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        caps = sc.get("capabilities") or {}
        for cap in caps.get("drop", []):
            args += ["--cap-drop", cap]
        for cap in caps.get("add", []):
            args += ["--cap-add", cap]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        assert not sc.get("privileged"), f"{c['name']}: privileged"
        seccomp = (sc.get("seccompProfile") or self.pod_sc.get("seccompProfile") or {}).get("type")
        assert seccomp in (None, "RuntimeDefault"), f"{c['name']}: seccomp {seccomp}"
        return args

    def _env_args(self, c: dict[str, Any]) -> list[str]:
        args = []
        for src in c.get("envFrom", []):
            if "secretRef" in src:
                for k, v in self.secrets[src["secretRef"]["name"]].items():
                    args += ["-e", f"{k}={v}"]
            else:
                raise NotImplementedError(f"envFrom {src}")
        for e in c.get("env", []):
            if "valueFrom" in e:
                raise NotImplementedError(f"env valueFrom {e}")
            args += ["-e", f"{e['name']}={e.get('value', '')}"]
        return args

    def _mount_args(self, c: dict[str, Any], prepared: dict[str, tuple[str, Any]]) -> list[str]:
        args = []
        for m in c.get("volumeMounts", []):
            kind, what = prepared[m["name"]]
            assert "subPath" not in m, "subPath is not emulated"
            ro = ":ro" if m.get("readOnly") else ""
            if kind == "bind":  # ConfigMap and Secret volumes are read-only in Kubernetes
                args += ["-v", f"{what}:{m['mountPath']}:ro"]
            elif kind == "volume":
                args += ["-v", f"{what}:{m['mountPath']}{ro}"]
            else:
                args += ["--tmpfs", f"{m['mountPath']}:rw,size={what},mode=1777"]
        return args

    def _resource_args(self, c: dict[str, Any]) -> list[str]:
        limits = (c.get("resources") or {}).get("limits") or {}
        args = []
        if "memory" in limits:
            mem = str(limits["memory"])
            args += ["--memory", mem.replace("Mi", "m").replace("Gi", "g")]
        if "cpu" in limits:
            cpu = str(limits["cpu"])
            args += ["--cpus", str(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu))]
        return args

    def container_name(self, container: str) -> str:
        return f"{self.name}-{container}"

    def start(self) -> None:
        prepared = self._prepare_volumes()
        ports = [p for c in self.spec["containers"] for p in c.get("ports", [])]
        first = None
        for c in self.spec.get("initContainers", []):
            raise NotImplementedError(f"init container {c['name']}")
        for c in self.spec["containers"]:
            name = self.container_name(c["name"])
            args = ["run", "-d", "--name", name, "--label", TEST_LABEL]
            if first is None:
                # The first container owns the pod's network namespace; ports are published on it.
                for p in ports:
                    args += ["-p", f"127.0.0.1:{p['containerPort']}:{p['containerPort']}"]
            else:
                args += ["--network", f"container:{first}"]
            args += self._security_args(c) + self._env_args(c) + self._mount_args(c, prepared) + self._resource_args(c)
            if c.get("workingDir"):
                args += ["-w", c["workingDir"]]
            command = list(c.get("command") or [])
            if command:
                args += ["--entrypoint", command[0]]
            assert c.get("imagePullPolicy") == "Never" or docker("image", "inspect", c["image"], check=False).returncode == 0
            docker(*args, c["image"], *command[1:], *[str(a) for a in c.get("args", [])])
            self.containers.append(name)
            first = first or name

    def logs(self) -> str:
        out = []
        for name in self.containers:
            p = docker("logs", "--tail", "60", name, check=False)
            out.append(f"===== {name}\n{p.stdout}{p.stderr}")
        return "\n".join(out)

    def probe(self, container: dict[str, Any], probe: dict[str, Any]) -> None:
        """Runs one probe as kubelet would: httpGet from outside the pod (its published port),
        exec inside the container. Raises when it fails."""
        if "httpGet" in probe:
            port = probe["httpGet"]["port"]
            if isinstance(port, str):
                port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
            r = httpx.get(f"http://127.0.0.1:{port}{probe['httpGet'].get('path', '/')}", timeout=probe.get("timeoutSeconds", 1))
            assert 200 <= r.status_code < 400, f"{container['name']} probe {probe}: {r.status_code}"
        elif "exec" in probe:
            p = docker("exec", self.container_name(container["name"]), *probe["exec"]["command"], check=False,
                       timeout=probe.get("timeoutSeconds", 1) + 10)  # fmt: skip
            assert p.returncode == 0, f"{container['name']} probe {probe}: exit {p.returncode} {p.stderr[-500:]}"
        elif "tcpSocket" in probe:
            raise NotImplementedError("tcpSocket probes")

    def stop(self) -> None:
        for name in reversed(self.containers):
            docker("rm", "-f", name, check=False)
        for v in self.volumes:
            docker("volume", "rm", "-f", v, check=False)
        self.containers, self.volumes = [], []
