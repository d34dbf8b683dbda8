"""Command line: ``mxgate-core serve [mxcp serve options]``.

Validates the mxgate configuration, installs the hook and hands the arguments
unchanged to MXCP's own ``serve`` command.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from mxgate_core.config import ConfigError, GateConfig

USAGE = (
    "usage: mxgate-core serve [MXCP SERVE OPTIONS]\n"
    "  Runs `mxcp serve` with mxgate assertion verification. Configure with\n"
    "  MXGATE_ASSERTION_ISSUER and one of MXGATE_JWKS_URL, MXGATE_JWKS_FILE,\n"
    "  MXGATE_ASSERTION_SECRET (see the README). Other mxcp commands: use `mxcp`."
)

EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG


def main(argv: list[str] | None = None) -> None:
    """Run ``mxcp serve`` with the mxgate hook installed."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["serve"]:
        print(USAGE, file=sys.stderr)
        sys.exit(EXIT_USAGE)
    if not {"-h", "--help"} & set(args):
        _install_or_exit()

    from mxcp.__main__ import cli

    cli.main(args=args, prog_name="mxgate-core")


def _install_or_exit() -> None:
    """Validate configuration and install the hook; exit with a clear message on failure."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
    try:
        config = GateConfig.from_env(os.environ)
    except ConfigError as exc:
        _exit_config_error(exc)

    from mxgate_core.compat import IncompatibleMxcpError
    from mxgate_core.hook import install

    try:
        install(config)
    except IncompatibleMxcpError as exc:
        _exit_config_error(exc)


def _exit_config_error(error: Exception) -> NoReturn:
    """Print ``error`` (never contains secrets) and exit with EX_CONFIG."""
    print(f"mxgate-core: cannot start: {error}", file=sys.stderr)
    sys.exit(EXIT_CONFIG)
