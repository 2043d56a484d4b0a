//! The registrar core's settings: its identifier, the ASAP timers and
//! thresholds of RFC 5352 section 7 (with RSPLIB's values where the RFC
//! leaves them open, DESIGN section 6), and the limits of RFC 5355.

use std::time::Duration;

use rserpool_security::rate_limit::Rate;
use rserpool_wire::ServerId;
use serde::{Deserialize, Serialize};

/// Settings of [`crate::RegistrarCore`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// This registrar's server identifier (RFC 5353 section 3.1: random,
    /// non-zero).
    pub server_id: ServerId,
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
    /// within [`Self::bad_pe_report_window`] make the registrar probe the
    /// PE with a keep-alive; it is removed only if that goes unanswered
    /// (RFC 5352 3.5, RFC 5355 2.13).
    pub max_bad_pe_reports: usize,
    /// Whether reports from pool users that proved no identity (anonymous
    /// TLS clients, insecure mode) count at all. When they do, each source
    /// address (IPv6: each /64) counts as one reporter.
    pub count_anonymous_reports: bool,
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
    /// Most PEs one identity may have registered at a time.
    pub max_pes_per_identity: usize,
    /// Most connections one authenticated identity may have open (an
    /// anonymous or insecure client counts by its source address).
    pub max_connections_per_identity: usize,
    /// Registrations and deregistrations per identity (RFC 5355 2.1, 2.2).
    pub registration_rate: Rate,
    /// Registrations and deregistrations per source address (all the
    /// identities behind one address together).
    pub registration_rate_per_address: Rate,
    /// Registrations and deregistrations of everyone together (DESIGN
    /// section 4: a global layer; many identities from many addresses,
    /// each within its limits, cannot take the registrar's whole CPU).
    pub registration_rate_global: Rate,
    /// Handle resolutions per identity.
    pub resolution_rate: Rate,
    /// Handle resolutions per source address.
    pub resolution_rate_per_address: Rate,
    /// Handle resolutions of everyone together.
    pub resolution_rate_global: Rate,
    /// Endpoint unreachable reports per reporter (RFC 5355 2.13).
    pub report_rate: Rate,
    /// Endpoint unreachable reports per source address.
    pub report_rate_per_address: Rate,
    /// Endpoint unreachable reports of everyone together.
    pub report_rate_global: Rate,
    /// Malformed messages a connection may send before it is closed.
    pub max_malformed_per_connection: u32,
    /// Keys each rate limiter remembers (beyond: one shared bucket).
    pub max_limiter_keys: usize,
    /// Seed of the selection policies' random generator (0: the driver
    /// draws one).
    pub seed: u64,
    /// The ENRP side: peers, timers, bounds.
    pub enrp: crate::EnrpConfig,
    /// `server_id` was drawn at random, not configured: if another
    /// registrar turns out to use it while this one is still starting
    /// (before its table download, owning no PE), this one draws a new
    /// one (RFC 5353 3.2.1 wants it as unique as possible; it stays the
    /// same from then on).
    pub server_id_drawn: bool,
}

/// The defaults; `server_id` is drawn at random (never 0) for every
/// `default()`, so that two registrars started with the defaults never
/// share an identifier (RFC 5353 section 3.1).
impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            server_id: default_server_id(),
            keep_alive_interval: Duration::from_secs(5),
            keep_alive_timeout: Duration::from_secs(5),
            max_keep_alives_per_interval: 3,
            max_bad_pe_reports: 3,
            count_anonymous_reports: true,
            bad_pe_report_window: Duration::from_secs(60),
            min_registration_life: Duration::from_secs(1),
            max_registration_life: Duration::from_secs(24 * 3600),
            default_items: 3,
            max_pes_per_identity: 10_000,
            max_connections_per_identity: 1_000,
            registration_rate: Rate::new(100.0, 200.0),
            registration_rate_per_address: Rate::new(1_000.0, 2_000.0),
            registration_rate_global: Rate::new(20_000.0, 40_000.0),
            resolution_rate: Rate::new(2_000.0, 4_000.0),
            resolution_rate_per_address: Rate::new(20_000.0, 40_000.0),
            resolution_rate_global: Rate::new(200_000.0, 400_000.0),
            report_rate: Rate::new(1.0, 5.0),
            report_rate_per_address: Rate::new(10.0, 50.0),
            report_rate_global: Rate::new(1_000.0, 5_000.0),
            max_malformed_per_connection: 10,
            max_limiter_keys: 100_000,
            seed: 0,
            server_id_drawn: false,
            enrp: crate::EnrpConfig::default(),
        }
    }
}

