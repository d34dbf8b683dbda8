"""Configuration from environment variables.

=============================  ==========================================================
Variable                       Meaning
=============================  ==========================================================
``MXGATE_ASSERTION_ISSUER``    Required. Expected ``iss``: mxgate's public URL, compared
                               as an exact string (e.g. ``http://127.0.0.1:8000``).
``MXGATE_ASSERTION_AUDIENCE``  Expected ``aud``. Default ``mxcp-core``.
``MXGATE_JWKS_URL``            JWKS endpoint of mxgate (EdDSA mode).
``MXGATE_JWKS_FILE``           Path of the JWKS file mxgate writes (EdDSA mode).
``MXGATE_ASSERTION_SECRET``    HS256 shared secret, used verbatim, >= 32 bytes (HS256).
``MXGATE_JWKS_MAX_AGE``        Seconds a JWKS fetched from ``MXGATE_JWKS_URL`` is used
                               before it is fetched again. Default 300.
=============================  ==========================================================

Exactly one of the three key sources must be set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mxgate_core.keys import JWKS_MAX_AGE, JwksFileKeySource, JwksUrlKeySource, KeySource, SecretKeySource

logger = logging.getLogger(__name__)

DEFAULT_AUDIENCE = "mxcp-core"
MIN_SECRET_BYTES = 32

ENV_ISSUER = "MXGATE_ASSERTION_ISSUER"
ENV_AUDIENCE = "MXGATE_ASSERTION_AUDIENCE"
ENV_JWKS_URL = "MXGATE_JWKS_URL"
ENV_JWKS_FILE = "MXGATE_JWKS_FILE"
ENV_SECRET = "MXGATE_ASSERTION_SECRET"
ENV_JWKS_MAX_AGE = "MXGATE_JWKS_MAX_AGE"


class ConfigError(ValueError):
    """The environment does not describe a usable configuration."""


@dataclass(frozen=True)
class GateConfig:
    """Validated settings for assertion verification."""

    issuer: str
    audience: str
    key_source: KeySource

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GateConfig:
        """Build the configuration from ``environ``; raise :class:`ConfigError` if unusable."""
        issuer = _get(environ, ENV_ISSUER)
        if issuer is None:
            raise ConfigError(
                f"{ENV_ISSUER} is required: set it to mxgate's public URL "
                "(the exact 'iss' of its assertions, e.g. http://127.0.0.1:8000)"
            )
        audience = _get(environ, ENV_AUDIENCE) or DEFAULT_AUDIENCE
        return cls(issuer=issuer, audience=audience, key_source=_key_source(environ))


def _get(environ: Mapping[str, str], name: str) -> str | None:
    """Return a stripped, non-empty variable value, or None."""
    value = environ.get(name, "").strip()
    return value or None


def _key_source(environ: Mapping[str, str]) -> KeySource:
    """Build the single configured key source."""
    configured = [name for name in (ENV_JWKS_URL, ENV_JWKS_FILE, ENV_SECRET) if _get(environ, name)]
    if not configured:
        raise ConfigError(
            f"no key source: set {ENV_JWKS_URL} or {ENV_JWKS_FILE} (EdDSA, default) or {ENV_SECRET} (HS256)"
        )
    if len(configured) > 1:
        raise ConfigError(f"set exactly one key source, not {' and '.join(configured)}")
    name = configured[0]
    if name == ENV_JWKS_URL:
        return _url_source(environ[name].strip(), _max_age(environ))
    if name == ENV_JWKS_FILE:
        return _file_source(environ[name].strip())
    return _secret_source(environ[name])


def _url_source(url: str, max_age: float) -> JwksUrlKeySource:
    """Validate the JWKS URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{ENV_JWKS_URL} must be an http(s) URL, got {url!r}")
    return JwksUrlKeySource(url, max_age=max_age)


def _max_age(environ: Mapping[str, str]) -> float:
    """Seconds a fetched JWKS is kept (``MXGATE_JWKS_MAX_AGE``), between 1 and 3600."""
    value = _get(environ, ENV_JWKS_MAX_AGE)
    if value is None:
        return JWKS_MAX_AGE
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{ENV_JWKS_MAX_AGE} must be a number of seconds, got {value!r}") from None
    if not 1 <= seconds <= 3600:
        raise ConfigError(f"{ENV_JWKS_MAX_AGE} must be between 1 and 3600 seconds, got {value!r}")
    return seconds


def _file_source(path: str) -> JwksFileKeySource:
    """Accept a JWKS file path; the file itself may appear later."""
    jwks_path = Path(path)
    if not jwks_path.exists():
        logger.warning("%s=%s does not exist yet; waiting for mxgate to write it", ENV_JWKS_FILE, path)
    return JwksFileKeySource(jwks_path)


def _secret_source(secret: str) -> SecretKeySource:
    """Validate the HS256 secret (used verbatim) is at least the hash size (RFC 7518)."""
    secret_bytes = secret.encode("utf-8")
    if len(secret_bytes) < MIN_SECRET_BYTES:
        raise ConfigError(f"{ENV_SECRET} must be at least {MIN_SECRET_BYTES} bytes long")
    return SecretKeySource(secret_bytes)
