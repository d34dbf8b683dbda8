"""End-to-end: MXGATE_JWKS_FILE (re-read on change) with a stateless streamable-HTTP core."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import (
    ALICE,
    ALICE_VIEW,
    ANONYMOUS_VIEW,
    BOB,
    BOB_VIEW,
    CoreServer,
    McpSession,
    SigningKey,
    eddsa_assertion,
    jwks,
)


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where mxgate writes its JWKS; absent when the core starts."""
    return tmp_path_factory.mktemp("mxgate-data") / "jwks.json"


@pytest.fixture(scope="module")
def file_core(tmp_path_factory: pytest.TempPathFactory, jwks_file: Path) -> Iterator[CoreServer]:
    """A stateless core reading keys from ``jwks_file``."""
    workdir = tmp_path_factory.mktemp("file-core")
    with CoreServer(workdir, {"MXGATE_JWKS_FILE": str(jwks_file)}, ("--stateless",)) as core:
        yield core


def _write_atomically(path: Path, document: dict) -> None:
    """Write like mxgate should: temp file + rename."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document))
    temporary.replace(path)


def test_file_appearing_and_rotating(file_core: CoreServer, jwks_file: Path) -> None:
    first, second = SigningKey(kid="file-key-1"), SigningKey(kid="file-key-2")
    with McpSession(file_core, stateless=True) as stateless:
        assert stateless.call_tool("whoami", eddsa_assertion(first, ALICE)) == ANONYMOUS_VIEW

        _write_atomically(jwks_file, jwks(first))
        assert stateless.call_tool("whoami", eddsa_assertion(first, ALICE)) == ALICE_VIEW

        _write_atomically(jwks_file, jwks(second))
        assert stateless.call_tool("whoami", eddsa_assertion(second, BOB)) == BOB_VIEW
        assert stateless.call_tool("whoami", eddsa_assertion(first, ALICE)) == ANONYMOUS_VIEW
