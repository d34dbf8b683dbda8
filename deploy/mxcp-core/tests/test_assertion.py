"""Unit tests for claim mapping and the MXCP compatibility check."""

from __future__ import annotations

import pytest

from mxgate_core.assertion import InvalidAssertionError, user_context_from_claims
from mxgate_core.compat import _hook_problems as hook_problems
from mxgate_core.compat import check_mxcp_compatibility
from support import ALICE, claims_for


def test_claims_map_to_mxcp_user_context() -> None:
    user = user_context_from_claims(claims_for(ALICE, avatar_url=None))
    assert (user.provider, user.user_id, user.username, user.email, user.name) == (
        "oidc",
        "alice-id-123",
        "alice",
        "alice@example.test",
        "Alice Example",
    )
    assert user.external_token == ALICE["ext"]
    assert user.capabilities == ["reports"]
    assert user.raw_profile is not None
    assert user.raw_profile["role"] == "admin"
    assert user.raw_profile["permissions"] == ["reports:read"]
    assert user.raw_profile["groups"] == ["staff", "reports"]
    assert "ext" not in user.raw_profile, "provider token must not be copied into raw_profile"
    assert "avatar_url" not in user.raw_profile, "null claims are dropped so MXCP defaults apply"


def test_minimal_claims_use_mxcp_fallbacks() -> None:
    user = user_context_from_claims({"sub": "u-1", "role": None, "permissions": None})
    assert (user.username, user.provider, user.email, user.external_token) == ("u-1", "mxgate", None, None)
    assert user.raw_profile == {"sub": "u-1"}


@pytest.mark.parametrize(
    "overrides",
    [
        {"sub": ""},
        {"sub": 7},
        {"email": ["a@b"]},
        {"groups": "staff"},
        {"permissions": [1]},
        {"ext": {"t": 1}},
    ],
)
def test_malformed_claims_are_rejected(overrides: dict) -> None:
    with pytest.raises(InvalidAssertionError):
        user_context_from_claims(claims_for(ALICE, **overrides))


def test_installed_mxcp_has_all_hook_points() -> None:
    assert hook_problems() == []
    check_mxcp_compatibility()
