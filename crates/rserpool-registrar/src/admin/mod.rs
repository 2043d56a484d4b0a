//! The registrar's admin HTTP API (axum on our own hyper accept loop):
//! health and readiness, status, the handlespace, ASAP connections,
//! counters, a Server-Sent Events stream of the core's events,
//! Prometheus metrics, and three operator actions on a PE (drain,
//! undrain, remove). `/health` and `/ready` answer anyone (up or
//! ready, nothing else); everything else needs
//! `Authorization: Bearer <token>` (RFC 6750). The right token always
//! passes; wrong or missing ones are limited per source address and in
//! all. Every stage is bounded: a header deadline, caps on connections
//! in total and per address where slow clients make room for new ones,
//! a cap on event streams, back-off on failed accepts (`serve`,
//! `conns`). The API reaches the registrar only through a
//! [`RegistrarHandle`]: one core query (or, for an action, one core
//! command) per request, built in the core task, serialized outside it.
//! Reference: `docs/admin.md`.
//!
//! * [`token`]: the bearer token file.
//! * `conns`: who may hold a connection (sans-IO), accept back-off.
//! * `serve`: the accept loop and the per-connection server.
//! * `views`: the JSON documents.
//! * `metrics`: the Prometheus exposition.
//! * `actions`: the operator actions on a PE.
//! * `apd`: the authorised peer database: list and changes.

mod actions;
mod apd;
mod conns;
mod metrics;
mod serve;
pub mod token;
mod views;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rserpool_security::rate_limit::{KeyedLimiter, Rate, TokenBucket};
use rserpool_wire::PoolHandle;
use serde::Deserialize;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::task::JoinHandle;

pub use serve::MAX_HEADER_BYTES;
pub use token::AdminToken;
pub use views::AdminStats;

use crate::client::source_prefix;
use crate::log_limit::{LogSource, SummarisedLog};
use crate::RegistrarHandle;
use conns::ConnTable;
use views::{PoolSelection, DEFAULT_LIMIT, MAX_LIMIT};

/// How long the core has to answer a query before the API gives up
/// (`/health` then says 503).
pub const CORE_TIMEOUT: Duration = Duration::from_secs(2);

/// Failed authentications one source address may make in a burst, and
/// how fast it earns another (one per 6 s), by default. Over it, a
/// missing or wrong token gets 429; the right token always passes.
pub const AUTH_FAILURE_RATE: Rate = Rate::new(1.0 / 6.0, 10.0);

/// Failed authentications from all addresses together, by default: so
/// that many addresses cannot flood the log or the CPU either.
pub const AUTH_FAILURE_GLOBAL_RATE: Rate = Rate::new(10.0, 100.0);

/// Source addresses the failure limiter remembers (beyond: one shared bucket).
const MAX_LIMITER_KEYS: usize = 10_000;

/// Interval of the summaries of repeated warnings.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Settings of the admin API. Build it with [`AdminConfig::new`] (the
/// defaults below) and change the fields you need.
///
/// **File descriptors**: the API holds at most
/// [`AdminConfig::max_file_descriptors`] of them (`max_connections`
/// connections, 8 more told to close but not yet closed, the listener,
/// and one just accepted), whatever the clients do, so a flood of admin connections cannot take the
/// descriptors the ASAP listener needs. The registrar's start-up checks
/// `RLIMIT_NOFILE` against ASAP's maximum plus this plus a margin.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Listen address (port 0: any free port). Keep it on loopback or a
    /// management network: the API speaks plain HTTP.
    pub listen: SocketAddr,
    /// The bearer token every request but `/health` and `/ready` must
    /// carry ([`AdminServer::set_token`] replaces it at run time).
    pub token: AdminToken,
    /// Longest time from the accept to the end of the request headers;
    /// later, the connection is closed (default
    /// [`AdminConfig::DEFAULT_HEADER_TIMEOUT`], 10 s).
    pub header_timeout: Duration,
    /// Most admin connections open at once (default 64). When all are
    /// taken, the one that has waited longest for its request headers is
    /// closed for the new one; only when every one is in a handler is
    /// the new one refused.
    pub max_connections: usize,
    /// Most admin connections from one source address (default 8), with
    /// the same eviction rule among that address's connections.
    pub max_connections_per_address: usize,
    /// Most `/v1/events` streams at once (default 16); beyond, 503.
    pub max_event_streams: usize,
    /// Failed authentications per source address (default
    /// [`AUTH_FAILURE_RATE`]); over it, 429.
    pub auth_failure_rate: Rate,
    /// Failed authentications from all addresses (default
    /// [`AUTH_FAILURE_GLOBAL_RATE`]); over it, 429.
    pub auth_failure_global_rate: Rate,
    /// HTTPS: the TLS set-up (a certificate; with a client CA, client
    /// certificates are asked for, or required). `None`: plain HTTP,
    /// which [`AdminConfig::check`] allows on loopback only. The bearer
    /// token is needed either way.
    pub tls: Option<Arc<rserpool_security::TlsServer>>,
}

