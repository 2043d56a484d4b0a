//! What a listener does when `accept` fails, shared by the ASAP and the
//! admin listeners: an error of one connection (it went away before its
//! accept) is no reason to pause; anything else (out of file descriptors:
//! EMFILE, ENFILE, ENOBUFS) pauses the listener 10 ms, doubling up to 1 s
//! while it lasts, so that a lasting error costs one attempt a second,
//! never a busy loop. Sans-IO: the caller sleeps.

use std::time::Duration;

/// The pause after failed `accept` calls.
#[derive(Debug, Clone)]
pub(crate) struct AcceptBackoff {
    next: Duration,
}

impl AcceptBackoff {
    /// The first pause.
    pub(crate) const FIRST: Duration = Duration::from_millis(10);
    /// The longest pause.
    pub(crate) const MAX: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        AcceptBackoff { next: Self::FIRST }
    }

    /// An accept failed with `error`: how long to pause before the next
    /// (`None`: not at all, the error was the connection's own).
    pub(crate) fn failed(&mut self, error: &std::io::Error) -> Option<Duration> {
        if per_connection(error) {
            return None;
        }
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(d)
    }

    /// An accept succeeded.
    pub(crate) fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Errors of the one connection being accepted, not of the listener.
fn per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::new();
        let emfile = Error::from_raw_os_error(24);
        let pauses: Vec<u64> = (0..10)
            .map(|_| b.failed(&emfile).map_or(0, |p| p.as_millis() as u64))
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(&emfile), Some(AcceptBackoff::FIRST));
        assert_eq!(b.failed(&Error::from(ErrorKind::ConnectionAborted)), None);
    }
}
