//! The Pingora adapter — the only module that knows Pingora. Assembles the store, keys,
//! provider and authorization server from the settings, and runs the proxy service and the
//! store's clean-up task until a signal stops the process.

mod admin_socket;
mod admit;
mod config_reload;
mod connection_guard;
mod cors;
mod forward_auth;
mod forwarded;
#[cfg(fuzzing)]
pub(crate) mod fuzz_api;
mod h2;
mod header_deadline;
mod header_hygiene;
mod https_redirect;
mod local_response;
mod mcp_session_binding;
mod mcp_session_closer;
mod mcp_session_registry;
mod metrics_listener;
mod policy_gate;
mod proxy;
mod proxy_trust;
mod readiness;
mod request_body_replay;
mod request_guard;
mod strip_gateway_cookies;
mod strip_identity_headers;
mod tls_certificate;
mod tls_handshake;

pub use proxy::{HEALTH_PATH, READY_PATH};

use crate::admin::keys::KeyAdmin;
use crate::admin::SessionAdmin;
use crate::audit::{AuditEvent, AuditRecord};
use crate::config::{Settings, StoreSettings};
use crate::identity::assertion::AssertionMinter;
use crate::identity::signing_keys::SigningKeys;
use crate::oauth::AuthorizationServer;
use crate::policy::required_scopes::RequiredScopes;
use crate::policy::{PolicySet, SharedPolicies};
use crate::providers::ProviderSet;
use crate::session::bearer::BearerAuthenticator;
use crate::session::replica_events::ReplicaEvents;
use crate::session::Sessions;
use crate::store::{cipher::RecordCipher, RedbStore, RedisStore, Store};
use admin_socket::AdminSocket;
use admit::AuthParts;
use anyhow::Context;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use config_reload::{BuildAuth, ConfigReload, LiveAuth};
use connection_guard::{Admissions, ConnectionGuard, ConnectionLimits};
use https_redirect::HttpsRedirect;
use mcp_session_binding::McpSessionBindings;
use mcp_session_closer::{mcp_session_closer, McpSessionCloserService};
use mcp_session_registry::McpSessionRegistry;
use metrics_listener::MetricsListener;
use pingora::prelude::HttpPeer;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use proxy::McpGateway;
use proxy_trust::ProxyTrust;
use readiness::Readiness;
use request_guard::RequestGuard;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tls_certificate::CertificateReloader;
use tls_handshake::TlsHandshake;

/// How long an idle connection to the core stays pooled (below uvicorn's 5 s keep-alive).
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Unix socket paths longer than this cannot be bound (sun_path is 108 bytes on Linux).
const MAX_SOCKET_PATH: usize = 100;

/// Opens the store (creating its key and file on first start).
pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let kv: Arc<dyn crate::store::KvStore> = match &settings.store {
        StoreSettings::Redb { path } => {
            Arc::new(RedbStore::open(path).with_context(|| format!("opening the store at {}", path.display()))?)
        }
        StoreSettings::Redis(redis) => Arc::new(RedisStore::open(redis).context("configuring the Redis store")?),
    };
    let cipher = match &settings.auth.encryption_key {
        Some(key) => RecordCipher::from_secret(key.expose().as_bytes()),
        None => RecordCipher::load_or_create(&settings.data_dir).context("loading the store encryption key")?,
    };
    Ok(Store::new(kv, cipher))
}

/// How long start-up waits for a shared store to hand out the signing key.
const SHARED_KEY_WAIT: Duration = Duration::from_secs(30);

/// Refuses a `backchannel_logout` path that one of mxgate's fixed endpoints already has.
fn check_backchannel_logout_paths(settings: &Settings, auth: Option<&AuthParts>) -> anyhow::Result<()> {
    for endpoint in &settings.backchannel_logout {
        let path = endpoint.path.as_str();
        let routed = auth.and_then(|a| a.server.route(path));
        if routed != Some(crate::oauth::Route::BackchannelLogout)
            || path == proxy::HEALTH_PATH
            || path == proxy::READY_PATH
        {
            anyhow::bail!(
                "{}: backchannel_logout.{}.path `{path}` is one of mxgate's own endpoints; choose another",
                settings.config_file.display(),
                endpoint.provider
            );
        }
    }
    Ok(())
}

