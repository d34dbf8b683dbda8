"""Verify mxgate assertions and turn them into MXCP user contexts.

Verification failures raise :class:`InvalidAssertionError` with a short, log-safe
reason (never the token or claim values). The caller treats any rejection as
"no user".
"""

from __future__ import annotations

import logging
from typing import Any

import jwt
from mxcp.sdk.auth.models import UserContextModel

from mxgate_core.config import GateConfig
from mxgate_core.keys import KeySource

logger = logging.getLogger(__name__)

LEEWAY_SECONDS = 30
"""Clock skew tolerated on ``exp``, ``iat`` and ``nbf``."""

REQUIRED_CLAIMS = ["iss", "aud", "iat", "exp", "sub"]
DEFAULT_PROVIDER = "mxgate"
SECRET_CLAIMS = frozenset({"ext"})
"""Claims kept out of ``raw_profile`` (``ext`` is the provider access token)."""

_STRING_CLAIMS = ("provider", "username", "email", "name", "avatar_url", "role", "ext")
_STRING_LIST_CLAIMS = ("groups", "permissions", "capabilities")


class InvalidAssertionError(Exception):
    """The assertion failed verification; the message is safe to log."""


class AssertionVerifier:
    """Checks signature, algorithm, issuer, audience and lifetime of assertions."""

    def __init__(self, issuer: str, audience: str, key_source: KeySource) -> None:
        self._issuer = issuer
        self._audience = audience
        self._key_source = key_source

    @classmethod
    def from_config(cls, config: GateConfig) -> AssertionVerifier:
        """Create a verifier for ``config``."""
        return cls(config.issuer, config.audience, config.key_source)

    def describe(self) -> str:
        """Return a log-safe summary of what is verified."""
        return (
            f"iss={self._issuer!r} aud={self._audience!r} "
            f"alg={'/'.join(self._key_source.algorithms)} keys from {self._key_source.describe()}"
        )

    async def verify(self, token: str) -> dict[str, Any]:
        """Return the verified claims of ``token`` or raise :class:`InvalidAssertionError`."""
        header = _unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in self._key_source.algorithms:
            raise InvalidAssertionError(f"algorithm {str(algorithm)[:16]!r} is not allowed")
        kid = header.get("kid")
        key = await self._key_source.key_for(kid if isinstance(kid, str) else None)
        if key is None:
            raise InvalidAssertionError(f"no verification key for kid {str(kid)[:64]!r}")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidAssertionError(f"{type(exc).__name__}: {exc}") from None


def _unverified_header(token: str) -> dict[str, Any]:
    """Return the JOSE header of a compact JWS, or raise :class:`InvalidAssertionError`."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise InvalidAssertionError("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidAssertionError("malformed token header")
    return header


def user_context_from_claims(claims: dict[str, Any]) -> UserContextModel:
    """Map verified claims to the ``UserContextModel`` MXCP's own auth would build.

    * ``sub`` -> ``user_id``; ``ext`` -> ``external_token`` (``get_user_external_token()``).
    * ``username`` falls back like MXCP's OIDC provider: email local part, then ``sub``.
    * ``provider`` falls back to ``"mxgate"`` (MXCP requires a value).
    * ``raw_profile`` holds every non-null claim except ``ext``; MXCP's policy
      engine reads ``role`` and ``permissions`` from it (defaults ``user`` / ``[]``).
    * ``capabilities`` is taken from the claim as computed by mxgate.
    """
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidAssertionError("claim 'sub' must be a non-empty string")
    values = {name: _optional_string(claims, name) for name in _STRING_CLAIMS}
    lists = {name: _optional_string_list(claims, name) for name in _STRING_LIST_CLAIMS}
    email = values["email"]
    return UserContextModel(
        provider=values["provider"] or DEFAULT_PROVIDER,
        user_id=subject,
        username=values["username"] or (email.split("@")[0] if email else subject),
        email=email,
        name=values["name"],
        avatar_url=values["avatar_url"],
        raw_profile={
            key: value for key, value in claims.items() if value is not None and key not in SECRET_CLAIMS
        },
        external_token=values["ext"],
        capabilities=lists["capabilities"] or [],
    )


def _optional_string(claims: dict[str, Any], name: str) -> str | None:
    """Return claim ``name`` as a non-empty string or None; reject other types."""
    value = claims.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidAssertionError(f"claim {name!r} must be a string")
    return value


def _optional_string_list(claims: dict[str, Any], name: str) -> list[str] | None:
    """Return claim ``name`` as a list of strings or None; reject other types."""
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidAssertionError(f"claim {name!r} must be a list of strings")
    return value
