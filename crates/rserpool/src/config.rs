//! Client settings: the registrars to use and how to authenticate them,
//! the ASAP timers and thresholds of RFC 5352 section 7, the registration
//! lifetime and its re-registration rule, the pool user's cache and
//! unreachable-report limits, and the optional learning of registrars
//! from ASAP_SERVER_ANNOUNCE ([`AnnounceConfig`]). Every value has the
//! RFC's default and can be overridden (tests use short timers).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

#[cfg(feature = "driver")]
use rserpool_security::TlsClient;

use crate::error::ClientError;

/// One registrar (ENRP server) a client may use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistrarEndpoint {
    /// Where its ASAP listener is.
    pub address: SocketAddr,
    /// What its certificate must name (a DNS name or an IP address). For
    /// PSK handshakes, which show no certificate, use the IP as text.
    pub server_name: String,
}

impl RegistrarEndpoint {
    /// A registrar known by its address; its certificate must name the IP.
    pub fn new(address: SocketAddr) -> Self {
        RegistrarEndpoint {
            address,
            server_name: address.ip().to_string(),
        }
    }

    /// A registrar whose certificate names `server_name`.
    pub fn with_name(address: SocketAddr, server_name: impl Into<String>) -> Self {
        RegistrarEndpoint {
            address,
            server_name: server_name.into(),
        }
    }
}

impl fmt::Display for RegistrarEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.server_name == self.address.ip().to_string() {
            write!(f, "{}", self.address)
        } else {
            write!(f, "{} ({})", self.address, self.server_name)
        }
    }
}

/// The ASAP timers and thresholds (RFC 5352 section 7), plus the bound of
/// one connection attempt, which the RFC leaves to the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// T1-ENRPrequest: wait for a handle resolution response (15 s).
    pub t1_request: Duration,
    /// T2-registration: wait for a registration response (30 s).
    pub t2_registration: Duration,
    /// T3-deregistration: wait for a deregistration response (30 s).
    pub t3_deregistration: Duration,
    /// T5-Serverhunt: initial length of a server hunt round (10 s); it
    /// doubles on every expiry up to [`Timers::retran_max`] (RFC 5352 3.6
    /// SH5.1) and is reset after a connection is made (SH3).
    pub t5_server_hunt: Duration,
    /// RETRAN-MAX: the cap of the T5 doubling (60 s).
    pub retran_max: Duration,
    /// MAX-REQUEST-RETRANSMIT: re-sends of a request to one registrar after
    /// T1 expired, before it is given up on (2, RFC 5352 3.7.2).
    pub max_request_retransmit: u32,
    /// MAX-REG-ATTEMPT: failed attempts (T2 expiries or failed hunt passes)
    /// after which a PE that never got registered reports the failure and
    /// stops trying (2, RFC 5352 3.1). A PE that was registered once keeps
    /// trying for as long as it runs.
    pub max_reg_attempts: u32,
    /// Longest TCP connect plus TLS handshake with one registrar (5 s);
    /// an attempt also ends when the T5 round does.
    pub connect_timeout: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1_request: Duration::from_secs(15),
            t2_registration: Duration::from_secs(30),
            t3_deregistration: Duration::from_secs(30),
            t5_server_hunt: Duration::from_secs(10),
            retran_max: Duration::from_secs(60),
            max_request_retransmit: 2,
            max_reg_attempts: 2,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The pool user's handle resolution cache (RFC 5352 3.3 C1-C4) and
/// failover memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUserSettings {
    /// stale_cache_value: how long a resolution is used without asking
    /// again (1 s).
    pub stale_timeout: Duration,
    /// How long a PE the application reported unreachable is skipped in
    /// later resolutions of its pool (5 s). The registrar keeps a PE until
    /// several distinct reporters report it, so a fresh resolution may
    /// still list it.
    pub failed_pe_memory: Duration,
    /// PEs asked for in each resolution (RSPLIB's option 0x803f); `None`
    /// lets the registrar choose (3 at RSPLIB and ours).
    pub items: Option<u32>,
    /// When no registrar can be reached, answer from a stale cache entry
    /// (with a warning) instead of failing: the PEs usually outlive an
    /// outage of the registrars.
    pub serve_stale_on_failure: bool,
    /// Most pool handles kept in the cache; the least recently resolved
    /// one goes first.
    pub max_cache_entries: usize,
}

impl Default for PoolUserSettings {
    fn default() -> Self {
        PoolUserSettings {
            stale_timeout: Duration::from_secs(1),
            failed_pe_memory: Duration::from_secs(5),
            items: None,
            serve_stale_on_failure: true,
            max_cache_entries: 1024,
        }
    }
}

/// Limits on ASAP_ENDPOINT_UNREACHABLE reports (RFC 5352 3.5: no more than
/// one report per event; RFC 5355 2.13: reports must not become a flood).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportLimits {
    /// At most one report of one PE per this interval, however many
    /// failures the application sees (1 s, the default stale period).
    pub per_pe_interval: Duration,
    /// At most this many reports per second in all (burst the same); 0
    /// disables reports.
    pub max_per_second: u32,
}