impl AdminConfig {
    /// Default of `header_timeout`.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of `max_connections`.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
    /// Default of `max_connections_per_address`.
    pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 8;
    /// Default of `max_event_streams`.
    pub const DEFAULT_MAX_EVENT_STREAMS: usize = 16;

    /// The API on `listen` with `token` and the default limits.
    pub fn new(listen: SocketAddr, token: AdminToken) -> AdminConfig {
        AdminConfig {
            listen,
            token,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: Self::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_event_streams: Self::DEFAULT_MAX_EVENT_STREAMS,
            auth_failure_rate: AUTH_FAILURE_RATE,
            auth_failure_global_rate: AUTH_FAILURE_GLOBAL_RATE,
            tls: None,
        }
    }

    /// Most file descriptors the API holds: `max_connections`, plus 8
    /// connections told to close (evicted or timed out) whose tasks have
    /// not closed them yet, plus the listener, plus one connection just
    /// accepted (being refused, or waiting for a descriptor permit).
    pub fn max_file_descriptors(&self) -> usize {
        self.max_connections
            .saturating_add(serve::CLOSING_SLACK)
            .saturating_add(2)
    }

    /// Whether the limits are in their ranges: header timeout 100 ms to
    /// 1 h, 1 to 10,000 connections in total, per address at most the
    /// total, 1 to 10,000 event streams, usable rates.
    pub fn check(&self) -> Result<(), AdminError> {
        use crate::config::Range;
        let config = |setting: &'static str, reason: String| AdminError::Config { setting, reason };
        let timeout = Range {
            min: Duration::from_millis(100),
            max: Duration::from_secs(3_600),
        };
        if !timeout.contains(self.header_timeout) {
            return Err(config(
                "header_timeout",
                timeout.problem(self.header_timeout),
            ));
        }
        let total = Range {
            min: 1,
            max: 10_000,
        };
        let part = Range {
            min: 1,
            max: self.max_connections,
        };
        for (setting, value, range) in [
            ("max_connections", self.max_connections, total),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
                part,
            ),
            ("max_event_streams", self.max_event_streams, total),
        ] {
            if !range.contains(value) {
                return Err(config(setting, range.problem(value)));
            }
        }
        for (setting, rate) in [
            ("auth_failure_rate", self.auth_failure_rate),
            ("auth_failure_global_rate", self.auth_failure_global_rate),
        ] {
            rate.check().map_err(|e| config(setting, e.to_string()))?;
        }
        if self.tls.is_none() && !self.listen.ip().is_loopback() {
            return Err(config(
                "listen",
                format!(
                    "{}: plain HTTP is for loopback only (the token would cross the network \
                     in clear); give the API a certificate (HTTPS) or listen on 127.0.0.1",
                    self.listen
                ),
            ));
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        Limits {
            header_timeout: self.header_timeout,
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            max_event_streams: self.max_event_streams,
            auth_failure_rate: self.auth_failure_rate,
            auth_failure_global_rate: self.auth_failure_global_rate,
        }
    }
}

/// The limits in force (for the handlers and the metrics).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub max_event_streams: usize,
    pub auth_failure_rate: Rate,
    pub auth_failure_global_rate: Rate,
}

