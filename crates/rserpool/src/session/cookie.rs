//! Signed session cookies (RFC 5352 3.8; RFC 5355 2.16 and 2.8). A PE
//! hands its PU a cookie with the state another PE of the pool needs to
//! carry the session on; the PU echoes the latest one to the PE it fails
//! over to. The PU stores the bytes unmodified; it can read them (they
//! are signed, not encrypted: the session's TLS hides them from the
//! path) but not change them: the PEs of a pool share a key ([`CookieKeys`]) and
//! sign what they issue, so a cookie that was forged, altered, signed for
//! another pool, too old, replayed after a newer one, or echoed over a
//! weaker channel than it was issued on is refused.
//!
//! The layout (ours: RFC 5352 leaves a cookie's content to the PEs):
//!
//! ```text
//! "RSPC" | version 1 | security level | key name length | key name
//! | session id (16) | counter (u64) | issued at (u64, Unix seconds)
//! | state length (u32) | state | HMAC-SHA-256 of all before it (32)
//! ```
//!
//! The counter grows with every cookie of one session, and a PE refuses a
//! cookie older than the newest it has seen of that session
//! ([`ReplayGuard`], bounded; the age limit covers what it forgot).
//! Time is an input (Unix seconds from the caller), never read here.

use std::collections::{BTreeMap, VecDeque};

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use rserpool_security::Psk;

use super::SecurityLevel;

const MAGIC: &[u8; 4] = b"RSPC";
const VERSION: u8 = 1;
const MAC_LEN: usize = 32;
/// Longest key name a cookie carries.
pub const MAX_KEY_NAME: usize = 64;
/// Largest state a cookie carries: the rest of a 64 KiB ASAP message.
pub const MAX_STATE: usize = 60 * 1024;

/// Identifies one PU-PE session across the PEs it fails over between:
/// chosen by the first PE that issues it a cookie, kept by the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub [u8; 16]);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a cookie says, once its signature checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieContents {
    /// The session it belongs to.
    pub session: SessionId,
    /// Its place among the cookies of the session (grows by one each).
    pub counter: u64,
    /// When it was issued (Unix seconds).
    pub issued_at: u64,
    /// The security level of the session it was issued on.
    pub level: SecurityLevel,
    /// The application's state.
    pub state: Vec<u8>,
}

/// Why a cookie was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// It does not parse as one of ours.
    #[error("not a cookie of this suite: {0}")]
    Malformed(&'static str),
    /// Signed with a key this PE does not have (another pool's, or a
    /// retired one).
    #[error("signed with key {0:?}, which this PE does not hold")]
    UnknownKey(String),
    /// The signature does not match: forged or altered.
    #[error("bad signature: the cookie was forged or altered")]
    BadSignature,
    /// Older than the PEs accept.
    #[error("expired: issued {age} s ago, at most {max} s accepted")]
    Expired {
        /// Its age in seconds.
        age: u64,
        /// The limit.
        max: u64,
    },
    /// Issued later than now by more than the allowed clock skew.
    #[error("issued {ahead} s in the future")]
    FromTheFuture {
        /// By how many seconds.
        ahead: u64,
    },
    /// Echoed over a weaker channel than it was issued on.
    #[error("issued on a session with {issued}, echoed over {now}")]
    Downgrade {
        /// The level it was issued on.
        issued: SecurityLevel,
        /// The level of the session it came on.
        now: SecurityLevel,
    },
    /// Older than a cookie of the same session already seen.
    #[error("replayed: cookie {counter} of session {session}, {latest} already seen")]
    Replayed {
        /// The session.
        session: SessionId,
        /// Its counter.
        counter: u64,
        /// The newest seen.
        latest: u64,
    },
    /// Too large to issue.
    #[error("state of {len} bytes, at most {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The key set is unusable.
    #[error("cookie keys: {0}")]
    Keys(&'static str),
    /// OpenSSL failed to compute a signature.
    #[error("signing failed: {0}")]
    Crypto(String),
}

/// The keys the PEs of one pool share to sign cookies: the first signs,
/// all verify (put a new key first and keep the old one after it until
/// the cookies it signed are past the age limit). Read from a key file
/// of the same format as the pre-shared keys (`rsp keygen` writes one):
/// the identity names the key in every cookie.
#[derive(Clone)]
pub struct CookieKeys {
    keys: Vec<Psk>,
}

impl std::fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|k| k.identity.as_str()).collect();
        f.debug_struct("CookieKeys").field("names", &names).finish()
    }
}

