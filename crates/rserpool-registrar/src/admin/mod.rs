//! The registrar's admin HTTP API (axum): health and readiness, status,
//! the handlespace, ASAP connections, counters, a Server-Sent Events
//! stream of the core's events, and Prometheus metrics. Every request
//! needs `Authorization: Bearer <token>` (RFC 6750); sources that fail
//! too often are refused for a while. The API reads the registrar only
//! through a [`RegistrarHandle`]: one core query per request, built in
//! the core task, serialized outside it. Reference: `docs/admin.md`.
//!
//! * [`token`]: the bearer token file.
//! * `views`: the JSON documents.
//! * `metrics`: the Prometheus exposition.

mod metrics;
pub mod token;
mod views;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use rserpool_security::rate_limit::{KeyedLimiter, Rate};
use rserpool_wire::PoolHandle;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use token::AdminToken;
pub use views::AdminStats;

use crate::peer::canonical;
use crate::RegistrarHandle;
use views::{PoolSelection, DEFAULT_LIMIT, MAX_LIMIT};

/// How long the core has to answer a query before the API gives up
/// (`/health` then says 503).
pub const CORE_TIMEOUT: Duration = Duration::from_secs(2);

/// Failed authentications one source address may make in a burst, and
/// how fast it earns another (one per 6 s). Over it, every request from
/// that address gets 429, with or without the right token, so that the
/// answer tells nothing about a guess.
pub const AUTH_FAILURE_RATE: Rate = Rate::new(1.0 / 6.0, 10.0);

/// Source addresses the failure limiter remembers (beyond: one shared bucket).
const MAX_LIMITER_KEYS: usize = 10_000;

/// Settings of the admin API.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Listen address (port 0: any free port). Keep it on loopback or a
    /// management network: the API speaks plain HTTP.
    pub listen: SocketAddr,
    /// The bearer token every request must carry.
    pub token: AdminToken,
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
    /// `write_new` found the file already there.
    #[error("admin token file {} exists; not overwriting it", path.display())]
    TokenExists {
        /// The file.
        path: PathBuf,
    },
    /// No random bytes for a new token.
    #[error("cannot generate an admin token: {0}")]
    Random(rserpool_security::SecurityError),
    /// The listen address could not be bound.
    #[error("admin API cannot listen on {address}: {error}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The error (in the message, not a source: shown once).
        error: std::io::Error,
    },
}

/// A running admin API. Dropping it stops the server at once;
/// [`AdminServer::shutdown`] lets open requests finish.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// State shared by the handlers.
struct Inner {
    registrar: RegistrarHandle,
    token: AdminToken,
    auth_failures: AtomicU64,
    auth_rate_limited: AtomicU64,
    limiter: Mutex<Limiter>,
    stop: watch::Receiver<bool>,
}

struct Limiter {
    failures: KeyedLimiter<IpAddr>,
    next_prune: Instant,
}

type Shared = Arc<Inner>;