impl Default for ReportLimits {
    fn default() -> Self {
        ReportLimits {
            per_pe_interval: Duration::from_secs(1),
            max_per_second: 10,
        }
    }
}

/// Learning registrars from ASAP_SERVER_ANNOUNCE on a UDP group (RFC 5352
/// section 3.6), on top of the configured list. Off unless set
/// (`ClientConfig::announcements`, feature `driver`).
///
/// An announcement is an untrusted hint (RFC 5355 2.12, DESIGN section
/// 3): a learned registrar is only an address to try, authenticated by
/// the same TLS handshake as a configured one; configured registrars are
/// always kept and come first; learned ones are at most
/// [`AnnounceConfig::max_learned`], each dropped when not announced again
/// within [`AnnounceConfig::expiry`]; when the cap is reached, a new
/// address replaces the learned one announced least recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// The group to listen on (RSPLIB's and the registrar's default:
    /// 239.0.0.50:3863). A unicast address is bound as it is (tests).
    pub group: SocketAddr,
    /// The local interface (by its IPv4 address) to join an IPv4 group
    /// on; `None` lets the system choose by its routes. IPv6 groups are
    /// joined on the system's choice.
    pub interface: Option<Ipv4Addr>,
    /// Most registrars learned at once (16).
    pub max_learned: usize,
    /// T7-ENRPoutdate: how long a learned address is kept without being
    /// announced again (RFC 5352 section 7.1: 5 s).
    pub expiry: Duration,
    /// What a learned registrar's certificate must name; `None`: its IP
    /// address (as for `RegistrarEndpoint::new`). PSK handshakes are not
    /// affected.
    pub server_name: Option<String>,
}

impl AnnounceConfig {
    /// Most learned registrars [`AnnounceConfig::max_learned`] may allow.
    pub const MAX_LEARNED_LIMIT: usize = 1024;

    /// Listen on `group` with the defaults.
    pub fn new(group: SocketAddr) -> Self {
        AnnounceConfig {
            group,
            interface: None,
            max_learned: 16,
            expiry: crate::registrars::T7_ENRP_OUTDATE,
            server_name: None,
        }
    }

    /// The endpoint of a learned registrar at `address`.
    pub fn endpoint(&self, address: SocketAddr) -> RegistrarEndpoint {
        match &self.server_name {
            Some(name) => RegistrarEndpoint::with_name(address, name.clone()),
            None => RegistrarEndpoint::new(address),
        }
    }

    /// Check for values that cannot work.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |s: String| Err(ClientError::Config(s));
        if self.max_learned == 0 || self.max_learned > Self::MAX_LEARNED_LIMIT {
            return bad(format!(
                "announcements: max_learned must be between 1 and {}",
                Self::MAX_LEARNED_LIMIT
            ));
        }
        if self.expiry.is_zero() {
            return bad("announcements: the expiry must be positive".into());
        }
        if self.group.port() == 0 {
            return bad(format!("announcements: group {} has no port", self.group));
        }
        Ok(())
    }
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig::new(SocketAddr::from(([239, 0, 0, 50], 3863)))
    }
}

/// Everything a pool element or pool user needs to know.
#[cfg(feature = "driver")]
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The registrars, in order of preference (RFC 5352 3.6: a configured
    /// list when there is no multicast).
    pub registrars: Vec<RegistrarEndpoint>,
    /// How to authenticate the registrars; `None` is the insecure lab mode
    /// (plain TCP, nobody authenticated; logged as a warning).
    pub tls: Option<TlsClient>,
    /// ASAP timers and thresholds.
    pub timers: Timers,
    /// Default registration lifetime of a PE (30 s); sent in milliseconds,
    /// as RSPLIB does. Re-registration follows
    /// [`reregistration_interval`].
    pub registration_lifetime: Duration,
    /// Pool user cache settings.
    pub pool_user: PoolUserSettings,
    /// Unreachable report limits.
    pub reports: ReportLimits,
    /// Longest message accepted from a registrar (bytes, at most 65535).
    pub max_message_len: usize,
    /// Learn more registrars from ASAP_SERVER_ANNOUNCE (RFC 5352 3.6);
    /// `None` (the default): only the configured list is used.
    pub announcements: Option<AnnounceConfig>,
    /// A pool element keeps a standby link to a second registrar of the
    /// list, over which a registrar that took its home over calls it
    /// home, and over which it registers at once when it loses its
    /// registrar (docs/tcp-mapping.md). On by default; it needs two
    /// registrars in the list. Pool users have none.
    pub standby_link: bool,
}

#[cfg(feature = "driver")]
impl ClientConfig {
    /// A configuration with the RFC defaults.
    pub fn new(registrars: Vec<RegistrarEndpoint>, tls: Option<TlsClient>) -> Self {
        ClientConfig {
            registrars,
            tls,
            timers: Timers::default(),
            registration_lifetime: Duration::from_secs(30),
            pool_user: PoolUserSettings::default(),
            reports: ReportLimits::default(),
            max_message_len: rserpool_wire::framing::ChannelCodec::ABSOLUTE_MAX,
            announcements: None,
            standby_link: true,
        }
    }

