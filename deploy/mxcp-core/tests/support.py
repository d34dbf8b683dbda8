"""Test helpers: signing keys, a JWKS HTTP server, the core subprocess and an MCP client."""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

REPO_ROOT = Path(__file__).resolve().parents[3]
DEMO_DIR = REPO_ROOT / "demo" / "core"
ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "mxcp-core"
ASSERTION_HEADER = "x-mxcp-user-assertion"
PROTOCOL_VERSION = "2025-06-18"
STARTUP_TIMEOUT = 90.0

ALICE = {
    "sub": "alice-id-123",
    "provider": "oidc",
    "username": "alice",
    "email": "alice@example.test",
    "name": "Alice Example",
    "avatar_url": "https://example.test/alice.png",
    "groups": ["staff", "reports"],
    "role": "admin",
    "permissions": ["reports:read"],
    "capabilities": ["reports"],
    "scope": "openid email profile",
    "client_id": "demo-client",
    "sid": "mxgate-session-1",
    "ext": "gho_alice_provider_token",
}
BOB = {
    "sub": "bob-id-456",
    "provider": "github",
    "username": "bob",
    "email": "bob@other.test",
    "name": "Bob Other",
    "role": "user",
    "permissions": [],
    "ext": "gho_bob_provider_token",
}

ANONYMOUS_VIEW = {"username": None, "email": None, "provider": None, "has_external_token": False}
"""What the demo ``whoami`` tool returns without a verified user."""
ALICE_VIEW = {
    "username": "alice",
    "email": "alice@example.test",
    "provider": "oidc",
    "has_external_token": True,
}
BOB_VIEW = {"username": "bob", "email": "bob@other.test", "provider": "github", "has_external_token": True}


@dataclass
class SigningKey:
    """An Ed25519 private key with its ``kid``."""

    kid: str
    private: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def jwk(self) -> dict[str, str]:
        """Return the public JWK, as mxgate publishes it."""
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}


def jwks(*keys: SigningKey) -> dict[str, Any]:
    """Return a JWKS document for ``keys``."""
    return {"keys": [key.jwk() for key in keys]}


def claims_for(user: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Return a full, currently valid claim set for ``user``; None values drop a claim."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    claims.update(user)
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def eddsa_assertion(key: SigningKey, user: dict[str, Any], **overrides: Any) -> str:
    """Sign an assertion for ``user`` with ``key`` (EdDSA, kid in the header)."""
    return jwt.encode(claims_for(user, **overrides), key.private, algorithm="EdDSA", headers={"kid": key.kid})


def hs256_assertion(secret: str, user: dict[str, Any], **overrides: Any) -> str:
    """Sign an assertion for ``user`` with an HS256 shared secret."""
    return jwt.encode(claims_for(user, **overrides), secret, algorithm="HS256")


def unsigned_assertion(user: dict[str, Any], kid: str) -> str:
    """Build an ``alg: none`` token by hand (header.payload.)."""

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{b64(claims_for(user))}."


def free_port() -> int:
    """Return a TCP port that is currently free on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JwksServer:
    """A tiny threaded HTTP server publishing a mutable JWKS and counting fetches."""

    def __init__(self, document: dict[str, Any], port: int = 0) -> None:
        self.document = document
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                body = json.dumps(server.document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                """Keep test output quiet."""

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_port}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class CoreServer:
    """``python -m mxgate_core serve`` on the demo project, in a subprocess."""

    def __init__(self, workdir: Path, gate_env: dict[str, str], extra_args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "core.log"
        self._env = _core_env(workdir, gate_env)
        self._args = (
            sys.executable, "-m", "mxgate_core", "serve",
            "--transport", "streamable-http", "--port", str(self.port), *extra_args,
        )  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CoreServer:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._args, cwd=DEMO_DIR, env=self._env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_until_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log(self) -> str:
        """Return the server's combined stdout/stderr so far."""
        return self.log_path.read_text(errors="replace")

    def _wait_until_ready(self) -> None:
        """Poll until the HTTP endpoint answers, or fail with the server log."""
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"core exited with {self._process.returncode}:\n{self.log()}")
            try:
                httpx.get(self.url, headers={"host": self.host}, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"core did not start within {STARTUP_TIMEOUT}s:\n{self.log()}")