impl Inner {
    fn admin_stats(&self) -> AdminStats {
        AdminStats {
            auth_failures: self.auth_failures.load(Ordering::Relaxed),
            auth_rate_limited: self.auth_rate_limited.load(Ordering::Relaxed),
        }
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        // A panic while holding the lock leaves buckets, not broken state.
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
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
}

impl AdminServer {
    /// Bind the listen address and serve the API for `registrar`.
    pub async fn start(
        config: AdminConfig,
        registrar: RegistrarHandle,
    ) -> Result<AdminServer, AdminError> {
        let address = config.listen;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| AdminError::Bind { address, error })?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| AdminError::Bind { address, error })?;
        if !local_addr.ip().is_loopback() {
            tracing::warn!(
                %local_addr,
                "admin API on a non-loopback address: it speaks plain HTTP, so the token \
                 crosses the network in clear; prefer loopback or a TLS proxy"
            );
        }
        let (stop, stop_rx) = watch::channel(false);
        let now = Instant::now();
        let inner = Arc::new(Inner {
            registrar,
            token: config.token,
            auth_failures: AtomicU64::new(0),
            auth_rate_limited: AtomicU64::new(0),
            limiter: Mutex::new(Limiter {
                failures: KeyedLimiter::new(AUTH_FAILURE_RATE, MAX_LIMITER_KEYS, now),
                next_prune: now,
            }),
            stop: stop_rx.clone(),
        });
        let app = router(inner);
        let mut stop_serve = stop_rx;
        let task = tokio::spawn(async move {
            let served = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop_serve.wait_for(|s| *s).await;
            })
            .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
        tracing::info!(%local_addr, "admin API ready");
        Ok(AdminServer {
            local_addr,
            stop,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting, end event streams, let open requests finish (at
    /// most 5 s), then stop.
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
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/v1/status", get(status))
        .route("/v1/handlespace", get(handlespace))
        .route("/v1/peers", get(peers))
        .route("/v1/stats", get(stats))
        .route("/v1/events", get(events))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(inner.clone(), authenticate))
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

/// Every request: refuse sources over their failure budget, check the
/// token, count and log failures.
async fn authenticate(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let ip = canonical(peer.ip());
    let now = Instant::now();
    if !s.limiter().failures.would_allow(&ip, now) {
        s.auth_rate_limited.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, "admin API: source over its authentication failure limit");
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed authentications from this address; try again later",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("6"));
        return r;
    }
    let presented = bearer(req.headers());
    if presented.is_some_and(|t| s.token.matches(t)) {
        return next.run(req).await;
    }
    s.auth_failures.fetch_add(1, Ordering::Relaxed);
    {
        let mut l = s.limiter();
        l.failures.try_take(&ip, now);
        if now >= l.next_prune {
            l.failures.prune(now);
            l.next_prune = now + Duration::from_secs(60);
        }
    }
    let path = req.uri().path();
    // RFC 6750 section 3: no error code when no credentials came.
    let (why, challenge) = match presented {
        None => (
            "missing bearer token",
            "Bearer realm=\"rserpool-registrar\"",
        ),
        Some(_) => (
            "wrong bearer token",
            "Bearer realm=\"rserpool-registrar\", error=\"invalid_token\"",
        ),
    };
    tracing::warn!(%peer, path, "admin API: {why}");
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

/// `GET /health`: the core task answers.
async fn health(State(s): State<Shared>) -> Response {
    if core_answers(&s).await {
        Json(serde_json::json!({ "status": "ok" })).into_response()
    } else {
        let body = serde_json::json!({
            "status": "unavailable",
            "error": format!("the registrar core did not answer within {} s", CORE_TIMEOUT.as_secs()),
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// `GET /ready`: listeners bound, the core answers, not shutting down.
async fn ready(State(s): State<Shared>) -> Response {
    let reason = if *s.stop.borrow() {
        Some("shutting down")
    } else if s.registrar.local_addrs().is_empty() {
        Some("no ASAP listener")
    } else if !core_answers(&s).await {
        Some("the registrar core does not answer")
    } else {
        None
    };
    match reason {
        None => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Some(r) => {
            let body = serde_json::json!({ "status": "not_ready", "reason": r });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /v1/status`.
async fn status(State(s): State<Shared>) -> Response {
    let Some(c) = s.query(views::core_counts).await else {
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
        connections: c.connections,
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

/// Query parameters of `/v1/handlespace` and `/v1/peers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// One pool, by its handle as text.
    pool: Option<String>,
    /// One pool, by its handle in hex.
    pool_hex: Option<String>,
    /// Most PEs listed.
    limit: Option<usize>,
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
    let shown = match &which {
        PoolSelection::One(h) => h.to_string(),
        PoolSelection::All => String::new(),
    };
    let doc = s
        .query(move |c| views::handlespace(c, &which, limit, Instant::now()))
        .await;
    match doc {
        None => core_unavailable(),
        Some(None) => error(StatusCode::NOT_FOUND, format!("no pool {shown:?}")),
        Some(Some(v)) => Json(v).into_response(),
    }
}

/// `GET /v1/peers[?limit=N]`.
async fn peers(State(s): State<Shared>, q: Result<Query<ListQuery>, QueryRejection>) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    if q.pool.is_some() || q.pool_hex.is_some() {
        return error(StatusCode::BAD_REQUEST, "/v1/peers takes only limit");
    }
    let limit = limit_of(&q);
    match s
        .query(move |c| views::peers(c, limit, Instant::now()))
        .await
    {
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
        pools: c.pools,
        pool_elements: c.pool_elements,
        connections: c.connections,
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

/// `GET /v1/events`: the core's events as Server-Sent Events, `event:`
/// the event name, `data:` its JSON. A subscriber that falls behind the
/// broadcast queue gets a `lagged` event with the number it missed. The
/// stream ends when the registrar stops or the API shuts down.
async fn events(
    State(s): State<Shared>,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    let rx = s.registrar.events();
    let stream = futures_util::stream::unfold((rx, s), |(mut rx, s)| async move {
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
        Some((Ok(item), (rx, s)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
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
}
