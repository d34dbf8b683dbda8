"""The hook into MXCP 0.12.3: a ``RAWMCP`` subclass installed before ``mxcp serve`` runs.

Two overrides, nothing else of MXCP is changed:

``_initialize_fastmcp``
    Refuses to run if MXCP's own auth is enabled, then makes the FastMCP app
    factories (``streamable_http_app`` / ``sse_app``) add
    :class:`~mxgate_core.asgi.AssertionMiddleware` to the Starlette app they return.

``require_user_info``
    MXCP wraps every tool, resource and prompt handler (and its built-in SQL
    tools) with this method; with auth disabled it is a pass-through. Our
    wrapper sets MXCP's user contextvar for the duration of each call from the
    HTTP request that carried *this* MCP message (``request_ctx.request``), so
    a stateful session never reuses the user of its ``initialize`` request.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.server.lowlevel.server import request_ctx
from mxcp.sdk.auth.context import reset_user_context, set_user_context
from mxcp.sdk.auth.models import UserContextModel
from mxcp.server import api
from mxcp.server.interfaces.server.mcp import RAWMCP

from mxgate_core.asgi import AssertionMiddleware, user_from_scope
from mxgate_core.assertion import AssertionVerifier
from mxgate_core.compat import check_mxcp_compatibility
from mxgate_core.config import GateConfig

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]


class CoreAuthEnabledError(RuntimeError):
    """MXCP's own auth is configured; it must be off behind mxgate."""


def install(config: GateConfig) -> None:
    """Check compatibility and make ``mxcp serve`` build the gated server class."""
    check_mxcp_compatibility()
    verifier = AssertionVerifier.from_config(config)
    api.RAWMCP = gated_server_class(verifier)  # type: ignore[misc]
    logger.info("mxgate_core installed: verifying assertions (%s)", verifier.describe())


def gated_server_class(verifier: AssertionVerifier) -> type[RAWMCP]:
    """Return a ``RAWMCP`` subclass that takes its user from verified assertions."""

    class GatedRAWMCP(RAWMCP):
        """RAWMCP whose user context comes from ``x-mxcp-user-assertion``."""

        def _initialize_fastmcp(self) -> None:
            if self.auth_enabled:
                raise CoreAuthEnabledError(
                    "MXCP auth must be disabled behind mxgate (set auth.provider: none in the "
                    "user config); mxgate_core supplies the user from the signed assertion"
                )
            if self.transport == "stdio":
                logger.warning("stdio transport carries no HTTP headers: every call is anonymous")
            super()._initialize_fastmcp()
            add_assertion_middleware(self.mcp, verifier)

        def require_user_info(self, func: Handler) -> Handler:
            return with_request_user(super().require_user_info(func))

    return GatedRAWMCP


def add_assertion_middleware(mcp: FastMCP, verifier: AssertionVerifier) -> None:
    """Make this FastMCP instance's HTTP app factories install the middleware."""
    for factory_name in ("streamable_http_app", "sse_app"):
        factory = getattr(mcp, factory_name)

        @functools.wraps(factory)
        def build_app(*args: Any, _factory: Callable[..., Any] = factory, **kwargs: Any) -> Any:
            app = _factory(*args, **kwargs)
            app.add_middleware(AssertionMiddleware, verifier=verifier)
            return app

        setattr(mcp, factory_name, build_app)


def with_request_user(func: Handler) -> Handler:
    """Wrap ``func`` so MXCP's user context is the current request's verified user."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = set_user_context(current_request_user())
        try:
            return await func(*args, **kwargs)
        finally:
            reset_user_context(token)

    return wrapper


def current_request_user() -> UserContextModel | None:
    """Return the verified user of the HTTP request carrying the current MCP message."""
    try:
        request = request_ctx.get().request
    except LookupError:
        return None
    return user_from_scope(getattr(request, "scope", None))