impl CookieKeys {
    /// From keys, the signing one first: at least one, names of at most
    /// [`MAX_KEY_NAME`] bytes, each name once.
    pub fn new(keys: Vec<Psk>) -> Result<CookieKeys, CookieError> {
        if keys.is_empty() {
            return Err(CookieError::Keys("no key"));
        }
        for (i, k) in keys.iter().enumerate() {
            if k.identity.is_empty() || k.identity.len() > MAX_KEY_NAME {
                return Err(CookieError::Keys("a key name must have 1 to 64 bytes"));
            }
            if keys[..i].iter().any(|o| o.identity == k.identity) {
                return Err(CookieError::Keys("two keys with one name"));
            }
        }
        Ok(CookieKeys { keys })
    }

    /// The name of the signing key.
    pub fn signing_key(&self) -> &str {
        &self.keys[0].identity
    }

    /// A signed cookie of `contents`.
    pub fn seal(&self, contents: &CookieContents) -> Result<Vec<u8>, CookieError> {
        if contents.state.len() > MAX_STATE {
            return Err(CookieError::TooLarge {
                len: contents.state.len(),
                max: MAX_STATE,
            });
        }
        let key = &self.keys[0];
        let name = key.identity.as_bytes();
        let mut out = Vec::with_capacity(64 + name.len() + contents.state.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(contents.level.to_byte());
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&contents.session.0);
        out.extend_from_slice(&contents.counter.to_be_bytes());
        out.extend_from_slice(&contents.issued_at.to_be_bytes());
        out.extend_from_slice(&(contents.state.len() as u32).to_be_bytes());
        out.extend_from_slice(&contents.state);
        let mac = mac(&key.key, &out)?;
        out.extend_from_slice(&mac);
        Ok(out)
    }

    /// Check a cookie echoed on a session of `level` at `now` (Unix
    /// seconds): parse, signature (compared in constant time), age (at
    /// most `max_age`, up to `skew` s in the future) and level, in that
    /// order. Replays are the [`ReplayGuard`]'s to check.
    pub fn open(
        &self,
        cookie: &[u8],
        level: SecurityLevel,
        now: u64,
        max_age: u64,
        skew: u64,
    ) -> Result<CookieContents, CookieError> {
        let mut r = Reader(cookie);
        if r.take(4, "too short")? != MAGIC {
            return Err(CookieError::Malformed("no magic"));
        }
        if r.byte("too short")? != VERSION {
            return Err(CookieError::Malformed("unknown version"));
        }
        let issued_level = SecurityLevel::from_byte(r.byte("too short")?)
            .ok_or(CookieError::Malformed("unknown security level"))?;
        let name_len = r.byte("too short")? as usize;
        let name = r.take(name_len, "key name cut off")?;
        let name = std::str::from_utf8(name).map_err(|_| CookieError::Malformed("key name"))?;
        let session = SessionId(r.array("session id cut off")?);
        let counter = u64::from_be_bytes(r.array("counter cut off")?);
        let issued_at = u64::from_be_bytes(r.array("time cut off")?);
        let state_len = u32::from_be_bytes(r.array("state length cut off")?) as usize;
        let state = r.take(state_len, "state cut off")?.to_vec();
        let signed_len = cookie.len() - r.0.len();
        let tag = r.take(MAC_LEN, "signature cut off")?;
        if !r.0.is_empty() {
            return Err(CookieError::Malformed("bytes after the signature"));
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.identity == name)
            .ok_or_else(|| CookieError::UnknownKey(name.to_owned()))?;
        let expected = mac(&key.key, &cookie[..signed_len])?;
        if !openssl::memcmp::eq(&expected, tag) {
            return Err(CookieError::BadSignature);
        }
        if issued_at > now.saturating_add(skew) {
            return Err(CookieError::FromTheFuture {
                ahead: issued_at - now,
            });
        }
        let age = now.saturating_sub(issued_at);
        if age > max_age {
            return Err(CookieError::Expired { age, max: max_age });
        }
        if level < issued_level {
            return Err(CookieError::Downgrade {
                issued: issued_level,
                now: level,
            });
        }
        Ok(CookieContents {
            session,
            counter,
            issued_at,
            level: issued_level,
            state,
        })
    }
}