/// The assertion signing keys: the key ring in `data_dir`, or, with a shared store, the one
/// all replicas share (waiting a while for the store to answer).
fn load_signing_keys(settings: &Settings, store: &Store) -> anyhow::Result<SigningKeys> {
    let loaded = store.block_on(async {
        let deadline = tokio::time::Instant::now() + SHARED_KEY_WAIT;
        loop {
            match SigningKeys::load(&settings.assertion, &settings.data_dir, Some(store)).await {
                Ok(keys) => return Ok(keys),
                Err(e) if store.kv().is_shared() && tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "waiting for the shared store to load the signing keys");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e).context("loading the assertion signing keys"),
            }
        }
    });
    loaded.context("starting a runtime to read the signing keys")?
}

/// The proxy and what runs beside it when authentication is on.
struct Built {
    gateway: McpGateway,
    admin: Option<(SessionAdmin, KeyAdmin)>,
    session_closer: Option<McpSessionCloserService>,
    replica_events: Option<ReplicaEvents>,
    reload: Option<ConfigReload>,
    signing_keys: Option<Arc<SigningKeys>>,
}

/// Builds the proxy from the settings.
fn build_gateway(settings: Arc<Settings>) -> anyhow::Result<Built> {
    let mut peer = HttpPeer::new(settings.upstream.address, false, String::new());
    peer.options.connection_timeout = Some(Duration::from_secs(5));
    peer.options.total_connection_timeout = Some(Duration::from_secs(10));
    // Drop idle pooled connections to the core before the core drops them: uvicorn (MXCP's
    // server) closes idle keep-alive connections after 5 s, and a request sent on a connection
    // the core is closing at that moment fails.
    peer.options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
    let public_scheme = if settings.public_url_is_https() {
        "https"
    } else {
        "http"
    };

    let policies = SharedPolicies::new(PolicySet::from_settings(&settings)?);
    let providers = ProviderSet::build(&settings.auth).context("setting up the identity providers")?;
    let mut session_closer = None;
    let mut replica_events = None;
    let mut reload = None;
    let mut signing_keys = None;
    let (auth, stateful) = match providers {
        None => (None, None),
        Some(providers) => {
            crate::metrics::metrics().register_providers(providers.iter().map(|entry| entry.provider.name()));
            let providers = Arc::new(providers);
            let store = open_store(&settings)?;
            let keys = Arc::new(load_signing_keys(&settings, &store)?);
            signing_keys = Some(keys.clone());
            let mut bearer = BearerAuthenticator::new(
                store.clone(),
                settings.limits.max_cached_tokens,
                settings.tokens.access_token.as_secs(),
            )
            .with_memory_budget(usize::try_from(settings.limits.token_cache_memory).unwrap_or(usize::MAX));
            if let StoreSettings::Redis(redis) = &settings.store {
                bearer = bearer.with_outage_grace(redis.outage_grace);
            }
            let bearer = Arc::new(bearer);
            replica_events = ReplicaEvents::for_shared_store(&store, &bearer, &keys);
            let (mcp_closer, closer_service) =
                mcp_session_closer(format!("{}{}", settings.upstream.url, settings.mcp_path));
            session_closer = Some(closer_service);
            let kept = KeptAuth {
                store: store.clone(),
                keys: keys.clone(),
                bearer: bearer.clone(),
                minter: Arc::new(AssertionMinter::new(keys.clone(), &settings)),
                mcp_sessions: Arc::new(McpSessionRegistry::new(
                    McpSessionBindings::new(settings.limits.mcp_sessions_per_user, settings.limits.max_mcp_sessions),
                    mcp_closer,
                    &store,
                )),
            };
            let parts = kept.parts(settings.clone(), providers, policies, None);
            let admin = (
                SessionAdmin::new(store.clone(), parts.sessions.clone()),
                KeyAdmin::new(keys),
            );
            let live: LiveAuth = Arc::new(ArcSwap::from_pointee(parts));
            reload = Some(ConfigReload::new(live.clone(), settings.clone(), Box::new(kept)));
            (Some(live), Some((store, admin)))
        }
    };
    let forward_auth = match &auth {
        Some(auth) => forward_auth::ForwardAuth::from_settings(&settings, &auth.load().server)?,
        None => None,
    };
    check_backchannel_logout_paths(&settings, auth.as_ref().map(|live| live.load_full()).as_deref())?;
    let readiness = Arc::new(Readiness::new(
        stateful.as_ref().map(|(store, _)| store.clone()),
        settings.upstream.address,
        auth.clone(),
    ));
    let gateway = McpGateway {
        forward_auth,
        auth,
        peer,
        upstream_host: settings.upstream.host_header.clone(),
        upstream_origin: settings.upstream.url.clone(),
        public_url: settings.public_url.clone(),
        public_scheme,
        origin_from_proxy: settings.transport.trust_proxy && !settings.public_url_configured,
        trust: ProxyTrust::new(
            settings.transport.trust_proxy,
            settings.transport.trusted_proxies.clone(),
        ),
        guard: RequestGuard::new(&settings),
        body_timeout: settings.limits.body_timeout,
        max_inspected_body: settings.limits.max_inspected_body,
        readiness,
    };
    Ok(Built {
        gateway,
        admin: stateful.map(|(_, admin)| admin),
        session_closer,
        replica_events,
        reload,
        signing_keys,
    })
}

