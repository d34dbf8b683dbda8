"""The servers the replica tests stand on (``redis_servers.py``), checked without mxgate: a
standalone Redis keeps its data across a restart only when persistent and honours its password;
the local Redis Cluster spreads keys over its three masters and answers through any of them;
HAProxy alternates between two backends, takes a killed one out after a failed health check,
retries elsewhere what it could not send to it, and takes it back once it answers again."""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from redis_servers import Load, RedisCluster, RedisServer, RoundRobin, servers_available
from support import Process, _tail, free_port

# A backend that names itself: any GET answers its name, /healthz answers ok.
NAMED_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name, port = sys.argv[1], int(sys.argv[2])
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = (b"ok" if self.path == "/healthz" else name.encode())
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


class NamedServer(Process):
    def __init__(self, workdir: Path, label: str) -> None:
        self.name = label
        super().__init__(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-c", NAMED_SERVER, self.name, str(self.port)]

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start:\n{_tail(self.log())}")


@pytest.fixture(scope="module", autouse=True)
def _servers_installed() -> None:
    if why := servers_available():
        pytest.fail(f"Redis or HAProxy missing: {why}")


def test_a_persistent_redis_keeps_its_data_across_restarts_and_a_plain_one_does_not(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "persistent", persistent=True, password="pw-e2e") as kept, \
         RedisServer(tmp_path / "plain") as lost:  # fmt: skip
        for server in (kept, lost):
            assert server.cli("SET", "greeting", "hello") == "OK"
            assert server.cli("GET", "greeting") == "hello"
        kept.restart()
        lost.restart()
        assert kept.cli("GET", "greeting") == "hello"
        assert lost.cli("GET", "greeting") == ""
        kept.kill()  # SIGKILL: appendfsync always loses nothing acknowledged
        kept.start()
        assert kept.cli("GET", "greeting") == "hello"
        assert kept.url == f"redis://127.0.0.1:{kept.port}/0" and "pw-e2e" in kept.url_with_password

        # The password is required: without it the server refuses.
        kept.password = None
        with pytest.raises(RuntimeError, match="NOAUTH"):
            kept.cli("GET", "greeting")
        kept.password = "pw-e2e"


def test_the_local_cluster_spreads_keys_over_three_masters(tmp_path: Path) -> None:
    with RedisCluster(tmp_path / "cluster", password="pw-e2e") as cluster:
        info = cluster.nodes[0].cli("CLUSTER", "INFO")
        assert "cluster_state:ok" in info and "cluster_size:3" in info, info
        for i in range(30):
            assert cluster.cli("SET", f"key-{i}", str(i)) == "OK"
        assert [cluster.cli("GET", f"key-{i}") for i in range(30)] == [str(i) for i in range(30)]
        per_node = [len(node.keys()) for node in cluster.nodes]
        assert sum(per_node) == 30 and all(per_node), f"keys per master: {per_node}"
        # A node asked for another node's key redirects (MOVED) instead of answering.
        foreign = next(k for k in (f"key-{i}" for i in range(30)) if k not in cluster.nodes[0].keys())
        with pytest.raises(RuntimeError, match="MOVED"):
            cluster.nodes[0].cli("GET", foreign)
        assert cluster.urls == [f"redis://127.0.0.1:{n.port}" for n in cluster.nodes]


@pytest.fixture
def two_backends(tmp_path: Path) -> Iterator[tuple[RoundRobin, list[NamedServer]]]:
    backends = [NamedServer(tmp_path / name, name).start() for name in ("one", "two")]
    proxy = RoundRobin(tmp_path / "haproxy", [b.url for b in backends])
    try:
        proxy.start()
        yield proxy, backends
    finally:
        proxy.stop()
        for b in backends:
            b.stop()


def test_haproxy_round_robins_drops_a_killed_backend_and_takes_it_back(
    two_backends: tuple[RoundRobin, list[NamedServer]],
) -> None:
    proxy, (one, two) = two_backends
    with httpx.Client(timeout=5) as kept_alive:  # one connection: still balanced per request
        names = [kept_alive.get(proxy.url + "/who").text for _ in range(6)]
    assert names in (["one", "two"] * 3, ["two", "one"] * 3), names
    # HAProxy writes its log line after the response: give the last one a moment to arrive.
    deadline = time.monotonic() + 3
    while Counter(server for server, _ in proxy.served()) != {"r0": 3, "r1": 3} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Counter(server for server, _ in proxy.served()) == {"r0": 3, "r1": 3}

    # Load from two threads while `two` is killed.
    with Load(lambda client: client.get(proxy.url + "/who"), threads=2) as load:
        time.sleep(0.5)
        killed_at = time.monotonic()
        two.stop(signal.SIGKILL)
        dropped_at = proxy.wait_state("r1", "DOWN", timeout=5)
        time.sleep(1.0)
    assert dropped_at - killed_at < 1.5, f"dropped {dropped_at - killed_at:.2f} s after the kill"
    load.assert_failover(killed_at, dropped_at)
    assert {httpx.get(proxy.url + "/who", timeout=5).text for _ in range(4)} == {"one"}

    two.start()
    proxy.wait_state("r1", "UP", timeout=5)
    assert {httpx.get(proxy.url + "/who", timeout=5).text for _ in range(4)} == {"one", "two"}
