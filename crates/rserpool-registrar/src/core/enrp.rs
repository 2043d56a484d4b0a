//! ENRP (RFC 5353) on connections with peer registrars. Not implemented
//! yet: this registrar is a server that is not prepared for ENRP, so it
//! serves nobody's handlespace and takes no one's. Every ENRP message is
//! counted ([`crate::Stats::enrp_unsupported`]) and answered with an
//! ENRP_ERROR carrying an Unrecognized Message cause with the message
//! (RFC 5353 3.7, RFC 5354 3.12.3), except an ENRP_ERROR, which is only
//! counted (answering errors with errors could loop between two peers).
//! The peer table, presence, handle table synchronisation, updates and
//! takeovers will live here.

use std::time::Instant;

use rserpool_handlespace::ConnId;
use rserpool_wire::{Cause, CauseCode, EnrpMessage};

use super::connections::MAX_ECHOED;
use super::RegistrarCore;

impl RegistrarCore {
    /// An ENRP message from an ENRP connection the core knows and is not
    /// closing.
    pub(super) fn enrp_message(&mut self, _now: Instant, conn: ConnId, msg: EnrpMessage) {
        self.stats.enrp_unsupported += 1;
        tracing::debug!(
            conn = conn.get(),
            msg = msg.name(),
            sender = msg.sender().get(),
            "ENRP message not handled (ENRP not implemented yet)"
        );
        if matches!(msg, EnrpMessage::Error { .. }) {
            return;
        }
        let mut info = Vec::new();
        let _ = msg.encode(&mut info);
        info.truncate(MAX_ECHOED);
        self.send_error(conn, Cause::with_info(CauseCode::UnrecognizedMessage, info));
    }
}
