"""Key sources for verifying mxgate assertions.

Three interchangeable sources, chosen by configuration:

* :class:`JwksUrlKeySource` - Ed25519 keys from mxgate's JWKS endpoint, fetched
  lazily, re-fetched once they are :data:`JWKS_MAX_AGE` old (so keys mxgate
  publishes ahead of a rotation are known before they sign, and keys it removed
  stop verifying) and, rate limited, when an unknown ``kid`` shows up.
* :class:`JwksFileKeySource` - Ed25519 keys from the JWKS file mxgate writes,
  re-read whenever the file changes.
* :class:`SecretKeySource` - one HS256 shared secret.

Each source declares which JOSE algorithms it accepts; the verifier rejects any
other ``alg`` before looking for a key, so an Ed25519 deployment never accepts
HS256 (or ``none``) and vice versa.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

logger = logging.getLogger(__name__)

EDDSA_ALGORITHMS = ("EdDSA",)
HMAC_ALGORITHMS = ("HS256",)

JWKS_REFETCH_INTERVAL = 30.0
"""Minimum seconds between JWKS fetches for an unknown ``kid`` after a successful fetch."""

JWKS_MAX_AGE = 300.0
"""Seconds a fetched JWKS is used before the next lookup fetches it again.

mxgate publishes a new signing key ``assertion.key_rotation.publish_before``
(7 min by default) before it signs with it: longer than this, so a core always
holds the new key before the first assertion it signs arrives.
"""

JWKS_RETRY_AFTER_FAILURE = 5.0
"""Minimum seconds between JWKS fetches after a failed fetch (mxgate not up yet)."""

JWKS_FETCH_TIMEOUT = 5.0

_MISSING_FILE = (-1, -1, -1)


class JwksError(ValueError):
    """A JWKS document is structurally invalid."""


class KeySource(Protocol):
    """Resolves the verification key for an assertion."""

    algorithms: tuple[str, ...]

    def describe(self) -> str:
        """Return a log-safe, human-readable description of the source."""

    async def key_for(self, kid: str | None) -> Any | None:
        """Return the key for ``kid``, or None when no usable key is known."""


def _b64url_decode(value: str) -> bytes:
    """Decode unpadded base64url as used by JWK members."""
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _ed25519_public_key(entry: Any) -> tuple[str, Ed25519PublicKey] | None:
    """Return ``(kid, key)`` for a usable Ed25519 signing JWK, else None.

    Only the public ``x`` member is used, so a JWKS that accidentally carries
    private material (``d``) still yields a public key.
    """
    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        return None
    if not isinstance(kid, str) or not kid:
        return None
    if entry.get("use", "sig") != "sig" or entry.get("alg", "EdDSA") not in ("EdDSA", "Ed25519"):
        return None
    x = entry.get("x")
    if not isinstance(x, str):
        return None
    try:
        return kid, Ed25519PublicKey.from_public_bytes(_b64url_decode(x))
    except ValueError:
        logger.warning("Ignoring JWKS key %r: invalid Ed25519 public key", kid)
        return None


def parse_jwks(document: Any) -> dict[str, Ed25519PublicKey]:
    """Return the usable Ed25519 keys of a JWKS document, by ``kid``.

    Keys of other types are ignored. Raises :class:`JwksError` when the
    document is not a JWKS object at all.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("JWKS must be a JSON object with a 'keys' array")
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in document["keys"]:
        parsed = _ed25519_public_key(entry)
        if parsed is not None:
            keys[parsed[0]] = parsed[1]
    return keys


class SecretKeySource:
    """A single HS256 shared secret; ``kid`` is ignored."""

    algorithms = HMAC_ALGORITHMS

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def describe(self) -> str:
        """Describe the source without revealing the secret."""
        return "HS256 shared secret"

    async def key_for(self, kid: str | None) -> bytes:
        """Return the shared secret."""
        return self._secret