/// Errors of the admin API and its token files.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The token file could not be read or written.
    #[error("admin token file {}: {error}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The error (in the message, not a source: shown once).
        error: std::io::Error,
    },
    /// The token file does not hold a usable token.
    #[error("admin token file {}: {reason}", path.display())]
    TokenInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The token file is not a regular file, or too large (the error
    /// names the file).
    #[error("admin token file: {0}")]
    TokenUnreadable(rserpool_security::SecurityError),
    /// `write_new` found the file already there.
    #[error("admin token file {} exists; not overwriting it", path.display())]
    TokenExists {
        /// The file.
        path: PathBuf,
    },
    /// No random bytes for a new token.
    #[error("cannot generate an admin token: {0}")]
    Random(rserpool_security::SecurityError),
    /// The HTTPS set-up does not complete a handshake with itself.
    #[error("admin API TLS set-up: {0}")]
    Tls(rserpool_security::SecurityError),
    /// A limit of [`AdminConfig`] is out of range.
    #[error("admin API setting {setting}: {reason}")]
    Config {
        /// The field.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("admin API cannot listen on {address}: {error}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The error (in the message, not a source: shown once).
        error: std::io::Error,
    },
}

/// A running admin API. Dropping it stops the server and closes its
/// connections at once; [`AdminServer::shutdown`] lets open requests
/// finish.
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    inner: Shared,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = &self.task {
            // The accept task owns the connection tasks: they go with it.
            t.abort();
        }
    }
}

/// The API's own counters (the figures are exact; the log is summarised).
#[derive(Debug, Default)]
struct Counters {
    auth_failures: AtomicU64,
    auth_rate_limited: AtomicU64,
    accepted: AtomicU64,
    refused_limit: AtomicU64,
    refused_address: AtomicU64,
    evicted_limit: AtomicU64,
    evicted_address: AtomicU64,
    header_timeouts: AtomicU64,
    tls_failures: AtomicU64,
    accept_errors: AtomicU64,
    peak: AtomicUsize,
    event_streams: AtomicUsize,
    event_streams_refused: AtomicU64,
}

/// State shared by the accept loop, the connections and the handlers.
struct Inner {
    registrar: RegistrarHandle,
    token: RwLock<AdminToken>,
    limits: Limits,
    counters: Counters,
    limiter: Mutex<Limiter>,
    conns: Mutex<ConnTable<serve::Closer>>,
    /// One permit per connection holding a descriptor
    /// (`max_connections` + `CLOSING_SLACK`).
    permits: Arc<Semaphore>,
    log: Arc<SummarisedLog>,
    stop: watch::Receiver<bool>,
    /// HTTPS (`None`: plain HTTP, on loopback).
    tls: Option<Arc<rserpool_security::TlsServer>>,
}

struct Limiter {
    failures: KeyedLimiter<IpAddr>,
    global: TokenBucket,
    next_prune: Instant,
}

type Shared = Arc<Inner>;

impl Inner {
    fn admin_stats(&self) -> AdminStats {
        let c = &self.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AdminStats {
            auth_failures: n(&c.auth_failures),
            auth_rate_limited: n(&c.auth_rate_limited),
            connections_open: self.open_connections() as u64,
            connections_peak: c.peak.load(Ordering::Relaxed) as u64,
            connections_accepted: n(&c.accepted),
            connections_refused_limit: n(&c.refused_limit),
            connections_refused_address_limit: n(&c.refused_address),
            connections_evicted_limit: n(&c.evicted_limit),
            connections_evicted_address_limit: n(&c.evicted_address),
            header_timeouts: n(&c.header_timeouts),
            tls_failures: n(&c.tls_failures),
            accept_errors: n(&c.accept_errors),
            event_streams_open: c.event_streams.load(Ordering::Relaxed) as u64,
            event_streams_refused: n(&c.event_streams_refused),
        }
    }

