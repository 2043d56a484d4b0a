//! The operator actions on one PE: `POST .../drain[?timeout=DURATION]`,
//! `POST .../undrain` and `DELETE /v1/pools/{pool}/elements/{id}`. Each
//! is one command to the core task ([`crate::RegistrarCore::drain`],
//! [`crate::RegistrarCore::undrain`],
//! [`crate::RegistrarCore::remove_pool_element`]), logged at `info` with
//! the request's source address; the core counts it and sends its event.
//! Trusted (the token) and bounded like every request by the connection
//! caps; a request body is ignored.
//!
//! `{pool}` is the pool handle percent-encoded (RFC 3986 section 2.1: any
//! bytes, since a handle is any byte string, RFC 5354 section 3.9);
//! `{id}` the PE identifier in decimal or `0x` hex.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, MethodRouter};
use axum::{Json, Router};
use rserpool_wire::{PeId, PoolHandle};
use serde::Deserialize;

use super::views::{seconds, PeActionOutcome, PeActionView};
use super::{bad_query, core_unavailable, error, Shared};
use crate::{OperatorError, DEFAULT_DRAIN_TIMEOUT};

/// The routes, for the authenticated router.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v1/pools/{pool}/elements/{id}/drain",
            only("POST", post(drain)),
        )
        .route(
            "/v1/pools/{pool}/elements/{id}/undrain",
            only("POST", post(undrain)),
        )
        .route(
            "/v1/pools/{pool}/elements/{id}",
            only("DELETE", delete(remove)),
        )
}

/// `route` with a 405 naming the one method it takes (RFC 9110 15.5.6:
/// with an `Allow` header).
fn only(method: &'static str, route: MethodRouter<Shared>) -> MethodRouter<Shared> {
    route.fallback(move || async move {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("only {method} is supported on this endpoint"),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(method));
        r
    })
}

/// Query of `.../drain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainQuery {
    /// humantime (`90s`, `10m`) or `none`.
    timeout: Option<String>,
}

/// The other actions take no query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

/// A request that cannot be carried out as it is (400), and why.
#[derive(Debug)]
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

/// The PE a request names: pool handle and identifier from the path.
fn target(uri: &Uri) -> Result<(PoolHandle, PeId), BadRequest> {
    // "", "v1", "pools", {pool}, "elements", {id}[, action]
    let mut segments = uri.path().split('/').skip(3);
    let (pool, id) = match (segments.next(), segments.next(), segments.next()) {
        (Some(pool), Some("elements"), Some(id)) => (pool, id),
        _ => return Err(BadRequest(format!("no PE in the path {}", uri.path()))),
    };
    let bytes = percent_decode(pool)
        .ok_or_else(|| BadRequest("the pool handle is not validly percent-encoded".to_string()))?;
    let handle =
        PoolHandle::new(bytes).ok_or_else(|| BadRequest("empty pool handle".to_string()))?;
    let id = id.parse::<PeId>().map_err(|_| {
        BadRequest(format!(
            "PE identifier {id:?}: give a 32-bit number in decimal or 0x hex"
        ))
    })?;
    Ok((handle, id))
}

/// The query and the PE of a request, or the 400 that refuses it (boxed:
/// a response is large, the success small).
fn request<Q>(
    q: Result<Query<Q>, QueryRejection>,
    uri: &Uri,
) -> Result<(Q, PoolHandle, PeId), Box<Response>> {
    let Query(q) = q.map_err(|e| Box::new(bad_query(e)))?;
    let (pool, id) = target(uri).map_err(|e| Box::new(e.into_response()))?;
    Ok((q, pool, id))
}

/// Percent-decoding of a path segment (RFC 3986 section 2.1) to bytes;
/// `None` for a `%` not followed by two hex digits.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let digits = b.get(i + 1..i + 3)?;
            if !digits.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let text = std::str::from_utf8(digits).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// `timeout=`: humantime or `none` (no timeout); the default when absent.
fn parse_timeout(q: &DrainQuery) -> Result<Option<Duration>, BadRequest> {
    match q.timeout.as_deref() {
        None => Ok(Some(DEFAULT_DRAIN_TIMEOUT)),
        Some("none") => Ok(None),
        Some(text) => humantime::parse_duration(text).map(Some).map_err(|e| {
            BadRequest(format!(
                "timeout {text:?}: {e} (give a duration like 90s or 10m, or none)"
            ))
        }),
    }
}