fn mac(key: &[u8], data: &[u8]) -> Result<[u8; MAC_LEN], CookieError> {
    let crypto = |e: openssl::error::ErrorStack| CookieError::Crypto(e.to_string());
    let pkey = PKey::hmac(key).map_err(crypto)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey).map_err(crypto)?;
    signer.update(data).map_err(crypto)?;
    let v = signer.sign_to_vec().map_err(crypto)?;
    v.try_into()
        .map_err(|_| CookieError::Crypto("HMAC-SHA-256 of an unexpected length".into()))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CookieError> {
        if self.0.len() < n {
            return Err(CookieError::Malformed(what));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn byte(&mut self, what: &'static str) -> Result<u8, CookieError> {
        Ok(self.take(1, what)?[0])
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CookieError> {
        let s = self.take(N, what)?;
        let mut a = [0; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

/// The newest cookie counter seen per session, for at most `capacity`
/// sessions (the oldest forgotten first): a cookie older than the newest
/// of its session is a replay (RFC 5355 2.8). Deterministic: ordered
/// collections only.
#[derive(Debug)]
pub struct ReplayGuard {
    capacity: usize,
    latest: BTreeMap<SessionId, u64>,
    order: VecDeque<SessionId>,
}

impl ReplayGuard {
    /// A guard for `capacity` sessions (at least one).
    pub fn new(capacity: usize) -> ReplayGuard {
        ReplayGuard {
            capacity: capacity.max(1),
            latest: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Accept `counter` of `session` unless an newer one was seen (the
    /// same one again is accepted: a PU fails back with the latest it
    /// has), and remember it.
    pub fn check(&mut self, session: SessionId, counter: u64) -> Result<(), CookieError> {
        if let Some(&latest) = self.latest.get(&session) {
            if counter < latest {
                return Err(CookieError::Replayed {
                    session,
                    counter,
                    latest,
                });
            }
        }
        self.record(session, counter);
        Ok(())
    }

    /// Remember that `counter` of `session` was issued or seen.
    pub fn record(&mut self, session: SessionId, counter: u64) {
        match self.latest.get_mut(&session) {
            Some(l) => *l = (*l).max(counter),
            None => {
                if self.latest.len() >= self.capacity {
                    if let Some(old) = self.order.pop_front() {
                        self.latest.remove(&old);
                    }
                }
                self.latest.insert(session, counter);
                self.order.push_back(session);
            }
        }
    }

    /// Sessions remembered.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(name: &str, byte: u8) -> CookieKeys {
        CookieKeys::new(vec![Psk {
            identity: name.into(),
            key: [byte; 32],
        }])
        .unwrap()
    }

    fn contents(level: SecurityLevel) -> CookieContents {
        CookieContents {
            session: SessionId([7; 16]),
            counter: 3,
            issued_at: 1_000,
            level,
            state: b"served 3 echoes".to_vec(),
        }
    }

    const TLS: SecurityLevel = SecurityLevel::MutuallyAuthenticated;

    #[test]
    fn a_sealed_cookie_opens_with_the_same_keys() {
        let k = keys("pool-echo", 1);
        let c = contents(TLS);
        let sealed = k.seal(&c).unwrap();
        assert_eq!(k.open(&sealed, TLS, 1_010, 60, 5).unwrap(), c);
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let k = keys("pool-echo", 1);
        let sealed = k.seal(&contents(TLS)).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(k.open(&bad, TLS, 1_010, 60, 5).is_err(), "byte {i}");
        }
        for n in 0..sealed.len() {
            assert!(
                k.open(&sealed[..n], TLS, 1_010, 60, 5).is_err(),
                "cut at {n}"
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(
            k.open(&longer, TLS, 1_010, 60, 5),
            Err(CookieError::Malformed("bytes after the signature"))
        );
    }

    #[test]
    fn another_pools_key_is_refused() {
        let sealed = keys("pool-other", 2).seal(&contents(TLS)).unwrap();
        assert_eq!(
            keys("pool-echo", 1).open(&sealed, TLS, 1_010, 60, 5),
            Err(CookieError::UnknownKey("pool-other".into()))
        );
        // The same name with another key: a forgery.
        let forged = keys("pool-echo", 9).seal(&contents(TLS)).unwrap();
        assert_eq!(
            keys("pool-echo", 1).open(&forged, TLS, 1_010, 60, 5),
            Err(CookieError::BadSignature)
        );
    }

    #[test]
    fn a_retired_key_still_verifies_until_it_is_removed() {
        let old = Psk {
            identity: "k1".into(),
            key: [1; 32],
        };
        let new = Psk {
            identity: "k2".into(),
            key: [2; 32],
        };
        let by_old = CookieKeys::new(vec![old.clone()])
            .unwrap()
            .seal(&contents(TLS))
            .unwrap();
        let rotated = CookieKeys::new(vec![new.clone(), old]).unwrap();
        assert_eq!(rotated.signing_key(), "k2");
        assert!(rotated.open(&by_old, TLS, 1_000, 60, 5).is_ok());
        let only_new = CookieKeys::new(vec![new]).unwrap();
        assert!(matches!(
            only_new.open(&by_old, TLS, 1_000, 60, 5),
            Err(CookieError::UnknownKey(_))
        ));
    }

    #[test]
    fn age_and_clock_skew() {
        let k = keys("p", 1);
        let sealed = k.seal(&contents(TLS)).unwrap();
        assert_eq!(
            k.open(&sealed, TLS, 1_061, 60, 5),
            Err(CookieError::Expired { age: 61, max: 60 })
        );
        assert!(k.open(&sealed, TLS, 995, 60, 5).is_ok());
        assert_eq!(
            k.open(&sealed, TLS, 994, 60, 5),
            Err(CookieError::FromTheFuture { ahead: 6 })
        );
    }

    #[test]
    fn a_cookie_echoed_over_a_weaker_channel_is_refused() {
        let k = keys("p", 1);
        let sealed = k.seal(&contents(TLS)).unwrap();
        assert_eq!(
            k.open(&sealed, SecurityLevel::Plain, 1_000, 60, 5),
            Err(CookieError::Downgrade {
                issued: TLS,
                now: SecurityLevel::Plain
            })
        );
        assert!(matches!(
            k.open(&sealed, SecurityLevel::ServerAuthenticated, 1_000, 60, 5),
            Err(CookieError::Downgrade { .. })
        ));
        // Issued on plain TCP, echoed over TLS: fine.
        let plain = k.seal(&contents(SecurityLevel::Plain)).unwrap();
        assert!(k.open(&plain, TLS, 1_000, 60, 5).is_ok());
    }

    #[test]
    fn bad_key_sets_and_oversized_state() {
        assert!(CookieKeys::new(vec![]).is_err());
        let k = Psk {
            identity: "a".into(),
            key: [1; 32],
        };
        assert!(CookieKeys::new(vec![k.clone(), k]).is_err());
        let long = Psk {
            identity: "x".repeat(65),
            key: [1; 32],
        };
        assert!(CookieKeys::new(vec![long]).is_err());
        let mut c = contents(TLS);
        c.state = vec![0; MAX_STATE + 1];
        assert!(matches!(
            keys("p", 1).seal(&c),
            Err(CookieError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_replay_guard_refuses_older_cookies_and_stays_bounded() {
        let mut g = ReplayGuard::new(2);
        let (a, b, c) = (SessionId([1; 16]), SessionId([2; 16]), SessionId([3; 16]));
        g.record(a, 5);
        assert!(g.check(a, 5).is_ok(), "the latest again: a fail-back");
        assert!(g.check(a, 6).is_ok());
        assert_eq!(
            g.check(a, 4),
            Err(CookieError::Replayed {
                session: a,
                counter: 4,
                latest: 6
            })
        );
        g.record(b, 1);
        g.record(c, 1);
        assert_eq!(g.len(), 2, "a, the oldest, forgotten");
        assert!(g.check(a, 1).is_ok());
    }

    proptest! {
        #[test]
        fn opening_junk_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let k = keys("p", 1);
            let _ = k.open(&bytes, TLS, 1_000, 60, 5);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = k.open(&with_magic, TLS, 1_000, 60, 5);
        }
    }
}
