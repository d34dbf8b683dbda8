//! The one `ProxyHttp` implementation. `request_filter` runs the request guard (framing, then
//! for requests bound for the core `Host`/`Origin`), answers CORS and mxgate's own endpoints,
//! and authenticates everything else; `upstream_request_filter` cleans the request for the
//! core and adds the assertion; `upstream_response_filter` binds new MCP sessions, rewrites the
//! core's own address out of `Location`, and adds CORS headers. Bodies stream both ways (SSE
//! included); nothing is buffered — except when a per-request policy reads `rpc`/`tool`: then a
//! POST body is read before the request is decided and replayed to the core
//! (`request_body_replay`), and a `tools/list` answer is held until it ends, to remove the
//! tools the policies deny (`policy::tools_list`).

use super::admit::{Admission, AuthParts, RequestHead};
use super::config_reload::LiveAuth;
use super::cors;
use super::forward_auth::{Check, ForwardAuth};
use super::forwarded::ForwardedFacts;
use super::header_hygiene::clean_for_upstream;
use super::local_response::{json_error, read_request, write_response, LocalBody};
use super::mcp_session_binding::MCP_SESSION_HEADER;
use super::proxy_trust::{ClientView, ProxyTrust};
use super::request_body_replay::{read_for_replay, ReplayBody};
use super::request_guard::{check_framing, Refusal, RequestGuard};
use crate::metrics::{metrics, RouteClass};
use crate::oauth::{PublicOrigin, Route};
use crate::policy::tools_list::{self, BodyKind, MAX_TOOLS_LIST_BODY};
use crate::policy::variables::{RequestFacts, UserFacts};
use crate::session::ActiveSession;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, StatusCode};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorSource;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const HEALTH_PATH: &str = "/healthz";
pub const READY_PATH: &str = "/readyz";

pub struct McpGateway {
    /// Swapped whole by a reload (`config_reload`); each request works with the one it loaded.
    pub auth: Option<LiveAuth>,
    pub peer: HttpPeer,
    pub upstream_host: String,
    /// `http://host:port` of the core, as it may appear in its own `Location` headers.
    pub upstream_origin: String,
    pub public_url: String,
    pub public_scheme: &'static str,
    /// `public_url` was derived, not configured: a trusted proxy may name the origin per request.
    pub origin_from_proxy: bool,
    pub trust: ProxyTrust,
    pub guard: RequestGuard,
    pub body_timeout: Duration,
    /// `limits.max_inspected_body`: the largest body read for policies on `rpc`/`tool`.
    pub max_inspected_body: usize,
    /// What `/readyz` checks (shared with the https redirect listener).
    pub readiness: Arc<super::readiness::Readiness>,
    /// The forward-auth endpoint, when it is on (answered here, never forwarded).
    pub forward_auth: Option<ForwardAuth>,
}

/// What earlier phases of one request learned, for later ones.
pub struct RequestContext {
    started: Instant,
    view: ClientView,
    /// The public URL of this request when a trusted proxy names one other than `public_url`.
    origin: Option<PublicOrigin>,
    /// The request's `Origin`, when it may read the response (CORS).
    cors_origin: Option<HeaderValue>,
    session: Option<Arc<ActiveSession>>,
    assertion: Option<HeaderValue>,
    /// A renewed browser session cookie to hand back with the response.
    set_cookie: Option<HeaderValue>,
    /// The request carried no `mcp-session-id`: a session id in the answer is a new session.
    opens_mcp_session: bool,
    local: bool,
    /// A forward-auth check (logged like a proxied request, not like an OAuth endpoint).
    forward_auth: bool,
    /// What the request was for, as `mxgate_requests_total` counts it.
    route: RouteClass,
    /// When the request went to the core (for `mxgate_upstream_duration_seconds`).
    upstream_sent: Option<Instant>,
    /// The request body, read for the policies, to send to the core in place of Pingora's copy.
    replay_body: Option<Bytes>,
    /// The ids of the request's `tools/list` calls, when the policies filter their answer.
    tools_list_ids: Vec<serde_json::Value>,
    /// A `tools/list` answer being held until it ends.
    tools_list_answer: Option<(BodyKind, BytesMut)>,
}

// === impl McpGateway ===

