"""Entry point for ``python -m mxgate_core serve ...``."""

from mxgate_core.cli import main

if __name__ == "__main__":
    main()
