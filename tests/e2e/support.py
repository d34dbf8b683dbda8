"""Real processes for the end-to-end tests: the OpenID provider fixture, the MXCP core, mxgate,
and small in-process HTTP upstreams (a header-recording echo server and an SSE source).

Every process writes its combined output to a log file in its own temp directory; failures
in the tests include those logs (see :func:`logs`). Processes run in their own process group
and are stopped with SIGTERM (SIGINT for the core), then killed after a timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

REPO = Path(__file__).resolve().parents[2]
MXGATE_BIN = Path(os.environ.get("MXGATE_BIN", REPO / "target" / "debug" / "mxgate"))
CORE_PYTHON = Path(os.environ.get("MXGATE_CORE_PYTHON", REPO / "target" / "py" / "core" / "bin" / "python"))
IDP_DIR = REPO / "tests" / "fixtures" / "oidc-provider"
DEMO_CORE = REPO / "demo" / "core"
ADAPTER_SRC = REPO / "deploy" / "mxcp-core" / "src"

IDP_CLIENT_ID = "mxgate"
IDP_CLIENT_SECRET = "mxgate-secret"
SECRET_ENV = "MXGATE_E2E_OIDC_CLIENT_SECRET"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
PROTOCOL_VERSION = "2025-06-18"
# `rate_limits` with every limit off (0).
UNLIMITED_RATES = {
    "per_address": {k: 0 for k in ("register", "authorize", "consent", "login", "callback", "token", "revoke", "logout")},
    "per_client": {k: 0 for k in ("authorize", "token", "revoke")},
}
ASSERTION_HEADER = "x-mxcp-user-assertion"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(text: str, limit: int = 6000) -> str:
    return text if len(text) <= limit else "...\n" + text[-limit:]


class Process:
    """A subprocess with a log file, started in its own process group."""

    name = "process"
    stop_signal = signal.SIGTERM

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # subclasses set these
    def command(self) -> list[str]:
        raise NotImplementedError

    def cwd(self) -> Path:
        return self.workdir

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def wait_ready(self, deadline: float) -> None:
        raise NotImplementedError

    def launch(self) -> None:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        log = self.log_path.open("ab")
        log.write(f"\n===== start {' '.join(self.command())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.command(), cwd=self.cwd(), env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        log.close()

    def start(self) -> "Process":
        self.launch()
        try:
            self.wait_ready(time.monotonic() + STARTUP_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{_tail(self.log())}")

    def stop(self, sig: signal.Signals | None = None) -> int | None:
        """Send ``sig`` (default :attr:`stop_signal`), wait, then kill. Returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(sig or self.stop_signal)
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        return proc.returncode

    def logs(self) -> str:
        return logs(self)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> "Process":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class IdP(Process):
    """tests/fixtures/oidc-provider on a free port, as the upstream identity provider."""

    name = "idp"

    def __init__(self, workdir: Path, redirect_uris: list[str], *extra: str) -> None:
        super().__init__(workdir)
        self.redirect_uris = redirect_uris
        self.extra = extra
        self.issuer = ""

    def command(self) -> list[str]:
        args = ["node", str(IDP_DIR / "server.js"), "--port", "0"]
        for uri in self.redirect_uris:
            args += ["--redirect-uri", uri]
        return args + list(self.extra)

    def cwd(self) -> Path:
        return IDP_DIR

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.check_alive()
            m = re.search(r"^ready (\S+)$", self.log(), re.M)
            if m:
                self.issuer = m.group(1)
                return
            time.sleep(0.05)
        raise RuntimeError(f"idp did not start:\n{_tail(self.log())}")