    /// Connections open now that count against the caps (not those
    /// told to close).
    fn open_connections(&self) -> usize {
        self.conns().live_count()
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        // A panic while holding the lock leaves buckets, not broken state.
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, ConnTable<serve::Closer>> {
        // A panic while holding the lock leaves a table of plain entries.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn token_matches(&self, presented: &[u8]) -> bool {
        self.token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .matches(presented)
    }

    /// A core query with [`CORE_TIMEOUT`]; `None` when it does not answer.
    async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::RegistrarCore) -> R + Send + 'static,
    ) -> Option<R> {
        tokio::time::timeout(CORE_TIMEOUT, self.registrar.query(f))
            .await
            .ok()
            .flatten()
    }

    /// A core command with [`CORE_TIMEOUT`]; `None` when it does not
    /// answer in time (it may still run later).
    async fn command<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut crate::RegistrarCore, std::time::Instant) -> R + Send + 'static,
    ) -> Option<R> {
        tokio::time::timeout(CORE_TIMEOUT, self.registrar.command(f))
            .await
            .ok()
            .flatten()
    }
}

impl AdminServer {
    /// Check the limits, bind the listen address and serve the API for
    /// `registrar`.
    pub async fn start(
        config: AdminConfig,
        registrar: RegistrarHandle,
    ) -> Result<AdminServer, AdminError> {
        config.check()?;
        let address = config.listen;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| AdminError::Bind { address, error })?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| AdminError::Bind { address, error })?;
        if let Some(tls) = &config.tls {
            // What cannot complete a handshake with itself serves nobody.
            tls.self_test().await.map_err(AdminError::Tls)?;
        }
        let (stop, stop_rx) = watch::channel(false);
        let now = Instant::now();
        let limits = config.limits();
        let inner = Arc::new(Inner {
            registrar,
            token: RwLock::new(config.token),
            limits,
            counters: Counters::default(),
            limiter: Mutex::new(Limiter {
                failures: KeyedLimiter::new(limits.auth_failure_rate, MAX_LIMITER_KEYS, now),
                global: TokenBucket::new(limits.auth_failure_global_rate, now),
                next_prune: now,
            }),
            conns: Mutex::new(ConnTable::new(
                limits.max_connections,
                limits.max_connections_per_address,
            )),
            permits: Arc::new(Semaphore::new(
                limits.max_connections + serve::CLOSING_SLACK,
            )),
            log: SummarisedLog::new(LOG_INTERVAL),
            stop: stop_rx.clone(),
            tls: config.tls.clone(),
        });
        let app = router(inner.clone());
        let task = tokio::spawn(serve::run(listener, inner.clone(), app, stop_rx));
        tracing::info!(
            %local_addr,
            max_connections = limits.max_connections,
            max_connections_per_address = limits.max_connections_per_address,
            header_timeout_ms = limits.header_timeout.as_millis() as u64,
            scheme = if config.tls.is_some() { "https" } else { "http" },
            "admin API ready"
        );
        Ok(AdminServer {
            local_addr,
            stop,
            inner,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replace the bearer token (for example after SIGHUP re-read the
    /// token file): requests from now on need the new one.
    pub fn set_token(&self, token: AdminToken) {
        *self.inner.token.write().unwrap_or_else(|e| e.into_inner()) = token;
        tracing::info!("admin API: bearer token replaced");
    }

    /// The API's counters now (what `/v1/stats` shows under `admin`).
    pub fn stats(&self) -> AdminStats {
        self.inner.admin_stats()
    }

    /// Stop accepting, close connections still waiting for their
    /// request, end event streams, let open requests finish (at most
    /// 5 s), then stop.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut t) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
    }
}

fn router(inner: Shared) -> Router {
    // Everything but the probes needs the token, unknown paths included.
    let protected = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/handlespace", get(handlespace))
        .route("/v1/connections", get(connections))
        .route("/v1/peers", get(peers))
        .route("/v1/stats", get(stats))
        .route("/v1/events", get(events))
        .route("/metrics", get(metrics_text))
        .merge(actions::routes())
        .merge(apd::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(inner.clone(), authenticate));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .method_not_allowed_fallback(method_not_allowed)
        .merge(protected)
        .with_state(inner)
}

/// A JSON error document.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, Json(body)).into_response()
}

fn core_unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the registrar core did not answer within {} s",
            CORE_TIMEOUT.as_secs()
        ),
    )
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint (see docs/admin.md)",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "only GET is supported on this endpoint",
    )
}

