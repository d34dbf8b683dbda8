"""Run an MXCP server behind mxgate.

mxgate authenticates users and forwards each request with a signed JWT in the
``x-mxcp-user-assertion`` header. This package verifies that assertion on every
HTTP request and makes MXCP see the asserted user exactly as if MXCP's own
OAuth had authenticated it (SQL user UDFs, CEL policies, audit user id).
"""

__version__ = "0.1.0"

ASSERTION_HEADER = "x-mxcp-user-assertion"
