"""Client ID Metadata Documents: a client whose client_id is a URL, fetched by mxgate instead of
a registration, working next to dynamic and static clients. The document's client_id must be its
own URL, it carries no secret, its redirect URIs bind the client; documents are cached as their
Cache-Control says; addresses that are not public are refused unless the config allows them
(here it does, so that a local document server can stand in for an https one); proxy variables
(HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) do not send the fetch elsewhere."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

import browser
from support import RecordingUpstream, Stack

REDIRECT = "http://127.0.0.1:9/cimd-callback"


class DocumentServer:
    """Serves JSON documents by path and counts how often each was fetched."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.documents: dict[str, tuple[dict, str]] = {}
        self.fetches: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.fetches[self.path] = server.fetches.get(self.path, 0) + 1
                if self.path not in server.documents:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, cache_control = server.documents[self.path]
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", cache_control)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.base = f"http://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def publish(self, body_for_url, cache_control: str = "max-age=600") -> str:
        path = f"/clients/{uuid.uuid4().hex}.json"
        url = self.base + path
        self.documents[path] = (body_for_url(url), cache_control)
        return url

    def fetched(self, url: str) -> int:
        return self.fetches.get(url.removeprefix(self.base), 0)


class ConnectionRecorder:
    """A listener standing in for a proxy: records the first bytes of every connection, answers nothing."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.connections.append(conn.recv(1024))
                except OSError:
                    self.connections.append(b"")


@pytest.fixture(scope="module")
def docs() -> Iterator[DocumentServer]:
    server = DocumentServer()
    yield server
    server.httpd.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    extra = {"client_metadata_documents": {"allow_private_addresses": True}}
    with Stack(tmp_path_factory.mktemp("cimd"), echo_upstream.url, gateway_extra=extra) as s:
        yield s


def _document(url: str) -> dict:
    return {"client_id": url, "client_name": "Doc Client", "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none"}  # fmt: skip


def _authorize_page(stack: Stack, client_id: str, redirect_uri: str = REDIRECT) -> httpx.Response:
    _, challenge = browser.pkce_pair()
    url = browser.authorization_url(stack.url, client_id, redirect_uri, challenge, "s1")
    return httpx.get(url, timeout=10)


def test_metadata_advertises_document_support(stack: Stack) -> None:
    meta = httpx.get(stack.url + "/.well-known/oauth-authorization-server", timeout=10).json()
    assert meta["client_id_metadata_document_supported"] is True


def test_a_document_client_logs_in_without_registering_and_is_cached(stack: Stack, docs: DocumentServer) -> None:
    client_id = docs.publish(_document)
    page = _authorize_page(stack, client_id)
    assert page.status_code == 200 and "Doc Client" in page.text and "127.0.0.1:9" in page.text, page.text[:500]

    lg = browser.login(stack.url, client_id=client_id, redirect_uri=REDIRECT)
    assert lg.tokens["access_token"] and lg.tokens["refresh_token"]
    r = httpx.get(f"{stack.url}/mcp/x", headers={"authorization": f"Bearer {lg.tokens['access_token']}"}, timeout=10)
    assert r.status_code == 200
    refreshed = browser.refresh(stack.url, client_id, lg.tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert docs.fetched(client_id) == 1, "fetched once, then served from the cache (max-age=600)"


def test_no_store_documents_are_fetched_every_time(stack: Stack, docs: DocumentServer) -> None:
    client_id = docs.publish(_document, cache_control="no-store")
    _authorize_page(stack, client_id)
    _authorize_page(stack, client_id)
    assert docs.fetched(client_id) == 2


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: {**d, "client_id": "https://elsewhere.example/client.json"}, "not its own URL"),
    (lambda d: {**d, "client_secret": "s3cret"}, "carries a client secret"),
    (lambda d: {**d, "redirect_uris": ["http://evil.example/cb"]}, "plain http is only allowed for loopback"),
    (lambda d: {**d, "token_endpoint_auth_method": "private_key_jwt"}, "not supported"),
])  # fmt: skip
def test_bad_documents_are_refused_with_a_reason(stack: Stack, docs: DocumentServer, mutate, message: str) -> None:
    client_id = docs.publish(lambda url: mutate(_document(url)))
    page = _authorize_page(stack, client_id)
    assert page.status_code == 400 and "location" not in page.headers
    assert message in page.text, page.text


def test_a_redirect_uri_not_in_the_document_is_refused(stack: Stack, docs: DocumentServer) -> None:
    client_id = docs.publish(_document)
    page = _authorize_page(stack, client_id, redirect_uri="http://127.0.0.1:9/other")
    assert page.status_code == 400 and "location" not in page.headers


def test_private_addresses_are_refused_by_default(echo_stack: Stack) -> None:
    page = _authorize_page(echo_stack, "https://127.0.0.1:1/client.json")
    assert page.status_code == 400
    assert "not a public address" in page.text, page.text


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(scope="module")
def proxy() -> Iterator[ConnectionRecorder]:
    recorder = ConnectionRecorder()
    yield recorder
    recorder.listener.close()


@pytest.fixture(scope="module")
def proxied_stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream,
                  proxy: ConnectionRecorder) -> Iterator[Stack]:  # fmt: skip
    """mxgate started with every proxy variable pointing at ``proxy``; NO_PROXY keeps the IdP (on
    127.0.0.1) direct, so only fetches to the documents on 127.0.0.2 could be proxied."""
    extra = {"client_metadata_documents": {"allow_private_addresses": True}}
    stack = Stack(tmp_path_factory.mktemp("cimd-proxy"), echo_upstream.url, gateway_extra=extra)
    with pytest.MonkeyPatch.context() as env:
        for name in PROXY_VARIABLES:
            env.setenv(name, proxy.url)
        env.setenv("NO_PROXY", "127.0.0.1")
        env.setenv("no_proxy", "127.0.0.1")
        stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def test_proxy_variables_do_not_divert_the_fetch(proxied_stack: Stack, proxy: ConnectionRecorder) -> None:
    docs = DocumentServer(host="127.0.0.2")
    try:
        client_id = docs.publish(_document)
        page = _authorize_page(proxied_stack, client_id)
        assert page.status_code == 200 and "Doc Client" in page.text, page.text[:500]
        assert docs.fetched(client_id) == 1
        # https (HTTPS_PROXY): the TLS handshake with the plain-http server fails, but directly.
        https_id = docs.publish(_document).replace("http://", "https://")
        page = _authorize_page(proxied_stack, https_id)
        assert page.status_code == 400 and "cannot be fetched" in page.text, page.text[:500]
        assert proxy.connections == [], f"the fetch went through the proxy: {proxy.connections}"
    finally:
        docs.httpd.shutdown()
