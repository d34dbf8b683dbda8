"""mxgate terminating TLS itself (`tls:` in mxgate.yml), with a CA made here:

* the official MCP SDK client logs in over https through mxgate and calls `whoami` as alice;
* HTTP/2 is negotiated by ALPN (an HTTP/1.1-only client still gets HTTP/1.1), and MCP calls
  through to the core work over it;
* `tls.redirect_listen` answers 308 to the https public URL, and health probes itself;
* a new certificate written over the files is served to new connections within the reload
  interval while a connection opened before keeps working; a broken file keeps the old one;
  SIGHUP reloads at once;
* the connection caps hold for TLS connections before any handshake, a handshake or an HTTP/2
  preface that never comes is cut off after `header_timeout`, an idle HTTP/2 connection after
  `idle_timeout`, and `min_version: 1.3` refuses TLS 1.2.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from browser import Browser, SdkHandlers
from sdk_client import MemoryStorage, oauth_provider
from support import McpHttp, RecordingUpstream, Stack, free_port

REDIRECT_URI = "http://127.0.0.1:9/sdk-callback"
LOOPBACK = "127.0.0.1"


# --- a CA of our own ----------------------------------------------------------------------------


class Pki:
    """A CA and server certificates for 127.0.0.1 it issues; ``install`` writes one over the
    gateway's certificate and key files."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mxgate e2e CA")])
        now = datetime.now(timezone.utc)
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(self.ca_name)
            .issuer_name(self.ca_name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )  # fmt: skip
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert_file = folder / "tls.crt"
        self.key_file = folder / "tls.key"
        self.context = ssl.create_default_context(cafile=str(self.ca_file))

    def issue(self) -> tuple[bytes, bytes, int]:
        """A new key and a certificate for 127.0.0.1 (PEM), and the certificate's serial."""
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        now = datetime.now(timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
            .issuer_name(self.ca_name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )  # fmt: skip
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())  # fmt: skip
        return cert.public_bytes(serialization.Encoding.PEM), key_pem, serial

    def install(self) -> int:
        """Writes a new pair over the files (key first, in place); returns its serial."""
        cert, key, serial = self.issue()
        self.key_file.write_bytes(key)
        self.cert_file.write_bytes(cert)
        return serial

    def tls_block(self, **extra: Any) -> dict[str, Any]:
        return {"cert_file": str(self.cert_file), "key_file": str(self.key_file), **extra}


def peer_serial(port: int, context: ssl.SSLContext) -> int:
    """The serial of the certificate a new TLS connection to mxgate is served."""
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=LOOPBACK) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def wait_for_serial(port: int, context: ssl.SSLContext, serial: int, limit: float) -> float:
    """Seconds until new connections are served the certificate ``serial`` (fails after ``limit``)."""
    started = time.monotonic()
    seen = None
    while time.monotonic() - started < limit:
        seen = peer_serial(port, context)
        if seen == serial:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"still served serial {seen:X}, not {serial:X}, after {limit}s")


def gateway_context(stack: Stack) -> ssl.SSLContext:
    """The TLS context that trusts ``stack``'s mxgate."""
    verify = stack.gateway.verify
    assert isinstance(verify, ssl.SSLContext)
    return verify


def wait_closed(s: socket.socket | ssl.SSLSocket, limit: float) -> float:
    """Seconds until the server closes ``s``, reading (and dropping) what it sends; ``limit`` if never."""
    started = time.monotonic()
    s.settimeout(0.25)
    while time.monotonic() - started < limit:
        try:
            if s.recv(4096) == b"":
                return time.monotonic() - started
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (ConnectionResetError, ssl.SSLError):
            return time.monotonic() - started
    return limit


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def core_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki = Pki(tmp_path_factory.mktemp("core-pki"))
    pki.install()
    return pki


@pytest.fixture(scope="module")
def tls_core(tmp_path_factory: pytest.TempPathFactory, core_pki: Pki) -> Iterator[Stack]:
    """IdP (plain http on loopback) + mxgate on https with a redirect listener + the real core."""
    extra = {"tls": core_pki.tls_block(redirect_listen=f"{LOOPBACK}:{free_port()}")}
    with Stack(tmp_path_factory.mktemp("tls-core"), with_core=True, ca_file=core_pki.ca_file,
               gateway_extra=extra) as stack:  # fmt: skip
        yield stack


@pytest.fixture(scope="module")
def sdk_login(tls_core: Stack, core_pki: Pki) -> dict[str, Any]:
    """The MCP SDK's login and tool calls over https; what it saw."""
    handlers = SdkHandlers(Browser(), REDIRECT_URI)
    # The "browser" trusts the test CA (and talks plain http to the IdP).
    handlers.browser.client.close()
    handlers.browser.client = httpx.Client(follow_redirects=False, timeout=15, verify=core_pki.context)
    storage = MemoryStorage()
    try:
        out = anyio.run(_run_sdk, tls_core.gateway.mcp_url, handlers, storage, core_pki.context)
    finally:
        handlers.browser.close()
    return {"out": out, "handlers": handlers, "storage": storage}


