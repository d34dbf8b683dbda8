"""ASGI middleware: verify and remove the assertion header on every HTTP request.

The middleware runs in front of the MCP transport. For each HTTP request it

1. removes every ``x-mxcp-user-assertion`` header from the ASGI scope, so the
   Starlette ``Request`` MXCP later turns into ``get_request_header()`` /
   ``get_request_headers_json()`` never contains the token (which carries the
   provider token in ``ext``);
2. verifies the assertion and stores the resulting ``UserContextModel`` (or
   None) in the scope under :data:`USER_SCOPE_KEY`.

It deliberately does NOT set MXCP's user contextvar: in stateful streamable
HTTP the tool handlers run in the session task, whose context was copied from
the session's ``initialize`` request, so a contextvar set here would leak the
first user into the whole session. :mod:`mxgate_core.hook` reads the scope
entry of the request that carried each MCP message instead.
"""

from __future__ import annotations

import logging
from typing import Any

from mxcp.sdk.auth.models import UserContextModel
from starlette.types import ASGIApp, Receive, Scope, Send

from mxgate_core import ASSERTION_HEADER
from mxgate_core.assertion import AssertionVerifier, InvalidAssertionError, user_context_from_claims

logger = logging.getLogger(__name__)

USER_SCOPE_KEY = "mxgate_core.user"
_HEADER_BYTES = ASSERTION_HEADER.encode("ascii")


def user_from_scope(scope: Any) -> UserContextModel | None:
    """Return the user the middleware verified for this ASGI scope, if any."""
    user = scope.get(USER_SCOPE_KEY) if isinstance(scope, dict) else None
    return user if isinstance(user, UserContextModel) else None


class AssertionMiddleware:
    """Pure ASGI middleware that swaps the assertion header for a verified user."""

    def __init__(self, app: ASGIApp, verifier: AssertionVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strip and verify the assertion, then call the wrapped app."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        kept, assertions = _split_headers(scope["headers"])
        scope = dict(scope, headers=kept)
        scope[USER_SCOPE_KEY] = await self._user_for(assertions)
        await self.app(scope, receive, send)

    async def _user_for(self, assertions: list[bytes]) -> UserContextModel | None:
        """Verify the request's assertion; any problem means anonymous."""
        if not assertions:
            logger.debug("No %s header; request is anonymous", ASSERTION_HEADER)
            return None
        try:
            if len(assertions) > 1:
                raise InvalidAssertionError("more than one assertion header")
            claims = await self.verifier.verify(assertions[0].decode("latin-1").strip())
            return user_context_from_claims(claims)
        except InvalidAssertionError as exc:
            logger.warning("Ignoring %s (%s); request is anonymous", ASSERTION_HEADER, exc)
        except Exception as exc:  # never let verification break the core
            logger.error(
                "Unexpected %s while verifying %s; request is anonymous",
                type(exc).__name__,
                ASSERTION_HEADER,
            )
        return None


def _split_headers(
    headers: list[tuple[bytes, bytes]] | Any,
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """Split raw ASGI headers into (other headers, assertion header values)."""
    kept: list[tuple[bytes, bytes]] = []
    assertions: list[bytes] = []
    for name, value in headers:
        if name.lower() == _HEADER_BYTES:
            assertions.append(value)
        else:
            kept.append((name, value))
    return kept, assertions