/// The token of an `Authorization: Bearer` header (RFC 6750 section 2.1;
/// the scheme is case-insensitive, RFC 9110 section 11.1).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = v.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = v.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

const AUTH_MISSING: &str = "admin API: missing bearer token";
const AUTH_WRONG: &str = "admin API: wrong bearer token";
const AUTH_LIMITED: &str = "admin API: failed authentication over the limit, answered 429";
const STREAMS_FULL: &str = "admin API: event stream refused, too many open";

/// Whole seconds until a bucket of `rate` has a token again (at least 1).
fn retry_after(rate: Rate) -> HeaderValue {
    let secs = (1.0 / rate.per_second).ceil();
    let secs = if secs.is_finite() && secs >= 1.0 {
        secs.min(86_400.0) as u64
    } else {
        1
    };
    HeaderValue::from(secs)
}

/// Every request but the probes: the right token passes, whatever
/// failed before from its address. A missing or wrong one is counted and
/// answered 401, or 429 when its source address or all addresses
/// together are over their failure budget; the log is summarised.
async fn authenticate(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let presented = bearer(req.headers());
    if presented.is_some_and(|t| s.token_matches(t)) {
        return next.run(req).await;
    }
    s.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
    let ip = source_prefix(peer.ip());
    let now = Instant::now();
    let over = {
        let mut l = s.limiter();
        let over = if !l.failures.try_take(&ip, now) {
            Some(s.limits.auth_failure_rate)
        } else if !l.global.try_take(s.limits.auth_failure_global_rate, now) {
            Some(s.limits.auth_failure_global_rate)
        } else {
            None
        };
        if now >= l.next_prune {
            l.failures.prune(now);
            l.next_prune = now + Duration::from_secs(60);
        }
        over
    };
    let path = req.uri().path();
    let source = LogSource::Address(ip);
    if let Some(rate) = over {
        s.counters.auth_rate_limited.fetch_add(1, Ordering::Relaxed);
        s.log.write(AUTH_LIMITED, source, || {
            tracing::warn!(%peer, path, "{AUTH_LIMITED}");
        });
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed authentications; try again later",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, retry_after(rate));
        return r;
    }
    // RFC 6750 section 3: no error code when no credentials came.
    let (kind, why, challenge) = match presented {
        None => (
            AUTH_MISSING,
            "missing bearer token",
            "Bearer realm=\"rserpool-registrar\"",
        ),
        Some(_) => (
            AUTH_WRONG,
            "wrong bearer token",
            "Bearer realm=\"rserpool-registrar\", error=\"invalid_token\"",
        ),
    };
    s.log.write(kind, source, || {
        tracing::warn!(%peer, path, "{kind}");
    });
    let mut r = error(StatusCode::UNAUTHORIZED, why);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

async fn core_answers(s: &Inner) -> bool {
    s.query(|_| ()).await.is_some()
}

fn probe(ok: bool, up: &'static str, down: &'static str) -> Response {
    let (code, status) = if ok {
        (StatusCode::OK, up)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, down)
    };
    (code, Json(serde_json::json!({ "status": status }))).into_response()
}

/// `GET /health` (no token): the core task answers. Says nothing else.
async fn health(State(s): State<Shared>) -> Response {
    probe(core_answers(&s).await, "ok", "unavailable")
}

/// `GET /ready` (no token): listeners bound, the core answers, not
/// shutting down. Says nothing else.
async fn ready(State(s): State<Shared>) -> Response {
    let ready =
        !*s.stop.borrow() && !s.registrar.local_addrs().is_empty() && core_answers(&s).await;
    probe(ready, "ready", "not_ready")
}

/// `GET /v1/status`.
async fn status(State(s): State<Shared>) -> Response {
    let Some((c, peers)) = s
        .query(|c| (views::core_counts(c), views::peers(c, Instant::now())))
        .await
    else {
        return core_unavailable();
    };
    let r = &s.registrar;
    Json(views::StatusView {
        server_id: r.server_id(),
        server_id_hex: format!("{:#010x}", r.server_id()),
        version: env!("CARGO_PKG_VERSION"),
        mode: if r.is_secure() { "secure" } else { "insecure" },
        listen: r.local_addrs().to_vec(),
        uptime_seconds: r.uptime().as_secs(),
        pools: c.pools,
        pool_elements: c.pool_elements,
        pool_elements_drained: c.pool_elements_drained,
        connections: c.connections,
        peers,
        core: c.stats,
        service: r.service_stats(),
        admin: s.admin_stats(),
    })
    .into_response()
}

