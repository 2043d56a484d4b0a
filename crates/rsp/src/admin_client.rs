//! The client side of the registrar's admin HTTP API (`docs/admin.md`),
//! shared by `rsp status`, `rsp watch`, `rsp pools`, `rsp pool` and
//! `rsp pe drain|undrain|remove`: the `--admin` and `--token-file` flags,
//! and requests whose errors name what is wrong (an unreachable address,
//! a refused token file, an answer that is not JSON).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use reqwest::{Method, StatusCode, Url};
use rserpool_registrar::admin::AdminToken;

/// Default address of the admin API.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:3865";

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a plain (non-streaming) request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the admin API is and how to authenticate. Each flag's default
/// comes from its environment variable, then from the client file
/// ([`crate::client_file`]).
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// The registrar's admin API: HOST:PORT or an http:// or https:// URL
    /// (a path prefix is kept; plain http only to loopback). Default:
    /// RSP_ADMIN, then `admin` of the client file, then 127.0.0.1:3865.
    #[arg(long = "admin", value_name = "URL", env = "RSP_ADMIN")]
    pub admin: Option<String>,
    /// https:// only: the CA that signs the registrar's certificate (only
    /// it is trusted). Default: RSP_ADMIN_CA.
    #[arg(long, value_name = "FILE", env = "RSP_ADMIN_CA")]
    pub admin_ca: Option<PathBuf>,
    /// https:// only: a client certificate (PEM) for an admin API that
    /// asks for one, with --admin-key.
    #[arg(long, value_name = "FILE", requires = "admin_key")]
    pub admin_cert: Option<PathBuf>,
    /// The private key (PKCS#8 PEM) of --admin-cert.
    #[arg(long, value_name = "FILE", requires = "admin_cert")]
    pub admin_key: Option<PathBuf>,
    /// File with the admin bearer token (one line; `rsp keygen token`).
    /// Default: RSP_ADMIN_TOKEN_FILE, then `admin_token_file` of the
    /// client file.
    #[arg(long, value_name = "FILE", env = "RSP_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl AdminArgs {
    /// Fill what the command line and the environment left open from the
    /// client file.
    pub fn apply(&mut self, file: &crate::client_file::ClientFile) {
        if self.admin.is_none() {
            self.admin = file.admin.clone();
        }
        if self.token_file.is_none() {
            self.token_file = file.admin_token_file.clone();
        }
    }
}

/// The admin API's base URL for `--admin`: a URL as it is, HOST:PORT (or
/// a bare HOST) as `http://HOST:PORT`.
fn admin_url(admin: &str) -> anyhow::Result<Url> {
    let text = if admin.contains("://") {
        admin.to_string()
    } else {
        format!("http://{admin}")
    };
    Url::parse(&text)
        .with_context(|| format!("--admin {admin:?} is neither HOST:PORT nor an http:// URL"))
}

