//! Owns the identity side of an entry: [`NamespaceScope`] (which
//! identities an entry is about) and [`IdentityPattern`] (which values),
//! and how one [`PeerIdentity`] is matched against them.
//!
//! A pattern is text with two wildcards, `*` (any run of characters,
//! also none) and `?` (one character); `\` takes the next character
//! literally (`\*`, `\?`, `\\`). The matcher sorts patterns by shape:
//! exact values, prefixes (`pe-*`), suffixes (`*.example.net`), `*`
//! alone, and the rest (general globs such as `pe-?-*` or `a*b`). In the
//! `ip` namespace a pattern is `*`, one address or a CIDR range. In the
//! `anonymous` namespace it is `*` (the namespace has one member).
//!
//! DNS names compare case-insensitively: `dns` patterns are lower-cased
//! when read, and a DNS-name identity is matched in lower case in every
//! namespace (so `any` patterns meant for DNS names are written in lower
//! case). Everything else compares exactly.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::net::{canonical, IpNet, NetError};
use crate::identity::{Namespace, PeerIdentity};

/// The identities an entry is about: one namespace of
/// [`PeerIdentity`], all authenticated ones, or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum NamespaceScope {
    /// PSK identities (`psk`).
    Psk,
    /// Certificate subject common names (`cert`).
    CertificateSubject,
    /// Certificate dNSName subject-alt-names (`dns`).
    DnsName,
    /// Certificate iPAddress subject-alt-names (`ip`).
    IpAddress,
    /// Clients that showed no certificate (`anonymous`).
    Anonymous,
    /// Every namespace but `anonymous` (`authenticated`).
    Authenticated,
    /// Every namespace (`any`), anonymous clients included.
    Any,
}

impl NamespaceScope {
    /// Every scope (the order the index keeps them in).
    pub const ALL: [NamespaceScope; 7] = [
        NamespaceScope::Psk,
        NamespaceScope::CertificateSubject,
        NamespaceScope::DnsName,
        NamespaceScope::IpAddress,
        NamespaceScope::Anonymous,
        NamespaceScope::Authenticated,
        NamespaceScope::Any,
    ];