/// `GET /v1/stats`.
async fn stats(State(s): State<Shared>) -> Response {
    let Some(core) = s.query(|c| c.stats().clone()).await else {
        return core_unavailable();
    };
    Json(views::StatsView {
        core,
        service: s.registrar.service_stats(),
        admin: s.admin_stats(),
    })
    .into_response()
}

/// Query parameters of `/v1/handlespace` and `/v1/connections`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// One pool, by its handle as text.
    pool: Option<String>,
    /// One pool, by its handle in hex.
    pool_hex: Option<String>,
    /// Most PEs listed (with `elements=false`: most pools).
    limit: Option<usize>,
    /// `false`: the pools with their counts, without their PEs.
    elements: Option<bool>,
}

fn limit_of(q: &ListQuery) -> usize {
    q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
}

fn bad_query(e: QueryRejection) -> Response {
    error(StatusCode::BAD_REQUEST, e.body_text())
}

/// `GET /v1/handlespace[?pool=NAME|pool_hex=HEX][&limit=N]`.
async fn handlespace(
    State(s): State<Shared>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    let which = match (&q.pool, &q.pool_hex) {
        (None, None) => PoolSelection::All,
        (Some(text), None) => match PoolHandle::new(text.as_bytes()) {
            Some(h) => PoolSelection::One(h),
            None => return error(StatusCode::BAD_REQUEST, "empty pool handle"),
        },
        (None, Some(hex_text)) => match hex::decode(hex_text).ok().and_then(PoolHandle::new) {
            Some(h) => PoolSelection::One(h),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "pool_hex must be a non-empty hex string",
                )
            }
        },
        (Some(_), Some(_)) => {
            return error(StatusCode::BAD_REQUEST, "give pool or pool_hex, not both")
        }
    };
    let limit = limit_of(&q);
    let elements = q.elements.unwrap_or(true);
    let shown = match &which {
        PoolSelection::One(h) => h.to_string(),
        PoolSelection::All => String::new(),
    };
    let doc = s
        .query(move |c| {
            let (now, wall_now) = (Instant::now(), std::time::SystemTime::now());
            views::handlespace(c, &which, limit, elements, now, wall_now)
        })
        .await;
    match doc {
        None => core_unavailable(),
        Some(None) => error(StatusCode::NOT_FOUND, format!("no pool {shown:?}")),
        Some(Some(v)) => Json(v).into_response(),
    }
}

/// `GET /v1/connections[?limit=N]`: the ASAP connections (PEs and PUs).
async fn connections(
    State(s): State<Shared>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    if q.pool.is_some() || q.pool_hex.is_some() || q.elements.is_some() {
        return error(StatusCode::BAD_REQUEST, "/v1/connections takes only limit");
    }
    let limit = limit_of(&q);
    match s
        .query(move |c| views::connections(c, limit, Instant::now()))
        .await
    {
        Some(v) => Json(v).into_response(),
        None => core_unavailable(),
    }
}

/// `GET /v1/peers`: the ENRP peer table (rserpoolENRPPeerTable, RFC 5525):
/// the other registrars of the operational scope. Empty until ENRP
/// exists; ASAP clients are `/v1/connections`.
async fn peers(State(s): State<Shared>) -> Response {
    match s.query(|c| views::peers(c, Instant::now())).await {
        Some(v) => Json(v).into_response(),
        None => core_unavailable(),
    }
}