class Core(Process):
    """The MXCP demo core (``python -m mxgate_core serve``) verifying mxgate's assertions."""

    name = "core"
    stop_signal = signal.SIGINT

    def __init__(self, workdir: Path, issuer: str, jwks_url: str, ca_file: Path | None = None,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(workdir)
        # Extra MXGATE_* settings of the adapter (MXGATE_JWKS_MAX_AGE, say).
        self.extra_env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = issuer
        self.jwks_url = jwks_url
        # The CA of an https mxgate, for the core's JWKS fetches (httpx reads SSL_CERT_FILE).
        self.ca_file = ca_file

    def command(self) -> list[str]:
        return [str(CORE_PYTHON), "-m", "mxgate_core", "serve", "--transport", "streamable-http",
                "--port", str(self.port)]  # fmt: skip

    def cwd(self) -> Path:
        return DEMO_CORE

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MXGATE_", "MXCP_"))}
        env.update(
            MXCP_CONFIG=str(DEMO_CORE / "config.yml"),
            MXCP_DUCKDB_PATH=str(self.workdir / "core.duckdb"),
            MXCP_DISABLE_ANALYTICS="1",
            MXGATE_ASSERTION_ISSUER=self.issuer,
            MXGATE_JWKS_URL=self.jwks_url,
            PYTHONUNBUFFERED="1",
            # This checkout's adapter, whichever checkout the core's environment was built from.
            PYTHONPATH=os.pathsep.join(p for p in (str(ADAPTER_SRC), env.get("PYTHONPATH", "")) if p),
        )
        env.update(self.extra_env)
        if self.ca_file:
            env["SSL_CERT_FILE"] = str(self.ca_file)
        return env

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                httpx.get(self.url + "/mcp", headers={"host": f"127.0.0.1:{self.port}"}, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"core did not start:\n{_tail(self.log())}")


def oidc_auth_block(idp_issuer: str) -> dict[str, Any]:
    """The MXCP `auth` block for the `oidc` provider at the test IdP."""
    return {
        "provider": "oidc",
        "oidc": {
            "config_url": f"{idp_issuer}/.well-known/openid-configuration",
            "client_id": IDP_CLIENT_ID,
            "client_secret": "${" + SECRET_ENV + "}",
            "scope": "openid profile email groups",
            "callback_path": "/callback",
        },
    }


class Gateway(Process):
    """mxgate with its own generated mxgate.yml, MXCP user config and fresh data dir."""

    name = "mxgate"
    stop_signal = signal.SIGINT  # fast shutdown for teardown; tests pass SIGTERM explicitly

    def __init__(self, workdir: Path, upstream: str, *, port: int | None = None,
                 tokens: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
                 auth: Callable[[str], dict[str, Any]] | None = None,
                 transport: dict[str, Any] | None = None,
                 log_level: str | None = None, ca_file: Path | None = None) -> None:  # fmt: skip
        super().__init__(workdir)
        # Extra keys of the MXCP config's `transport.http` (trust_proxy, base_url, stateless).
        self.transport = transport or {}
        # `auth(idp_issuer)` gives the MXCP `auth` block; the default is the oidc provider at the IdP.
        self.auth = auth or oidc_auth_block
        self.log_level = log_level or os.environ.get("MXGATE_E2E_LOG", "info")
        self.port = port or free_port()
        # With `ca_file` mxgate serves https (the test puts the `tls` block in `extra`) with a
        # certificate from that CA; `verify` is what clients of this gateway trust.
        self.verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.port}"
        self.mcp_url = self.url + "/mcp"
        self.callback_url = self.url + "/callback"
        self.upstream = upstream
        self.tokens = tokens or {}
        self.extra = extra or {}
        self.data_dir = workdir / "data"
        self.config_path = workdir / "mxgate.yml"
        self.idp: IdP | None = None

    def write_config(self, idp_issuer: str) -> None:
        mxgate_yml: dict[str, Any] = {
            "listen": f"127.0.0.1:{self.port}",
            "upstream": self.upstream,
            "public_url": self.url,
            "mcp_path": "/mcp",
            "data_dir": "data",
            "threads": 2,
            "mxcp_config": "mxcp-config.yml",
            "project": "e2e",
            "profile": "default",
        }
        if self.tokens:
            mxgate_yml["tokens"] = self.tokens
        # Every test logs in from 127.0.0.1; rate limits are off unless a test sets them
        # (test_limits.py tests them). MXGATE_E2E_BEFORE_LIMITS=1 leaves the key out, to run a
        # test against a binary from before the limits existed (proving it fails there).
        if not os.environ.get("MXGATE_E2E_BEFORE_LIMITS"):
            mxgate_yml["rate_limits"] = UNLIMITED_RATES
        mxgate_yml.update(self.extra)
        mxcp = {
            "mxcp": 1,
            "transport": {"http": {"host": "127.0.0.1", "port": self.port, **self.transport}},
            "projects": {"e2e": {"profiles": {"default": {"auth": self.auth(idp_issuer)}}}},
        }  # fmt: skip
        # JSON is valid YAML; it keeps the generated files unambiguous.
        self.config_path.write_text(json.dumps(mxgate_yml, indent=2) + "\n")
        (self.workdir / "mxcp-config.yml").write_text(json.dumps(mxcp, indent=2) + "\n")

    def command(self) -> list[str]:
        return [str(MXGATE_BIN), "serve", "--config", str(self.config_path)]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MXGATE_")}
        env[SECRET_ENV] = IDP_CLIENT_SECRET
        env["MXGATE_LOG"] = self.log_level
        env["NO_COLOR"] = "1"
        return env

    def wait_ready(self, deadline: float) -> None:
        # Liveness, not readiness: `/readyz` also needs the core (which a stack starts beside
        # mxgate, and some tests keep down) and the IdP's discovery document.
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0, verify=self.verify).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"mxgate did not become ready:\n{_tail(self.log())}")