def _core_env(workdir: Path, gate_env: dict[str, str]) -> dict[str, str]:
    """Environment for the core: demo config, private DuckDB file, no analytics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MXGATE_", "MXCP_"))}
    env.update(
        MXCP_CONFIG=str(DEMO_DIR / "config.yml"),
        MXCP_DUCKDB_PATH=str(workdir / "core.duckdb"),
        MXCP_DISABLE_ANALYTICS="1",
        MXGATE_ASSERTION_ISSUER=ISSUER,
        PYTHONUNBUFFERED="1",
    )
    env.update(gate_env)
    return env


class ToolError(AssertionError):
    """A tool call returned ``isError: true``."""


class McpSession:
    """Minimal MCP streamable-HTTP client: one session, per-request assertion header."""

    _ids = itertools.count(1)

    def __init__(self, core: CoreServer, assertion: str | None = None, stateless: bool = False) -> None:
        self.core = core
        self.session_id: str | None = None
        self._client = httpx.Client(timeout=30.0)
        if not stateless:
            self._initialize(assertion)

    def close(self) -> None:
        """End the MCP session and the HTTP client."""
        if self.session_id:
            self._client.delete(self.core.url, headers=self._headers(None))
        self._client.close()

    def __enter__(self) -> McpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call_tool(self, name: str, assertion: str | list[str] | None = None) -> Any:
        """Call the parameterless tool ``name``; return its result or raise :class:`ToolError`."""
        result = self.request("tools/call", {"name": name, "arguments": {}}, assertion)
        if result.get("isError"):
            raise ToolError(" ".join(part.get("text", "") for part in result["content"]))
        structured = result["structuredContent"]
        return structured["result"] if set(structured) == {"result"} else structured

    def request(self, method: str, params: dict[str, Any], assertion: str | list[str] | None = None) -> Any:
        """Send a JSON-RPC request and return its ``result``."""
        request_id = next(self._ids)
        response = self._post(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}, assertion
        )
        assert response.status_code == 200, (response.status_code, response.text)
        message = _find_response(response, request_id)
        assert "error" not in message, message
        return message["result"]

    def _initialize(self, assertion: str | None) -> None:
        """Run the MCP handshake and remember the session id."""
        params = {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mxgate-core-tests", "version": "1"},
        }
        request_id = next(self._ids)
        response = self._post(
            {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}, assertion
        )
        assert response.status_code == 200, (response.status_code, response.text)
        _find_response(response, request_id)
        self.session_id = response.headers["mcp-session-id"]
        notified = self._post({"jsonrpc": "2.0", "method": "notifications/initialized"}, assertion)
        assert notified.status_code == 202, notified.text

    def _post(self, payload: dict[str, Any], assertion: str | list[str] | None) -> httpx.Response:
        return self._client.post(self.core.url, json=payload, headers=self._headers(assertion))

    def _headers(self, assertion: str | list[str] | None) -> list[tuple[str, str]]:
        """Headers as mxgate sends them: Host rewritten, no Origin, optional assertion(s)."""
        headers = [
            ("host", self.core.host),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            ("mcp-protocol-version", PROTOCOL_VERSION),
            ("x-demo-visible", "yes"),
        ]
        if self.session_id:
            headers.append(("mcp-session-id", self.session_id))
        values = [assertion] if isinstance(assertion, str) else assertion or []
        headers += [(ASSERTION_HEADER, value) for value in values]
        return headers


def _find_response(response: httpx.Response, request_id: int) -> dict[str, Any]:
    """Return the JSON-RPC response for ``request_id`` from a JSON or SSE body."""
    if response.headers["content-type"].startswith("application/json"):
        messages = [response.json()]
    else:
        messages = [
            json.loads(line[len("data:") :])
            for line in response.text.splitlines()
            if line.startswith("data:") and line[len("data:") :].strip()
        ]
    for message in messages:
        if message.get("id") == request_id:
            return message
    raise AssertionError(f"no response for id {request_id} in {response.text!r}")
