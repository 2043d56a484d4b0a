//! The authorised peer database over the admin API (`docs/admin.md`):
//!
//! * `GET /v1/apd`: where it comes from and its entries, in order;
//! * `POST /v1/apd/entries` with `{"entry": {...}}` appends an entry,
//!   with `"position": N` inserts it there;
//! * `PUT /v1/apd/entries/{entry}` with `{"entry": {...}}` replaces one;
//! * `POST /v1/apd/entries/{entry}/move` with `{"to": N}` moves one;
//! * `DELETE /v1/apd/entries/{entry}` deletes one;
//! * `PUT /v1/apd` with the whole database as TOML replaces it.
//!
//! `{entry}` is a position (from 0) or a name. Every change is checked
//! first: an invalid one changes nothing and the 400 says what is wrong
//! (with the line and key for TOML, the key for JSON). A valid one is
//! written to the database file, if the registrar has one, then applied;
//! the registrar re-validates every connection and registration and the
//! answer lists what it removed ([`crate::ApdReport`]). Each change is
//! logged with its source address. Bodies are bounded in size and time.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rserpool_security::apd::{Apd, Change, Entry, EntrySelector, EntrySpec, Origin};
use serde::{Deserialize, Serialize};

use super::{core_unavailable, error, Shared};
use crate::{ApdReport, ServiceError};

/// Largest body: a whole database file ([`rserpool_security::MAX_FILE_LEN`]).
const MAX_BODY: usize = rserpool_security::MAX_FILE_LEN as usize;

/// Longest time to receive a body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The routes, for the authenticated router.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/apd", get(list).put(replace))
        .route("/v1/apd/entries", post(add))
        .route("/v1/apd/entries/{entry}", put(modify).delete(delete))
        .route("/v1/apd/entries/{entry}/move", post(move_entry))
}

/// `GET /v1/apd`.
#[derive(Debug, Serialize)]
pub struct ApdView {
    /// `permissive` (no database configured) or `configured`.
    pub origin: &'static str,
    /// The origin in words (what the registrar logged at start).
    pub description: String,
    /// The file changes are written to, if any.
    pub file: Option<String>,
    /// The entries in order.
    pub entries: Vec<EntryView>,
}

/// One entry and its position.
#[derive(Debug, Serialize)]
pub struct EntryView {
    /// Its position (from 0).
    pub position: usize,
    /// The entry.
    #[serde(flatten)]
    pub entry: EntrySpec,
}

impl ApdView {
    fn new(apd: &Apd, file: Option<String>) -> ApdView {
        ApdView {
            origin: match apd.origin() {
                Origin::Permissive { .. } => "permissive",
                _ => "configured",
            },
            description: apd.origin().to_string(),
            file,
            entries: apd
                .entries()
                .iter()
                .enumerate()
                .map(|(position, e)| EntryView {
                    position,
                    entry: e.to_spec(),
                })
                .collect(),
        }
    }
}

/// The answer to a change.
#[derive(Debug, Serialize)]
pub struct ChangeView {
    /// What was done (`added`, `inserted`, `modified`, `moved`,
    /// `deleted`, `replaced`).
    pub change: &'static str,
    /// The position the change names (for a delete: where the entry was).
    pub position: Option<usize>,
    /// The database file the change was written to (`None`: the
    /// registrar has none, the change lives in memory until a restart).
    pub written_to: Option<String>,
    /// What the re-validation removed.
    #[serde(flatten)]
    pub report: ApdReport,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryBody {
    entry: EntrySpec,
    position: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModifyBody {
    entry: EntrySpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    to: usize,
}

/// The body, within [`MAX_BODY`] bytes and [`BODY_TIMEOUT`].
async fn read_body(body: Body) -> Result<axum::body::Bytes, Response> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
        Ok(Err(e)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body could not be read or is over {MAX_BODY} bytes: {e}"),
        )),
        Ok(Ok(b)) => Ok(b),
    }
}

/// A JSON body of type `T`, or the 400 that says what is wrong with it.
async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, Response> {
    let bytes = read_body(body).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not the JSON this endpoint takes: {e}"),
        )
    })
}

fn entry_of(spec: &EntrySpec) -> Result<Entry, Box<Response>> {
    Entry::from_spec(spec)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("entry: {e}"))))
}

