//! PU-PE sessions (RFC 5351 section 3, RFC 5352 3.8 and 3.9, secured as
//! RFC 5355 2.9, 2.16 and 2.8 ask): the pool user's [`Session`] talks to
//! one PE of a pool at a time and fails over to another when it fails,
//! never to a weaker session, and carries the latest cookie over; the
//! PE's [`SessionServer`] serves sessions, signs the cookies it issues
//! with a key the pool's PEs share ([`CookieKeys`]) and verifies the ones
//! echoed to it. User data and ASAP control messages share one
//! connection (one framing, docs/tcp-mapping.md), so they share its TLS.
//!
//! ```no_run
//! use rserpool::session::{Session, SessionConfig, SessionEvent};
//! # async fn run(pu: rserpool::PoolUser, tls: rserpool_security::TlsClient)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! let pool = rserpool_wire::PoolHandle::from_static("echo");
//! let mut session = Session::open(pu, pool, SessionConfig::new(tls)).await?;
//! session.send(7, b"hello").await?;
//! match session.recv().await? {
//!     SessionEvent::Data { payload, .. } => println!("{payload:?}"),
//!     SessionEvent::FailedOver(f) => println!("now at PE {:#010x} ({})", f.to.pe.identifier, f.to.security),
//!     _ => {}
//! }
//! # Ok(())
//! # }
//! ```

mod security;
pub use security::SecurityLevel;

#[cfg(feature = "driver")]
mod channel;
#[cfg(feature = "driver")]
mod client;
#[cfg(feature = "driver")]
pub mod cookie;
#[cfg(feature = "driver")]
mod error;
#[cfg(feature = "driver")]
mod server;

#[cfg(feature = "driver")]
pub use client::{user_address, Failover, Peer, Sent, Session, SessionConfig, SessionEvent};
#[cfg(feature = "driver")]
pub use cookie::{CookieContents, CookieError, CookieKeys, ReplayGuard, SessionId};
#[cfg(feature = "driver")]
pub use error::{SessionError, Skipped};
#[cfg(feature = "driver")]
pub use server::{PendingSession, ServerEvent, ServerSession, SessionServer, SessionServerConfig};