/// What every generation of authentication parts shares: the store, the signing keys, the token
/// cache, the assertion minter (and its cache), the MCP session registry.
struct KeptAuth {
    store: Store,
    keys: Arc<SigningKeys>,
    bearer: Arc<BearerAuthenticator>,
    minter: Arc<AssertionMinter>,
    mcp_sessions: Arc<McpSessionRegistry>,
}

// === impl KeptAuth ===

impl KeptAuth {
    /// The parts for `settings`; a reload passes the running ones, whose rate limiter's counts
    /// carry over.
    fn parts(
        &self,
        settings: Arc<Settings>,
        providers: Arc<ProviderSet>,
        policies: SharedPolicies,
        running: Option<&AuthParts>,
    ) -> AuthParts {
        let sessions = Sessions::new(self.store.clone(), self.bearer.clone(), providers.clone());
        let mut server = AuthorizationServer::new(
            settings.clone(),
            self.store.clone(),
            providers,
            sessions.clone(),
            self.keys.clone(),
            policies.clone(),
        );
        if let Some(running) = running {
            server = server.sharing_rate_limits_with(&running.server);
        }
        AuthParts {
            server: Arc::new(server),
            bearer: self.bearer.clone(),
            minter: self.minter.clone(),
            mcp_sessions: self.mcp_sessions.clone(),
            required_scopes: RequiredScopes::new(&settings.auth.required_scopes),
            sessions,
            policies,
        }
    }
}

impl BuildAuth for KeptAuth {
    fn build(&self, settings: Arc<Settings>, running: &AuthParts) -> anyhow::Result<AuthParts> {
        let providers = ProviderSet::build(&settings.auth)
            .context("setting up the identity providers")?
            .context("authentication cannot be turned off by a reload")?;
        let policies = SharedPolicies::new(PolicySet::from_settings(&settings)?);
        crate::metrics::metrics().register_providers(providers.iter().map(|entry| entry.provider.name()));
        Ok(self.parts(settings, Arc::new(providers), policies, Some(running)))
    }
}

