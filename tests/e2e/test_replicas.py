"""Several mxgate replicas sharing one Redis store (issue 8), as they run in production: three
mxgate processes, each with its own port, data dir and memory, behind HAProxy (round robin,
health checks on /healthz), all with the HAProxy address as public URL and the same
`persistence.auth_encryption_key`, in front of one real MXCP core or the recording upstream.
Redis is a real `redis-server`, standalone or a local 3-master Redis Cluster
(`redis_servers.py`).

* A login through the proxy (its steps land on different replicas) gives a token that works
  through every replica; the JWKS is the same everywhere; every key in Redis has the prefix.
* An MCP session initialized through one replica works through the others, and stays bound to
  its user there.
* A session revoked through one replica is refused by the others within `REVOCATION_BOUND`.
* Twelve concurrent refreshes with one refresh token through two replicas: at most the one use
  and its one grace retry succeed, the reuse revokes the session everywhere.
* When the provider's access token has expired, concurrent requests through two replicas make
  exactly one refresh at the provider (which rotates refresh tokens, so a second refresh with
  the old one would end the sign-in); the third replica takes over the refreshed tokens.
* One replica killed (SIGKILL) under load: no request fails once HAProxy has dropped it, and
  restarted it serves the same sessions.
* Redis unreachable: `/readyz` fails, new logins get 503, a token no replica has cached gets 503
  (not 401), and requests with a cached session keep working; all recovers with Redis.
* A Redis restart with an append-only file keeps sessions, signing keys and clients, even for
  a replica started afterwards with an empty data dir; nothing in Redis is a readable token.

The whole module is skipped, with mxgate's own message, only while `mxgate check` answers
"unknown store" for `store.type: redis`.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

import browser
from redis_servers import Load, Redis, RedisCluster, RedisServer, Replicas, servers_available, store_rejected
from support import MXGATE_BIN, IdP, McpHttp, RecordingUpstream, header_values

# A Fernet key (32 random bytes, url-safe base64): every replica gets the same one.
ENCRYPTION_KEY = "q3m0w0JvQpQJ8d3qgqfI7wY1D9sXk1u0eB9m2Lr7b4c="
KEY_PREFIX = "mxgate-e2e:"
REDIS_PASSWORD = "e2e-redis-password"
# The replicas read the password through a secret reference, like any other secret.
REDIS_PASSWORD_ENV = {"E2E_REDIS_PASSWORD": REDIS_PASSWORD}
PASSWORD_REFERENCE = "${E2E_REDIS_PASSWORD}"
# How long another replica may still accept a session revoked elsewhere.
REVOCATION_BOUND = float(os.environ.get("MXGATE_E2E_REVOCATION_BOUND", "5"))
# The provider's access tokens live this long in the provider-refresh stack.
PROVIDER_TOKEN_TTL = 4
ALICE = {"username": "alice", "email": "alice@example.test", "provider": "oidc", "has_external_token": True}


def _redis_store_unsupported() -> str | None:
    if not MXGATE_BIN.exists():
        return None  # conftest stops the run with its own message
    with tempfile.TemporaryDirectory() as d:
        # `type` alone: before the Redis store, the other keys would be refused as unknown fields.
        return store_rejected(Path(d), {"type": "redis"})


_unsupported = _redis_store_unsupported()
pytestmark = pytest.mark.skipif(
    _unsupported is not None,
    reason="this mxgate does not accept `store.type: redis` yet: "
    + next((line.strip() for line in (_unsupported or "").splitlines() if "unknown store" in line), ""),
)


# --- stacks ---------------------------------------------------------------------------------


def _redis(kind: str, tmp: Path, *, persistent: bool = False) -> tuple[Redis, dict[str, Any]]:
    """A Redis (not started) and the `store` section that points mxgate at it. The password
    comes from `password:` (a secret reference), or for "url-password" inside the URL."""
    store: dict[str, Any] = {"type": "redis", "key_prefix": KEY_PREFIX}
    if kind == "cluster":
        cluster = RedisCluster(tmp / "redis-cluster", password=REDIS_PASSWORD, persistent=persistent)
        return cluster, {**store, "cluster": cluster.urls, "password": PASSWORD_REFERENCE}
    server = RedisServer(tmp / "redis", password=REDIS_PASSWORD, persistent=persistent)
    if kind == "url-password":
        return server, {**store, "url": server.url_with_password}
    return server, {**store, "url": server.url, "password": PASSWORD_REFERENCE}


def _replicas(tmp: Path, kind: str, **kw: Any) -> Iterator[Replicas]:
    """Redis of ``kind`` ("standalone", "cluster", "url-password") and three replicas on it."""
    if why := servers_available():
        pytest.fail(f"Redis or HAProxy missing: {why}")
    redis, store = _redis(kind, tmp, persistent=kw.pop("persistent", False))
    with redis, Replicas(tmp, redis, store, ENCRYPTION_KEY, env=REDIS_PASSWORD_ENV, **kw) as stack:
        yield stack


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def replicas(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Three replicas in front of the real MXCP core, on standalone Redis and on the cluster."""
    yield from _replicas(tmp_path_factory.mktemp(f"replicas-{request.param}"), request.param, with_core=True)


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def short_provider_tokens(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                          echo_upstream: RecordingUpstream) -> Iterator[Replicas]:  # fmt: skip
    """Three replicas whose IdP issues 4 s access tokens and rotates refresh tokens."""
    idp_args = ("--access-token-ttl", str(PROVIDER_TOKEN_TTL), "--refresh-token-rotation", "always")
    tmp = tmp_path_factory.mktemp(f"replicas-provider-refresh-{request.param}")
    yield from _replicas(tmp, request.param, upstream=echo_upstream.url, idp_args=idp_args)