class ProcessGroup:
    """Processes started together (``start``, in the order of :attr:`processes`) and stopped
    together, in reverse order, each even if another fails to stop; a context manager."""

    @property
    def processes(self) -> list[Process]:
        raise NotImplementedError

    def start_processes(self, deadline: float) -> None:
        raise NotImplementedError

    def start(self) -> Any:
        """Starts the processes (all stopped again if one fails); returns self."""
        try:
            self.start_processes(time.monotonic() + STARTUP_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for p in reversed(self.processes):
            try:
                p.stop()
            except Exception:  # pragma: no cover - keep stopping the rest
                pass

    def logs(self) -> str:
        return logs(*self.processes)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Stack(ProcessGroup):
    """An IdP and an mxgate in front of ``upstream`` (optionally with a real core)."""

    def __init__(self, workdir: Path, upstream: str | None = None, *, with_core: bool = False,
                 tokens: dict[str, str] | None = None, idp_args: tuple[str, ...] = (),
                 auth: Callable[[str], dict[str, Any]] | None = None, gateway_extra: dict[str, Any] | None = None,
                 transport: dict[str, Any] | None = None, log_level: str | None = None,
                 ca_file: Path | None = None, core_env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.workdir = workdir
        self.core: Core | None = None
        gw_port = free_port()
        if with_core:
            gw_url = f"{'https' if ca_file else 'http'}://127.0.0.1:{gw_port}"
            self.core = Core(workdir / "core", gw_url, gw_url + "/.well-known/jwks.json", ca_file, core_env)
            upstream = self.core.url
        assert upstream, "an upstream or with_core=True"
        self.gateway = Gateway(workdir / "mxgate", upstream, port=gw_port, tokens=tokens, log_level=log_level,
                               auth=auth, extra=gateway_extra, transport=transport, ca_file=ca_file)  # fmt: skip
        self.idp = IdP(workdir / "idp", [self.gateway.callback_url], *idp_args)

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def processes(self) -> list[Process]:
        return [p for p in (self.idp, self.core, self.gateway) if p is not None]

    def start_processes(self, deadline: float) -> None:
        if self.core:
            self.core.launch()  # slowest; starts while the others come up
        self.idp.start()
        self.gateway.write_config(self.idp.issuer)
        self.gateway.start()
        if self.core:
            self.core.wait_ready(deadline)


def logs(*processes: Process) -> str:
    """The tails of the processes' logs, for assertion messages."""
    parts = []
    for p in processes:
        parts.append(f"----- {p.name} log ({p.log_path}) -----\n{_tail(p.log(), 4000)}")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# In-process upstreams


class RecordingUpstream:
    """A tiny HTTP/1.1 upstream. Any path: records the raw request headers (name and value as
    received, duplicates kept) and the connection's client address, and answers 200 JSON. ``/sse?id=X``: answers a chunked event
    stream that sends ``first`` at once, then waits until ``gate(X)`` is set, sends ``second``
    and ends."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.sse_errors: list[str] = []
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                upstream.requests.append({
                    "method": self.command, "path": self.path,
                    "headers": list(self.headers.items()), "body": body,
                    "peer": self.client_address,  # which upstream connection mxgate used
                })  # fmt: skip

            def _serve(self) -> None:
                self._record()
                if self.path.startswith("/sse"):
                    return self._sse()
                body = json.dumps({"ok": True, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _sse(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                gate = upstream.gate(_params(self.path).get("id", ""))
                self._chunk(b"event: message\ndata: first\n\n")
                if not gate.wait(timeout=30):
                    upstream.sse_errors.append(f"{self.path}: never released")
                try:
                    self._chunk(b"event: message\ndata: second\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError as e:  # the client went away
                    upstream.sse_errors.append(f"{self.path}: {e!r}")
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> "RecordingUpstream":
        self._thread.start()
        return self

    def gate(self, key: str) -> threading.Event:
        """The event that releases the second SSE event of ``/sse?id=key``."""
        with self._lock:
            return self._gates.setdefault(key, threading.Event())

    def stop(self) -> None:
        for gate in list(self._gates.values()):
            gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def find(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [r for r in self.requests if predicate(r)]


def _params(path: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}


def header_values(recorded: dict[str, Any], name: str) -> list[str]:
    """Values of every header whose name equals ``name`` case-insensitively."""
    return [v for k, v in recorded["headers"] if k.lower() == name.lower()]


# --------------------------------------------------------------------------------------------
# A minimal streamable-HTTP MCP client (for calls with hand-set headers)


class McpHttp:
    """One MCP session through mxgate with a bearer token; JSON-RPC ids never repeat."""

    def __init__(self, mcp_url: str, token: str, timeout: float = 20.0) -> None:
        self.mcp_url = mcp_url
        self.token = token
        self.client = httpx.Client(timeout=timeout)
        self.session_id: str | None = None
        self._next_id = 0

    def close(self) -> None:
        if self.session_id:
            try:
                self.client.delete(self.mcp_url, headers=self._headers())
            except httpx.HTTPError:
                pass
        self.client.close()

    def __enter__(self) -> "McpHttp":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
        h = [
            ("authorization", f"Bearer {self.token}"),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            ("mcp-protocol-version", PROTOCOL_VERSION),
        ]
        if self.session_id:
            h.append(("mcp-session-id", self.session_id))
        return h + (extra or [])

    def post(self, payload: dict[str, Any], extra: list[tuple[str, str]] | None = None) -> httpx.Response:
        return self.client.post(self.mcp_url, content=json.dumps(payload), headers=self._headers(extra))

    def initialize(self) -> None:
        r = self.request_raw("initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "mxgate-e2e", "version": "1"},
        })  # fmt: skip
        assert r.status_code == 200, (r.status_code, r.headers, r.text)
        self.session_id = r.headers["mcp-session-id"]
        n = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert n.status_code == 202, (n.status_code, n.text)

    def request_raw(self, method: str, params: dict[str, Any],
                    extra: list[tuple[str, str]] | None = None) -> httpx.Response:  # fmt: skip
        self._next_id += 1
        return self.post({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}, extra)

    def call_tool(self, name: str, extra: list[tuple[str, str]] | None = None) -> Any:
        """Call a parameterless tool; return its structured result (or raise on a tool error)."""
        r = self.request_raw("tools/call", {"name": name, "arguments": {}}, extra)
        assert r.status_code == 200, (r.status_code, r.headers, r.text)
        msg = jsonrpc_response(r, self._next_id)
        assert "error" not in msg, msg
        result = msg["result"]
        if result.get("isError"):
            raise ToolError(" ".join(c.get("text", "") for c in result["content"]))
        structured = result.get("structuredContent")
        if structured is None:
            return json.loads(result["content"][0]["text"])
        return structured["result"] if set(structured) == {"result"} else structured


class ToolError(AssertionError):
    """A tool call answered with ``isError: true``."""


def jsonrpc_response(response: httpx.Response, request_id: int) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("application/json"):
        messages = [response.json()]
    else:
        messages = [
            json.loads(line[5:]) for line in response.text.splitlines()
            if line.startswith("data:") and line[5:].strip()
        ]  # fmt: skip
    for m in messages:
        if m.get("id") == request_id:
            return m
    raise AssertionError(f"no JSON-RPC response for id {request_id} in {response.text!r}")