impl McpGateway {
    /// Writes a response of mxgate's own (with CORS headers for an allowed origin).
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &RequestContext,
        mut response: http::Response<bytes::Bytes>,
    ) -> pingora::Result<bool> {
        if let Some(origin) = &ctx.cors_origin {
            let h = response.headers_mut();
            if !h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
                h.extend(cors::response_headers(origin));
            }
        }
        write_response(session, response).await?;
        Ok(true)
    }

    async fn refuse(&self, session: &mut Session, ctx: &RequestContext, refusal: Refusal) -> pingora::Result<bool> {
        if refusal.closes_connection() {
            session.set_keepalive(None);
        }
        tracing::info!(reason = ?refusal, client = ?ctx.view.client_ip, "request refused");
        self.answer(session, ctx, refusal.response()).await
    }

    /// Answers a request to one of mxgate's own OAuth endpoints.
    async fn serve_local(
        &self,
        auth: &AuthParts,
        route: Route,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> pingora::Result<bool> {
        ctx.local = true;
        ctx.route = route_class(route);
        if let Some(address) = ctx.view.client_ip {
            if let Err(limited) = auth.server.check_address_rate(route, address) {
                tracing::info!(client = %address, ?route, "rate limited");
                let refusal = crate::oauth::error::OAuthError::from(limited).into_response();
                return self.answer(session, ctx, refusal).await;
            }
        }
        let response = match read_request(session, self.body_timeout).await {
            LocalBody::Complete(mut request) => {
                if let Some(origin) = &ctx.origin {
                    request.extensions_mut().insert(origin.clone());
                }
                if let Some(address) = ctx.view.client_ip {
                    request.extensions_mut().insert(crate::oauth::ClientAddress(address));
                }
                auth.server.handle(route, *request).await
            }
            LocalBody::TooLarge => json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is too large",
            ),
            LocalBody::TimedOut => {
                session.set_keepalive(None);
                json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request",
                    "the request body did not arrive in time",
                )
            }
            LocalBody::Malformed(e) => {
                tracing::info!(error = %e, "malformed request body");
                return self
                    .refuse(session, ctx, Refusal::Framing("the request body is malformed"))
                    .await;
            }
        };
        self.answer(session, ctx, response).await
    }

    /// Answers a proxy's forward-auth check.
    async fn answer_forward_auth(
        &self,
        endpoint: &ForwardAuth,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> pingora::Result<bool> {
        ctx.forward_auth = true;
        ctx.route = RouteClass::ForwardAuth;
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let header = session.req_header();
        let response = match self.auth.as_ref().map(|live| live.load()) {
            Some(auth) => {
                let check = Check {
                    peer,
                    method: &header.method,
                    headers: &header.headers,
                };
                endpoint.check(&auth, &self.guard, check, crate::support::now()).await
            }
            None => json_error(StatusCode::NOT_FOUND, "not_found", "forward auth is off"),
        };
        write_response(session, response).await?;
        Ok(true)
    }

    /// Admits a request for the core. `Ok(true)` when a refusal was written instead.
    async fn admit(&self, auth: &AuthParts, session: &mut Session, ctx: &mut RequestContext) -> pingora::Result<bool> {
        let now = crate::support::now();
        let header = session.req_header();
        let request = RequestHead {
            method: &header.method,
            path_and_query: header.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            headers: &header.headers,
            origin: ctx.origin.as_ref(),
            mode: Admission::Proxied,
            client_addr: ctx.view.client_ip,
        };
        match auth.admit(&request, now).await {
            Ok(admitted) => {
                ctx.assertion = Some(admitted.assertion);
                ctx.session = Some(admitted.session);
                ctx.set_cookie = admitted.set_cookie;
                Ok(false)
            }
            Err(refusal) => self.answer(session, ctx, refusal).await,
        }
    }

    /// The per-request rules of `policies` for an admitted request (reading a POST body first
    /// when they read `rpc`/`tool`). `Ok(true)` when a refusal was written instead.
    async fn apply_policies(
        &self,
        auth: &AuthParts,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> pingora::Result<bool> {
        let policies = auth.policies.current();
        if !policies.has_request_rules() {
            return Ok(false);
        }
        let mut calls = Vec::new();
        if policies.reads_calls() && session.req_header().method == Method::POST {
            let body = match read_for_replay(session, self.max_inspected_body, self.body_timeout).await {
                ReplayBody::Complete(body) => body,
                ReplayBody::TooLarge => {
                    session.set_keepalive(None);
                    let refusal = json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "invalid_request",
                        "the request body is larger than mxgate's policies may read (limits.max_inspected_body)",
                    );
                    return self.answer(session, ctx, refusal).await;
                }
                ReplayBody::TimedOut => {
                    session.set_keepalive(None);
                    let refusal = json_error(
                        StatusCode::REQUEST_TIMEOUT,
                        "invalid_request",
                        "the request body did not arrive in time",
                    );
                    return self.answer(session, ctx, refusal).await;
                }
                ReplayBody::Malformed(e) => {
                    tracing::info!(error = %e, "malformed request body");
                    return self
                        .refuse(session, ctx, Refusal::Framing("the request body is malformed"))
                        .await;
                }
            };
            calls = match crate::policy::jsonrpc::calls(&body) {
                Ok(calls) => calls,
                Err(_) => {
                    let refusal = json_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "the JSON-RPC batch has more messages than mxgate's policies evaluate",
                    );
                    return self.answer(session, ctx, refusal).await;
                }
            };
            if !body.is_empty() {
                ctx.replay_body = Some(body);
            }
        }
        let Some(active) = ctx.session.clone() else {
            return Ok(false);
        };
        let header = session.req_header();
        let request = RequestFacts {
            method: header.method.as_str(),
            path: header.uri.path(),
        };
        if let Some(refusal) = auth.policy_refusal(&active, request, &calls, ctx.view.client_ip) {
            ctx.assertion = None;
            ctx.replay_body = None;
            return self.answer(session, ctx, refusal).await;
        }
        ctx.tools_list_ids = calls
            .into_iter()
            .filter(|c| c.method == "tools/list" && !c.id.is_null())
            .map(|c| c.id)
            .collect();
        Ok(false)
    }

    /// Starts holding a `tools/list` answer to filter it (see [`Self::filter_tools_list`]);
    /// refuses (502) one it could not filter: compressed, or announced larger than the bound.
    fn hold_tools_list(
        &self,
        upstream_response: &mut pingora::http::ResponseHeader,
        version: http::Version,
        ctx: &mut RequestContext,
    ) -> pingora::Result<()> {
        let header_text = |name| upstream_response.headers.get(name).and_then(|v| v.to_str().ok());
        let Some(kind) = header_text(header::CONTENT_TYPE).and_then(BodyKind::of) else {
            return Ok(());
        };
        let encoded = header_text(header::CONTENT_ENCODING).is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
        let length: Option<usize> = header_text(header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok());
        if encoded || length.is_some_and(|n| n > MAX_TOOLS_LIST_BODY) {
            tracing::warn!(
                encoded,
                length,
                "a tools/list answer cannot be filtered by the policies; refused (502)"
            );
            return Err(pingora::Error::explain(
                pingora::ErrorType::HTTPStatus(502),
                "tools/list answer cannot be filtered",
            ));
        }
        upstream_response.remove_header(&header::CONTENT_LENGTH);
        if version == http::Version::HTTP_11 {
            upstream_response.insert_header(header::TRANSFER_ENCODING, "chunked")?;
        }
        ctx.tools_list_answer = Some((kind, BytesMut::new()));
        Ok(())
    }

    /// The held `tools/list` answer without the tools the policies deny this user.
    fn filter_tools_list(&self, session: &Session, ctx: &RequestContext, kind: BodyKind, answer: &[u8]) -> Bytes {
        let (Some(live), Some(active)) = (&self.auth, &ctx.session) else {
            return Bytes::copy_from_slice(answer);
        };
        let auth = live.load();
        let policies = auth.policies.current();
        let header = session.req_header();
        let user = UserFacts {
            user: &active.record.user,
            scopes: &active.record.scope,
        };
        let request = RequestFacts {
            method: header.method.as_str(),
            path: header.uri.path(),
        };
        let mut hides = policies.tool_filter(user, request);
        match tools_list::filter(answer, kind, &ctx.tools_list_ids, &mut hides) {
            Some(filtered) => Bytes::from(filtered),
            None => Bytes::copy_from_slice(answer),
        }
    }

    /// The core's own address in a `Location` becomes the public URL of this request.
    fn public_location(&self, location: &str, ctx: &RequestContext) -> Option<String> {
        let rest = location.strip_prefix(&self.upstream_origin)?;
        if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
            return None;
        }
        let public = ctx.origin.as_ref().map_or(self.public_url.as_str(), |o| o.0.as_str());
        Some(format!("{public}{rest}"))
    }
}