@pytest.fixture(scope="module")
def failover(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Replicas]:
    """Three replicas on a standalone Redis with an append-only file (its password in the
    store URL), in front of the recording upstream; here replicas are killed and Redis is
    stopped and restarted."""
    tmp = tmp_path_factory.mktemp("replicas-failover")
    yield from _replicas(tmp, "url-password", upstream=echo_upstream.url, persistent=True)


# --- helpers --------------------------------------------------------------------------------


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _whoami(mcp_url: str, token: str) -> dict[str, Any]:
    with McpHttp(mcp_url, token) as mcp:
        mcp.initialize()
        return mcp.call_tool("whoami")


def _get(base_url: str, token: str, marker: str | None = None) -> httpx.Response:
    """An authenticated GET through ``base_url`` to the recording upstream."""
    return httpx.get(f"{base_url}/mcp/x?id={marker or uuid.uuid4().hex}", headers=_bearer(token), timeout=10)


def _claims(base_url: str, token: str, upstream: RecordingUpstream) -> dict[str, Any]:
    """The assertion the recording upstream received for one request through ``base_url``."""
    marker = uuid.uuid4().hex
    r = _get(base_url, token, marker)
    assert r.status_code == 200, (base_url, r.status_code, r.text)
    [seen] = upstream.find(lambda q: marker in q["path"])
    [assertion] = header_values(seen, "x-mxcp-user-assertion")
    return jwt.decode(assertion, options={"verify_signature": False})


def _refresh(base_url: str, stack: Replicas, client_id: str, refresh_token: str) -> httpx.Response:
    """The refresh grant sent to ``base_url`` (a replica), naming the public resource."""
    return httpx.post(base_url + "/token", timeout=15, data={
        "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id,
        "resource": stack.url + "/mcp",
    })  # fmt: skip