fn operator_error(e: &OperatorError) -> Response {
    let status = match e {
        OperatorError::Timeout { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::NOT_FOUND,
    };
    error(status, e.to_string())
}

/// Who asked, as the core's events say it.
fn by(peer: SocketAddr) -> String {
    format!("admin API from {}", peer.ip())
}

/// The answer to an action, or an error; each logged with the source.
fn answer<T>(
    action: &'static str,
    peer: SocketAddr,
    pool: &PoolHandle,
    id: PeId,
    result: Option<Result<T, OperatorError>>,
    done: impl FnOnce(T) -> (PeActionOutcome, String),
) -> Response {
    let pe = format_args!("{id:#010x}");
    match result {
        None => {
            tracing::warn!(%peer, %pool, %pe, action, "admin API: the core did not answer");
            core_unavailable()
        }
        Some(Err(e)) => {
            tracing::info!(%peer, %pool, %pe, action, error = %e, "admin API: PE action refused");
            operator_error(&e)
        }
        Some(Ok(v)) => {
            let (outcome, what) = done(v);
            tracing::info!(%peer, %pool, %pe, action, "admin API: {what}");
            Json(PeActionView::new(pool, id, outcome)).into_response()
        }
    }
}

/// `POST /v1/pools/{pool}/elements/{id}/drain[?timeout=DURATION]`.
async fn drain(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    q: Result<Query<DrainQuery>, QueryRejection>,
) -> Response {
    let (q, pool, id) = match request(q, &uri) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let timeout = match parse_timeout(&q) {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    let (handle, who) = (pool.clone(), by(peer));
    let result = s
        .command(move |c, now| {
            c.drain(now, &handle, id, timeout, &who)
                .map(|o| (o, o.ends.map(|t| t.saturating_duration_since(now))))
        })
        .await;
    answer("drain", peer, &pool, id, result, |(o, left)| {
        let shown = timeout.map_or("no timeout".to_string(), |t| {
            format!("timeout {}", humantime::format_duration(t))
        });
        let what = if o.was_drained {
            format!("drain of a drained PE renewed ({shown})")
        } else {
            format!("PE drained ({shown})")
        };
        let outcome = PeActionOutcome::Drained {
            drained: true,
            drain_ends_in_seconds: left.map(seconds),
        };
        (outcome, what)
    })
}

/// `POST /v1/pools/{pool}/elements/{id}/undrain`.
async fn undrain(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    q: Result<Query<NoQuery>, QueryRejection>,
) -> Response {
    let (NoQuery {}, pool, id) = match request(q, &uri) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let (handle, who) = (pool.clone(), by(peer));
    let result = s
        .command(move |c, now| c.undrain(now, &handle, id, &who))
        .await;
    answer("undrain", peer, &pool, id, result, |was_drained| {
        let what = if was_drained {
            "PE undrained"
        } else {
            "undrain of a PE that was not drained (nothing to do)"
        };
        let outcome = PeActionOutcome::Undrained {
            drained: false,
            was_drained,
        };
        (outcome, what.to_string())
    })
}

/// `DELETE /v1/pools/{pool}/elements/{id}`.
async fn remove(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    q: Result<Query<NoQuery>, QueryRejection>,
) -> Response {
    let (NoQuery {}, pool, id) = match request(q, &uri) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let handle = pool.clone();
    let result = s
        .command(move |c, now| c.remove_pool_element(now, &handle, id))
        .await;
    answer("remove", peer, &pool, id, result, |()| {
        let outcome = PeActionOutcome::Removed { removed: true };
        let what =
            "PE removed (it registers again at its next re-registration if its process still runs)";
        (outcome, what.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_handles_are_percent_decoded_to_any_bytes() {
        assert_eq!(percent_decode("echo"), Some(b"echo".to_vec()));
        assert_eq!(percent_decode("a%2Fb%20c"), Some(b"a/b c".to_vec()));
        assert_eq!(percent_decode("%ff%00x"), Some(vec![0xff, 0, b'x']));
        assert_eq!(percent_decode("+"), Some(b"+".to_vec()));
        for bad in ["%", "%2", "%zz", "%+1", "a%g0"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_target_comes_from_the_raw_path() {
        let uri: Uri = "/v1/pools/a%2Fb/elements/0x10/drain?timeout=90s"
            .parse()
            .unwrap();
        let (h, id) = target(&uri).ok().unwrap();
        assert_eq!((h.as_bytes(), id), (&b"a/b"[..], PeId::new(16)));
        let uri: Uri = "/v1/pools/%ff/elements/7".parse().unwrap();
        let (h, id) = target(&uri).ok().unwrap();
        assert_eq!((h.as_bytes(), id), (&[0xff][..], PeId::new(7)));
        for bad in ["/v1/pools/%zz/elements/1", "/v1/pools/echo/elements/x"] {
            assert!(target(&bad.parse().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts_default_to_ten_minutes_and_none_means_none() {
        let q = |t: Option<&str>| DrainQuery {
            timeout: t.map(str::to_string),
        };
        assert_eq!(
            parse_timeout(&q(None)).ok(),
            Some(Some(Duration::from_secs(600)))
        );
        assert_eq!(parse_timeout(&q(Some("none"))).ok(), Some(None));
        assert_eq!(
            parse_timeout(&q(Some("1m 30s"))).ok(),
            Some(Some(Duration::from_secs(90)))
        );
        let e = parse_timeout(&q(Some("soon"))).unwrap_err();
        assert!(e.0.starts_with("timeout \"soon\""), "{}", e.0);
    }
}