    /// Its name in the file (`psk`, `cert`, `dns`, `ip`, `anonymous`,
    /// `authenticated`, `any`).
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceScope::Psk => "psk",
            NamespaceScope::CertificateSubject => "cert",
            NamespaceScope::DnsName => "dns",
            NamespaceScope::IpAddress => "ip",
            NamespaceScope::Anonymous => "anonymous",
            NamespaceScope::Authenticated => "authenticated",
            NamespaceScope::Any => "any",
        }
    }

    /// The scope of exactly one namespace.
    pub fn of(namespace: Namespace) -> NamespaceScope {
        match namespace {
            Namespace::Psk => NamespaceScope::Psk,
            Namespace::CertificateSubject => NamespaceScope::CertificateSubject,
            Namespace::DnsName => NamespaceScope::DnsName,
            Namespace::IpAddress => NamespaceScope::IpAddress,
            Namespace::Anonymous => NamespaceScope::Anonymous,
        }
    }

    /// Whether identities of `namespace` are in it.
    pub fn contains(self, namespace: Namespace) -> bool {
        match self {
            NamespaceScope::Any => true,
            NamespaceScope::Authenticated => namespace != Namespace::Anonymous,
            one => one == NamespaceScope::of(namespace),
        }
    }

    /// Its position in [`NamespaceScope::ALL`] (the index keys on it).
    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for NamespaceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is no [`NamespaceScope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown namespace {0:?} (psk, cert, dns, ip, anonymous, authenticated or any)")]
pub struct UnknownNamespace(pub String);

impl FromStr for NamespaceScope {
    type Err = UnknownNamespace;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NamespaceScope::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| UnknownNamespace(s.to_owned()))
    }
}

/// One character of a glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    /// This character.
    Literal(char),
    /// `*`: any run of characters.
    Star,
    /// `?`: one character.
    One,
}

/// What shape a pattern has, which decides how the matcher indexes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `*`: every value.
    Any,
    /// No wildcard: this value.
    Exact(String),
    /// `PREFIX*`.
    Prefix(String),
    /// `*SUFFIX`.
    Suffix(String),
    /// Anything else with wildcards: the characters before its first
    /// wildcard and after its last (a value it matches starts and ends
    /// with them: what the index keys it on), and the whole glob.
    Glob {
        /// The literal characters before the first wildcard.
        prefix: String,
        /// The literal characters after the last wildcard.
        suffix: String,
        /// The pattern.
        tokens: Vec<Token>,
    },
    /// An address or range (namespace `ip`).
    Net(IpNet),
}

/// Which identity values an entry is about, as written and as the matcher
/// reads it. Made by [`IdentityPattern::parse`] for one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPattern {
    written: String,
    shape: Shape,
}

/// Why a text is no identity pattern for its namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// An empty pattern.
    #[error("an identity pattern cannot be empty (`*` is every identity)")]
    Empty,
    /// `\` at the end.
    #[error("{0:?} ends in an escape (\\); write \\\\ for a backslash")]
    TrailingEscape(String),
    /// Not `*`, an address or a CIDR range in namespace `ip`.
    #[error("in namespace ip, {written:?} is neither `*` nor an address or range: {error}")]
    Ip {
        /// The pattern.
        written: String,
        /// Why.
        error: NetError,
    },
    /// Anything but `*` in namespace `anonymous`.
    #[error(
        "in namespace anonymous the identity is `*` (anonymous clients have no name), not {0:?}"
    )]
    Anonymous(String),
}

impl IdentityPattern {
    /// The pattern `text` for identities of `namespace`.
    pub fn parse(namespace: NamespaceScope, text: &str) -> Result<IdentityPattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let shape = match namespace {
            NamespaceScope::IpAddress if text == "*" => Shape::Any,
            NamespaceScope::IpAddress => {
                Shape::Net(text.parse().map_err(|error| PatternError::Ip {
                    written: text.to_owned(),
                    error,
                })?)
            }
            NamespaceScope::Anonymous if text == "*" => Shape::Any,
            NamespaceScope::Anonymous => return Err(PatternError::Anonymous(text.to_owned())),
            NamespaceScope::DnsName => shape(&tokens(&text.to_ascii_lowercase())?),
            _ => shape(&tokens(text)?),
        };
        Ok(IdentityPattern {
            written: text.to_owned(),
            shape,
        })
    }

    /// The pattern matching exactly `identity` (wildcard characters in it
    /// escaped), and its namespace: what a strict starting database
    /// grants a key. An empty name is refused ([`PatternError::Empty`]).
    pub fn exact(
        identity: &PeerIdentity,
    ) -> Result<(NamespaceScope, IdentityPattern), PatternError> {
        let (namespace, text) = exact_text(identity);
        IdentityPattern::parse(namespace, &text).map(|p| (namespace, p))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// Whether it is `*` (every value).
    pub fn is_any(&self) -> bool {
        self.shape == Shape::Any
    }

    pub(crate) fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Whether the value of `id` matches (its namespace is the entry's
    /// business).
    pub(crate) fn matches(&self, id: &QueryIdentity<'_>) -> bool {
        match &self.shape {
            Shape::Any => true,
            Shape::Exact(v) => *id.value == **v,
            Shape::Prefix(p) => id.value.starts_with(p.as_str()),
            Shape::Suffix(s) => id.value.ends_with(s.as_str()),
            Shape::Glob {
                prefix,
                suffix,
                tokens,
            } => {
                id.value.starts_with(prefix.as_str())
                    && id.value.ends_with(suffix.as_str())
                    && glob(tokens, &id.value)
            }
            Shape::Net(n) => id.ip.is_some_and(|ip| n.contains(ip)),
        }
    }
}

impl fmt::Display for IdentityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// The namespace and pattern text that match exactly `identity`.
pub(crate) fn exact_text(identity: &PeerIdentity) -> (NamespaceScope, String) {
    match identity {
        PeerIdentity::Anonymous => (NamespaceScope::Anonymous, "*".to_owned()),
        PeerIdentity::IpAddress(ip) => (NamespaceScope::IpAddress, ip.to_string()),
        other => (
            NamespaceScope::of(other.namespace()),
            escape(&other.value()),
        ),
    }
}

/// `s` with the wildcard and escape characters escaped.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn tokens(text: &str) -> Result<Vec<Token>, PatternError> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Token::Star,
            '?' => Token::One,
            '\\' => Token::Literal(
                chars
                    .next()
                    .ok_or_else(|| PatternError::TrailingEscape(text.to_owned()))?,
            ),
            c => Token::Literal(c),
        });
    }
    // `**` is `*`.
    out.dedup_by(|a, b| *a == Token::Star && *b == Token::Star);
    Ok(out)
}

fn literal(tokens: &[Token]) -> Option<String> {
    tokens
        .iter()
        .map(|t| match t {
            Token::Literal(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn shape(tokens: &[Token]) -> Shape {
    match tokens {
        [Token::Star] => Shape::Any,
        [rest @ .., Token::Star] if literal(rest).is_some() => {
            Shape::Prefix(literal(rest).unwrap_or_default())
        }
        [Token::Star, rest @ ..] if literal(rest).is_some() => {
            Shape::Suffix(literal(rest).unwrap_or_default())
        }
        all => match literal(all) {
            Some(v) => Shape::Exact(v),
            None => {
                let lit = |t: &Token| match t {
                    Token::Literal(c) => Some(*c),
                    _ => None,
                };
                let prefix = all.iter().map_while(lit).collect();
                let mut suffix: Vec<char> = all.iter().rev().map_while(lit).collect();
                suffix.reverse();
                Shape::Glob {
                    prefix,
                    suffix: suffix.into_iter().collect(),
                    tokens: all.to_vec(),
                }
            }
        },
    }
}

/// Whether `value` matches the glob (`*` any run, `?` one character):
/// the classic linear matcher that remembers the last `*`, over byte
/// offsets (no allocation).
fn glob(pattern: &[Token], value: &str) -> bool {
    let next = |i: usize| value[i..].chars().next();
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = next(i) {
        match pattern.get(p) {
            Some(Token::Literal(l)) if *l == c => {
                p += 1;
                i += c.len_utf8();
            }
            Some(Token::One) => {
                p += 1;
                i += c.len_utf8();
            }
            Some(Token::Star) => {
                star = Some((p, i));
                p += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    // Let the last `*` take one more character.
                    let si = si + next(si).map_or(1, char::len_utf8);
                    p = sp + 1;
                    i = si;
                    star = Some((sp, si));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|t| *t == Token::Star)
}

/// A peer identity as the matcher reads it: its namespace, its value
/// (DNS names in lower case) and, for an address identity, the address.
#[derive(Debug, Clone)]
pub(crate) struct QueryIdentity<'a> {
    pub namespace: Namespace,
    pub value: Cow<'a, str>,
    pub ip: Option<IpAddr>,
}

impl<'a> QueryIdentity<'a> {
    pub(crate) fn new(id: &'a PeerIdentity) -> QueryIdentity<'a> {
        let value = match id {
            PeerIdentity::DnsName(d) if d.bytes().any(|b| b.is_ascii_uppercase()) => {
                Cow::Owned(d.to_ascii_lowercase())
            }
            PeerIdentity::DnsName(d) => Cow::Borrowed(d.as_str()),
            other => other.value(),
        };
        let ip = match id {
            PeerIdentity::IpAddress(ip) => Some(canonical(*ip)),
            _ => None,
        };
        QueryIdentity {
            namespace: id.namespace(),
            value,
            ip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(ns: NamespaceScope, s: &str) -> IdentityPattern {
        IdentityPattern::parse(ns, s).unwrap()
    }

    fn hits(ns: NamespaceScope, p: &str, id: PeerIdentity) -> bool {
        pat(ns, p).matches(&QueryIdentity::new(&id))
    }

    #[test]
    fn shapes() {
        use NamespaceScope::Psk;
        assert_eq!(pat(Psk, "*").shape, Shape::Any);
        assert_eq!(pat(Psk, "**").shape, Shape::Any);
        assert_eq!(pat(Psk, "pe-1").shape, Shape::Exact("pe-1".into()));
        assert_eq!(pat(Psk, "pe-*").shape, Shape::Prefix("pe-".into()));
        assert_eq!(pat(Psk, "*.net").shape, Shape::Suffix(".net".into()));
        assert_eq!(pat(Psk, r"a\*").shape, Shape::Exact("a*".into()));
        assert_eq!(pat(Psk, r"a\**").shape, Shape::Prefix("a*".into()));
        let glob_parts = |p: &str| match pat(Psk, p).shape {
            Shape::Glob { prefix, suffix, .. } => (prefix, suffix),
            other => panic!("{other:?}"),
        };
        assert_eq!(glob_parts("a*b"), ("a".into(), "b".into()));
        assert_eq!(glob_parts("pe-?"), ("pe-".into(), "".into()));
        assert_eq!(glob_parts("*a*"), ("".into(), "".into()));
        assert_eq!(glob_parts("?x.y"), ("".into(), "x.y".into()));
        assert_eq!(
            IdentityPattern::parse(Psk, "a\\"),
            Err(PatternError::TrailingEscape("a\\".into()))
        );
        assert_eq!(IdentityPattern::parse(Psk, ""), Err(PatternError::Empty));
        assert!(matches!(
            IdentityPattern::parse(NamespaceScope::Anonymous, "x"),
            Err(PatternError::Anonymous(_))
        ));
        assert!(matches!(
            IdentityPattern::parse(NamespaceScope::IpAddress, "10.*"),
            Err(PatternError::Ip { .. })
        ));
    }

    /// The attack: a key holder whose identity is as long as a PSK
    /// identity may be (65,535 bytes) and almost matches a glob of many
    /// stars. A backtracking matcher would take exponential time; this
    /// one moves only its last star, so at most identity x pattern steps
    /// (here about a million), and it answers.
    #[test]
    fn a_long_identity_against_many_stars_is_answered_in_linear_passes() {
        let pattern = tokens("*a*a*a*a*a*a*a*a*b").unwrap();
        let identity = "a".repeat(65_535);
        assert!(!glob(&pattern, &identity));
        assert!(glob(&pattern, &format!("{identity}b")));
    }

    #[test]
    fn globs() {
        let t = |p: &str, v: &str| glob(&tokens(p).unwrap(), v);
        assert!(t("a*b", "ab") && t("a*b", "axxb") && !t("a*b", "abx"));
        assert!(t("*a*", "bab") && !t("*a*", "bbb"));
        assert!(t("pe-?-*", "pe-1-x") && !t("pe-?-*", "pe--x"));
        assert!(t("?", "é") && !t("?", ""));
        assert!(t("a*b*c", "aXbYbc") && !t("a*b*c", "aXbY"));
        assert!(t("*é?", "xéé") && t("é*é", "éé") && !t("é*é", "é"));
        assert!(t("a*?", "aé") && !t("?*?", "é"));
    }

    #[test]
    fn values_and_namespaces() {
        use NamespaceScope::*;
        assert!(hits(Psk, "pe-*", PeerIdentity::Psk("pe-1".into())));
        assert!(!hits(Psk, "pe-*", PeerIdentity::Psk("pu-1".into())));
        assert!(hits(
            DnsName,
            "*.Example.NET",
            PeerIdentity::DnsName("A.example.net".into())
        ));
        assert!(hits(
            Any,
            "*.example.net",
            PeerIdentity::DnsName("A.EXAMPLE.net".into())
        ));
        assert!(!hits(
            Any,
            "*.Example.net",
            PeerIdentity::DnsName("a.example.net".into())
        ));
        assert!(hits(
            CertificateSubject,
            "Registrar *",
            PeerIdentity::Certificate("Registrar 1".into())
        ));
        assert!(hits(
            IpAddress,
            "192.0.2.0/24",
            PeerIdentity::IpAddress("192.0.2.9".parse().unwrap())
        ));
        assert!(!hits(
            IpAddress,
            "192.0.2.0/24",
            PeerIdentity::IpAddress("192.0.3.9".parse().unwrap())
        ));
        assert!(hits(Anonymous, "*", PeerIdentity::Anonymous));
        assert!(Any.contains(Namespace::Anonymous));
        assert!(!Authenticated.contains(Namespace::Anonymous));
        assert!(Authenticated.contains(Namespace::IpAddress));
        assert!(!Psk.contains(Namespace::CertificateSubject));
        for n in NamespaceScope::ALL {
            assert_eq!(n.as_str().parse::<NamespaceScope>(), Ok(n));
            assert_eq!(NamespaceScope::ALL[n.slot()], n);
        }
    }

    #[test]
    fn exact_patterns_escape_wildcards() {
        let id = PeerIdentity::Psk(r"odd*name?\".into());
        let (ns, p) = IdentityPattern::exact(&id).unwrap();
        assert_eq!(ns, NamespaceScope::Psk);
        assert_eq!(p.as_str(), r"odd\*name\?\\");
        assert!(p.matches(&QueryIdentity::new(&id)));
        assert!(!p.matches(&QueryIdentity::new(&PeerIdentity::Psk(
            "oddXname?\\".into()
        ))));
        let ip = PeerIdentity::IpAddress("2001:db8::1".parse().unwrap());
        let (ns, p) = IdentityPattern::exact(&ip).unwrap();
        assert!(ns == NamespaceScope::IpAddress && p.matches(&QueryIdentity::new(&ip)));
        assert_eq!(
            IdentityPattern::exact(&PeerIdentity::Psk(String::new())),
            Err(PatternError::Empty)
        );
    }
}
