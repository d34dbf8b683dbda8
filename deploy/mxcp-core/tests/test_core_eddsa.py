"""End-to-end: a real ``mxgate_core serve`` (stateful streamable HTTP, EdDSA via JWKS URL)."""

from __future__ import annotations

import json

import jwt
import pytest

from support import (
    ALICE,
    ALICE_VIEW,
    ANONYMOUS_VIEW,
    ASSERTION_HEADER,
    BOB,
    BOB_VIEW,
    CoreServer,
    JwksServer,
    McpSession,
    SigningKey,
    ToolError,
    claims_for,
    eddsa_assertion,
    unsigned_assertion,
)


@pytest.fixture
def session(eddsa_core: CoreServer):
    """A fresh MCP session initialized without an assertion."""
    with McpSession(eddsa_core) as mcp_session:
        yield mcp_session


def test_valid_assertion_is_the_user(session: McpSession, signing_key: SigningKey) -> None:
    assert session.call_tool("whoami", eddsa_assertion(signing_key, ALICE)) == ALICE_VIEW


def test_no_assertion_is_anonymous(session: McpSession) -> None:
    assert session.call_tool("whoami") == ANONYMOUS_VIEW


def test_username_falls_back_to_email_local_part(session: McpSession, signing_key: SigningKey) -> None:
    minimal = {"sub": "carol-id", "email": "carol@example.test"}
    view = session.call_tool("whoami", eddsa_assertion(signing_key, minimal))
    assert view == {
        "username": "carol",
        "email": "carol@example.test",
        "provider": "mxgate",
        "has_external_token": False,
    }


INVALID_CASES = (
    "forged_signature",
    "unknown_kid",
    "expired",
    "issued_in_future",
    "wrong_audience",
    "wrong_issuer",
    "missing_sub",
    "missing_exp",
    "bad_claim_type",
    "alg_none",
    "hs256_keyed_with_public_key",
    "garbage",
    "empty",
    "two_headers",
)


def _invalid_assertion(case: str, key: SigningKey) -> str | list[str]:
    """Build an assertion that must be ignored (call succeeds, user is anonymous)."""
    builders = {
        "forged_signature": lambda: eddsa_assertion(SigningKey(kid=key.kid), ALICE),
        "unknown_kid": lambda: eddsa_assertion(SigningKey(kid="not-published"), ALICE),
        "expired": lambda: eddsa_assertion(key, ALICE, iat=1_700_000_000, exp=1_700_000_300),
        "issued_in_future": lambda: eddsa_assertion(key, ALICE, iat=4_000_000_000, exp=4_000_000_300),
        "wrong_audience": lambda: eddsa_assertion(key, ALICE, aud="another-service"),
        "wrong_issuer": lambda: eddsa_assertion(key, ALICE, iss="http://evil.test"),
        "missing_sub": lambda: eddsa_assertion(key, ALICE, sub=None),
        "missing_exp": lambda: eddsa_assertion(key, ALICE, exp=None),
        "bad_claim_type": lambda: eddsa_assertion(key, ALICE, groups="staff"),
        "alg_none": lambda: unsigned_assertion(ALICE, key.kid),
        # Algorithm confusion: HS256 keyed with the published public key.
        "hs256_keyed_with_public_key": lambda: jwt.encode(
            claims_for(ALICE), key.jwk()["x"], algorithm="HS256", headers={"kid": key.kid}
        ),
        "garbage": lambda: "not-a-jwt",
        "empty": lambda: "",
        "two_headers": lambda: [eddsa_assertion(key, ALICE), eddsa_assertion(key, BOB)],
    }
    return builders[case]()


@pytest.mark.parametrize("case", INVALID_CASES)
def test_invalid_assertion_is_anonymous(session: McpSession, signing_key: SigningKey, case: str) -> None:
    assert session.call_tool("whoami", _invalid_assertion(case, signing_key)) == ANONYMOUS_VIEW


def test_rejections_are_logged_without_tokens(
    eddsa_core: CoreServer, session: McpSession, signing_key: SigningKey
) -> None:
    valid = eddsa_assertion(signing_key, ALICE)
    forged = eddsa_assertion(SigningKey(kid=signing_key.kid), ALICE)
    session.call_tool("whoami", valid)
    session.call_tool("whoami", forged)
    log = eddsa_core.log()
    assert "InvalidSignatureError" in log
    for secret in (valid, forged, forged.split(".")[2], ALICE["ext"]):
        assert secret not in log


def test_cel_policy_allows_alice_denies_bob_and_anonymous(
    session: McpSession, signing_key: SigningKey
) -> None:
    assert (
        session.call_tool("company_only", eddsa_assertion(signing_key, ALICE))
        == "Welcome to example.test, alice!"
    )
    with pytest.raises(ToolError, match=r"Only example\.test accounts"):
        session.call_tool("company_only", eddsa_assertion(signing_key, BOB))
    with pytest.raises(ToolError, match=r"Only example\.test accounts"):
        session.call_tool("company_only")


def test_cel_policy_sees_role_and_permissions(session: McpSession, signing_key: SigningKey) -> None:
    assert session.call_tool("admin_only", eddsa_assertion(signing_key, ALICE)) == "reports for alice"
    for user in (BOB, dict(ALICE, permissions=["reports:write"]), dict(ALICE, role=None)):
        with pytest.raises(ToolError, match="Requires role admin"):
            session.call_tool("admin_only", eddsa_assertion(signing_key, user))


def test_two_users_on_one_session_each_see_themselves(
    eddsa_core: CoreServer, signing_key: SigningKey
) -> None:
    alice, bob = eddsa_assertion(signing_key, ALICE), eddsa_assertion(signing_key, BOB)
    with McpSession(eddsa_core, assertion=alice) as shared:
        assert shared.call_tool("whoami", alice) == ALICE_VIEW
        assert shared.call_tool("whoami", bob) == BOB_VIEW
        assert shared.call_tool("whoami") == ANONYMOUS_VIEW
        assert shared.call_tool("company_only", alice) == "Welcome to example.test, alice!"
        with pytest.raises(ToolError):
            shared.call_tool("company_only", bob)
        assert shared.call_tool("whoami", alice) == ALICE_VIEW


def test_assertion_header_is_hidden_from_sql(session: McpSession, signing_key: SigningKey) -> None:
    assertion = eddsa_assertion(signing_key, ALICE)
    headers = json.loads(session.call_tool("request_headers", assertion))
    assert headers["x-demo-visible"] == "yes"
    assert ASSERTION_HEADER not in {name.lower() for name in headers}
    dumped = json.dumps(headers)
    assert assertion not in dumped and ALICE["ext"] not in dumped


def test_jwks_refetch_is_rate_limited(
    session: McpSession, signing_key: SigningKey, jwks_server: JwksServer
) -> None:
    session.call_tool("whoami", eddsa_assertion(signing_key, ALICE))
    before = jwks_server.fetches
    for index in range(5):
        stranger = SigningKey(kid=f"unknown-{index}")
        assert session.call_tool("whoami", eddsa_assertion(stranger, ALICE)) == ANONYMOUS_VIEW
    assert jwks_server.fetches - before <= 1
    assert session.call_tool("whoami", eddsa_assertion(signing_key, ALICE)) == ALICE_VIEW
