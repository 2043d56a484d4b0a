//! The registrar core's settings: its identifier, the ASAP timers and
//! thresholds of RFC 5352 section 7 (with RSPLIB's values where the RFC
//! leaves them open, DESIGN section 6), and the limits of RFC 5355.

use std::time::Duration;

use rserpool_security::rate_limit::Rate;
use serde::{Deserialize, Serialize};

/// Settings of [`crate::RegistrarCore`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// This registrar's server identifier (RFC 5353 section 3.1: random,
    /// non-zero).
    pub server_id: u32,
    /// Mean time between the keep-alives sent to one PE; each interval is
    /// drawn from 50..150 % of it (RFC 5352 section 3.5). RSPLIB: 5 s.
    #[serde(with = "duration_ms")]
    pub keep_alive_interval: Duration,
    /// How long a PE has to answer a keep-alive before it is removed.
    /// RSPLIB: 5 s. Also the grace period of a PE whose connection closed:
    /// it must re-register over a new connection within it.
    #[serde(with = "duration_ms")]
    pub keep_alive_timeout: Duration,
    /// At most this many keep-alives go to one PE per keep-alive interval,
    /// however many unreachable reports arrive (RFC 5355 section 2.14).
    pub max_keep_alives_per_interval: usize,
    /// MAX-BAD-PE-REPORT: reports from this many distinct reporters
    /// within [`Self::bad_pe_report_window`] remove a PE (RFC 5352 3.5).
    pub max_bad_pe_reports: usize,
    /// Window in which unreachable reports of one PE count together.
    #[serde(with = "duration_ms")]
    pub bad_pe_report_window: Duration,
    /// Shortest registration life accepted.
    #[serde(with = "duration_ms")]
    pub min_registration_life: Duration,
    /// Longest registration life accepted (infinite lives are refused).
    #[serde(with = "duration_ms")]
    pub max_registration_life: Duration,
    /// PEs in a handle resolution response without the 0x803f option.
    pub default_items: usize,
    /// Accept registered transport addresses other than the connection's
    /// source address (off: a PE registers only itself, DESIGN section 4).
    pub allow_foreign_addresses: bool,
    /// Most PEs one identity may have registered at a time.
    pub max_pes_per_identity: usize,
    /// Registrations and deregistrations per identity (RFC 5355 2.1, 2.2).
    pub registration_rate: Rate,
    /// Registrations and deregistrations per source address (all the
    /// identities behind one address together).
    pub registration_rate_per_address: Rate,
    /// Handle resolutions per identity.
    pub resolution_rate: Rate,
    /// Handle resolutions per source address.
    pub resolution_rate_per_address: Rate,
    /// Endpoint unreachable reports per reporter (RFC 5355 2.13).
    pub report_rate: Rate,
    /// Endpoint unreachable reports per source address.
    pub report_rate_per_address: Rate,
    /// Malformed messages a connection may send before it is closed.
    pub max_malformed_per_connection: u32,
    /// Keys each rate limiter remembers (beyond: one shared bucket).
    pub max_limiter_keys: usize,
    /// Seed of the selection policies' random generator (0: the driver
    /// draws one).
    pub seed: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            server_id: 1,
            keep_alive_interval: Duration::from_secs(5),
            keep_alive_timeout: Duration::from_secs(5),
            max_keep_alives_per_interval: 3,
            max_bad_pe_reports: 3,
            bad_pe_report_window: Duration::from_secs(60),
            min_registration_life: Duration::from_secs(1),
            max_registration_life: Duration::from_secs(24 * 3600),
            default_items: 3,
            allow_foreign_addresses: false,
            max_pes_per_identity: 10_000,
            registration_rate: Rate::new(100.0, 200.0),
            registration_rate_per_address: Rate::new(1_000.0, 2_000.0),
            resolution_rate: Rate::new(2_000.0, 4_000.0),
            resolution_rate_per_address: Rate::new(20_000.0, 40_000.0),
            report_rate: Rate::new(1.0, 5.0),
            report_rate_per_address: Rate::new(10.0, 50.0),
            max_malformed_per_connection: 10,
            max_limiter_keys: 100_000,
            seed: 0,
        }
    }
}

/// A random registrar identifier: 32 bits from OpenSSL's CSPRNG, never 0
/// (RFC 5353 section 3.1: chosen at start-up, unique with high
/// probability among the registrars of an operational scope).
pub fn random_server_id() -> Result<u32, rserpool_security::SecurityError> {
    loop {
        let mut b = [0u8; 4];
        rserpool_security::random_bytes(&mut b)?;
        let id = u32::from_be_bytes(b);
        if id != 0 {
            return Ok(id);
        }
    }
}

impl CoreConfig {
    /// Check the settings for values the core cannot work with.
    pub fn validate(&self) -> Result<(), String> {
        if self.server_id == 0 {
            return Err("server_id must not be 0".into());
        }
        if self.keep_alive_interval.is_zero() || self.keep_alive_timeout.is_zero() {
            return Err("keep-alive interval and timeout must be positive".into());
        }
        if self.max_keep_alives_per_interval == 0 {
            return Err("max_keep_alives_per_interval must be at least 1".into());
        }
        if self.max_bad_pe_reports == 0 {
            return Err("max_bad_pe_reports must be at least 1".into());
        }
        if self.min_registration_life > self.max_registration_life {
            return Err("min_registration_life exceeds max_registration_life".into());
        }
        if self.default_items == 0 {
            return Err("default_items must be at least 1".into());
        }
        for (name, r) in [
            ("registration_rate", self.registration_rate),
            (
                "registration_rate_per_address",
                self.registration_rate_per_address,
            ),
            ("resolution_rate", self.resolution_rate),
            (
                "resolution_rate_per_address",
                self.resolution_rate_per_address,
            ),
            ("report_rate", self.report_rate),
            ("report_rate_per_address", self.report_rate_per_address),
        ] {
            r.check().map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }
}

/// Durations in configuration files as integer milliseconds.
pub mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Write milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u128::from(u64::MAX)) as u64)
    }

    /// Read milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
