"""Real servers for running several mxgate replicas: Debian's ``redis-server`` (standalone, and a
local 3-master Redis Cluster), Debian's HAProxy as a round-robin proxy in front of the replicas,
and :class:`Replicas`, the whole stack (IdP + N mxgate with one Redis store + HAProxy [+ core]).

Everything runs as the test's own processes on free loopback ports, each in its own temp
directory with its log (see :class:`support.Process`); no system service is used.
``scripts/setup.sh`` installs the packages (``redis-server``, ``redis-tools``, ``haproxy``);
``MXGATE_REDIS_SERVER``, ``MXGATE_REDIS_CLI`` and ``MXGATE_HAPROXY_BIN`` override the binaries.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from support import MXGATE_BIN, Core, Gateway, IdP, Process, ProcessGroup, _tail, free_port, logs, oidc_auth_block

REDIS_SERVER = os.environ.get("MXGATE_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = os.environ.get("MXGATE_REDIS_CLI") or shutil.which("redis-cli") or "/usr/bin/redis-cli"
HAPROXY_BIN = os.environ.get("MXGATE_HAPROXY_BIN") or shutil.which("haproxy") or "/usr/sbin/haproxy"
CLUSTER_MASTERS = 3
# How often HAProxy checks each replica's /healthz; one failed check takes a replica out.
HEALTH_CHECK_INTERVAL = "200ms"
# redis-cli exits 0 on an error reply and prints it like a value: these first words mark one.
ERROR_REPLIES = {"ERR", "NOAUTH", "WRONGPASS", "NOPERM", "LOADING", "BUSY", "CLUSTERDOWN", "MOVED", "ASK",
                 "TRYAGAIN", "WRONGTYPE", "READONLY", "MASTERDOWN", "EXECABORT", "NOSCRIPT"}  # fmt: skip


def servers_available() -> str | None:
    """Why Redis or HAProxy cannot run here, or None."""
    missing = [f"{p} (run scripts/setup.sh)" for p in (REDIS_SERVER, REDIS_CLI, HAPROXY_BIN) if not Path(p).exists()]
    return ", ".join(missing) or None


# --------------------------------------------------------------------------------------------
# Redis


class RedisServer(Process):
    """One ``redis-server`` on 127.0.0.1:``port`` with its data in its own directory.

    ``persistent``: append-only file with ``appendfsync always`` (a restart, even after
    SIGKILL, keeps every acknowledged write); otherwise nothing is saved (``--save ''``,
    ``--appendonly no``) and a restart starts empty. ``password`` sets ``requirepass``.
    ``cluster``: a cluster node (see :class:`RedisCluster`). RDB files are written
    uncompressed so :meth:`dump` can be searched for plaintext."""

    def __init__(self, workdir: Path, *, persistent: bool = False, password: str | None = None,
                 cluster: bool = False, port: int | None = None) -> None:  # fmt: skip
        self.port = port or free_port()
        self.name = f"redis-{self.port}"
        super().__init__(workdir)
        self.persistent = persistent
        self.password = password
        self.cluster = cluster
        # The cluster bus port must be free too (the default, port + 10000, may not even exist).
        self.bus_port = free_port() if cluster else None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, without the password."""
        return f"redis://{self.address}" + ("" if self.cluster else "/0")

    @property
    def url_with_password(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.address}" + ("" if self.cluster else "/0")

    def command(self) -> list[str]:
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
            "--protected-mode", "no", "--daemonize", "no", "--logfile", "", "--save", "",
            "--rdbcompression", "no", "--dbfilename", "dump.rdb",
        ]  # fmt: skip
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "2000", "--cluster-port", str(self.bus_port)]  # fmt: skip
        return args

    def wait_ready(self, deadline: float) -> None:
        answer = "no answer"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                answer = self.cli("PING", timeout=2)
                if answer == "PONG":
                    return
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                answer = str(e)
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start ({answer}):\n{_tail(self.log())}")

    def cli(self, *args: str, timeout: float = 10) -> str:
        """``redis-cli`` against this server (authenticated); stdout without the final newline.
        Raises when redis-cli fails or the server answers an error."""
        cmd = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port)]
        if self.password:
            cmd += ["--no-auth-warning", "-a", self.password]
        r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)
        out = r.stdout.rstrip("\n")
        if r.returncode != 0 or out.split(" ", 1)[0] in ERROR_REPLIES:
            raise RuntimeError(f"redis-cli {' '.join(args)} on {self.address}: {out} {r.stderr.strip()}")
        return out

    def keys(self) -> list[str]:
        """Every key on this server (SCAN, so safe on a busy server)."""
        return [k for k in self.cli("--scan", timeout=30).splitlines() if k]

    def dump(self) -> bytes:
        """Everything this server holds, as bytes: an uncompressed RDB written now (SAVE)."""
        self.cli("SAVE", timeout=30)
        return (self.workdir / "dump.rdb").read_bytes()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save."""
        self.stop(signal.SIGKILL)

    def restart(self) -> "RedisServer":
        """SIGTERM (Redis flushes its append-only file), then start on the same port and dir."""
        self.stop()
        return self.start()  # type: ignore[return-value]


class RedisCluster(ProcessGroup):
    """A local Redis Cluster of three masters (no replicas), each a :class:`RedisServer` with
    ``cluster-enabled yes``, joined with ``redis-cli --cluster create ... --cluster-yes``.
    Ready when every node reports ``cluster_state:ok``."""

    def __init__(self, workdir: Path, *, password: str | None = None, persistent: bool = False) -> None:
        self.workdir = workdir
        self.password = password
        self.nodes = [
            RedisServer(workdir / f"node-{i}", cluster=True, password=password, persistent=persistent)
            for i in range(CLUSTER_MASTERS)
        ]  # fmt: skip

    @property
    def urls(self) -> list[str]:
        """The nodes' ``redis://127.0.0.1:PORT`` URLs (no password), for ``store.cluster``."""
        return [n.url for n in self.nodes]

    @property
    def processes(self) -> list[Process]:
        return list(self.nodes)

    def start_processes(self, deadline: float) -> None:
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_ready(deadline)
        self._create()
        self.wait_ok(deadline)

    def _create(self) -> None:
        cmd = [REDIS_CLI, "--cluster", "create", *(n.address for n in self.nodes), "--cluster-replicas", "0",
               "--cluster-yes"]  # fmt: skip
        if self.password:
            cmd += ["--no-auth-warning", "-a", self.password]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        (self.workdir / "create.log").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed ({r.returncode}):\n{r.stdout}{r.stderr}")

    def wait_ok(self, deadline: float) -> None:
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            for node in self.nodes:
                info = node.cli("CLUSTER", "INFO")
                states[node.address] = next(
                    (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("cluster_state:")),
                    "?",
                )  # fmt: skip
            if all(s == "ok" for s in states.values()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Redis Cluster did not reach cluster_state:ok: {states}\n{self.logs()}")

    def cli(self, *args: str) -> str:
        """``redis-cli -c`` (follows MOVED redirections) through the first node."""
        node = self.nodes[0]
        cmd = [REDIS_CLI, "-c", "-h", "127.0.0.1", "-p", str(node.port)]
        if self.password:
            cmd += ["--no-auth-warning", "-a", self.password]
        r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise RuntimeError(f"redis-cli -c {' '.join(args)}: {r.stdout}{r.stderr}")
        return r.stdout.rstrip("\n")

    def keys(self) -> list[str]:
        return [k for node in self.nodes for k in node.keys()]

    def dump(self) -> bytes:
        return b"".join(node.dump() for node in self.nodes)



Redis = RedisServer | RedisCluster


# --------------------------------------------------------------------------------------------
# HAProxy


class RoundRobin(Process):
    """Debian's HAProxy on 127.0.0.1:``port``, balancing HTTP requests round-robin over
    ``backends`` (base URLs ``http://127.0.0.1:PORT``, named ``r0``, ``r1``, ...).

    Each backend's ``/healthz`` is checked every 200 ms and one failed check takes it out
    (``fall 1``), one good check brings it back (``rise 1``). A request whose connection to a
    backend fails is retried (``retries 3``, ``retry-on conn-failure``) on another backend
    (``option redispatch 1``), so requests sent to a replica that just died are not lost.
    The admin socket (``show stat``, :meth:`states`) listens on its own loopback port; the
    request log (``option httplog``, one line per request naming the backend that served it)
    and the backends' state changes go to the log file."""

    name = "haproxy"

    def __init__(self, workdir: Path, backends: list[str] | None = None, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mcp_url = self.url + "/mcp"
        self.backends = list(backends or [])
        self.config_path = workdir / "haproxy.cfg"

    @property
    def server_names(self) -> list[str]:
        return [f"r{i}" for i in range(len(self.backends))]

    def write_config(self) -> None:
        checks = " ".join(f"{kind} {HEALTH_CHECK_INTERVAL}" for kind in ("inter", "fastinter", "downinter"))
        servers = "\n".join(
            f"  server {name} {url.removeprefix('http://')} check"
            for name, url in zip(self.server_names, self.backends)
        )  # fmt: skip
        self.config_path.write_text(f"""global
  log stdout format raw local0 info
  stats socket ipv4@127.0.0.1:{self.admin_port} level admin
  maxconn 4096

defaults
  mode http
  log global
  option httplog
  option forwardfor
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive 10s
  retries 3
  retry-on conn-failure
  option redispatch 1

frontend mxgate
  bind 127.0.0.1:{self.port}
  default_backend replicas

backend replicas
  balance roundrobin
  option httpchk
  http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host 127.0.0.1
  http-check expect status 200
  default-server {checks} fall 1 rise 1
{servers}
""")  # fmt: skip

    def command(self) -> list[str]:
        return [HAPROXY_BIN, "-db", "-f", str(self.config_path)]

    def launch(self) -> None:
        self.write_config()
        check = subprocess.run([HAPROXY_BIN, "-c", "-f", str(self.config_path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refuses {self.config_path}:\n{check.stdout}{check.stderr}")
        super().launch()

    def wait_ready(self, deadline: float) -> None:
        """Until every backend has passed its health check (so the rotation is complete)."""
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                states = self.states()
                if states and all(s == "UP" for s in states.values()):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"haproxy: not every backend is up ({states}):\n{_tail(self.log())}")

    def admin(self, command: str) -> str:
        """One command on the admin socket (e.g. ``show stat``); its whole answer."""
        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=5) as s:
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Backend server name → its status as HAProxy sees it (``UP``, ``DOWN``, ...)."""
        text = self.admin("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            row["svname"]: row["status"] for row in rows
            if row.get("pxname") == "replicas" and row["svname"] not in ("FRONTEND", "BACKEND")
        }  # fmt: skip

    def wait_state(self, server: str, state: str, timeout: float = 10.0) -> float:
        """Polls until ``server`` is in ``state``; returns the monotonic time it was first seen."""
        deadline = time.monotonic() + timeout
        seen = "?"
        while time.monotonic() < deadline:
            seen = self.states().get(server, "?")
            if seen == state:
                return time.monotonic()
            time.sleep(0.02)
        raise AssertionError(f"haproxy: {server} is {seen}, not {state}, after {timeout} s:\n{_tail(self.log())}")

    def served(self) -> list[tuple[str, str]]:
        """(backend server, request line) of every request logged so far."""
        out = []
        for line in self.log().splitlines():
            # ... mxgate replicas/r1 0/0/0/1/1 200 123 - - ---- 1/1/0/0/0 0/0 "GET /path HTTP/1.1"
            parts = line.split()
            if "mxgate" in parts:
                i = parts.index("mxgate")
                if i + 1 < len(parts) and parts[i + 1].startswith("replicas/") and '"' in line:
                    out.append((parts[i + 1].removeprefix("replicas/"), line[line.index('"') + 1 : line.rindex('"')]))
        return out


class Load:
    """``threads`` threads, each with its own kept-alive client, sending ``request(client)`` in
    a loop while the ``with`` block runs; :attr:`results` holds (sent, answered, status code or
    error) of every request, in monotonic time."""

    def __init__(self, request: Callable[[httpx.Client], httpx.Response], threads: int = 4) -> None:
        self.request = request
        self.results: list[tuple[float, float, int | str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    status: int | str = self.request(client).status_code
                except httpx.HTTPError as e:
                    status = repr(e)
                self.results.append((sent, time.monotonic(), status))

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def assert_failover(self, killed_at: float, dropped_at: float) -> None:
        """After a backend was killed at ``killed_at`` and dropped by the proxy at
        ``dropped_at``: no request sent after the drop failed (and more than 20 were sent), and
        before it at most one per thread did — the one the dead backend had taken, or one sent
        on a kept-alive connection to it that the proxy had not yet seen closed (HAProxy
        retries connection failures, not requests a backend took)."""
        failed = [r for r in self.results if r[2] != 200]
        after_drop = [r for r in self.results if r[0] >= dropped_at]
        took = dropped_at - killed_at
        print(f"{len(self.results)} requests, {len(failed)} failed, dropped {took:.2f} s after the kill")
        assert len(after_drop) > 20, f"only {len(after_drop)} requests after the drop"
        assert all(r[2] == 200 for r in after_drop), [r for r in after_drop if r[2] != 200][:5]
        assert all(sent < dropped_at and answered > killed_at for sent, answered, _ in failed), failed[:5]
        assert len(failed) <= len(self._threads), f"more failures than threads: {failed[:5]}"


# --------------------------------------------------------------------------------------------
# mxgate replicas


class Replica(Gateway):
    """An mxgate replica: a :class:`support.Gateway` with its own port, data dir and log, and
    extra environment variables (secret references such as ``${E2E_REDIS_PASSWORD}``)."""

    def __init__(self, workdir: Path, upstream: str, *, env: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(workdir, upstream, **kw)
        self.name = workdir.name
        self.extra_env = env or {}

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra_env}


def with_encryption_key(key: str) -> Callable[[str], dict[str, Any]]:
    """The MXCP ``auth`` block (oidc at the test IdP) with ``persistence.auth_encryption_key``,
    which every replica must share (it seals records and signs cookies)."""

    def auth(issuer: str) -> dict[str, Any]:
        return {**oidc_auth_block(issuer), "persistence": {"auth_encryption_key": key}}

    return auth


class Replicas(ProcessGroup):
    """``count`` mxgate replicas sharing one Redis store behind a :class:`RoundRobin`, logging
    in at one IdP, forwarding to ``upstream`` or to one real MXCP core (``with_core``).

    Every replica has the HAProxy address as ``public_url`` (so issuer, callback URL and the
    assertion's ``iss`` are the same everywhere), the ``store`` section given, and the MXCP
    config's ``persistence.auth_encryption_key``; each has its own port, data dir and log. The
    core fetches the JWKS through HAProxy, i.e. from any replica."""

    def __init__(self, workdir: Path, redis: Redis, store: dict[str, Any], encryption_key: str, *,
                 count: int = 3, upstream: str | None = None, with_core: bool = False,
                 idp_args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 gateway_extra: dict[str, Any] | None = None, core_env: dict[str, str] | None = None,
                 log_level: str | None = None) -> None:  # fmt: skip
        self.workdir = workdir
        self.redis = redis
        self.proxy = RoundRobin(workdir / "haproxy")
        public = self.proxy.url
        self.core: Core | None = None
        if with_core:
            self.core = Core(workdir / "core", public, public + "/.well-known/jwks.json", env=core_env)
            upstream = self.core.url
        assert upstream, "an upstream or with_core=True"
        extra = {"public_url": public, "store": store, "threads": 1, **(gateway_extra or {})}
        self.gateways = [
            Replica(workdir / f"mxgate-{i}", upstream, env=env, extra=extra, auth=with_encryption_key(encryption_key),
                    log_level=log_level)
            for i in range(count)
        ]  # fmt: skip
        self.proxy.backends = [gw.url for gw in self.gateways]
        self.idp = IdP(workdir / "idp", [public + "/callback"], *idp_args)

    @property
    def url(self) -> str:
        """The public URL: HAProxy."""
        return self.proxy.url

    @property
    def processes(self) -> list[Process]:
        """Its own processes, in start order (Redis is the caller's to start and stop)."""
        core = [self.core] if self.core else []
        return [*core, self.idp, *self.gateways, self.proxy]

    def start_processes(self, deadline: float) -> None:
        if self.core:
            self.core.launch()  # slowest; starts while the others come up
        self.idp.start()
        for gw in self.gateways:
            gw.write_config(self.idp.issuer)
            gw.launch()
        for gw in self.gateways:
            gw.wait_ready(deadline)
        self.proxy.start()  # ready once every replica passed its health check
        if self.core:
            self.core.wait_ready(deadline)

    def restart_replica(self, index: int, *, wipe_data: bool = False) -> Replica:
        """Stops replica ``index`` (SIGTERM), optionally empties its data dir, starts it, and
        waits until HAProxy has it back in the rotation."""
        gw = self.gateways[index]
        gw.stop(signal.SIGTERM)
        if wipe_data and gw.data_dir.exists():
            shutil.rmtree(gw.data_dir)
        gw.start()
        self.proxy.wait_state(self.proxy.server_names[index], "UP")
        return gw

    def logs(self) -> str:
        redis = self.redis.processes if isinstance(self.redis, RedisCluster) else [self.redis]
        return logs(*self.processes, *redis)


def store_rejected(config_dir: Path, store: dict[str, Any]) -> str | None:
    """Runs ``mxgate check`` on a config with this ``store`` section; returns mxgate's message
    when it does not know the store type ("unknown store"), else None."""
    gw = Gateway(config_dir, "http://127.0.0.1:9", extra={"store": store},
                 auth=with_encryption_key("x" * 43))  # fmt: skip
    gw.write_config("http://127.0.0.1:9")
    r = subprocess.run([str(MXGATE_BIN), "check", "--config", str(gw.config_path)], capture_output=True,
                       text=True, env=gw.env(), timeout=60)  # fmt: skip
    out = r.stdout + r.stderr
    return out.strip() if "unknown store" in out else None