def _served_since(stack: Replicas, mark: int, until: Callable[[list[tuple[str, str]]], bool]) -> list[tuple[str, str]]:
    """HAProxy's (replica, request line) pairs logged after the first ``mark``, polled until
    ``until(pairs)`` holds or 2 s passed (HAProxy logs a request just after answering it)."""
    deadline = time.monotonic() + 2
    while not until(served := stack.proxy.served()[mark:]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return served


def _provider_refreshes(idp: IdP) -> list[str]:
    """The IdP's log lines of refresh-token grants (one per refresh mxgate made)."""
    return [line for line in idp.log().splitlines() if "route=token" in line and "grant_type=refresh_token" in line]


def _userinfo(idp: IdP, provider_token: str) -> httpx.Response:
    return httpx.get(idp.issuer + "/me", headers=_bearer(provider_token), timeout=10)


def _poll(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until ``check()`` was first true, or None if it never was within ``timeout``."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(interval)


# --- one login, every replica ---------------------------------------------------------------


def test_a_login_through_the_proxy_works_through_every_replica(replicas: Replicas) -> None:
    mark = len(replicas.proxy.served())
    lg = browser.login(replicas.url)
    everywhere = set(replicas.proxy.server_names)
    login_steps = _served_since(replicas, mark, lambda pairs: {server for server, _ in pairs} == everywhere)
    assert {server for server, _ in login_steps} == everywhere, (
        f"the login's steps should land on every replica: {login_steps}"
    )
    token = lg.tokens["access_token"]
    for gw in replicas.gateways:
        assert _whoami(gw.mcp_url, token) == ALICE, gw.name
    for _ in replicas.gateways:
        assert _whoami(replicas.proxy.mcp_url, token) == ALICE

    jwks = [httpx.get(gw.url + "/.well-known/jwks.json", timeout=10).json() for gw in replicas.gateways]
    assert jwks[0]["keys"] and all(j == jwks[0] for j in jwks), f"the replicas publish different keys: {jwks}"

    keys = replicas.redis.keys()
    assert keys, "nothing was stored in Redis"
    assert all(k.startswith(KEY_PREFIX) for k in keys), [k for k in keys if not k.startswith(KEY_PREFIX)][:10]


def test_an_mcp_session_opened_through_one_replica_works_through_the_others(replicas: Replicas) -> None:
    alice = browser.login(replicas.url).tokens["access_token"]
    bob = browser.login(replicas.url, login_hint="bob").tokens["access_token"]
    first, *others = replicas.gateways
    with McpHttp(first.mcp_url, alice) as opened:
        opened.initialize()
        assert opened.call_tool("whoami") == ALICE
        for i, gw in enumerate(others, start=1):
            moved = McpHttp(gw.mcp_url, alice)
            moved.session_id, moved._next_id = opened.session_id, 1000 * i  # JSON-RPC ids never repeat
            try:
                assert moved.call_tool("whoami") == ALICE, gw.name
            finally:
                moved.client.close()  # the session stays open for `opened`
            # ... and it is still alice's there: bob presenting its id is refused.
            stranger = McpHttp(gw.mcp_url, bob)
            stranger.session_id = opened.session_id
            try:
                r = stranger.request_raw("tools/call", {"name": "whoami", "arguments": {}})
                assert r.status_code == 404, (gw.name, r.status_code, r.text)
            finally:
                stranger.client.close()
        assert opened.call_tool("whoami") == ALICE


# --- revocation and refresh across replicas -------------------------------------------------


def test_a_session_revoked_through_one_replica_is_refused_by_the_others_within_the_bound(
    replicas: Replicas,
) -> None:
    lg = browser.login(replicas.url)
    token = lg.tokens["access_token"]
    sessions = []
    try:
        for gw in replicas.gateways:  # every replica has the session in memory now
            mcp = McpHttp(gw.mcp_url, token)
            sessions.append(mcp)
            mcp.initialize()
            assert mcp.call_tool("whoami") == ALICE

        revoking, *others = replicas.gateways
        r = httpx.post(revoking.url + "/revoke", timeout=10, data={
            "token": lg.tokens["refresh_token"], "token_type_hint": "refresh_token", "client_id": lg.client_id,
        })  # fmt: skip
        assert r.status_code == 200, r.text

        def refused(mcp: McpHttp) -> Callable[[], bool]:
            return lambda: mcp.request_raw("tools/call", {"name": "whoami", "arguments": {}}).status_code == 401

        assert refused(sessions[0])(), "the replica that revoked the session still accepts its token"
        delays = {gw.name: _poll(refused(mcp), REVOCATION_BOUND) for gw, mcp in zip(others, sessions[1:])}
        late = {name: d for name, d in delays.items() if d is None}
        assert not late, f"still accepted {REVOCATION_BOUND} s after the revocation: {late} (delays: {delays})"
        print(f"revocation reached the other replicas after {delays}")
        for gw in others:
            again = _refresh(gw.url, replicas, lg.client_id, lg.tokens["refresh_token"])
            assert again.status_code == 400 and again.json()["error"] == "invalid_grant", (gw.name, again.text)
    finally:
        for mcp in sessions:
            mcp.session_id = None  # the core's sessions are closed with the test stack
            mcp.close()


def test_concurrent_refreshes_through_two_replicas_rotate_once_and_reuse_revokes(replicas: Replicas) -> None:
    """As on one mxgate (test_refusals.py): a refresh token works once plus one grace retry,
    the other presentations are reuse and revoke the session — with the presentations split
    over two replicas, which only agree through Redis."""
    lg = browser.login(replicas.url)
    _, second, third = replicas.gateways
    targets = [second.url, third.url] * 6
    start = threading.Barrier(len(targets))

    def present(url: str) -> httpx.Response:
        start.wait()
        return _refresh(url, replicas, lg.client_id, lg.tokens["refresh_token"])

    with ThreadPoolExecutor(len(targets)) as pool:
        results = list(pool.map(present, targets))
    winners = [r.json() for r in results if r.status_code == 200]
    # At most the exchange and its one grace retry win. A reuse that lands between a winner's
    # rotation and its issuing revokes the session first, and then no one wins: both are right.
    assert len(winners) <= 2, f"one refresh token was exchanged {len(winners)} times over two replicas"
    for r in results:
        if r.status_code != 200:
            assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    for winner in winners:
        for gw in replicas.gateways:
            gone = _poll(lambda: _get(gw.url, winner["access_token"]).status_code == 401, REVOCATION_BOUND)
            assert gone is not None, f"{gw.name} still accepts a token of the revoked session"
        refused = _refresh(replicas.url, replicas, lg.client_id, winner["refresh_token"])
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text
    for gw in replicas.gateways:  # the reuse revoked the session the login opened
        gone = _poll(lambda: _get(gw.url, lg.tokens["access_token"]).status_code == 401, REVOCATION_BOUND)
        assert gone is not None, f"{gw.name} still accepts the first access token of the revoked session"


def test_an_expired_provider_token_is_refreshed_once_for_all_replicas(
    short_provider_tokens: Replicas, echo_upstream: RecordingUpstream
) -> None:
    stack = short_provider_tokens
    token = browser.login(stack.url).tokens["access_token"]
    idle, *busy = stack.gateways
    first_ext = {_claims(gw.url, token, echo_upstream)["ext"] for gw in stack.gateways}
    assert len(first_ext) == 1, "the replicas hand out different provider tokens"
    [old] = first_ext
    assert _poll(lambda: _userinfo(stack.idp, old).status_code == 401, PROVIDER_TOKEN_TTL + 6, 0.2) is not None
    before = len(_provider_refreshes(stack.idp))

    targets = [gw.url for gw in busy] * 4
    start = threading.Barrier(len(targets))

    def request(url: str) -> dict[str, Any]:
        start.wait()
        return _claims(url, token, echo_upstream)

    with ThreadPoolExecutor(len(targets)) as pool:
        claims = list(pool.map(request, targets))
    refreshes = _provider_refreshes(stack.idp)[before:]
    assert len(refreshes) == 1, f"{len(refreshes)} provider refreshes for one session:\n" + "\n".join(refreshes)
    assert " 200 " in refreshes[0], refreshes[0]
    fresh = {c["ext"] for c in claims}
    assert len(fresh) == 1 and old not in fresh, "every request should carry the one refreshed provider token"
    [new] = fresh
    # The replica that took no part still holds the old tokens in memory: it must take over the
    # refreshed ones (refreshing again with the spent refresh token would end the sign-in).
    assert _claims(idle.url, token, echo_upstream)["ext"] == new
    assert len(_provider_refreshes(stack.idp)) == before + 1
    me = _userinfo(stack.idp, new)
    assert me.status_code == 200 and me.json()["sub"] == "alice", me.text


# --- failures: a replica dies, Redis goes away, Redis restarts -------------------------------


def test_killing_a_replica_under_load_fails_no_request_once_the_proxy_drops_it(failover: Replicas) -> None:
    stack = failover
    token = browser.login(stack.url).tokens["access_token"]
    for gw in stack.gateways:
        assert _get(gw.url, token).status_code == 200

    def request(client: httpx.Client) -> httpx.Response:
        return client.get(f"{stack.url}/mcp/load?id={uuid.uuid4().hex}", headers=_bearer(token))

    victim, name = stack.gateways[1], stack.proxy.server_names[1]
    with Load(request, threads=4) as load:
        time.sleep(1.0)
        killed_at = time.monotonic()
        victim.stop(signal.SIGKILL)
        dropped_at = stack.proxy.wait_state(name, "DOWN", timeout=5)
        time.sleep(2.0)
    assert dropped_at - killed_at < 2.0, f"HAProxy took {dropped_at - killed_at:.2f} s to drop the dead replica"
    load.assert_failover(killed_at, dropped_at)

    # Back in the rotation, with nothing in memory, it serves the same session from Redis.
    victim.start()
    stack.proxy.wait_state(name, "UP")
    assert _get(victim.url, token).status_code == 200


def test_without_redis_replicas_are_not_ready_refuse_logins_and_keep_cached_sessions(
    failover: Replicas, echo_upstream: RecordingUpstream
) -> None:
    stack, redis = failover, failover.redis
    assert isinstance(redis, RedisServer)
    cached = browser.login(stack.url).tokens["access_token"]
    for gw in stack.gateways:
        assert _get(gw.url, cached).status_code == 200
    mark = len(stack.proxy.served())
    unused = browser.login(stack.url)  # a token no replica has checked yet
    redeemed = _served_since(stack, mark, lambda pairs: any(line.startswith("POST /token") for _, line in pairs))
    [issuer] = {server for server, line in redeemed if line.startswith("POST /token")}
    strangers = [gw for gw, name in zip(stack.gateways, stack.proxy.server_names) if name != issuer]
    pending = browser.login(stack.url, redeem_code=False)  # a code, not yet redeemed
    client = browser.register(stack.url)
    _, challenge = browser.pkce_pair()
    authorize = browser.authorization_url(stack.url, client["client_id"], browser.DEFAULT_REDIRECT_URI, challenge, "s1")

    redis.stop()
    try:
        stopped_at = time.monotonic()
        for gw in stack.gateways:
            r = _get(gw.url, cached)
            assert r.status_code == 200, (gw.name, "a cached session should keep working", r.status_code, r.text)
        for gw in stack.gateways:
            ready = _poll(lambda: httpx.get(gw.url + "/readyz", timeout=5).status_code != 200, 5)
            assert ready is not None, f"{gw.name} still says ready without Redis"
            assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200, "the process itself still serves"

        reg = httpx.post(stack.url + "/register", timeout=10, json={
            "redirect_uris": [browser.DEFAULT_REDIRECT_URI], "token_endpoint_auth_method": "none",
        })  # fmt: skip
        assert reg.status_code == 503 and "error" in reg.json(), (reg.status_code, reg.text)
        for _ in stack.gateways:  # whichever replica HAProxy picks
            a = httpx.get(authorize, timeout=10)
            refused_by_redirect = a.is_redirect and "error=temporarily_unavailable" in a.headers.get("location", "")
            assert a.status_code == 503 or refused_by_redirect, (a.status_code, a.headers, a.text[:500])
        code = browser.redeem(stack.url, pending.client_id, pending.auth.code or "", pending.verifier,
                              pending.redirect_uri)  # fmt: skip
        assert code.status_code == 503 and "error" in code.json(), (code.status_code, code.text)
        for gw in strangers:
            r = _get(gw.url, unused.tokens["access_token"])
            assert r.status_code == 503, (gw.name, "an unchecked token cannot be judged: 503, not 401", r.status_code)
        for _ in stack.gateways:
            assert _get(stack.url, cached).status_code == 200, "cached sessions keep working through the proxy"
        print(f"checked the outage within {time.monotonic() - stopped_at:.2f} s")
    finally:
        redis.start()

    for gw in stack.gateways:
        back = _poll(lambda: httpx.get(gw.url + "/readyz", timeout=5).status_code == 200, 20, 0.2)
        assert back is not None, f"{gw.name} is not ready again after Redis came back"
    assert _get(stack.url, unused.tokens["access_token"]).status_code == 200
    assert _claims(stack.url, browser.login(stack.url).tokens["access_token"], echo_upstream)["sub"] == "alice"


def test_a_redis_restart_keeps_sessions_keys_and_clients(failover: Replicas, echo_upstream: RecordingUpstream) -> None:
    stack, redis = failover, failover.redis
    assert isinstance(redis, RedisServer) and redis.persistent
    lg = browser.login(stack.url)
    token = lg.tokens["access_token"]
    ext = _claims(stack.url, token, echo_upstream)["ext"]
    jwks = httpx.get(stack.url + "/.well-known/jwks.json", timeout=10).json()

    # Nothing in Redis is readable: tokens are hashed, provider tokens and keys sealed.
    keys, dump = redis.keys(), redis.dump()
    assert keys and all(k.startswith(KEY_PREFIX) for k in keys), [k for k in keys if not k.startswith(KEY_PREFIX)]
    for name, secret in (("access token", token), ("refresh token", lg.tokens["refresh_token"]),
                         ("provider access token", ext), ("IdP client secret", "mxgate-secret")):  # fmt: skip
        assert secret.encode() not in dump, f"the {name} is stored in plaintext in Redis"

    redis.restart()
    for gw in stack.gateways:
        back = _poll(lambda: httpx.get(gw.url + "/readyz", timeout=5).status_code == 200, 20, 0.2)
        assert back is not None, f"{gw.name} is not ready again after the Redis restart"
    fresh = stack.restart_replica(2, wipe_data=True)  # nothing in memory, nothing on disk
    assert httpx.get(fresh.url + "/.well-known/jwks.json", timeout=10).json() == jwks
    assert _claims(fresh.url, token, echo_upstream)["sub"] == "alice"
    r = _refresh(fresh.url, stack, lg.client_id, lg.tokens["refresh_token"])
    assert r.status_code == 200, r.text
    for gw in stack.gateways:
        assert _claims(gw.url, r.json()["access_token"], echo_upstream)["sub"] == "alice", gw.name
    again = browser.login(stack.url, client_id=lg.client_id, redirect_uri=lg.redirect_uri)
    assert _get(stack.url, again.tokens["access_token"]).status_code == 200
