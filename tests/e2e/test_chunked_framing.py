"""Chunked request bodies are framed as RFC 9112 §7.1 says (mxgate's patched httparse, see
vendor/httparse/MXGATE-PATCH.md): a chunk size padded with leading zeros is read, and a
chunk-size line whose extension is malformed (a bare LF, a quote inside a name, a control
character, no digit at all) is refused before any handler or the core sees the body, and the
connection is closed. Raw sockets: HTTP clients do not send such lines."""

from __future__ import annotations

import json
import socket

import pytest

import browser
from support import Stack

MALFORMED_SIZE_LINES = [b'5;a"b\r\n', b"5;ext\nx\r\n", b"5;a\x00\r\n", b"5;a=\"b\nc\"\r\n", b"\r\n"]


def _exchange(stack: Stack, path: str, body: bytes, headers: str = "") -> tuple[int, dict, bool]:
    """Sends a chunked POST; answers (status, JSON body, whether mxgate then closed the connection)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{stack.gateway.port}\r\n{headers}"
            "Transfer-Encoding: chunked\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection(("127.0.0.1", stack.gateway.port), timeout=10) as sock:
        sock.sendall(head + body)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            assert data, f"closed without an answer: {received!r}"
            received += data
        head_bytes, _, content = received.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in lines[1:])
        length = int(next(v for k, v in fields.items() if k.lower() == "content-length"))
        while len(content) < length:
            data = sock.recv(65536)
            assert data, "closed in the middle of the answer"
            content += data
        sock.settimeout(2)
        try:
            closed = sock.recv(1) == b""
        except socket.timeout:
            closed = False
        return int(lines[0].split()[1]), json.loads(content[:length]), closed


def _chunked(size_line: bytes, data: bytes) -> bytes:
    return size_line + data + b"\r\n0\r\n\r\n"


def test_a_chunk_size_with_leading_zeros_is_read(echo_stack: Stack, echo_login: browser.Login) -> None:
    form = "Content-Type: application/x-www-form-urlencoded\r\n"
    # 20 digits: upstream httparse refused more than 16, zeros or not.
    status, body, _ = _exchange(echo_stack, "/token", _chunked(b"00000000000000000005\r\n", b"x=abc"), form)
    assert (status, body["error"]) == (401, "invalid_client"), body

    metadata = json.dumps({"redirect_uris": ["http://127.0.0.1:9/cb"], "client_name": "Padded"}).encode()
    size_line = b"%032x\r\n" % len(metadata)
    status, body, _ = _exchange(echo_stack, "/register", _chunked(size_line, metadata),
                                "Content-Type: application/json\r\n")  # fmt: skip
    assert status == 201 and body["client_name"] == "Padded", body

    bearer = f"Authorization: Bearer {echo_login.tokens['access_token']}\r\nContent-Type: application/json\r\n"
    status, body, _ = _exchange(echo_stack, "/mcp/padded", _chunked(b"000000000000000000002\r\n", b"{}"), bearer)
    assert status == 200 and body["path"] == "/mcp/padded", body


@pytest.mark.parametrize("size_line", MALFORMED_SIZE_LINES, ids=repr)
def test_a_malformed_chunk_size_line_is_refused_and_the_connection_closed(echo_stack: Stack, size_line: bytes) -> None:
    form = "Content-Type: application/x-www-form-urlencoded\r\n"
    status, body, closed = _exchange(echo_stack, "/token", _chunked(size_line, b"x=abc"), form)
    # The token endpoint never saw a body (it would answer 401 invalid_client): a body framing
    # error is a 400 of the gateway's own.
    assert status == 400 and body["error"] == "invalid_request", (status, body)
    assert closed, "the connection must not be reused after a framing error"


@pytest.mark.parametrize("size_line", MALFORMED_SIZE_LINES[:2], ids=repr)
def test_a_malformed_chunk_size_line_towards_the_core_is_refused(echo_stack: Stack, echo_login: browser.Login,
                                                                 size_line: bytes) -> None:  # fmt: skip
    bearer = f"Authorization: Bearer {echo_login.tokens['access_token']}\r\nContent-Type: application/json\r\n"
    status, body, closed = _exchange(echo_stack, "/mcp/malformed", _chunked(size_line, b"x=abc"), bearer)
    assert status == 400 and body.get("path") is None, (status, body)
    assert closed