#[async_trait]
impl ProxyHttp for McpGateway {
    type CTX = RequestContext;

    fn new_ctx(&self) -> Self::CTX {
        RequestContext {
            started: Instant::now(),
            view: ClientView::default(),
            origin: None,
            cors_origin: None,
            session: None,
            assertion: None,
            set_cookie: None,
            opens_mcp_session: false,
            local: false,
            forward_auth: false,
            route: RouteClass::Other,
            upstream_sent: None,
            replay_body: None,
            tools_list_ids: Vec::new(),
            tools_list_answer: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> pingora::Result<bool> {
        super::h2::host_from_authority(session.req_header_mut());
        let header = session.req_header();
        if let Err(refusal) = check_framing(header.version, &header.headers) {
            return self.refuse(session, ctx, refusal).await;
        }
        let path = header.uri.path();
        if path == HEALTH_PATH || path == READY_PATH {
            ctx.local = true;
            ctx.route = RouteClass::Health;
            let resp = if path == HEALTH_PATH {
                super::readiness::alive()
            } else {
                self.readiness.answer().await
            };
            return self.answer(session, ctx, resp).await;
        }
        if let Some(endpoint) = self.forward_auth.as_ref().filter(|f| f.path() == path) {
            return self.answer_forward_auth(endpoint, session, ctx).await;
        }
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let header = session.req_header();
        ctx.view = self.trust.view(peer, &header.headers);
        if self.origin_from_proxy {
            if let (Some(proto), Some(host)) = (&ctx.view.forwarded_proto, &ctx.view.host) {
                ctx.origin = Some(PublicOrigin(format!("{proto}://{host}")));
            }
        }
        let own_origin = ctx.origin.as_ref().map(|o| o.0.as_str());
        let request_origin = header.headers.get(header::ORIGIN);
        ctx.cors_origin = request_origin
            .filter(|o| o.to_str().is_ok_and(|o| self.guard.origin_allowed(o, own_origin)))
            .cloned();
        let auth = self.auth.as_ref().map(|live| live.load_full());
        let route = auth.as_ref().and_then(|a| a.server.route(path));
        if header.method == Method::OPTIONS {
            // Never forwarded: the core would open an MCP session for each one.
            ctx.local = true;
            let public = route.is_some_and(|r| r.is_public());
            let resp = cors::answer_options(&header.headers, public, ctx.cors_origin.as_ref());
            return self.answer(session, ctx, resp).await;
        }
        session.set_read_timeout(Some(self.body_timeout));
        if let (Some(auth), Some(route)) = (&auth, route) {
            return self.serve_local(auth, route, session, ctx).await;
        }
        ctx.route = RouteClass::Mcp;
        let header = session.req_header();
        let request_origin = match header.headers.get(header::ORIGIN).map(|o| o.to_str()) {
            Some(Ok(o)) => Some(o),
            Some(Err(_)) => return self.refuse(session, ctx, Refusal::Origin).await,
            None => None,
        };
        if let Err(refusal) = self
            .guard
            .check_destination(ctx.view.host.as_deref(), request_origin, own_origin)
        {
            return self.refuse(session, ctx, refusal).await;
        }
        let Some(auth) = &auth else {
            return Ok(false);
        };
        ctx.opens_mcp_session = !header.headers.contains_key(MCP_SESSION_HEADER);
        if self.admit(auth, session, ctx).await? {
            return Ok(true);
        }
        self.apply_policies(auth, session, ctx).await
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        ctx.upstream_sent = Some(Instant::now());
        let proto = ctx.view.forwarded_proto.as_deref().unwrap_or(self.public_scheme);
        let facts = ForwardedFacts {
            client_ip: ctx.view.client_ip,
            forwarded_for: ctx.view.forwarded_for.as_deref(),
            proto,
            original_host: ctx.view.host.as_deref(),
            upstream_host: &self.upstream_host,
        };
        if !ctx.tools_list_ids.is_empty() {
            // An answer to filter must come uncompressed.
            upstream_request.remove_header(&header::ACCEPT_ENCODING);
        }
        clean_for_upstream(upstream_request, self.auth.is_some(), &facts, ctx.assertion.take())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        // Pingora sends what it kept of a body read in `request_filter`; send all of it.
        if let (Some(full), Some(_)) = (&ctx.replay_body, body.as_ref()) {
            *body = Some(full.clone());
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<Option<Duration>> {
        let Some((kind, held)) = ctx.tools_list_answer.as_mut() else {
            return Ok(None);
        };
        if let Some(chunk) = body.take() {
            if held.len() + chunk.len() > MAX_TOOLS_LIST_BODY {
                tracing::warn!("a tools/list answer is larger than the policies filter; cut off");
                return Err(pingora::Error::explain(
                    pingora::ErrorType::HTTPStatus(502),
                    "tools/list answer too large to filter",
                ));
            }
            held.extend_from_slice(&chunk);
        }
        if end_of_stream {
            let kind = *kind;
            if let Some((_, held)) = ctx.tools_list_answer.take() {
                *body = Some(self.filter_tools_list(session, ctx, kind, &held));
            }
        }
        Ok(None)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        if let Some(sent) = ctx.upstream_sent.take() {
            metrics().upstream_duration(sent.elapsed());
        }
        if let Some(location) = upstream_response
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| self.public_location(l, ctx))
        {
            upstream_response.insert_header(header::LOCATION, location)?;
        }
        if let Some(origin) = &ctx.cors_origin {
            for (name, value) in cors::response_headers(origin) {
                upstream_response.insert_header(name, value)?;
            }
        }
        if let Some(cookie) = ctx.set_cookie.take() {
            upstream_response.append_header(header::SET_COOKIE, cookie)?;
        }
        if !ctx.tools_list_ids.is_empty() && upstream_response.status.is_success() {
            let version = session.req_header().version;
            self.hold_tools_list(upstream_response, version, ctx)?;
        }
        let (Some(live), Some(active)) = (&self.auth, &ctx.session) else {
            return Ok(());
        };
        let auth = live.load();
        if !upstream_response.status.is_success() {
            return Ok(());
        }
        let request = session.req_header();
        if request.method == Method::DELETE {
            if let Some(id) = request.headers.get(MCP_SESSION_HEADER).and_then(|v| v.to_str().ok()) {
                auth.mcp_sessions.closed(id).await;
            }
        } else if ctx.opens_mcp_session {
            if let Some(id) = upstream_response
                .headers
                .get(MCP_SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                auth.mcp_sessions
                    .opened(id, &active.record.user.key(), active.record.expires_at)
                    .await;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &pingora::Error, _ctx: &mut Self::CTX) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        let code = match e.etype() {
            pingora::ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    pingora::ErrorType::WriteError
                    | pingora::ErrorType::ReadError
                    | pingora::ErrorType::ConnectionClosed => 0,
                    pingora::ErrorType::ReadTimedout => 408,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 && session.response_written().is_none() {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            let resp = if code == 502 {
                json_error(status, "bad_gateway", "the MCP server behind mxgate is not reachable")
            } else if code == 400 {
                json_error(status, "invalid_request", "the request is malformed")
            } else {
                json_error(status, "proxy_error", status.canonical_reason().unwrap_or("error"))
            };
            if let Err(write_error) = write_response(session, resp).await {
                tracing::debug!(error = %write_error, "could not write the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A client that hangs up mid-request is routine (a closed tab, an aborted stream): not an error.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, error: &pingora::Error) -> bool {
        client_went_away(error)
    }

    async fn logging(&self, session: &mut Session, error: Option<&pingora::Error>, ctx: &mut Self::CTX) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        metrics().request(ctx.route, status);
        let elapsed: Duration = ctx.started.elapsed();
        let user = ctx
            .session
            .as_ref()
            .map(|s| s.record.user.username.as_str())
            .unwrap_or("-");
        let req = session.req_header();
        if let Some(e) = error.filter(|e| !client_went_away(e)) {
            tracing::warn!(method = %req.method, path = %req.uri.path(), status, user, error = %e, "request failed");
        } else if let Some(e) = error {
            tracing::debug!(method = %req.method, path = %req.uri.path(), status, user, error = %e, "client went away");
        } else if ctx.forward_auth {
            tracing::debug!(method = %req.method, path = %req.uri.path(), status, micros = elapsed.as_micros() as u64, "forward auth");
        } else if ctx.local {
            tracing::info!(method = %req.method, path = %req.uri.path(), status, micros = elapsed.as_micros() as u64, "local");
        } else {
            tracing::debug!(method = %req.method, path = %req.uri.path(), status, user, micros = elapsed.as_micros() as u64, "proxied");
        }
    }
}

/// How `mxgate_requests_total` classes a request to one of mxgate's own endpoints.
fn route_class(route: Route) -> RouteClass {
    match route {
        Route::ProtectedResourceMetadata | Route::AuthorizationServerMetadata | Route::Jwks => RouteClass::WellKnown,
        Route::Register
        | Route::Authorize
        | Route::Consent
        | Route::Callback
        | Route::Token
        | Route::Revoke
        | Route::BackchannelLogout => RouteClass::OAuth,
        Route::Login | Route::Logout => RouteClass::Login,
    }
}

/// The downstream client closed or broke its connection.
fn client_went_away(error: &pingora::Error) -> bool {
    *error.esource() == ErrorSource::Downstream
        && matches!(
            error.etype(),
            pingora::ErrorType::ConnectionClosed | pingora::ErrorType::ReadError | pingora::ErrorType::WriteError
        )
}
