"""End-to-end: HS256 mode (MXGATE_ASSERTION_SECRET) accepts only HS256 with that secret."""

from __future__ import annotations

import pytest

from conftest import HS256_SECRET
from support import (
    ALICE,
    ALICE_VIEW,
    ANONYMOUS_VIEW,
    CoreServer,
    McpSession,
    SigningKey,
    eddsa_assertion,
    hs256_assertion,
)


@pytest.fixture
def session(hs256_core: CoreServer):
    """A fresh MCP session on the HS256 core."""
    with McpSession(hs256_core) as mcp_session:
        yield mcp_session


def test_hs256_assertion_is_the_user(session: McpSession) -> None:
    assert session.call_tool("whoami", hs256_assertion(HS256_SECRET, ALICE)) == ALICE_VIEW


def test_hs256_with_wrong_secret_is_anonymous(session: McpSession) -> None:
    forged = hs256_assertion("another-secret-that-is-long-enough-0123", ALICE)
    assert session.call_tool("whoami", forged) == ANONYMOUS_VIEW


def test_eddsa_is_not_accepted_in_hs256_mode(session: McpSession) -> None:
    assert session.call_tool("whoami", eddsa_assertion(SigningKey(kid="k"), ALICE)) == ANONYMOUS_VIEW


def test_hs256_expired_is_anonymous(session: McpSession) -> None:
    expired = hs256_assertion(HS256_SECRET, ALICE, iat=1_700_000_000, exp=1_700_000_300)
    assert session.call_tool("whoami", expired) == ANONYMOUS_VIEW


def test_secret_never_logged(hs256_core: CoreServer, session: McpSession) -> None:
    session.call_tool("whoami", hs256_assertion("another-secret-that-is-long-enough-0123", ALICE))
    assert HS256_SECRET not in hs256_core.log()