/// `GET /metrics`.
async fn metrics_text(State(s): State<Shared>) -> Response {
    let Some((c, pool_sizes)) = s
        .query(|c| (views::core_counts(c), views::pool_sizes(c)))
        .await
    else {
        return core_unavailable();
    };
    let r = &s.registrar;
    let input = metrics::MetricsInput {
        stats: c.stats,
        service: r.service_stats(),
        admin: s.admin_stats(),
        limits: s.limits,
        service_limits: r.limits(),
        pools: c.pools,
        pool_elements: c.pool_elements,
        pool_elements_drained: c.pool_elements_drained,
        connections: c.connections,
        peers_up: c.peers_up,
        peers_known: c.peers_known,
        standby_links: c.standby_links,
        pool_sizes,
        uptime: r.uptime(),
        server_id: r.server_id(),
        secure: r.is_secure(),
    };
    match metrics::render(input) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        ),
    }
}

/// One of the `max_event_streams` slots, given back when the stream ends.
struct StreamSlot(Shared);

impl StreamSlot {
    fn take(s: &Shared) -> Option<StreamSlot> {
        let max = s.limits.max_event_streams;
        s.counters
            .event_streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot(s.clone()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.counters.event_streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /v1/events`: the core's events as Server-Sent Events, `event:`
/// the event name, `data:` its JSON. A subscriber that falls behind the
/// broadcast queue gets a `lagged` event with the number it missed. The
/// stream ends when the registrar stops or the API shuts down. At most
/// `max_event_streams` at once; beyond, 503.
async fn events(State(s): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    let Some(slot) = StreamSlot::take(&s) else {
        s.counters
            .event_streams_refused
            .fetch_add(1, Ordering::Relaxed);
        s.log.write(STREAMS_FULL, LogSource::of(peer.ip()), || {
            tracing::warn!(%peer, max = s.limits.max_event_streams, "{STREAMS_FULL}");
        });
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many event streams open (at most {})",
                s.limits.max_event_streams
            ),
        );
    };
    let rx = s.registrar.events();
    let stream = futures_util::stream::unfold((rx, slot), |(mut rx, slot)| async move {
        let s = &slot.0;
        let mut stop = s.stop.clone();
        let item = tokio::select! {
            r = rx.recv() => match r {
                Ok(e) => sse::Event::default()
                    .event(e.name())
                    .json_data(&e)
                    .unwrap_or_else(|_| sse::Event::default().comment("unencodable event")),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "admin API: event subscriber lagging");
                    sse::Event::default()
                        .event("lagged")
                        .data(serde_json::json!({ "event": "lagged", "missed": n }).to_string())
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            _ = s.registrar.stopped() => return None,
            _ = stop.wait_for(|s| *s) => return None,
        };
        Some((Ok::<_, Infallible>(item), (rx, slot)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert_eq!(bearer(&h), None);
    }

    fn config() -> AdminConfig {
        AdminConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            AdminToken::new("0123456789abcdef0123456789abcdef").unwrap(),
        )
    }

    #[test]
    fn defaults_and_limits_out_of_range() {
        let c = config();
        assert!(c.check().is_ok());
        assert!(c.header_timeout <= Duration::from_secs(10));
        assert_eq!((c.max_connections, c.max_connections_per_address), (64, 8));
        assert_eq!(c.max_event_streams, 16);
        assert_eq!(c.max_file_descriptors(), 74);
        for (setting, change) in [
            (
                "header_timeout",
                (|c: &mut AdminConfig| c.header_timeout = Duration::ZERO) as fn(&mut AdminConfig),
            ),
            ("max_connections", |c| c.max_connections = 0),
            ("max_connections_per_address", |c| {
                c.max_connections_per_address = 0
            }),
            ("auth_failure_rate", |c| {
                c.auth_failure_rate = Rate::new(0.0, 1.0)
            }),
            ("auth_failure_global_rate", |c| {
                c.auth_failure_global_rate = Rate::new(1.0, 0.0)
            }),
        ] {
            let mut c = config();
            change(&mut c);
            let e = c.check().unwrap_err();
            assert!(e.to_string().contains(setting), "{e}");
        }
    }

    #[test]
    fn retry_after_is_the_time_to_the_next_token() {
        assert_eq!(retry_after(AUTH_FAILURE_RATE), "6");
        assert_eq!(retry_after(AUTH_FAILURE_GLOBAL_RATE), "1");
        assert_eq!(retry_after(Rate::new(0.001, 1.0)), "1000");
        assert_eq!(retry_after(Rate::UNLIMITED), "1");
    }
}
