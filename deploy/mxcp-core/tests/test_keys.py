"""Unit tests for JWKS parsing and the URL/file key sources."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mxgate_core.keys import (
    JWKS_REFETCH_INTERVAL,
    JWKS_RETRY_AFTER_FAILURE,
    JwksError,
    JwksFileKeySource,
    JwksUrlKeySource,
    parse_jwks,
)
from support import JwksServer, SigningKey, free_port, jwks


class FakeClock:
    """A controllable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lookup(source, kid: str):
    return asyncio.run(source.key_for(kid))


def test_parse_jwks_keeps_only_ed25519_signing_keys() -> None:
    good = SigningKey(kid="good").jwk()
    document = {
        "keys": [
            good,
            {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
            dict(good, kid="enc", use="enc"),
            dict(good, kid=""),
            dict(good, kid="short", x="AAAA"),
            "not-a-key",
        ]
    }
    assert set(parse_jwks(document)) == {"good"}


@pytest.mark.parametrize("document", [[], {"keys": {}}, "x", None])
def test_parse_jwks_rejects_non_jwks(document) -> None:
    with pytest.raises(JwksError):
        parse_jwks(document)


def test_url_source_fetches_lazily_and_rate_limits() -> None:
    first, second = SigningKey(kid="one"), SigningKey(kid="two")
    clock = FakeClock()
    with JwksServer(jwks(first)) as server:
        source = JwksUrlKeySource(server.url, clock=clock)
        assert server.fetches == 0

        assert _lookup(source, "one") is not None
        assert server.fetches == 1

        server.document = jwks(second)
        assert _lookup(source, "two") is None
        assert server.fetches == 1, "refetch within the interval"

        clock.now += JWKS_REFETCH_INTERVAL
        assert _lookup(source, "two") is not None
        assert server.fetches == 2
        assert _lookup(source, "one") is None, "keys removed from the JWKS stop verifying"


def test_url_source_retries_sooner_after_failure() -> None:
    key, clock = SigningKey(kid="late"), FakeClock()
    port = free_port()
    source = JwksUrlKeySource(f"http://127.0.0.1:{port}/.well-known/jwks.json", clock=clock)
    assert _lookup(source, "late") is None, "mxgate not up yet"

    with JwksServer(jwks(key), port=port) as server:
        assert _lookup(source, "late") is None
        assert server.fetches == 0, "still inside the failure back-off"
        clock.now += JWKS_RETRY_AFTER_FAILURE
        assert _lookup(source, "late") is not None
        assert server.fetches == 1


def test_file_source_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    old, new = SigningKey(kid="old"), SigningKey(kid="new")
    source = JwksFileKeySource(path)
    assert _lookup(source, "old") is None

    path.write_text(json.dumps(jwks(old)))
    assert _lookup(source, "old") is not None

    path.write_text("{ half written")
    assert _lookup(source, "old") is not None, "unparsable file keeps previous keys"

    replacement = tmp_path / "jwks.tmp"
    replacement.write_text(json.dumps(jwks(new)))
    replacement.replace(path)
    assert _lookup(source, "new") is not None
    assert _lookup(source, "old") is None

    path.unlink()
    assert _lookup(source, "new") is None
