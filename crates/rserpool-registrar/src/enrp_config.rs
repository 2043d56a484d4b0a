//! The settings of the registrar's ENRP side (RFC 5353 section 4.2
//! thresholds, the static peer list of 3.2.2.1, and the bounds of RFC
//! 5355 2.17 on what one peer can make this registrar do).
//!
//! The RFC's defaults (a heartbeat every 30 s, a peer silent for 61 s is
//! suspect) make a takeover take a minute; ours are shorter, so that a
//! frozen registrar's PEs move within a few seconds. Each is a setting.

use std::net::SocketAddr;
use std::time::Duration;

use rserpool_security::rate_limit::Rate;
use serde::{Deserialize, Serialize};

use crate::config::{duration_ms, InvalidSetting, Range};

/// ENRP settings of [`crate::CoreConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrpConfig {
    /// Peer registrars to connect to (RFC 5353 3.2.2.1: the first that
    /// answers is the mentor, the others its backups). Empty: this
    /// registrar starts alone and waits for peers to connect.
    pub peers: Vec<SocketAddr>,
    /// The ENRP transport this registrar announces in its presence (its
    /// ENRP listener; an unspecified address stands for the one peers
    /// reach it at). `None`: announce none (peers learn of it only when
    /// it dials them).
    pub advertise: Option<SocketAddr>,
    /// PEER-HEARTBEAT-CYCLE: between two ENRP_PRESENCE to each peer.
    #[serde(with = "duration_ms")]
    pub heartbeat_cycle: Duration,
    /// MAX-TIME-LAST-HEARD: a peer silent this long is asked for its
    /// presence.
    #[serde(with = "duration_ms")]
    pub max_time_last_heard: Duration,
    /// MAX-TIME-NO-RESPONSE: how long an answer may take (a presence
    /// asked for, a peer list, a handle table page).
    #[serde(with = "duration_ms")]
    pub max_time_no_response: Duration,
    /// The first wait before dialling a static peer again; it doubles up
    /// to eight times this.
    #[serde(with = "duration_ms")]
    pub reconnect_interval: Duration,
    /// Serve pool users before the first handle table download from a
    /// mentor is complete (RFC 5353 3.2.3 step 5 says wait).
    pub serve_partial_table: bool,
    /// How long to wait for a mentor before serving alone: a registrar
    /// whose peers are all down must still serve its own PEs.
    #[serde(with = "duration_ms")]
    pub mentor_timeout: Duration,
    /// Most peers known at a time (static and learned).
    pub max_peers: usize,
    /// Most server identifiers one proven identity may speak for at a
    /// time (peers up), so that one key holder cannot fill `max_peers`
    /// and keep other registrars out (RFC 5355 2.17). A key or a
    /// certificate per registrar needs 1; the rest covers a restart
    /// (a new identifier before the old association is seen closed).
    pub max_ids_per_identity: usize,
    /// Handle updates one peer may send (RFC 5355 2.17: an insider
    /// cannot flood); beyond, they are refused and counted, and the
    /// audit repairs what a legitimate burst lost.
    pub update_rate: Rate,
    /// Bytes of PE parameters in one handle table page.
    pub page_bytes: usize,
}

impl Default for EnrpConfig {
    fn default() -> Self {
        EnrpConfig {
            peers: Vec::new(),
            advertise: None,
            heartbeat_cycle: Duration::from_millis(1_000),
            max_time_last_heard: Duration::from_millis(2_000),
            max_time_no_response: Duration::from_millis(1_000),
            reconnect_interval: Duration::from_millis(500),
            serve_partial_table: false,
            mentor_timeout: Duration::from_secs(5),
            max_peers: 64,
            max_ids_per_identity: 2,
            update_rate: Rate::new(50_000.0, 100_000.0),
            page_bytes: 32 * 1024,
        }
    }
}

/// Bounds of the ENRP settings.
pub mod bounds {
    use super::*;

    /// PEER-HEARTBEAT-CYCLE.
    pub const HEARTBEAT_CYCLE: Range<Duration> = Range {
        min: Duration::from_millis(50),
        max: Duration::from_secs(300),
    };
    /// MAX-TIME-LAST-HEARD and MAX-TIME-NO-RESPONSE.
    pub const TIMEOUT: Range<Duration> = Range {
        min: Duration::from_millis(50),
        max: Duration::from_secs(600),
    };
    /// Known peers.
    pub const PEERS: Range<usize> = Range { min: 1, max: 1_024 };
    /// Page budget: at least a few PEs, at most what leaves room in a
    /// 64 KiB message for the header and the registrant identities.
    pub const PAGE_BYTES: Range<usize> = Range {
        min: 1_024,
        max: 48 * 1024,
    };
}

impl EnrpConfig {
    /// Check each setting against its range and against the others.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        use bounds::*;
        HEARTBEAT_CYCLE.check("enrp.heartbeat_cycle", self.heartbeat_cycle)?;
        TIMEOUT.check("enrp.max_time_last_heard", self.max_time_last_heard)?;
        TIMEOUT.check("enrp.max_time_no_response", self.max_time_no_response)?;
        TIMEOUT.check("enrp.reconnect_interval", self.reconnect_interval)?;
        TIMEOUT.check("enrp.mentor_timeout", self.mentor_timeout)?;
        PEERS.check("enrp.max_peers", self.max_peers)?;
        PEERS.check("enrp.max_ids_per_identity", self.max_ids_per_identity)?;
        PAGE_BYTES.check("enrp.page_bytes", self.page_bytes)?;
        self.update_rate
            .check()
            .map_err(|e| InvalidSetting::new("enrp.update_rate", e))?;
        if self.max_time_last_heard <= self.heartbeat_cycle {
            return Err(InvalidSetting::new(
                "enrp.max_time_last_heard",
                "must be longer than enrp.heartbeat_cycle (or every peer is suspect between two heartbeats)",
            ));
        }
        if self.peers.len() > self.max_peers {
            return Err(InvalidSetting::new(
                "enrp.peers",
                format!(
                    "{} peers, at most enrp.max_peers = {}",
                    self.peers.len(),
                    self.max_peers
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_a_heartbeat_longer_than_the_silence_is_not() {
        EnrpConfig::default().validate().expect("valid");
        let c = EnrpConfig {
            heartbeat_cycle: Duration::from_secs(3),
            ..EnrpConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().setting,
            "enrp.max_time_last_heard"
        );
    }
}