async def _run_sdk(mcp_url: str, handlers: SdkHandlers, storage: MemoryStorage,
                   context: ssl.SSLContext) -> dict[str, Any]:  # fmt: skip
    provider = oauth_provider(mcp_url, handlers, storage, "mxgate e2e (MCP SDK over TLS)")
    out: dict[str, Any] = {}
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(auth=provider, timeout=20, verify=context) as client:
            async with streamable_http_client(mcp_url, http_client=client) as (read, write):
                async with ClientSession(read, write) as session:
                    out["init"] = await session.initialize()
                    out["whoami"] = await session.call_tool("whoami", {})
    return out


@pytest.fixture(scope="module")
def rotation(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[tuple[Stack, Pki]]:
    """mxgate on https checking its certificate files every second."""
    pki = Pki(tmp_path_factory.mktemp("rotation-pki"))
    pki.install()
    extra = {"tls": pki.tls_block(reload_interval="1s")}
    with Stack(tmp_path_factory.mktemp("tls-rotation"), echo_upstream.url, ca_file=pki.ca_file,
               gateway_extra=extra) as stack:  # fmt: skip
        yield stack, pki


HEADER_TIMEOUT = 2.0
IDLE_TIMEOUT = 4.0


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[tuple[Stack, Pki]]:
    """mxgate on https with TLS 1.3 only, tight connection limits, and no periodic reload."""
    pki = Pki(tmp_path_factory.mktemp("strict-pki"))
    pki.install()
    extra = {
        "tls": pki.tls_block(min_version="1.3", reload_interval="1h"),
        "limits": {"max_connections_per_address": 4, "header_timeout": f"{HEADER_TIMEOUT:g}s",
                   "idle_timeout": f"{IDLE_TIMEOUT:g}s"},
    }  # fmt: skip
    with Stack(tmp_path_factory.mktemp("tls-strict"), echo_upstream.url, ca_file=pki.ca_file,
               gateway_extra=extra) as stack:  # fmt: skip
        yield stack, pki


# --- the MCP SDK over https ------------------------------------------------------------------------


def test_the_sdk_client_logs_in_over_https_and_is_alice(tls_core: Stack, sdk_login: dict[str, Any]) -> None:
    assert tls_core.url.startswith("https://127.0.0.1:"), tls_core.url
    handlers: SdkHandlers = sdk_login["handlers"]
    assert len(handlers.authorization_urls) == 1, handlers.authorization_urls
    auth_url = urlsplit(handlers.authorization_urls[0])
    assert f"{auth_url.scheme}://{auth_url.netloc}{auth_url.path}" == tls_core.url + "/authorize"
    assert parse_qs(auth_url.query)["resource"] == [tls_core.gateway.mcp_url]
    # The IdP (plain http) redirected the browser back to mxgate's https callback.
    result = handlers.results[0]
    assert result.iss == tls_core.url, result.params
    assert any(s.url.startswith(tls_core.url + "/callback") for s in result.steps), result.steps

    whoami = sdk_login["out"]["whoami"]
    assert not whoami.is_error, whoami
    assert whoami.structured_content["username"] == "alice", whoami
    assert whoami.structured_content["provider"] == "oidc", whoami

    metadata = httpx.get(tls_core.url + "/.well-known/oauth-authorization-server", verify=gateway_context(tls_core))
    assert metadata.json()["issuer"] == tls_core.url
    assert metadata.json()["token_endpoint"] == tls_core.url + "/token"


# --- HTTP/2 by ALPN ----------------------------------------------------------------------------------


def test_http2_is_negotiated_by_alpn_and_mcp_calls_work_over_it(tls_core: Stack, sdk_login: dict[str, Any]) -> None:
    context = gateway_context(tls_core)
    with httpx.Client(http2=True, verify=context, timeout=20) as h2:
        r = h2.get(tls_core.url + "/.well-known/oauth-protected-resource/mcp")
        assert r.status_code == 200, r.text
        assert r.http_version == "HTTP/2"
    with httpx.Client(verify=context, timeout=20) as h1:  # offers only http/1.1
        r = h1.get(tls_core.url + "/healthz")
        assert r.status_code == 200 and r.http_version == "HTTP/1.1"

    # An MCP session through to the core over HTTP/2, with the SDK's token.
    token = sdk_login["storage"].tokens.access_token
    with McpHttp(tls_core.gateway.mcp_url, token) as mcp:
        mcp.client.close()
        mcp.client = httpx.Client(http2=True, verify=context, timeout=20)
        mcp.initialize()
        assert mcp.call_tool("whoami")["username"] == "alice"
        r = mcp.request_raw("tools/list", {})
        assert r.status_code == 200 and r.http_version == "HTTP/2", (r.status_code, r.http_version)


def test_http2_streams_share_one_connection(tls_core: Stack) -> None:
    """Several requests at once on one HTTP/2 connection all get answers."""

    async def fetch_all() -> list[httpx2.Response]:
        async with httpx2.AsyncClient(http2=True, verify=gateway_context(tls_core), timeout=20) as client:
            paths = ["/healthz", "/readyz", "/.well-known/oauth-authorization-server"] * 4
            results: list[httpx2.Response] = []

            async def one(path: str) -> None:
                results.append(await client.get(tls_core.url + path))

            async with anyio.create_task_group() as tg:
                for path in paths:
                    tg.start_soon(one, path)
            return results

    responses = anyio.run(fetch_all)
    assert len(responses) == 12
    assert all(r.status_code == 200 and r.http_version == "HTTP/2" for r in responses), responses


# --- the redirect listener -----------------------------------------------------------------------------


def _redirect_url(stack: Stack) -> str:
    listen = json.loads(stack.gateway.config_path.read_text())["tls"]["redirect_listen"]
    return f"http://{listen}"


def test_the_redirect_listener_answers_308_to_https(tls_core: Stack) -> None:
    plain = _redirect_url(tls_core)
    r = httpx.get(plain + "/authorize?client_id=a&state=b%20c", headers={"host": "evil.example"}, timeout=5)
    assert r.status_code == 308, r.text
    # Always to the public URL, never to the Host the request named.
    assert r.headers["location"] == tls_core.url + "/authorize?client_id=a&state=b%20c"
    assert r.headers["content-length"] == "0"

    r = httpx.post(plain + "/token", data={"grant_type": "refresh_token", "refresh_token": "x"}, timeout=5)
    assert r.status_code == 308 and r.headers["location"] == tls_core.url + "/token"
    assert r.headers.get("connection") == "close", r.headers  # the body is never read

    followed = httpx.get(plain + "/.well-known/oauth-authorization-server", follow_redirects=True, timeout=5,
                         verify=gateway_context(tls_core))  # fmt: skip
    assert followed.status_code == 200 and str(followed.url).startswith("https://"), followed.url
    assert followed.json()["issuer"] == tls_core.url


def test_the_redirect_listener_answers_health_probes_itself(tls_core: Stack) -> None:
    plain = _redirect_url(tls_core)
    with httpx.Client(timeout=5) as client:  # one kept-alive connection for both
        alive = client.get(plain + "/healthz")
        ready = client.get(plain + "/readyz")
    assert alive.status_code == 200 and alive.json()["error_description"] == "alive", alive.text
    assert ready.status_code == 200 and ready.json() == {"ready": True}, ready.text
    assert "location" not in alive.headers


# --- certificate rotation ------------------------------------------------------------------------------


def test_a_new_certificate_is_served_to_new_connections_while_old_ones_keep_working(
    rotation: tuple[Stack, Pki],
) -> None:
    stack, pki = rotation
    port = stack.gateway.port
    kept = http.client.HTTPSConnection(LOOPBACK, port, context=pki.context, timeout=10)
    try:
        kept.request("GET", "/healthz")
        assert kept.getresponse().read() and kept.sock is not None
        local = kept.sock.getsockname()
        first = x509.load_der_x509_certificate(kept.sock.getpeercert(binary_form=True)).serial_number

        new_serial = pki.install()
        assert new_serial != first
        latency = wait_for_serial(port, pki.context, new_serial, limit=3.0)
        print(f"new certificate served {latency:.2f}s after it was written (reload_interval 1s)")
        assert latency <= 2.0, latency  # one interval, and a second for a half-written pair

        # The connection opened before still works, on its own session and certificate.
        kept.request("GET", "/readyz")
        response = kept.getresponse()
        assert response.status == 200 and json.loads(response.read()) == {"ready": True}
        assert kept.sock is not None and kept.sock.getsockname() == local, "the kept connection was replaced"
        assert x509.load_der_x509_certificate(kept.sock.getpeercert(binary_form=True)).serial_number == first
    finally:
        kept.close()
    log = stack.gateway.log()
    assert "TLS certificate reloaded" in log and f"serial={new_serial:X}" in log, log[-3000:]


def test_a_broken_new_certificate_keeps_the_one_in_use(rotation: tuple[Stack, Pki]) -> None:
    stack, pki = rotation
    port = stack.gateway.port
    serving = pki.install()
    wait_for_serial(port, pki.context, serving, limit=3.0)

    pki.cert_file.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    time.sleep(2.5)
    assert peer_serial(port, pki.context) == serving
    # A certificate whose key is not the key file's.
    other_cert, _, other_serial = pki.issue()
    pki.cert_file.write_bytes(other_cert)
    time.sleep(2.5)
    assert peer_serial(port, pki.context) == serving
    assert httpx.get(stack.url + "/healthz", verify=pki.context, timeout=5).status_code == 200

    log = stack.gateway.log()
    assert "TLS certificate not reloaded; the certificate in use stays" in log, log[-3000:]
    assert "cannot be parsed" in log and "does not belong to the first certificate" in log, log[-3000:]
    assert f"serial={other_serial:X}" not in log

    # A good pair afterwards is picked up again.
    wait_for_serial(port, pki.context, pki.install(), limit=3.0)


def test_sighup_reloads_the_certificate_at_once(strict: tuple[Stack, Pki]) -> None:
    stack, pki = strict
    new_serial = pki.install()
    time.sleep(0.3)
    assert peer_serial(stack.gateway.port, pki.context) != new_serial  # reload_interval is 1h
    assert stack.gateway.proc is not None
    stack.gateway.proc.send_signal(signal.SIGHUP)
    wait_for_serial(stack.gateway.port, pki.context, new_serial, limit=2.0)
    stack.gateway.check_alive()


# --- bounds ------------------------------------------------------------------------------------------------


def _still_open(s: socket.socket) -> bool:
    """Whether the server has not closed this connection (nothing is ever sent on it)."""
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def _tls_connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((LOOPBACK, port), timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname=LOOPBACK)
    except BaseException:
        raw.close()
        raise


def test_tls_connections_are_capped_per_address_before_any_handshake(strict: tuple[Stack, Pki]) -> None:
    stack, pki = strict
    port = stack.gateway.port
    # Plain TCP connections that never start a handshake hold the address's 4 places.
    held = [socket.create_connection((LOOPBACK, port)) for _ in range(4)]
    try:
        # A fifth is refused once mxgate has admitted the four. On a loaded machine the fifth can
        # be admitted first (tokio runs the newest task first) and one of the four refused in its
        # place; then the four are made whole again and the fifth tried again.
        deadline = time.monotonic() + 10
        while True:
            time.sleep(0.3)
            try:
                _tls_connect(port, pki.context).close()
            except (ssl.SSLError, OSError):
                break
            assert time.monotonic() < deadline, "a fifth connection from the address was served"
            for i, s in enumerate(held):
                if not _still_open(s):
                    s.close()
                    held[i] = socket.create_connection((LOOPBACK, port))
        held.pop().close()
        time.sleep(0.3)
        with _tls_connect(port, pki.context) as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.1 200"), "a place freed is usable again"
    finally:
        for s in held:
            s.close()


def test_a_handshake_that_never_comes_is_cut_off(strict: tuple[Stack, Pki]) -> None:
    with socket.create_connection((LOOPBACK, strict[0].gateway.port)) as s:
        waited = wait_closed(s, HEADER_TIMEOUT + 4)
    assert HEADER_TIMEOUT - 0.5 <= waited < HEADER_TIMEOUT + 2, waited


def _h2_connect(port: int, pki: Pki) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.set_alpn_protocols(["h2"])
    tls = _tls_connect(port, context)
    assert tls.selected_alpn_protocol() == "h2"
    return tls


def test_an_http2_preface_that_never_comes_is_cut_off(strict: tuple[Stack, Pki]) -> None:
    stack, pki = strict
    with _h2_connect(stack.gateway.port, pki) as tls:
        waited = wait_closed(tls, HEADER_TIMEOUT + IDLE_TIMEOUT + 4)
    assert HEADER_TIMEOUT - 0.5 <= waited < HEADER_TIMEOUT + 2, waited


def test_an_idle_http2_connection_is_closed(strict: tuple[Stack, Pki]) -> None:
    stack, pki = strict
    with _h2_connect(stack.gateway.port, pki) as tls:
        # The client preface and an empty SETTINGS frame; then no request at all.
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        waited = wait_closed(tls, IDLE_TIMEOUT + 6)
    assert IDLE_TIMEOUT - 0.5 <= waited < IDLE_TIMEOUT + 2, waited


def test_min_version_1_3_refuses_tls_1_2(strict: tuple[Stack, Pki]) -> None:
    stack, pki = strict
    old = ssl.create_default_context(cafile=str(pki.ca_file))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        _tls_connect(stack.gateway.port, old).close()
    with _tls_connect(stack.gateway.port, pki.context) as tls:
        assert tls.version() == "TLSv1.3"