/// A random registrar identifier: 32 bits from OpenSSL's CSPRNG, never 0
/// (RFC 5353 section 3.1: chosen at start-up, unique with high
/// probability among the registrars of an operational scope).
#[cfg(feature = "service")]
pub fn random_server_id() -> Result<ServerId, rserpool_security::SecurityError> {
    loop {
        let mut b = [0u8; 4];
        rserpool_security::random_bytes(&mut b)?;
        let id = ServerId::new(u32::from_be_bytes(b));
        if !id.is_undetermined() {
            return Ok(id);
        }
    }
}

/// A server identifier for [`CoreConfig::default`]: random, never 0.
/// From the standard library's random hash keys (the operating system's
/// randomness, without OpenSSL, so that the core builds without it); a
/// registrar that must be unpredictable uses [`random_server_id`].
fn default_server_id() -> ServerId {
    use std::hash::{BuildHasher, Hasher};
    let keys = std::collections::hash_map::RandomState::new();
    let id = (0u64..)
        .map(|i| {
            let mut h = keys.build_hasher();
            h.write_u64(i);
            h.finish() as u32
        })
        .find(|&id| id != 0)
        .unwrap_or(1);
    ServerId::new(id)
}

impl CoreConfig {
    /// Check every setting against its range ([`bounds`]) and the
    /// settings against each other.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        use bounds::*;
        if self.server_id == ServerId::UNDETERMINED {
            return Err(InvalidSetting::new("server_id", "must not be 0"));
        }
        KEEP_ALIVE_INTERVAL.check("keep_alive_interval", self.keep_alive_interval)?;
        KEEP_ALIVE_TIMEOUT.check("keep_alive_timeout", self.keep_alive_timeout)?;
        KEEP_ALIVES_PER_INTERVAL.check(
            "max_keep_alives_per_interval",
            self.max_keep_alives_per_interval,
        )?;
        BAD_PE_REPORTS.check("max_bad_pe_reports", self.max_bad_pe_reports)?;
        BAD_PE_REPORT_WINDOW.check("bad_pe_report_window", self.bad_pe_report_window)?;
        REGISTRATION_LIFE.check("min_registration_life", self.min_registration_life)?;
        REGISTRATION_LIFE.check("max_registration_life", self.max_registration_life)?;
        if self.min_registration_life > self.max_registration_life {
            return Err(InvalidSetting::new(
                "min_registration_life",
                format!(
                    "must not be more than max_registration_life ({} > {})",
                    show_duration(self.min_registration_life),
                    show_duration(self.max_registration_life)
                ),
            ));
        }
        ITEMS.check("default_items", self.default_items)?;
        PES_PER_IDENTITY.check("max_pes_per_identity", self.max_pes_per_identity)?;
        CONNECTIONS.check(
            "max_connections_per_identity",
            self.max_connections_per_identity,
        )?;
        for (name, r) in self.rates() {
            r.check().map_err(|e| InvalidSetting::new(name, e))?;
        }
        MALFORMED.check(
            "max_malformed_per_connection",
            self.max_malformed_per_connection,
        )?;
        LIMITER_KEYS.check("max_limiter_keys", self.max_limiter_keys)?;
        self.enrp.validate()?;
        Ok(())
    }

    /// The rate limits, by field name.
    pub fn rates(&self) -> [(&'static str, Rate); 9] {
        [
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
            ("registration_rate_global", self.registration_rate_global),
            ("resolution_rate_global", self.resolution_rate_global),
            ("report_rate_global", self.report_rate_global),
        ]
    }
}

/// A setting that is out of its range or does not fit the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct InvalidSetting {
    /// The setting, by its field name in [`CoreConfig`] or
    /// [`crate::ServiceConfig`].
    pub setting: &'static str,
    /// What is wrong, and what is allowed.
    pub problem: String,
}

impl InvalidSetting {
    /// An error about `setting`.
    pub fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        InvalidSetting {
            setting,
            problem: problem.into(),
        }
    }
}

/// A value a [`Range`] can bound.
pub trait Bounded: Copy + PartialOrd {
    /// The value as an operator writes it.
    fn show(self) -> String;
}

impl Bounded for Duration {
    fn show(self) -> String {
        show_duration(self)
    }
}

impl Bounded for usize {
    fn show(self) -> String {
        self.to_string()
    }
}

impl Bounded for u32 {
    fn show(self) -> String {
        self.to_string()
    }
}

/// The closed range a setting must lie in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range<T> {
    /// Smallest value allowed.
    pub min: T,
    /// Largest value allowed.
    pub max: T,
}

impl<T: Bounded> Range<T> {
    /// Whether `value` is in the range.
    pub fn contains(&self, value: T) -> bool {
        self.min <= value && value <= self.max
    }

    /// An error naming `setting` if `value` is outside the range.
    pub fn check(&self, setting: &'static str, value: T) -> Result<(), InvalidSetting> {
        if self.contains(value) {
            Ok(())
        } else {
            Err(InvalidSetting::new(setting, self.problem(value)))
        }
    }

