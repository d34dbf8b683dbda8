"""Unit tests for JWKS parsing and the URL/file key sources."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mxgate_core.config import ConfigError, GateConfig
from mxgate_core.keys import (
    JWKS_MAX_AGE,
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


def test_url_source_learns_published_keys_when_its_copy_is_old() -> None:
    """A key mxgate publishes ahead of a rotation is known before it signs."""
    current, upcoming = SigningKey(kid="current"), SigningKey(kid="upcoming")
    clock = FakeClock()
    with JwksServer(jwks(current)) as server:
        source = JwksUrlKeySource(server.url, clock=clock)
        assert _lookup(source, "current") is not None
        server.document = jwks(current, upcoming)  # mxgate: `keys rotate`

        clock.now += JWKS_MAX_AGE - 1
        assert _lookup(source, "current") is not None
        assert server.fetches == 1, "a known kid uses the cached keys while they are fresh"

        clock.now += 1
        assert _lookup(source, "current") is not None
        assert server.fetches == 2, "an old copy is fetched again on the next lookup"
        server.document = jwks(upcoming)  # the old key retired
        assert _lookup(source, "upcoming") is not None, "known before it signs"
        assert server.fetches == 2

        clock.now += JWKS_MAX_AGE
        assert _lookup(source, "current") is None, "a removed key stops verifying after at most max age"
        assert server.fetches == 3


def test_url_source_refetches_an_unknown_kid_once_per_interval_even_with_a_short_max_age() -> None:
    clock = FakeClock()
    with JwksServer(jwks(SigningKey(kid="one"))) as server:
        source = JwksUrlKeySource(server.url, clock=clock, max_age=2.0)
        assert _lookup(source, "one") is not None
        assert _lookup(source, "stranger") is None
        assert server.fetches == 1, "rate limited"
        clock.now += 2.0
        assert _lookup(source, "stranger") is None
        assert server.fetches == 2, "the interval is never longer than the max age"


def test_a_key_that_signs_at_once_is_fetched_on_first_sight_rate_limited() -> None:
    """`mxgate keys rotate --now`: the core meets the new kid before its copy is old."""
    old, new = SigningKey(kid="old"), SigningKey(kid="new")
    clock = FakeClock()
    with JwksServer(jwks(old)) as server:
        source = JwksUrlKeySource(server.url, clock=clock)
        assert _lookup(source, "old") is not None
        server.document = jwks(old, new)

        clock.now += 1
        assert _lookup(source, "new") is None, "within the refetch interval of the last fetch: refused"
        assert server.fetches == 1
        clock.now += JWKS_REFETCH_INTERVAL
        assert _lookup(source, "new") is not None, "fetched again when the rate limit allows"
        assert server.fetches == 2
        assert _lookup(source, "old") is not None, "the old key still verifies during the overlap"


@pytest.mark.parametrize("value", ["abc", "0", "7200"])
def test_jwks_max_age_is_checked(value: str) -> None:
    env = {
        "MXGATE_ASSERTION_ISSUER": "http://127.0.0.1:8000",
        "MXGATE_JWKS_URL": "http://127.0.0.1:8000/.well-known/jwks.json",
        "MXGATE_JWKS_MAX_AGE": value,
    }
    with pytest.raises(ConfigError, match="MXGATE_JWKS_MAX_AGE"):
        GateConfig.from_env(env)


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