/// Any bytes as one URL path segment or query value (RFC 3986 section
/// 2.1: everything but the unreserved characters percent-encoded).
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
        let admin = args.admin.as_deref().unwrap_or(DEFAULT_ADMIN_URL);
        let mut base = admin_url(admin)?;
        // Paths are joined relative to the base, so that an API behind a
        // proxy prefix keeps its prefix.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let loopback = base.host_str().is_some_and(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h.eq_ignore_ascii_case("localhost")
                || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
        });
        match base.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => bail!(
                "--admin {admin}: plain http only to loopback (the token would cross the \
                 network in clear): use https:// with --admin-ca, or an SSH tunnel"
            ),
            other => bail!("--admin {admin}: {other}:// is neither http:// nor https://"),
        }
        if base.scheme() == "http" && (args.admin_ca.is_some() || args.admin_cert.is_some()) {
            bail!("--admin-ca and --admin-cert are for https:// URLs; --admin {admin} is http://");
        }
        let Some(token_file) = &args.token_file else {
            bail!(
                "no admin token: give --token-file FILE (or set RSP_ADMIN_TOKEN_FILE, or \
                 `admin_token_file` in the client file)"
            );
        };
        let token = AdminToken::load(token_file)?;
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(ca) = &args.admin_ca {
            let pem = rserpool_security::read_credential_file(ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--admin-ca {}: no PEM certificate", ca.display()))?;
            builder = builder.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&args.admin_cert, &args.admin_key) {
            let chain = rserpool_security::read_credential_file(cert)?;
            let key_pem = rserpool_security::read_secret_file(key)?;
            let id = reqwest::Identity::from_pkcs8_pem(&chain, &key_pem).with_context(|| {
                format!(
                    "--admin-cert {} with --admin-key {}: not a PEM certificate and PKCS#8 key",
                    cert.display(),
                    key.display()
                )
            })?;
            builder = builder.identity(id);
        }
        let http = builder.build().context("cannot set up the HTTP client")?;
        Ok(AdminClient {
            base,
            token,
            token_file: token_file.clone(),
            http,
        })
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// Send `method` to `path` and check the status; `timeout` bounds the
    /// whole request (not used for streams).
    async fn request(
        &self,
        method: Method,
        path: &str,
        timeout: Option<Duration>,
    ) -> anyhow::Result<reqwest::Response> {
        self.request_with(method, path, timeout, None).await
    }

    /// [`Self::request`] with a body (its content type and bytes).
    async fn request_with(
        &self,
        method: Method,
        path: &str,
        timeout: Option<Duration>,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("{}{path} is not a URL", self.base()))?;
        let write = method != Method::GET;
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(self.token.as_str());
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some((content_type, bytes)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
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
            StatusCode::NOT_FOUND => {
                anyhow!("{detail} (the admin API at {} answered 404)", self.base())
            }
            StatusCode::SERVICE_UNAVAILABLE if write => anyhow!(
                "the admin API at {} answered 503 ({detail}): the registrar was too busy to \
                 confirm in time, and may still carry the action out; check with rsp pool",
                self.base()
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
        self.json(Method::GET, path).await
    }

    /// Send `method` (an admin write: POST, DELETE) to `path` and return
    /// the JSON answer.
    pub async fn json(&self, method: Method, path: &str) -> anyhow::Result<serde_json::Value> {
        self.json_with(method, path, None).await
    }

    /// Send `method` to `path` with a JSON body and return the JSON answer.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let bytes = serde_json::to_vec(body).context("cannot encode the request")?;
        self.json_with(method, path, Some(("application/json", bytes)))
            .await
    }

    /// Send `method` to `path` with a TOML text and return the JSON answer.
    pub async fn send_toml(
        &self,
        method: Method,
        path: &str,
        text: String,
    ) -> anyhow::Result<serde_json::Value> {
        self.json_with(method, path, Some(("application/toml", text.into_bytes())))
            .await
    }

    async fn json_with(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> anyhow::Result<serde_json::Value> {
        let resp = self
            .request_with(method, path, Some(REQUEST_TIMEOUT), body)
            .await?;
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
        // The stream has no overall deadline, but its answer (the headers)
        // has.
        let resp = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.request(Method::GET, "/v1/events", None),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "the admin API at {} did not answer /v1/events within {}s",
                self.base(),
                REQUEST_TIMEOUT.as_secs()
            )
        })??;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_handle_becomes_one_path_segment() {
        assert_eq!(percent_encode(b"echo"), "echo");
        assert_eq!(percent_encode(b"a/b c"), "a%2Fb%20c");
        assert_eq!(percent_encode(&[0x00, 0xff, b'~']), "%00%FF~");
        assert_eq!(percent_encode("é".as_bytes()), "%C3%A9");
    }

    #[test]
    fn admin_without_a_scheme_is_http() {
        assert_eq!(
            admin_url("127.0.0.1:4865").unwrap().as_str(),
            "http://127.0.0.1:4865/"
        );
        assert_eq!(admin_url("http://h:1/p").unwrap().as_str(), "http://h:1/p");
        assert_eq!(
            admin_url("[::1]:3865").unwrap().as_str(),
            "http://[::1]:3865/"
        );
        assert!(admin_url("a b").is_err());
    }
}
