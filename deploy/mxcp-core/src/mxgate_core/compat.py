"""Startup check that the installed MXCP still has the hook points we rely on.

Tested with the versions in :data:`TESTED_MXCP_VERSIONS`. On another version the
server starts with a warning if every hook point is intact, and refuses to
start if one is missing (users would silently run anonymous, or worse, see a
stale user).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from importlib.metadata import PackageNotFoundError, version

logger = logging.getLogger(__name__)

TESTED_MXCP_VERSIONS = ("0.12.3",)


class IncompatibleMxcpError(RuntimeError):
    """The installed MXCP/MCP libraries lack a hook point mxgate_core needs."""


def check_mxcp_compatibility() -> None:
    """Raise :class:`IncompatibleMxcpError` if the hook is unsafe; warn if untested."""
    problems = _hook_problems()
    installed = _installed_version("mxcp")
    if problems:
        raise IncompatibleMxcpError(
            f"mxcp {installed} is not compatible with mxgate_core "
            f"(tested with {', '.join(TESTED_MXCP_VERSIONS)}): " + "; ".join(problems)
        )
    if installed not in TESTED_MXCP_VERSIONS:
        logger.warning(
            "mxgate_core is tested with mxcp %s, found %s; hook points look intact",
            ", ".join(TESTED_MXCP_VERSIONS),
            installed,
        )


def _installed_version(distribution: str) -> str:
    """Return the installed version of ``distribution`` or 'unknown'."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def _hook_problems() -> list[str]:
    """List every missing hook point (empty when the hook is safe)."""
    from mcp.server.fastmcp import FastMCP
    from mcp.server.lowlevel import server as lowlevel_server
    from mcp.shared.context import RequestContext
    from mxcp.sdk.auth import context as auth_context
    from mxcp.server import api
    from mxcp.server.interfaces.server import mcp as mxcp_mcp

    problems = []
    raw_mcp = getattr(api, "RAWMCP", None)
    if not inspect.isclass(raw_mcp):
        return ["mxcp.server.api.RAWMCP is missing"]
    for method in ("require_user_info", "_initialize_fastmcp"):
        if not callable(getattr(raw_mcp, method, None)):
            problems.append(f"RAWMCP.{method} is missing")
    problems += _handlers_not_wrapped(raw_mcp)
    if getattr(mxcp_mcp, "get_user_context", None) is not auth_context.get_user_context:
        problems.append("RAWMCP no longer reads mxcp.sdk.auth.context.get_user_context")
    if not hasattr(lowlevel_server, "request_ctx"):
        problems.append("mcp.server.lowlevel.server.request_ctx is missing")
    if "request" not in {field.name for field in dataclasses.fields(RequestContext)}:
        problems.append("mcp RequestContext has no 'request' field")
    for method in ("streamable_http_app", "sse_app"):
        if not callable(getattr(FastMCP, method, None)):
            problems.append(f"FastMCP.{method} is missing")
    return problems


def _handlers_not_wrapped(raw_mcp: type) -> list[str]:
    """Check that MXCP wraps every tool handler with ``require_user_info``."""
    problems = []
    for method in ("_build_and_register", "_register_duckdb_features"):
        function = getattr(raw_mcp, method, None)
        if function is None:
            problems.append(f"RAWMCP.{method} is missing")
            continue
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            logger.warning("Cannot inspect RAWMCP.%s; assuming it uses require_user_info", method)
            continue
        if "self.require_user_info" not in source:
            problems.append(f"RAWMCP.{method} no longer wraps handlers with require_user_info")
    return problems
