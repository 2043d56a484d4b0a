//! What a client core does with a frame from its registrar: the one path
//! of every core ([`rserpool_wire::receive`], as the registrar's): a
//! message that decodes is handled, whatever the rules ask to report is
//! answered with ASAP_ERROR (RFC 5354 section 3, 3.12), and a registrar
//! that keeps sending what does not decode is given up.

use std::collections::VecDeque;
use std::net::SocketAddr;

use rserpool_wire::{receive, AsapMessage};

use crate::{ConnId, LinkAction};

/// Undecodable messages one registrar connection may send before the
/// core gives the registrar up (a broken or hostile registrar).
pub const MAX_MALFORMED: u32 = 16;

/// What became of a frame.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A message to handle.
    Message(AsapMessage),
    /// It did not decode: skipped (and reported if the rules say so).
    Skipped,
    /// Too many did not decode: give the registrar up with this reason.
    GiveUp(String),
}

/// Take `frame` from `registrar` on `conn`; `malformed` counts the
/// connection's undecodable frames.
pub(crate) fn take_frame<O: From<LinkAction>>(
    conn: ConnId,
    registrar: SocketAddr,
    frame: &[u8],
    malformed: &mut u32,
    out: &mut VecDeque<O>,
) -> Inbound {
    let received = receive::<AsapMessage>(frame);
    if let Some(error) = received.report {
        out.push_back(
            LinkAction::Send {
                conn,
                message: AsapMessage::Error { error },
            }
            .into(),
        );
    }
    match received.message {
        Ok(m) => Inbound::Message(m),
        Err(e) => {
            *malformed += 1;
            if *malformed > MAX_MALFORMED {
                return Inbound::GiveUp(format!(
                    "more than {MAX_MALFORMED} messages that do not decode (the last: {e})"
                ));
            }
            tracing::warn!(%registrar, "skipping a message that does not decode: {e}");
            Inbound::Skipped
        }
    }
}
