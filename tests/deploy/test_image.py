"""The images of deploy/: mxgate starts with a read-only root filesystem as a non-root user,
with no tmpfs at all (its state is in the /data volume), serves its OAuth metadata, reports
healthy through its own health check (the image has no shell and no curl), and keeps its
signing key in the volume across a restart. The core image serves MCP read-only as non-root."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from support import IMAGES, TEST_LABEL, docker, free_port, inspect, require_images, wait_http

MXCP_CONFIG = {
    "mxcp": 1,
    "projects": {"demo": {"profiles": {"default": {"auth": {
        "provider": "oidc",
        "oidc": {
            # Discovery happens on first use: no provider is needed to serve the metadata.
            "config_url": "http://127.0.0.1:9/.well-known/openid-configuration",
            "client_id": "mxgate",
            "client_secret": "file:///etc/mxgate/client-secret",
            "scope": "openid email",
            "callback_path": "/callback",
        },
    }}}}},
}


def _uid_of(container: str) -> int:
    pid = inspect(container)["State"]["Pid"]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


@pytest.fixture
def mxgate_container(tmp_path: Path):
    require_images("mxgate")
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    config = tmp_path / "etc"
    config.mkdir(mode=0o755)
    config.chmod(0o755)
    (config / "mxgate.yml").write_text(yaml.safe_dump({
        "listen": "0.0.0.0:8000", "upstream": "http://127.0.0.1:8001", "public_url": public_url,
        "data_dir": "/data", "mxcp_config": "/etc/mxgate/mxcp.yml",
    }))
    (config / "mxcp.yml").write_text(yaml.safe_dump(MXCP_CONFIG))
    (config / "client-secret").write_text("not-a-real-secret\n")
    for f in config.iterdir():
        f.chmod(0o644)
    name = f"mxgate-image-test-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-data"
    docker("volume", "create", "--label", TEST_LABEL, volume)
    run_args = [
        "run", "-d", "--label", TEST_LABEL, "--read-only", "--user", "65532:65532", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--health-interval", "1s", "--health-start-period", "1s",
        "-v", f"{config}:/etc/mxgate:ro", "-v", f"{volume}:/data", "-p", f"127.0.0.1:{port}:8000",
    ]

    def start() -> str:
        docker(*run_args, "--name", name, IMAGES["mxgate"])
        return name

    def stop() -> None:
        docker("rm", "-f", name, check=False)

    try:
        yield public_url, start, stop, name
    finally:
        stop()
        docker("volume", "rm", "-f", volume, check=False)


def test_mxgate_runs_read_only_as_non_root_and_serves_metadata(mxgate_container) -> None:
    public_url, start, stop, name = mxgate_container
    start()
    logs = lambda: docker("logs", name, check=False).stderr  # noqa: E731
    wait_http(public_url + "/healthz", logs=logs)

    state = inspect(name)
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    assert not state["HostConfig"].get("Tmpfs"), "mxgate needs no tmpfs"
    assert state["Config"]["User"] == "65532:65532"
    assert _uid_of(name) == 65532

    prm = httpx.get(public_url + "/.well-known/oauth-protected-resource/mcp").json()
    assert prm["resource"] == public_url + "/mcp"
    assert prm["authorization_servers"] == [public_url]
    asm = httpx.get(public_url + "/.well-known/oauth-authorization-server").json()
    assert asm["issuer"] == public_url
    assert asm["code_challenge_methods_supported"] == ["S256"]
    jwks = httpx.get(public_url + "/.well-known/jwks.json").json()
    assert jwks["keys"] and jwks["keys"][0]["kty"] == "OKP"
    challenge = httpx.post(public_url + "/mcp", json={})
    assert challenge.status_code == 401
    assert "resource_metadata=" in challenge.headers["www-authenticate"]
    # Ready only with its core and identity provider, neither of which runs here: /readyz says so
    # (and the orchestrator keeps the pod out of the Service), while /healthz (liveness) is fine.
    ready = httpx.get(public_url + "/readyz", timeout=10)
    assert ready.status_code == 503, ready.text
    reasons = " ".join(ready.json()["reasons"])
    assert "upstream 127.0.0.1:8001 unreachable" in reasons and "discovery" in reasons, reasons

    # The image's own HEALTHCHECK (`mxgate healthcheck`, no shell) turns the container healthy.
    checks = 0
    while inspect(name)["State"]["Health"]["Status"] != "healthy":
        checks += 1
        assert checks < 60, inspect(name)["State"]["Health"]
        time.sleep(0.5)
    log = inspect(name)["State"]["Health"]["Log"][-1]
    assert log["ExitCode"] == 0 and "healthy: GET http://127.0.0.1:8000/healthz" in log["Output"], log

    # The signing key lives in the /data volume: the same key after a restart.
    kid = jwks["keys"][0]["kid"]
    stop()
    start()
    wait_http(public_url + "/healthz", logs=logs)
    assert httpx.get(public_url + "/.well-known/jwks.json").json()["keys"][0]["kid"] == kid


def test_mxgate_image_defaults() -> None:
    require_images("mxgate")
    config = inspect(IMAGES["mxgate"])["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/usr/local/bin/mxgate"]
    assert config["Cmd"] == ["serve", "--config", "/etc/mxgate/mxgate.yml"]
    assert "/data" in config["Volumes"]
    assert config["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/mxgate", "healthcheck"]
    assert "8000/tcp" in config["ExposedPorts"]


def test_core_image_serves_mcp_read_only_as_non_root(tmp_path: Path) -> None:
    require_images("core-demo")
    port = free_port()
    config = tmp_path / "mxcp"
    config.mkdir()
    config.chmod(0o755)
    (config / "config.yml").write_text(yaml.safe_dump({
        "mxcp": 1,
        "transport": {"provider": "streamable-http", "http": {"host": "0.0.0.0", "port": 8001}},
        "projects": {"mxgate-demo-core": {"profiles": {"default": {"auth": {"provider": "none"}}}}},
    }))
    (config / "config.yml").chmod(0o644)
    name = f"mxgate-core-image-test-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "-d", "--name", name, "--label", TEST_LABEL, "--read-only", "--tmpfs", "/tmp",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "-v", f"{config}:/etc/mxcp:ro",
        "-e", "MXGATE_ASSERTION_ISSUER=http://127.0.0.1:8000",
        "-e", "MXGATE_JWKS_URL=http://127.0.0.1:8000/.well-known/jwks.json",
        "-p", f"127.0.0.1:{port}:8001", IMAGES["core-demo"],
    )
    try:
        assert inspect(name)["Config"]["User"] == "10001:10001"
        assert _uid_of(name) == 10001
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        headers = {"accept": "application/json, text/event-stream"}
        last = ""
        for _ in range(120):
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/mcp", json=body, headers=headers, timeout=5)
                if r.status_code == 200:
                    break
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.5)
        else:
            raise AssertionError(f"core did not answer: {last}\n{docker('logs', name, check=False).stderr[-3000:]}")
        assert "mxgate-demo-core" in r.text or "serverInfo" in r.text, r.text
    finally:
        docker("rm", "-f", name, check=False)
