"""Rotating the assertion signing key (`mxgate keys rotate`) while MCP clients work: the real
MXCP core with the mxgate adapter (JWKS from mxgate's URL, kept 2 s here), the MCP Python SDK
client, and short rotation timings (published 4 s before it signs, old key kept 6 s after).

* Under a load of concurrent SDK tool calls, a rotation through activation and retirement
  fails no request: every call is answered as alice (an assertion the core cannot verify would
  make her anonymous).
* The JWKS has the new kid as soon as the command returns, before any assertion is signed with
  it; assertions switch to the new kid at its activation (mxgate's debug log of each minted
  assertion); the old kid leaves the JWKS after the overlap, and calls keep working once the
  core's copy of the JWKS no longer has it.
* `--now` signs with the new key at once; a second rotation while one is under way is refused;
  HS256 has no key to rotate (clear message, non-zero exit); with no mxgate running the command
  works on the key ring in the data dir, made from the old single `signing-key.pem`.
* Two replicas on Redis: both publish the new key at once (replica channel) and agree on the
  JWKS through the rotation, with no failed call through HAProxy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

import browser
from browser import Browser, SdkHandlers
from sdk_client import MemoryStorage, oauth_provider
from support import IDP_CLIENT_SECRET, MXGATE_BIN, SECRET_ENV, Gateway, McpHttp, Stack

PUBLISH_BEFORE = 4
OVERLAP = 6
KEY_ROTATION = {"publish_before": f"{PUBLISH_BEFORE}s", "overlap": f"{OVERLAP}s"}
# The adapter keeps a fetched JWKS this long (default 300 s, as publish_before is 6 min).
CORE_ENV = {"MXGATE_JWKS_MAX_AGE": "2"}
# Each minted assertion is logged at debug with its kid (and nothing else of it).
GATEWAY_LOG = "info,mxgate::identity=debug"
REDIRECT_URI = "http://127.0.0.1:9/sdk-callback"
ALICE = {"username": "alice", "email": "alice@example.test", "provider": "oidc", "has_external_token": True}
MINTED = re.compile(r"^(\S+)\s+DEBUG .*assertion minted kid=(\S+)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra = {"assertion": {"key_rotation": KEY_ROTATION}}
    with Stack(tmp_path_factory.mktemp("key-rotation"), with_core=True, gateway_extra=extra,
               log_level=GATEWAY_LOG, core_env=CORE_ENV) as s:  # fmt: skip
        yield s


@pytest.fixture(scope="module")
def storage(stack: Stack) -> MemoryStorage:
    """alice's tokens, from one interactive SDK login."""
    storage = MemoryStorage()
    handlers = SdkHandlers(Browser(), REDIRECT_URI)
    try:
        calls = anyio.run(_sdk_calls, stack.gateway.mcp_url, storage, handlers, None, 1)
    finally:
        handlers.browser.close()
    assert calls and calls[0][2] == ALICE, calls
    return storage


# --- helpers --------------------------------------------------------------------------------


async def _sdk_calls(mcp_url: str, storage: MemoryStorage, handlers: SdkHandlers, stop: threading.Event | None,
                     count: int = 0, sessions: int = 1) -> list[tuple[float, float, Any]]:  # fmt: skip
    """``sessions`` concurrent SDK sessions calling `whoami` until ``stop`` is set (or ``count``
    times each, without ``stop``); (sent, answered, structured result or the error) of every call."""
    calls: list[tuple[float, float, Any]] = []

    async def one(index: int) -> None:
        provider = oauth_provider(mcp_url, handlers, storage, f"key rotation load {index}")
        async with httpx2.AsyncClient(auth=provider, timeout=20) as http:
            async with streamable_http_client(mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    done = 0
                    while (done < count) if stop is None else not stop.is_set():
                        sent = time.time()
                        try:
                            result = await session.call_tool("whoami", {})
                            outcome: Any = result.structured_content if not result.is_error else result
                        except Exception as e:  # noqa: BLE001 - every failure is a result here
                            outcome = repr(e)
                        calls.append((sent, time.time(), outcome))
                        done += 1

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for index in range(sessions):
                tg.start_soon(one, index)
    return calls


class SdkLoad:
    """Concurrent SDK sessions calling `whoami` in a thread while the ``with`` block runs."""

    def __init__(self, mcp_url: str, storage: MemoryStorage, sessions: int = 4) -> None:
        self.stop = threading.Event()
        self.calls: list[tuple[float, float, Any]] = []
        self.error: BaseException | None = None
        self._args = (mcp_url, storage, SdkHandlers(Browser(), REDIRECT_URI), self.stop, 0, sessions)
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.calls = anyio.run(_sdk_calls, *self._args)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def __enter__(self) -> SdkLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=60)
        self._args[2].browser.close()

    def failures(self) -> list[tuple[float, float, Any]]:
        return [c for c in self.calls if c[2] != ALICE]


