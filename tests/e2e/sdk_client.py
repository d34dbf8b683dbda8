"""The official MCP Python SDK as an OAuth client of mxgate: an in-memory token storage and an
``OAuthClientProvider`` whose browser part is :class:`browser.SdkHandlers`. Used by the tests
and by ``scripts/demo_client.py``."""

from __future__ import annotations

from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from browser import SdkHandlers


class MemoryStorage:
    """The SDK's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def oauth_provider(mcp_url: str, handlers: SdkHandlers, storage: MemoryStorage, client_name: str) -> OAuthClientProvider:
    """A public client (PKCE, no secret) that registers itself dynamically."""
    return OAuthClientProvider(
        mcp_url,
        OAuthClientMetadata(
            client_name=client_name,
            redirect_uris=[handlers.redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage,
        redirect_handler=handlers.redirect_handler,
        callback_handler=handlers.callback_handler,
    )