fn selector(text: &str) -> EntrySelector {
    text.parse().unwrap_or_else(|e| match e {})
}

fn service_error(e: &ServiceError) -> Response {
    use rserpool_security::apd::ApdError;
    let status = match e {
        ServiceError::Apd(ApdError::File { error, .. }) => match **error {
            ApdError::Read(rserpool_security::SecurityError::FileTooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
        ServiceError::Apd(ApdError::NoSuchEntry(_)) => StatusCode::NOT_FOUND,
        ServiceError::Apd(_) => StatusCode::BAD_REQUEST,
        ServiceError::ApdNeedsSecureMode => StatusCode::CONFLICT,
        ServiceError::Stopped => return core_unavailable(),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// Carry out a change, log it and answer.
async fn change(
    s: &Shared,
    peer: SocketAddr,
    what: &'static str,
    change: Option<Change>,
    replace: Option<Apd>,
) -> Response {
    let registrar = &s.registrar;
    let result = match (change, replace) {
        (Some(c), _) => registrar.change_apd(c).await.map(|(p, r)| (Some(p), r)),
        (None, Some(apd)) => registrar.set_apd(apd).await.map(|r| (None, r)),
        (None, None) => return error(StatusCode::BAD_REQUEST, "nothing to change"),
    };
    match result {
        Err(e) => {
            tracing::info!(%peer, change = what, error = %e, "admin API: database change refused");
            service_error(&e)
        }
        Ok((position, report)) => {
            tracing::warn!(
                %peer,
                change = what,
                position,
                entries = report.entries,
                connections_closed = report.connections_closed.len(),
                pes_removed = report.pes_removed.len(),
                removed = %report
                    .pes_removed
                    .iter()
                    .map(|p| format!("{}/{:#010x} ({})", p.pool_handle, p.identifier, p.identity))
                    .collect::<Vec<_>>()
                    .join(", "),
                "admin API: authorised peer database {what}"
            );
            Json(ChangeView {
                change: what,
                position,
                written_to: registrar.apd_file().map(|p| p.display().to_string()),
                report,
            })
            .into_response()
        }
    }
}

/// `GET /v1/apd`.
async fn list(State(s): State<Shared>) -> Response {
    match s.registrar.apd().await {
        Ok(apd) => {
            let file = s.registrar.apd_file().map(|p| p.display().to_string());
            Json(ApdView::new(&apd, file)).into_response()
        }
        Err(e) => service_error(&e),
    }
}

/// `POST /v1/apd/entries`.
async fn add(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Body,
) -> Response {
    let b: EntryBody = match json_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let entry = match entry_of(&b.entry) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let (what, c) = match b.position {
        None => ("added", Change::Add(entry)),
        Some(position) => ("inserted", Change::Insert { position, entry }),
    };
    change(&s, peer, what, Some(c), None).await
}

/// `PUT /v1/apd/entries/{entry}`.
async fn modify(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(sel): Path<String>,
    body: Body,
) -> Response {
    let b: ModifyBody = match json_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let with = match entry_of(&b.entry) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let c = Change::Modify {
        entry: selector(&sel),
        with,
    };
    change(&s, peer, "modified", Some(c), None).await
}

/// `POST /v1/apd/entries/{entry}/move`.
async fn move_entry(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(sel): Path<String>,
    body: Body,
) -> Response {
    let b: MoveBody = match json_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let c = Change::Move {
        entry: selector(&sel),
        to: b.to,
    };
    change(&s, peer, "moved", Some(c), None).await
}

/// `DELETE /v1/apd/entries/{entry}`.
async fn delete(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(sel): Path<String>,
) -> Response {
    let c = Change::Delete(selector(&sel));
    change(&s, peer, "deleted", Some(c), None).await
}

/// `PUT /v1/apd` with a TOML database.
async fn replace(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Body,
) -> Response {
    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return error(StatusCode::BAD_REQUEST, "the database is not UTF-8 text");
    };
    match Apd::from_toml(text) {
        Ok(apd) => change(&s, peer, "replaced", None, Some(apd)).await,
        Err(e) => error(StatusCode::BAD_REQUEST, format!("database: {e}")),
    }
}
