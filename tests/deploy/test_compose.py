"""deploy/docker-compose.yml behaves as `make demo`: mxgate on http://127.0.0.1:8000 in front of
an MXCP core that only the compose network reaches, the demo OpenID provider at
http://127.0.0.1:9400 for mxgate and for the browser alike; the official MCP SDK client logs in
and whoami is alice; `down` leaves no container, network or volume behind."""

from __future__ import annotations

import pytest

from support import REPO, docker, inspect, leftovers, login_whoami, require_free_ports, require_images, run, wait_http

PROJECT = "mxgate-deploy-test"
COMPOSE = ["docker-compose", "-p", PROJECT, "-f", str(REPO / "deploy" / "docker-compose.yml")]


def compose(*args: str, timeout: float = 300, check: bool = True):
    return run([*COMPOSE, *args], timeout=timeout, check=check)


def service_container(service: str) -> str:
    names = docker("ps", "--filter", f"label=com.docker.compose.project={PROJECT}",
                   "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}").stdout.split()
    assert len(names) == 1, f"{service}: {names}"
    return names[0]


def project_resources() -> dict[str, list[str]]:
    return leftovers(f"com.docker.compose.project={PROJECT}")


@pytest.fixture
def compose_up():
    require_images("mxgate", "core", "idp")
    require_free_ports()
    compose("down", "-v", "--remove-orphans", check=False)
    try:
        compose("up", "-d", "--no-build")
        yield
    finally:
        logs = compose("logs", "--no-color", check=False)
        compose("down", "-v", "--remove-orphans", check=False)
        print(logs.stdout[-8000:])


def test_compose_demo_logs_alice_in_and_down_leaves_nothing(compose_up) -> None:
    logs = lambda: compose("logs", "--no-color", "--tail", "50", check=False).stdout  # noqa: E731
    wait_http("http://127.0.0.1:8000/healthz", logs=logs)
    wait_http("http://127.0.0.1:9400/.well-known/openid-configuration", logs=logs)

    # mxgate starts once the core accepts connections (its health check), so the first MCP
    # request after login cannot meet a core that is still starting.
    assert inspect(service_container("core"))["State"]["Health"]["Status"] == "healthy"
    whoami = login_whoami("http://127.0.0.1:8000/mcp")
    assert whoami["username"] == "alice", whoami
    assert whoami["email"] == "alice@example.test", whoami
    assert whoami["provider"] == "oidc", whoami
    assert whoami["has_external_token"] is True, whoami

    containers = {c: inspect(service_container(c)) for c in ("mxgate", "core", "idp")}
    # The core is reachable on the compose network only: no published port.
    core_ports = containers["core"]["NetworkSettings"]["Ports"] or {}
    assert all(not bindings for bindings in core_ports.values()), core_ports
    published = {p: b for p, b in (containers["mxgate"]["NetworkSettings"]["Ports"] or {}).items() if b}
    assert set(published) == {"8000/tcp", "9400/tcp"}, published
    assert all(b["HostIp"] == "127.0.0.1" for bs in published.values() for b in bs), published
    for name, c in containers.items():
        assert c["HostConfig"]["ReadonlyRootfs"] is True, name
        assert c["HostConfig"]["CapDrop"] == ["ALL"], name
        assert c["Config"]["User"] not in ("", "0", "root"), name

    compose("down", "-v", "--remove-orphans")
    assert project_resources() == {"container": [], "network": [], "volume": []}
