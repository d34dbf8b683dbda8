//! The connection to Redis, whichever way it is deployed: one server (or a managed endpoint)
//! through redis-rs's reconnecting `ConnectionManager`, a Redis Cluster through its cluster
//! client (slot routing, redirects, reconnects), or the primary that Sentinel names
//! (re-resolved after a connection error, so a failover is followed).
//!
//! Nothing connects at start: mxgate starts while Redis is down and reports not ready until it
//! answers. Every command has a response timeout, so an unreachable Redis fails a request
//! quickly instead of holding it. Connections live on a small runtime of their own
//! ([`RedisRuntime`]), so they do not depend on which of Pingora's runtimes used them first.

use super::StoreError;
use crate::config::RedisTopology;
use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, TlsCertificates,
    Value,
};
use std::sync::Arc;
use std::time::Duration;

/// How long one command may take before it fails (and `/readyz` says not ready).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// A cloneable handle on the connection; commands from all clones are multiplexed.
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(Arc<Reconnecting<ClusterConnection>>),
    Sentinel(Arc<Reconnecting<MultiplexedConnection>>),
}

/// Where pub/sub subscriptions go: classic pub/sub reaches every node of a cluster, so any node
/// will do; with Sentinel, the current primary.
#[derive(Clone)]
pub enum SubscriptionTarget {
    Nodes(Vec<Client>),
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
}

// === impl RedisConnection ===

/// The runtime the Redis connections' tasks run on: one worker thread, shut down (without
/// blocking) when the store is dropped.
pub struct RedisRuntime(Option<tokio::runtime::Runtime>);

// === impl RedisRuntime ===

impl RedisRuntime {
    pub fn new() -> Result<Self, StoreError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mxgate-redis")
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
            .map_err(|cause| StoreError::Io {
                context: "starting the Redis connection runtime".into(),
                cause,
            })
    }

    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.0.as_ref().map(|rt| rt.handle().clone())
    }
}

impl Drop for RedisRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

// === impl RedisConnection ===

