//! The client side of the registrar's admin HTTP API (`docs/admin.md`),
//! shared by `rsp status` and `rsp watch`: the `--admin` and
//! `--token-file` flags, and GET requests whose errors name what is
//! wrong (an unreachable address, a refused token file, an answer that is
//! not JSON).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use reqwest::{StatusCode, Url};
use rserpool_registrar::admin::AdminToken;

/// Default address of the admin API.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:3865";

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a plain (non-streaming) request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the admin API is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Base URL of the registrar's admin API.
    #[arg(long = "admin", value_name = "URL", default_value = DEFAULT_ADMIN_URL)]
    pub admin: String,
    /// File with the admin bearer token (one line; `rsp keygen token`).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
}

/// A client of one admin API.
#[derive(Debug)]
pub struct AdminClient {
    base: Url,
    token: AdminToken,
    token_file: PathBuf,
    http: reqwest::Client,
}

impl AdminClient {
    /// Read the token file and check the URL.
    pub fn new(args: &AdminArgs) -> anyhow::Result<AdminClient> {
        let mut base = Url::parse(&args.admin)
            .with_context(|| format!("--admin {:?} is not a URL", args.admin))?;
        // Paths are joined relative to the base, so that an API behind a
        // proxy prefix keeps its prefix.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if base.scheme() != "http" {
            bail!(
                "--admin {}: only http:// is supported (keep the admin API on loopback, \
                 or reach it through an SSH tunnel or a TLS proxy)",
                args.admin
            );
        }
        let token = AdminToken::load(&args.token_file)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(AdminClient {
            base,
            token,
            token_file: args.token_file.clone(),
            http,
        })
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// GET `path` and check the status; `timeout` bounds the whole
    /// request (not used for streams).
    async fn get(
        &self,
        path: &str,
        timeout: Option<Duration>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("{}{path} is not a URL", self.base()))?;
        let mut req = self.http.get(url).bearer_auth(self.token.as_str());
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        Err(match status {
            StatusCode::UNAUTHORIZED => anyhow!(
                "the admin API at {} refused the token in {} (401 Unauthorized: {detail})",
                self.base(),
                self.token_file.display()
            ),
            StatusCode::TOO_MANY_REQUESTS => anyhow!(
                "the admin API at {} refused the token in {} (429: too many failed \
                 authentications; the right token is always accepted)",
                self.base(),
                self.token_file.display()
            ),
            _ => anyhow!(
                "the admin API at {} answered {path} with {status}: {detail}",
                self.base()
            ),
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> anyhow::Error {
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        if e.is_connect() {
            anyhow!(
                "cannot reach the registrar's admin API at {}: {cause}",
                self.base()
            )
        } else if e.is_timeout() {
            anyhow!("the admin API at {} did not answer in time", self.base())
        } else {
            anyhow!(
                "request to the admin API at {} failed: {cause}",
                self.base()
            )
        }
    }

    /// GET a JSON document.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let resp = self.get(path, Some(REQUEST_TIMEOUT)).await?;
        let body = resp.text().await.map_err(|e| self.transport_error(&e))?;
        serde_json::from_str(&body).map_err(|e| {
            anyhow!(
                "the admin API at {} answered {path} with something that is not JSON ({e}); \
                 is it a registrar's admin API?",
                self.base()
            )
        })
    }

    /// Open the event stream (`GET /v1/events`): the response, whose body
    /// is read chunk by chunk.
    pub async fn events(&self) -> anyhow::Result<reqwest::Response> {
        let resp = self.get("/v1/events", None).await?;
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            bail!(
                "the admin API at {} answered /v1/events with something that is not an event \
                 stream",
                self.base()
            );
        }
        Ok(resp)
    }
}
