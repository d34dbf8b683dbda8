//! The Pingora adapter — the only module that knows Pingora. Assembles the store, keys,
//! provider and authorization server from the settings, and runs the proxy service and the
//! store's clean-up task until a signal stops the process.

mod admin_socket;
mod admit;
mod forwarded;
#[cfg(fuzzing)]
pub(crate) mod fuzz_api;
mod local_response;
mod mcp_session_binding;
mod proxy;
mod proxy_trust;
mod strip_gateway_cookies;
mod strip_identity_headers;

pub use proxy::{HEALTH_PATH, READY_PATH};

use crate::admin::SessionAdmin;
use crate::config::{Settings, StoreSettings};
use crate::identity::assertion::AssertionMinter;
use crate::identity::signing_key::AssertionSigner;
use crate::oauth::AuthorizationServer;
use crate::policy::required_scopes::RequiredScopes;
use crate::providers::ProviderSet;
use crate::session::bearer::BearerAuthenticator;
use crate::session::provider_refresh::ProviderRefresher;
use crate::store::{cipher::RecordCipher, RedbStore, Store};
use admin_socket::AdminSocket;
use admit::AuthParts;
use anyhow::Context;
use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use proxy::McpGateway;
use proxy_trust::ProxyTrust;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

/// Unix socket paths longer than this cannot be bound (sun_path is 108 bytes on Linux).
const MAX_SOCKET_PATH: usize = 100;

/// Opens the store (creating its key and file on first start).
pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let StoreSettings::Redb { path } = &settings.store;
    let kv = RedbStore::open(path).with_context(|| format!("opening the store at {}", path.display()))?;
    let cipher = match &settings.auth.encryption_key {
        Some(key) => RecordCipher::from_secret(key.expose().as_bytes()),
        None => RecordCipher::load_or_create(&settings.data_dir).context("loading the store encryption key")?,
    };
    Ok(Store::new(Arc::new(kv), cipher))
}

/// Builds the proxy from the settings.
fn build_gateway(settings: Arc<Settings>) -> anyhow::Result<(McpGateway, Option<SessionAdmin>)> {
    let mut peer = HttpPeer::new(settings.upstream.address, false, String::new());
    peer.options.connection_timeout = Some(Duration::from_secs(5));
    peer.options.total_connection_timeout = Some(Duration::from_secs(10));
    let public_scheme = if settings.public_url_is_https() {
        "https"
    } else {
        "http"
    };

    let providers = ProviderSet::build(&settings.auth).context("setting up the identity providers")?;
    let (auth, stateful) = match providers {
        None => (None, None),
        Some(providers) => {
            let providers = Arc::new(providers);
            let store = open_store(&settings)?;
            let signer = Arc::new(
                AssertionSigner::from_settings(&settings.assertion, &settings.data_dir)
                    .context("loading the assertion signing key")?,
            );
            let bearer = Arc::new(BearerAuthenticator::new(store.clone()));
            let refresher = ProviderRefresher::new(providers.clone(), store.clone());
            let server = Arc::new(AuthorizationServer::new(
                settings.clone(),
                store.clone(),
                providers,
                bearer.clone(),
                signer.jwks().clone(),
            ));
            let minter = AssertionMinter::new(signer, &settings);
            let admin = SessionAdmin::new(store.clone(), server.clone());
            (
                Some(AuthParts {
                    server,
                    bearer,
                    minter,
                    mcp_sessions: Default::default(),
                    required_scopes: RequiredScopes::new(&settings.auth.required_scopes),
                    refresher,
                }),
                Some((store, admin)),
            )
        }
    };
    let gateway = McpGateway {
        auth,
        peer,
        upstream_host: settings.upstream.host_header.clone(),
        public_scheme,
        origin_from_proxy: settings.transport.trust_proxy && !settings.public_url_configured,
        trust: ProxyTrust::new(
            settings.transport.trust_proxy,
            settings.transport.trusted_proxies.clone(),
        ),
        store_ready: stateful.as_ref().map(|(store, _)| store.clone()),
    };
    Ok((gateway, stateful.map(|(_, admin)| admin)))
}

/// Runs mxgate until SIGTERM (graceful) or SIGINT (fast).
pub fn serve(settings: Settings) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let (gateway, admin) = build_gateway(settings.clone())?;

    let conf = ServerConf {
        threads: settings.threads,
        grace_period_seconds: Some(2),
        graceful_shutdown_timeout_seconds: Some(5),
        pid_file: settings.data_dir.join("mxgate.pid").display().to_string(),
        upgrade_sock: settings.data_dir.join("mxgate-upgrade.sock").display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    proxy.add_tcp(&settings.listen.to_string());
    server.add_service(proxy);
    if let Some(admin) = admin {
        let store = admin.store().clone();
        let every = settings.purge_interval;
        server.add_service(background_service("store purge", StorePurge { store, every }));
        let socket = crate::admin::socket_path(&settings.data_dir).display().to_string();
        if socket.len() < MAX_SOCKET_PATH {
            // A socket left by an earlier run that did not shut down cleanly would block the bind.
            let _ = std::fs::remove_file(&socket);
            let mut service = pingora::services::listening::Service::new("admin socket".into(), AdminSocket(admin));
            service.add_uds(&socket, Some(std::fs::Permissions::from_mode(0o600)));
            server.add_service(service);
        } else {
            tracing::warn!(path = %socket, "data_dir path too long for a Unix socket; `mxgate sessions` is unavailable");
        }
    }
    if settings.transport.stateless {
        tracing::info!("stateless mode: access tokens are self-contained; the request path reads no store");
    }
    tracing::info!(
        listen = %settings.listen,
        upstream = %settings.upstream.url,
        public_url = %settings.public_url,
        provider = settings.auth.provider.kind().as_str(),
        "mxgate serving"
    );
    server.run_forever()
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
                    match self.store.kv().purge_expired(crate::store::now()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "purged expired store entries"),
                        Err(e) => tracing::warn!(error = %e, "purging expired store entries failed"),
                    }
                }
            }
        }
    }
}