impl RedisConnection {
    /// Prepares the connection on `runtime` (nothing connects yet).
    /// `ca` (PEM) replaces the system's roots for `rediss://` servers.
    pub fn open(
        topology: &RedisTopology,
        password: Option<&str>,
        ca: Option<&[u8]>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(Self, SubscriptionTarget), StoreError> {
        let client = |info: ConnectionInfo| match ca {
            Some(ca) => Client::build_with_tls(info, certificates(ca)),
            None => Client::open(info),
        };
        let _on_runtime = runtime.enter();
        match topology {
            RedisTopology::Single { url } => {
                let client = client(connection_info(url, password)?)
                    .map_err(|e| redis_error("configuring the Redis client", e))?;
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(CONNECTION_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map_err(|e| redis_error("configuring the Redis connection", e))?;
                Ok((Self::Single(manager), SubscriptionTarget::Nodes(vec![client])))
            }
            RedisTopology::Cluster { urls } => {
                let infos = urls
                    .iter()
                    .map(|u| connection_info(u, password))
                    .collect::<Result<Vec<_>, _>>()?;
                let nodes = infos
                    .iter()
                    .map(|i| client(i.clone()).map_err(|e| redis_error("configuring a Redis Cluster node", e)))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut builder = ClusterClientBuilder::new(infos);
                if let Some(ca) = ca {
                    builder = builder.certs(certificates(ca));
                }
                let client = builder
                    .response_timeout(RESPONSE_TIMEOUT)
                    .connection_timeout(CONNECTION_TIMEOUT)
                    .retries(2)
                    .build()
                    .map_err(|e| redis_error("configuring the Redis Cluster client", e))?;
                let connector = Connector::Cluster(Box::new(client));
                Ok((
                    Self::Cluster(Arc::new(Reconnecting::new(connector, runtime.clone()))),
                    SubscriptionTarget::Nodes(nodes),
                ))
            }
            RedisTopology::Sentinel { urls, service } => {
                let infos = urls
                    .iter()
                    .map(|u| connection_info(u, None))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut node = redis::RedisConnectionInfo::default();
                if let Some(password) = password {
                    node = node.set_password(password);
                }
                let mut node_info = SentinelNodeConnectionInfo::default().set_redis_connection_info(node);
                if let Some(tls) = infos.first().and_then(tls_mode) {
                    node_info = node_info.set_tls_mode(tls);
                }
                let sentinel =
                    SentinelClient::build(infos, service.as_str(), Some(node_info), SentinelServerType::Master)
                        .map_err(|e| redis_error("configuring the Sentinel client", e))?;
                let sentinel = Arc::new(tokio::sync::Mutex::new(sentinel));
                let connector = Connector::Sentinel(sentinel.clone());
                Ok((
                    Self::Sentinel(Arc::new(Reconnecting::new(connector, runtime.clone()))),
                    SubscriptionTarget::Sentinel(sentinel),
                ))
            }
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => Box::pin(async move {
                c.run(|mut conn| async move { conn.req_packed_command(cmd).await })
                    .await
            }),
            Self::Sentinel(c) => Box::pin(async move {
                c.run(|mut conn| async move { conn.req_packed_command(cmd).await })
                    .await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => Box::pin(async move {
                c.run(|mut conn| async move { conn.req_packed_commands(pipeline, offset, count).await })
                    .await
            }),
            Self::Sentinel(c) => Box::pin(async move {
                c.run(|mut conn| async move { conn.req_packed_commands(pipeline, offset, count).await })
                    .await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(_) => 0,
            Self::Sentinel(c) => c.current().map(|conn| conn.get_db()).unwrap_or(0),
        }
    }
}

// === impl SubscriptionTarget ===

impl SubscriptionTarget {
    /// A client on a node that answers, for a pub/sub connection.
    pub async fn client(&self) -> Result<Client, StoreError> {
        match self {
            Self::Nodes(nodes) => {
                let mut last = None;
                for node in nodes {
                    let probe = tokio::time::timeout(CONNECTION_TIMEOUT, node.get_multiplexed_async_connection()).await;
                    match probe {
                        Ok(Ok(_)) => return Ok(node.clone()),
                        Ok(Err(e)) => last = Some(redis_error("connecting for pub/sub", e)),
                        Err(_) => last = Some(StoreError::Unavailable("connecting for pub/sub timed out".into())),
                    }
                }
                Err(last.unwrap_or_else(|| StoreError::Unavailable("no Redis node configured".into())))
            }
            Self::Sentinel(sentinel) => sentinel
                .lock()
                .await
                .async_get_client()
                .await
                .map_err(|e| redis_error("asking Sentinel for the primary", e)),
        }
    }
}

/// How a lazily made connection is made.
pub enum Connector {
    Cluster(Box<ClusterClient>),
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
}

/// A connection made on first use and made again after a connection error.
pub struct Reconnecting<C> {
    connector: Arc<Connector>,
    current: ArcSwapOption<C>,
    connecting: tokio::sync::Mutex<()>,
    runtime: tokio::runtime::Handle,
}

/// What both lazily made connections can do.
pub trait MadeConnection: ConnectionLike + Clone + Send + Sync + 'static {
    fn make(connector: &Connector) -> impl std::future::Future<Output = redis::RedisResult<Self>> + Send;
}

impl MadeConnection for ClusterConnection {
    async fn make(connector: &Connector) -> redis::RedisResult<Self> {
        match connector {
            Connector::Cluster(client) => client.get_async_connection().await,
            Connector::Sentinel(_) => Err((redis::ErrorKind::Client, "not a cluster").into()),
        }
    }
}

impl MadeConnection for MultiplexedConnection {
    async fn make(connector: &Connector) -> redis::RedisResult<Self> {
        let Connector::Sentinel(sentinel) = connector else {
            return Err((redis::ErrorKind::Client, "not a sentinel").into());
        };
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT));
        sentinel.lock().await.get_async_connection_with_config(&config).await
    }
}

// === impl Reconnecting ===

impl<C: MadeConnection> Reconnecting<C> {
    fn new(connector: Connector, runtime: tokio::runtime::Handle) -> Self {
        Self {
            connector: Arc::new(connector),
            current: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            runtime,
        }
    }

    fn current(&self) -> Option<C> {
        self.current.load_full().map(|c| (*c).clone())
    }

    async fn connection(&self) -> redis::RedisResult<C> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        // Made on the Redis runtime, where the connection's own task then runs.
        let connector = self.connector.clone();
        let making = self
            .runtime
            .spawn(async move { tokio::time::timeout(CONNECTION_TIMEOUT * 2, C::make(&connector)).await });
        let made = making
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "the Redis runtime stopped")))?
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connecting to Redis timed out")))??;
        self.current.store(Some(Arc::new(made.clone())));
        Ok(made)
    }

    async fn run<T, F, Fut>(&self, command: F) -> redis::RedisResult<T>
    where
        F: FnOnce(C) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        let result = command(conn).await;
        if let Err(e) = &result {
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
            {
                // Made again on the next command (with Sentinel: at whichever node is primary now).
                self.current.store(None);
            }
        }
        result
    }
}

/// A private CA's certificates as the only roots (no client certificate).
fn certificates(ca: &[u8]) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    }
}

/// A URL's connection info, with the configured password when the URL carries none.
fn connection_info(url: &str, password: Option<&str>) -> Result<ConnectionInfo, StoreError> {
    let info = url
        .into_connection_info()
        .map_err(|e| StoreError::Backend(format!("store.url `{}`: {e}", redact(url))))?;
    match password {
        Some(password) if info.redis_settings().password().is_none() => {
            let settings = info.redis_settings().clone().set_password(password);
            Ok(info.set_redis_settings(settings))
        }
        _ => Ok(info),
    }
}

fn tls_mode(info: &ConnectionInfo) -> Option<redis::TlsMode> {
    match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure, .. } => Some(if *insecure {
            redis::TlsMode::Insecure
        } else {
            redis::TlsMode::Secure
        }),
        _ => None,
    }
}

/// A Redis URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// A Redis error as a store error: connection trouble means the store is unavailable (503),
/// anything else is a backend error.
pub fn redis_error(context: &str, e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        StoreError::Unavailable(format!("redis {context}: {e}"))
    } else {
        StoreError::Backend(format!("redis {context}: {e}"))
    }
}
