"""Shared fixtures: signing keys, a JWKS endpoint and real MXCP cores (one per test module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import CoreServer, JwksServer, SigningKey, jwks

HS256_SECRET = "test-only-shared-secret-0123456789abcdef"


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    """Mxgate's current Ed25519 signing key."""
    return SigningKey(kid="mxgate-test-1")


@pytest.fixture(scope="session")
def jwks_server(signing_key: SigningKey) -> Iterator[JwksServer]:
    """Mxgate's JWKS endpoint, publishing ``signing_key``."""
    with JwksServer(jwks(signing_key)) as server:
        yield server


@pytest.fixture(scope="module")
def eddsa_core(tmp_path_factory: pytest.TempPathFactory, jwks_server: JwksServer) -> Iterator[CoreServer]:
    """A stateful streamable-HTTP core verifying EdDSA assertions via MXGATE_JWKS_URL."""
    workdir = tmp_path_factory.mktemp("eddsa-core")
    with CoreServer(workdir, {"MXGATE_JWKS_URL": jwks_server.url}) as core:
        yield core


@pytest.fixture(scope="module")
def hs256_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreServer]:
    """A core verifying HS256 assertions via MXGATE_ASSERTION_SECRET."""
    workdir = tmp_path_factory.mktemp("hs256-core")
    with CoreServer(workdir, {"MXGATE_ASSERTION_SECRET": HS256_SECRET}) as core:
        yield core