def _keys_cli(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    run_env = {**os.environ, SECRET_ENV: IDP_CLIENT_SECRET, **(env or {})}
    return subprocess.run([str(MXGATE_BIN), "keys", *args, "--config", str(config)],
                          env=run_env, capture_output=True, text=True, timeout=60)  # fmt: skip


def _rotate(config: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Runs `mxgate keys rotate`; the new kid."""
    r = _keys_cli(config, "rotate", *args, env=env)
    assert r.returncode == 0, (r.stdout, r.stderr)
    found = re.search(r"new signing key (\S+):", r.stdout)
    assert found, r.stdout
    return found.group(1)


def _listed(config: Path, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    r = _keys_cli(config, "list", "--json", env=env)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return {k["kid"]: k for k in json.loads(r.stdout)}


def _kids(base_url: str) -> list[str]:
    r = httpx.get(base_url + "/.well-known/jwks.json", timeout=10)
    assert r.status_code == 200, r.text
    return [k["kid"] for k in r.json()["keys"]]


def _minted(gateway: Gateway, since: int = 0) -> list[tuple[float, str]]:
    """(time, kid) of each assertion mxgate logged as minted, after log offset ``since``."""
    out = []
    for line in gateway.log()[since:].splitlines():
        if m := MINTED.match(line):
            out.append((datetime.fromisoformat(m.group(1)).timestamp(), m.group(2)))
    return out


def _wait_for(check: Any, timeout: float, interval: float = 0.1) -> float | None:
    """The time at which ``check()`` was first true, or None within ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return time.time()
        time.sleep(interval)
    return None


# --- one mxgate ----------------------------------------------------------------------------


def test_a_rotation_under_load_fails_no_call_and_switches_keys_in_order(stack: Stack, storage: MemoryStorage) -> None:
    gw = stack.gateway
    [old] = _kids(stack.url)
    with SdkLoad(gw.mcp_url, storage) as load:
        time.sleep(1.5)
        mark = len(gw.log())
        new = _rotate(gw.config_path)
        rotated_at = time.time()
        assert _kids(stack.url) == [old, new], "the new kid is published when the command returns"
        listed = _listed(gw.config_path)
        assert (listed[old]["state"], listed[new]["state"]) == ("current", "next"), listed
        activate_at = listed[new]["activate_at"]
        assert rotated_at < activate_at, "published before it signs"
        assert listed[old]["retire_at"] == activate_at + OVERLAP

        removed_at = _wait_for(lambda: _kids(stack.url) == [new], timeout=PUBLISH_BEFORE + OVERLAP + 5)
        assert removed_at is not None, _kids(stack.url)
        time.sleep(3.0)  # past the core's 2 s copy of the JWKS, which then has the new key only
    assert load.error is None, load.error
    assert load.failures() == [], load.failures()[:5]
    print(f"{len(load.calls)} calls, none failed")
    assert len(load.calls) > 40, len(load.calls)

    assert activate_at + OVERLAP - 1 <= removed_at <= activate_at + OVERLAP + 3, (activate_at, removed_at)
    assert [c for c in load.calls if c[0] > removed_at + 2.5], "calls once only the new key verifies"
    minted = _minted(gw, mark)
    assert {kid for _, kid in minted} <= {old, new}, minted
    signed_new = [t for t, kid in minted if kid == new]
    assert signed_new, "assertions switched to the new kid"
    assert min(signed_new) >= activate_at - 0.5, "no assertion is signed with the new key before it activates"
    assert all(t < activate_at + 0.5 for t, kid in minted if kid == old), "none with the old key after"
    assert json.loads((gw.data_dir / "jwks.json").read_text())["keys"][0]["kid"] == new, "the JWKS file follows"


def test_now_signs_with_the_new_key_at_once_and_a_second_rotation_waits(stack: Stack, storage: MemoryStorage) -> None:
    gw = stack.gateway
    [current] = [kid for kid, k in _listed(gw.config_path).items() if k["state"] == "current"]
    time.sleep(2.5)  # the core's copy of the JWKS is old: it meets the new kid with a fetch
    mark = len(gw.log())
    new = _rotate(gw.config_path, "--now")
    listed = _listed(gw.config_path)
    assert (listed[current]["state"], listed[new]["state"]) == ("retiring", "current"), listed
    assert new in _kids(stack.url)
    calls = anyio.run(_sdk_calls, gw.mcp_url, storage, SdkHandlers(Browser(), REDIRECT_URI), None, 3)
    assert [c[2] for c in calls] == [ALICE] * 3, calls
    assert [kid for _, kid in _minted(gw, mark)] == [new], "signed with the new key at once"

    following = _rotate(gw.config_path)
    refused = _keys_cli(gw.config_path, "rotate")
    assert refused.returncode != 0
    assert f"key {following} starts signing at" in refused.stderr and "already under way" in refused.stderr, refused


def _offline_config(stack: Stack, tmp: Path, assertion: dict[str, Any]) -> Path:
    """The stack's config with its own (empty) data dir and ``assertion``: no mxgate runs on it."""
    for name in ("mxgate.yml", "mxcp-config.yml"):
        shutil.copy(stack.gateway.workdir / name, tmp / name)
    config = json.loads((tmp / "mxgate.yml").read_text())
    config["assertion"] = assertion
    (tmp / "mxgate.yml").write_text(json.dumps(config))
    return tmp / "mxgate.yml"


def test_hs256_has_no_key_to_rotate(stack: Stack, tmp_path: Path) -> None:
    config = _offline_config(stack, tmp_path, {"algorithm": "HS256", "secret": "s" * 40})
    r = _keys_cli(config, "rotate")
    assert r.returncode != 0
    assert "HS256" in r.stderr and "assertion.secret" in r.stderr, r.stderr
    assert "s" * 40 not in r.stderr + r.stdout


def test_without_a_running_mxgate_the_ring_in_the_data_dir_is_used_and_the_old_key_file_kept(
    stack: Stack, tmp_path: Path
) -> None:
    config = _offline_config(stack, tmp_path, {"key_rotation": KEY_ROTATION})
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    # The single key file of an mxgate from before the ring: taken over as the current key.
    old_kid = _write_pem(data / "signing-key.pem")
    [(kid, key)] = _listed(config).items()
    assert (kid, key["state"]) == (old_kid, "current")
    r = _keys_cli(config, "rotate")
    assert r.returncode == 0, r.stderr
    assert "no mxgate answers on the admin socket" in r.stderr
    listed = _listed(config)
    assert listed[kid]["state"] == "current" and len(listed) == 2, listed
    assert (data / "signing-keys.json").stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in r.stdout + r.stderr


def _write_pem(path: Path) -> str:
    """Writes a new Ed25519 key as mxgate did before the ring; its kid (RFC 7638 thumbprint)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    thumbprint = hashlib.sha256(json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":")).encode())
    return base64.urlsafe_b64encode(thumbprint.digest()).rstrip(b"=").decode()


# --- two replicas on Redis ----------------------------------------------------------------


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from redis_servers import RedisServer, Replicas, servers_available
    from test_replicas import ENCRYPTION_KEY, PASSWORD_REFERENCE, REDIS_PASSWORD, REDIS_PASSWORD_ENV

    if why := servers_available():
        pytest.fail(f"Redis or HAProxy missing: {why}")
    tmp = tmp_path_factory.mktemp("key-rotation-replicas")
    redis = RedisServer(tmp / "redis", password=REDIS_PASSWORD)
    store = {"type": "redis", "url": redis.url, "password": PASSWORD_REFERENCE, "key_prefix": "mxgate-keys:"}
    extra = {"assertion": {"key_rotation": KEY_ROTATION}}
    with redis, Replicas(tmp, redis, store, ENCRYPTION_KEY, count=2, with_core=True, env=REDIS_PASSWORD_ENV,
                         gateway_extra=extra, core_env=CORE_ENV, log_level=GATEWAY_LOG) as stack:  # fmt: skip
        yield stack


def test_two_replicas_on_redis_publish_the_same_keys_through_a_rotation(replicas: Any) -> None:
    from test_replicas import REDIS_PASSWORD_ENV

    token = browser.login(replicas.url).tokens["access_token"]
    first, second = replicas.gateways
    [old] = _kids(first.url)
    assert _kids(second.url) == [old]
    failures: list[Any] = []
    calls = [0]
    stop = threading.Event()

    def load() -> None:
        with McpHttp(replicas.url + "/mcp", token) as mcp:
            mcp.initialize()
            while not stop.is_set():
                try:
                    seen = mcp.call_tool("whoami")
                    if seen != ALICE:
                        failures.append(seen)
                except Exception as e:  # noqa: BLE001 - every failure is a result here
                    failures.append(repr(e)[:300])
                calls[0] += 1

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        marks = [len(gw.log()) for gw in replicas.gateways]
        new = _rotate(first.config_path, env=REDIS_PASSWORD_ENV)
        agreed = _wait_for(lambda: _kids(first.url) == _kids(second.url) == [old, new], timeout=1.0, interval=0.02)
        assert agreed is not None, "the other replica published the new key at once"
        activate_at = _listed(second.config_path, env=REDIS_PASSWORD_ENV)[new]["activate_at"]
        assert time.time() < activate_at
        deadline = activate_at + OVERLAP + 2
        while time.time() < deadline:
            # Each replica changes its JWKS at the same instant by its own clock: a sample taken
            # right then may differ, but never for more than a moment.
            settled = _wait_for(lambda: _kids(first.url) == _kids(second.url), timeout=0.3, interval=0.02)
            assert settled is not None, "the replicas publish the same keys"
            time.sleep(0.2)
        assert _kids(first.url) == _kids(second.url) == [new]
        time.sleep(2.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert failures == [], failures[:5]
    assert calls[0] > 30, calls
    for gw, mark in zip(replicas.gateways, marks):
        minted = _minted(gw, mark)
        assert all(t >= activate_at - 0.5 for t, kid in minted if kid == new), (gw.name, minted)
        assert all(t < activate_at + 0.5 for t, kid in minted if kid == old), (gw.name, minted)