/// Runs mxgate until SIGTERM (graceful) or SIGINT (fast).
pub fn serve(settings: Settings) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    crate::audit::file_sink::install_from_settings(&settings.audit)
        .with_context(|| format!("opening the audit log {}", settings.audit.path.display()))?;
    let Built {
        gateway,
        admin,
        session_closer,
        replica_events,
        reload,
        signing_keys,
    } = build_gateway(settings.clone())?;

    let conf = ServerConf {
        threads: settings.threads,
        work_stealing: settings.work_stealing,
        grace_period_seconds: Some(2),
        graceful_shutdown_timeout_seconds: Some(5),
        pid_file: settings.data_dir.join("mxgate.pid").display().to_string(),
        upgrade_sock: settings.data_dir.join("mxgate-upgrade.sock").display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let readiness = gateway.readiness.clone();
    let mut proxy = pingora::proxy::http_proxy(&server.configuration, gateway);
    proxy.h2_options = Some(h2::options());
    proxy.server_options = Some(h2::server_options(settings.limits.idle_timeout));
    // Connections from trusted proxies carry many clients: they are not capped per address.
    let trusted = if settings.transport.trust_proxy {
        settings.transport.trusted_proxies.clone()
    } else {
        Vec::new()
    };
    // One set of connection caps for every listener.
    let admissions = Arc::new(Admissions::new(ConnectionLimits::new(&settings.limits, trusted)));
    let tls = match &settings.tls {
        Some(tls) => {
            let (certificate, reloader) = CertificateReloader::load(tls).context("loading the TLS certificate")?;
            server.add_service(background_service("TLS certificate reloader", reloader));
            Some(TlsHandshake::new(tls, certificate, settings.limits.header_timeout)?)
        }
        None => None,
    };
    let guarded = ConnectionGuard::new(proxy, admissions.clone(), tls);
    let mut service = pingora::services::listening::Service::new("mxgate".into(), guarded);
    service.add_tcp(&settings.listen.to_string());
    server.add_service(service);
    if let Some(redirect_listen) = settings.tls.as_ref().and_then(|tls| tls.redirect_listen) {
        let redirect = HttpsRedirect::new(settings.public_url.clone(), readiness.clone());
        let guarded = ConnectionGuard::new(redirect, admissions, None);
        let mut service = pingora::services::listening::Service::new("https redirect".into(), guarded);
        service.add_tcp(&redirect_listen.to_string());
        server.add_service(service);
        tracing::info!(listen = %redirect_listen, "redirecting plain HTTP to the https public URL");
    }
    if let Some(reload) = reload {
        server.add_service(background_service("configuration reload", reload));
    }
    if let Some(admin_listen) = settings.admin_listen {
        let mut service = pingora::services::listening::Service::new(
            "admin listener".into(),
            MetricsListener::new(readiness.clone()),
        );
        service.add_tcp(&admin_listen.to_string());
        server.add_service(service);
        tracing::info!(listen = %admin_listen, "serving /metrics on the admin listener");
    }
    if let Some(events) = replica_events {
        server.add_service(background_service("replica events", events));
    }
    if let Some(keys) = signing_keys {
        server.add_service(background_service("signing key ring", SigningKeyRefresh(keys)));
    }
    if let Some(closer) = session_closer {
        server.add_service(background_service("MCP session closer", closer));
    }
    if let Some((admin, key_admin)) = admin {
        let store = admin.store().clone();
        let every = settings.purge_interval;
        server.add_service(background_service("store purge", StorePurge { store, every }));
        let socket = crate::admin::socket_path(&settings.data_dir).display().to_string();
        if socket.len() < MAX_SOCKET_PATH {
            // A socket left by an earlier run that did not shut down cleanly would block the bind.
            let _ = std::fs::remove_file(&socket);
            let mut service = pingora::services::listening::Service::new(
                "admin socket".into(),
                AdminSocket {
                    sessions: admin,
                    keys: key_admin,
                },
            );
            service.add_uds(&socket, Some(std::fs::Permissions::from_mode(0o600)));
            server.add_service(service);
        } else {
            tracing::warn!(path = %socket, "data_dir path too long for a Unix socket; `mxgate sessions` and `mxgate keys` work on the ring directly");
        }
    }
    if settings.transport.stateless {
        tracing::info!("stateless mode: access tokens are self-contained; the request path reads no store");
    }
    tracing::info!(
        listen = %settings.listen,
        tls = settings.tls.is_some(),
        upstream = %settings.upstream.url,
        public_url = %settings.public_url,
        provider = settings.auth.provider.kind().as_str(),
        "mxgate serving"
    );
    server.run_forever()
}

/// Keeps the signing keys in use up to date with the key ring (see [`SigningKeys::run`]).
struct SigningKeyRefresh(Arc<SigningKeys>);

#[async_trait]
impl BackgroundService for SigningKeyRefresh {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = self.0.run() => {}
        }
    }
}

/// Removes expired entries from the store every few minutes.
struct StorePurge {
    store: Store,
    every: Duration,
}

#[async_trait]
impl BackgroundService for StorePurge {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut interval = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = interval.tick() => {
                    match self.store.kv().purge_expired(crate::support::now()).await {
                        Ok(purged) => {
                            if purged.removed > 0 {
                                tracing::info!(removed = purged.removed, "purged expired store entries");
                            }
                            for client_id in purged.expired_clients {
                                crate::audit::record(
                                    AuditRecord::new(AuditEvent::ClientExpired)
                                        .client_id(client_id)
                                        .reason("unused for dynamic_clients.idle_ttl; removed"),
                                );
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "purging expired store entries failed"),
                    }
                }
            }
        }
    }
}