    /// An insecure (plain TCP) configuration with the RFC defaults.
    pub fn insecure(registrars: Vec<RegistrarEndpoint>) -> Self {
        ClientConfig::new(registrars, None)
    }

    /// Check for values a client cannot work with.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |s: &str| Err(ClientError::Config(s.to_owned()));
        if let Some(a) = &self.announcements {
            a.validate()?;
        } else if self.registrars.is_empty() {
            // With announcements the list may start empty (RFC 5352 3.6:
            // a configured list is a must only without multicast).
            return bad("no registrar configured");
        }
        let t = &self.timers;
        if [
            t.t1_request,
            t.t2_registration,
            t.t3_deregistration,
            t.t5_server_hunt,
            t.retran_max,
            t.connect_timeout,
        ]
        .iter()
        .any(Duration::is_zero)
        {
            return bad("every timer must be positive");
        }
        if t.max_reg_attempts == 0 {
            return bad("max_reg_attempts must be at least 1");
        }
        check_lifetime(self.registration_lifetime)?;
        if self.pool_user.max_cache_entries == 0 {
            return bad("max_cache_entries must be at least 1");
        }
        if self.max_message_len < 4 {
            return bad("max_message_len must be at least 4");
        }
        Ok(())
    }
}

/// A registration lifetime must be positive and fit the 32-bit signed
/// millisecond field.
pub(crate) fn check_lifetime(lifetime: Duration) -> Result<(), ClientError> {
    if lifetime.as_millis() == 0 || lifetime.as_millis() > i32::MAX as u128 {
        return Err(ClientError::Config(format!(
            "registration lifetime {lifetime:?} must be between 1 ms and {} ms",
            i32::MAX
        )));
    }
    Ok(())
}

/// T4-reregistration for a registration lifetime. RFC 5352 section 7
/// says "10 minutes or 20 seconds less than the Lifetime (whichever is
/// less)"; for short lifetimes that leaves too little (or no) margin, so
/// the interval is never below half the lifetime:
///
/// `T4 = max(min(10 min, lifetime - 20 s), lifetime / 2)`
///
/// For the default lifetime of 30 s that is 15 s; for 10 min it is 9 min
/// 40 s; for 1 h it is 30 min.
pub fn reregistration_interval(lifetime: Duration) -> Duration {
    let rfc = Duration::from_secs(600).min(lifetime.saturating_sub(Duration::from_secs(20)));
    rfc.max(lifetime / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reregistration_follows_the_rfc_but_never_below_half_the_lifetime() {
        let s = Duration::from_secs;
        assert_eq!(reregistration_interval(s(30)), s(15));
        assert_eq!(reregistration_interval(s(60)), s(40));
        assert_eq!(reregistration_interval(s(600)), s(580));
        assert_eq!(reregistration_interval(s(3600)), s(1800));
        assert_eq!(reregistration_interval(s(1000)), s(600));
        assert_eq!(
            reregistration_interval(Duration::from_millis(400)),
            Duration::from_millis(200)
        );
    }

    #[cfg(feature = "driver")]
    #[test]
    fn defaults_are_the_rfc_values_and_validate() {
        let addr: SocketAddr = "127.0.0.1:3863".parse().expect("address");
        let c = ClientConfig::insecure(vec![RegistrarEndpoint::new(addr)]);
        assert_eq!(c.timers.t1_request, Duration::from_secs(15));
        assert_eq!(c.timers.t2_registration, Duration::from_secs(30));
        assert_eq!(c.timers.t3_deregistration, Duration::from_secs(30));
        assert_eq!(c.timers.t5_server_hunt, Duration::from_secs(10));
        assert_eq!(c.timers.retran_max, Duration::from_secs(60));
        assert_eq!(c.timers.max_request_retransmit, 2);
        assert_eq!(c.pool_user.stale_timeout, Duration::from_secs(1));
        assert!(c.validate().is_ok());
        assert_eq!(c.registrars[0].server_name, "127.0.0.1");
        assert_eq!(c.registrars[0].to_string(), "127.0.0.1:3863");
        let named = RegistrarEndpoint::with_name(addr, "registrar.test");
        assert_eq!(named.to_string(), "127.0.0.1:3863 (registrar.test)");
    }

    #[cfg(feature = "driver")]
    #[test]
    fn unusable_values_are_refused() {
        let addr: SocketAddr = "127.0.0.1:3863".parse().expect("address");
        assert!(ClientConfig::insecure(Vec::new()).validate().is_err());
        let mut c = ClientConfig::insecure(vec![RegistrarEndpoint::new(addr)]);
        c.timers.t1_request = Duration::ZERO;
        assert!(c.validate().is_err());
        let mut c = ClientConfig::insecure(vec![RegistrarEndpoint::new(addr)]);
        c.registration_lifetime = Duration::from_secs(30 * 24 * 3600);
        assert!(c.validate().is_err());
    }
}