    /// What is wrong with `value`, for a caller that names the setting
    /// itself.
    pub fn problem(&self, value: T) -> String {
        format!(
            "{} is outside the allowed range {} ..= {}",
            value.show(),
            self.min.show(),
            self.max.show()
        )
    }
}

/// A duration as it would be written in the configuration file: in the
/// largest unit that shows it exactly.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 {
        return format!("{}ns", d.as_nanos());
    }
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The range of every bounded setting of the registrar (documented in
/// `docs/operations.md`; `rsp registrar --check-config` and
/// [`CoreConfig::validate`] / [`crate::ServiceConfig::validate`] check
/// them). Timers below 100 ms make PEs flap or burn a core; above the
/// maxima they stop protecting anything.
pub mod bounds {
    use std::time::Duration;

    use super::Range;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Mean time between keep-alives.
    pub const KEEP_ALIVE_INTERVAL: Range<Duration> = Range {
        min: ms(100),
        max: secs(3_600),
    };
    /// Time to answer a keep-alive.
    pub const KEEP_ALIVE_TIMEOUT: Range<Duration> = Range {
        min: ms(100),
        max: secs(3_600),
    };
    /// Keep-alives to one PE per interval (RFC 5355 2.14).
    pub const KEEP_ALIVES_PER_INTERVAL: Range<usize> = Range { min: 1, max: 100 };
    /// MAX-BAD-PE-REPORT.
    pub const BAD_PE_REPORTS: Range<usize> = Range { min: 1, max: 100 };
    /// Window of unreachable reports.
    pub const BAD_PE_REPORT_WINDOW: Range<Duration> = Range {
        min: secs(1),
        max: secs(3_600),
    };
    /// Registration lives: the wire carries milliseconds in 32 bits
    /// (49.7 days at most).
    pub const REGISTRATION_LIFE: Range<Duration> = Range {
        min: ms(100),
        max: secs(49 * 86_400),
    };
    /// PEs in a handle resolution (RSPLIB caps at 128).
    pub const ITEMS: Range<usize> = Range {
        min: 1,
        max: rserpool_handlespace::MAX_ITEMS,
    };
    /// PEs per identity.
    pub const PES_PER_IDENTITY: Range<usize> = Range {
        min: 1,
        max: 10_000_000,
    };
    /// Connection limits (in total, per address, per identity).
    pub const CONNECTIONS: Range<usize> = Range {
        min: 1,
        max: 1_000_000,
    };
    /// Handshakes in progress (in total, per address).
    pub const HANDSHAKES: Range<usize> = Range {
        min: 1,
        max: 100_000,
    };
    /// Malformed messages a connection may send.
    pub const MALFORMED: Range<u32> = Range {
        min: 0,
        max: 1_000_000,
    };
    /// Keys per rate limiter.
    pub const LIMITER_KEYS: Range<usize> = Range {
        min: 1,
        max: 10_000_000,
    };
    /// Largest message, in bytes: room for a registration, and what the
    /// 16-bit length can say.
    pub const MESSAGE_SIZE: Range<usize> = Range {
        min: 256,
        max: rserpool_wire::framing::ChannelCodec::ABSOLUTE_MAX,
    };
    /// Time to complete a TLS handshake.
    pub const HANDSHAKE_TIMEOUT: Range<Duration> = Range {
        min: ms(100),
        max: secs(300),
    };
    /// Time to complete a message from its first byte.
    pub const MESSAGE_TIMEOUT: Range<Duration> = Range {
        min: ms(100),
        max: secs(300),
    };
    /// Silence after which a connection closes.
    pub const IDLE_TIMEOUT: Range<Duration> = Range {
        min: secs(1),
        max: secs(86_400),
    };
    /// Time between server announcements (RFC 5352 7.1: 1 s).
    pub const ANNOUNCE_INTERVAL: Range<Duration> = Range {
        min: ms(100),
        max: secs(3_600),
    };
    /// Messages queued per connection, inputs queued for the core.
    pub const QUEUE: Range<usize> = Range {
        min: 1,
        max: 1_000_000,
    };
    /// Interval of the summaries of repeated warnings.
    pub const LOG_SUMMARY_INTERVAL: Range<Duration> = Range {
        min: ms(100),
        max: secs(3_600),
    };
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

#[cfg(test)]
mod default_tests {
    use super::*;

    #[test]
    fn default_server_ids_differ_and_are_not_zero() {
        let ids: std::collections::BTreeSet<u32> = (0..64)
            .map(|_| CoreConfig::default().server_id.get())
            .collect();
        assert!(!ids.contains(&0));
        // 64 draws of 32 bits: a repeat is a broken generator, not luck.
        assert!(ids.len() >= 63, "{ids:?}");
    }
}