class JwksFileKeySource:
    """Ed25519 keys from a JWKS file, re-read when the file changes.

    The file is stat()ed on every lookup; it is parsed again only when its
    inode, size or modification time changed. A missing file means no keys
    (mxgate may not have written it yet). A file that cannot be parsed keeps
    the previously loaded keys.
    """

    algorithms = EDDSA_ALGORITHMS

    def __init__(self, path: Path) -> None:
        self._path = path
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._signature: tuple[int, int, int] | None = None

    def describe(self) -> str:
        """Describe the source."""
        return f"JWKS file {self._path}"

    async def key_for(self, kid: str | None) -> Ed25519PublicKey | None:
        """Return the key for ``kid`` from the current file contents."""
        self._reload_if_changed()
        return self._keys.get(kid) if kid else None

    def _reload_if_changed(self) -> None:
        """Re-read the file if its stat signature changed since the last read."""
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            if self._signature != _MISSING_FILE:
                logger.warning("JWKS file %s does not exist (yet); no assertion can verify", self._path)
            self._signature, self._keys = _MISSING_FILE, {}
            return
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            self._keys = parse_jwks(json.loads(self._path.read_bytes()))
        except (OSError, ValueError) as exc:
            logger.warning("Cannot load JWKS file %s (%s); keeping previous keys", self._path, exc)
            return
        logger.info("Loaded %d Ed25519 key(s) from JWKS file %s", len(self._keys), self._path)


class JwksUrlKeySource:
    """Ed25519 keys from a JWKS URL, fetched lazily and cached.

    Nothing is fetched at startup (the core may start before mxgate). A lookup
    fetches the JWKS when the cached one is ``max_age`` old, and for an unknown
    ``kid`` at most once per :data:`JWKS_REFETCH_INTERVAL` (or ``max_age`` if
    shorter) after a success; after a failure, once per
    :data:`JWKS_RETRY_AFTER_FAILURE`, keeping the keys it had. A successful fetch
    replaces the whole key set, so keys mxgate removed stop verifying.
    """

    algorithms = EDDSA_ALGORITHMS

    def __init__(
        self, url: str, clock: Callable[[], float] = time.monotonic, max_age: float = JWKS_MAX_AGE
    ) -> None:
        self._url = url
        self._clock = clock
        self._max_age = max_age
        self._refetch_interval = min(JWKS_REFETCH_INTERVAL, max_age)
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._next_fetch_at = float("-inf")
        self._stale_at = float("-inf")
        self._lock: asyncio.Lock | None = None

    def describe(self) -> str:
        """Describe the source."""
        return f"JWKS URL {self._url}"

    async def key_for(self, kid: str | None) -> Ed25519PublicKey | None:
        """Return the key for ``kid``, fetching the JWKS if it is unknown."""
        if not kid:
            return None
        if self._fetch_wanted(kid):
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._fetch_wanted(kid):
                    await self._refresh()
        return self._keys.get(kid)

    def _fetch_wanted(self, kid: str) -> bool:
        """Whether to fetch now: the keys are stale or ``kid`` is unknown, and the rate limit allows."""
        now = self._clock()
        return now >= self._next_fetch_at and (now >= self._stale_at or kid not in self._keys)

    async def _refresh(self) -> None:
        """Fetch the JWKS and replace the cached keys; keep them on failure."""
        try:
            async with httpx.AsyncClient(timeout=JWKS_FETCH_TIMEOUT) as client:
                response = await client.get(self._url, headers={"accept": "application/json"})
            response.raise_for_status()
            keys = parse_jwks(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            self._next_fetch_at = self._clock() + JWKS_RETRY_AFTER_FAILURE
            logger.warning("Cannot fetch JWKS from %s (%s)", self._url, exc)
            return
        fetched_at = self._clock()
        self._next_fetch_at = fetched_at + self._refetch_interval
        self._stale_at = fetched_at + self._max_age
        self._keys = keys
        logger.info("Fetched %d Ed25519 key(s) from %s", len(keys), self._url)
