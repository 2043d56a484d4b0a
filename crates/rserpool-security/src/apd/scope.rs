//! Owns the scope side of an entry: the [`Role`]s it is about
//! ([`RoleSet`]), the pools ([`PoolPattern`], [`PoolScope`]) and the
//! addresses ([`AddressItem`], [`AddressScope`]).
//!
//! Pool handles are opaque bytes (RFC 5351). In the file they are UTF-8
//! text (`echo`), or hex after `0x` (`0x6563686f`) for handles that are
//! not printable text; a trailing `*` makes a prefix (`echo-*`,
//! `0x6563*`), and `*` alone is every pool.
//!
//! Addresses: `own` (the connection's own source address), `any`, or an
//! address or CIDR range. Which addresses a request is about depends on
//! the role: for `pe`, each transport address it registers; for the other
//! roles, the connection's source address (so `own` always holds there,
//! and a range says where the peer may connect from).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::net::{IpNet, NetError};

/// What a peer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Role {
    /// A pool element: registers and deregisters itself.
    Pe,
    /// A pool user: resolves handles, reports unreachable PEs.
    Pu,
    /// A peer registrar (ENRP associations and handle updates).
    Registrar,
    /// An operator (the administrative interface).
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Pe, Role::Pu, Role::Registrar, Role::Admin];

    /// Its name in the file (`pe`, `pu`, `registrar`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pe => "pe",
            Role::Pu => "pu",
            Role::Registrar => "registrar",
            Role::Admin => "admin",
        }
    }

    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is no [`Role`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (pe, pu, registrar or admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    /// No role.
    pub const EMPTY: RoleSet = RoleSet(0);
    /// Every role.
    pub const ALL: RoleSet = RoleSet(0b1111);

    /// The set with `role` added.
    pub const fn with(self, role: Role) -> RoleSet {
        RoleSet(self.0 | 1 << role as u8)
    }

    /// Whether `role` is in it.
    pub const fn contains(self, role: Role) -> bool {
        self.0 & 1 << role as u8 != 0
    }

    /// Whether it is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Its roles in the order of [`Role::ALL`].
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        iter.into_iter().fold(RoleSet::EMPTY, RoleSet::with)
    }
}

impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(r.as_str())?;
        }
        Ok(())
    }
}

/// Which pool handles: one, or all with a prefix (`*` is every pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPattern {
    written: String,
    bytes: Vec<u8>,
    prefix: bool,
}

/// Why a text is no [`PoolPattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// An empty handle.
    #[error("a pool handle cannot be empty (`*` is every pool)")]
    Empty,
    /// A `*` elsewhere than at the end.
    #[error(
        "{0:?}: `*` may only end a pool pattern (a prefix); write handles with `*` in hex (0x...)"
    )]
    InnerStar(String),
    /// `0x` followed by something else than pairs of hex digits.
    #[error("{0:?}: after 0x a pool handle is pairs of hex digits")]
    Hex(String),
}

impl PoolPattern {
    /// Every pool (`*`).
    pub fn any() -> PoolPattern {
        PoolPattern {
            written: "*".to_owned(),
            bytes: Vec::new(),
            prefix: true,
        }
    }

    /// Exactly this handle, written as text when it is printable UTF-8
    /// (and neither contains `*` nor starts with `0x`), else in hex.
    pub fn exact(handle: &[u8]) -> PoolPattern {
        let text = std::str::from_utf8(handle).ok().filter(|t| {
            !t.is_empty()
                && !t.starts_with("0x")
                && !t.contains('*')
                && t.chars().all(|c| !c.is_control())
        });
        let written = match text {
            Some(t) => t.to_owned(),
            None => format!("0x{}", to_hex(handle)),
        };
        PoolPattern {
            written,
            bytes: handle.to_vec(),
            prefix: false,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// Whether `pool` matches.
    pub fn matches(&self, pool: &[u8]) -> bool {
        if self.prefix {
            pool.starts_with(&self.bytes)
        } else {
            pool == self.bytes.as_slice()
        }
    }

    /// Whether it is every pool.
    pub fn is_any(&self) -> bool {
        self.prefix && self.bytes.is_empty()
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl FromStr for PoolPattern {
    type Err = PoolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (body, prefix) = match s.strip_suffix('*') {
            Some(b) => (b, true),
            None => (s, false),
        };
        if body.contains('*') {
            return Err(PoolError::InnerStar(s.to_owned()));
        }
        let bytes = match body.strip_prefix("0x") {
            Some(hex) => from_hex(hex).ok_or_else(|| PoolError::Hex(s.to_owned()))?,
            None => body.as_bytes().to_vec(),
        };
        if bytes.is_empty() && !prefix {
            return Err(PoolError::Empty);
        }
        Ok(PoolPattern {
            written: s.to_owned(),
            bytes,
            prefix,
        })
    }
}

impl fmt::Display for PoolPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// The pools an entry is about: any of its patterns (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolScope(Vec<PoolPattern>);

impl PoolScope {
    /// Every pool.
    pub fn any() -> PoolScope {
        PoolScope(vec![PoolPattern::any()])
    }

    /// These patterns (`None` when there are none).
    pub fn new(patterns: Vec<PoolPattern>) -> Option<PoolScope> {
        (!patterns.is_empty()).then_some(PoolScope(patterns))
    }

    /// Its patterns.
    pub fn patterns(&self) -> &[PoolPattern] {
        &self.0
    }

    /// Whether `pool` matches one of its patterns.
    pub fn matches(&self, pool: &[u8]) -> bool {
        self.0.iter().any(|p| p.matches(pool))
    }

    /// Whether every pool matches.
    pub fn covers_all(&self) -> bool {
        self.0.iter().any(PoolPattern::is_any)
    }
}

/// One item of an address scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressItem {
    /// The connection's own source address (`own`).
    Own,
    /// Every address (`any`).
    Any,
    /// An address or range.
    Net(IpNet),
}

impl FromStr for AddressItem {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "own" => Ok(AddressItem::Own),
            "any" => Ok(AddressItem::Any),
            net => net.parse().map(AddressItem::Net),
        }
    }
}

impl fmt::Display for AddressItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressItem::Own => f.write_str("own"),
            AddressItem::Any => f.write_str("any"),
            AddressItem::Net(n)
                if n.prefix_len() == if n.network().is_ipv4() { 32 } else { 128 } =>
            {
                write!(f, "{}", n.network())
            }
            AddressItem::Net(n) => write!(f, "{n}"),
        }
    }
}

/// The addresses an entry is about: any of its items (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressScope(Vec<AddressItem>);

impl AddressScope {
    /// The connection's own address only (`["own"]`).
    pub fn own() -> AddressScope {
        AddressScope(vec![AddressItem::Own])
    }

    /// Every address (`["any"]`).
    pub fn any() -> AddressScope {
        AddressScope(vec![AddressItem::Any])
    }

    /// These items (`None` when there are none).
    pub fn new(items: Vec<AddressItem>) -> Option<AddressScope> {
        (!items.is_empty()).then_some(AddressScope(items))
    }

    /// Its items.
    pub fn items(&self) -> &[AddressItem] {
        &self.0
    }

    /// Whether `address` is in it, `own` being the connection's source
    /// address (both canonical).
    pub fn contains(&self, address: IpAddr, own: IpAddr) -> bool {
        self.0.iter().any(|i| match i {
            AddressItem::Own => address == own,
            AddressItem::Any => true,
            AddressItem::Net(n) => n.contains(address),
        })
    }

    /// Whether every address is in it (`any`, or `0.0.0.0/0` with `::/0`).
    pub fn covers_all(&self) -> bool {
        let everything = |v4: bool| {
            self.0.iter().any(|i| match i {
                AddressItem::Any => true,
                AddressItem::Net(n) => n.is_everything() && n.network().is_ipv4() == v4,
                AddressItem::Own => false,
            })
        };
        everything(true) && everything(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn roles() {
        let s: RoleSet = [Role::Pe, Role::Registrar].into_iter().collect();
        assert!(s.contains(Role::Pe) && s.contains(Role::Registrar));
        assert!(!s.contains(Role::Pu) && !s.contains(Role::Admin));
        assert_eq!(s.to_string(), "pe, registrar");
        assert_eq!(RoleSet::ALL.iter().count(), 4);
        assert!(RoleSet::EMPTY.is_empty());
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert_eq!("PE".parse::<Role>(), Err(UnknownRole("PE".into())));
    }

    #[test]
    fn pools() {
        let p = |s: &str| s.parse::<PoolPattern>().unwrap();
        assert!(p("echo").matches(b"echo") && !p("echo").matches(b"echo2"));
        assert!(p("echo*").matches(b"echo2") && p("echo*").matches(b"echo"));
        assert!(!p("echo*").matches(b"ech"));
        assert!(p("*").is_any() && p("*").matches(b"") && p("*").matches(b"x"));
        assert!(p("0x00ff").matches(&[0, 255]));
        assert!(p("0x00*").matches(&[0, 1, 2]));
        assert_eq!("".parse::<PoolPattern>(), Err(PoolError::Empty));
        assert_eq!("0x".parse::<PoolPattern>(), Err(PoolError::Empty));
        assert!(matches!(
            "a*b".parse::<PoolPattern>(),
            Err(PoolError::InnerStar(_))
        ));
        assert!(matches!(
            "0x0".parse::<PoolPattern>(),
            Err(PoolError::Hex(_))
        ));
        assert!(matches!(
            "0xzz".parse::<PoolPattern>(),
            Err(PoolError::Hex(_))
        ));
        assert_eq!(PoolPattern::exact(b"echo").as_str(), "echo");
        assert_eq!(PoolPattern::exact(&[0, 255]).as_str(), "0x00ff");
        assert_eq!(PoolPattern::exact(b"0xab").as_str(), "0x30786162");
        assert_eq!(PoolPattern::exact(b"a*").as_str(), "0x612a");
        for h in [&b"echo"[..], &[0, 255], b"0xab", b"a*"] {
            let back: PoolPattern = PoolPattern::exact(h).as_str().parse().unwrap();
            assert!(back.matches(h) && !back.prefix);
        }
        let scope = PoolScope::new(vec![p("a"), p("b*")]).unwrap();
        assert!(scope.matches(b"a") && scope.matches(b"bc") && !scope.matches(b"c"));
        assert!(!scope.covers_all() && PoolScope::any().covers_all());
        assert!(PoolScope::new(vec![]).is_none());
    }

    #[test]
    fn addresses() {
        let own = ip("192.0.2.1");
        let s = |items: &[&str]| {
            AddressScope::new(items.iter().map(|i| i.parse().unwrap()).collect()).unwrap()
        };
        assert!(s(&["own"]).contains(own, own));
        assert!(!s(&["own"]).contains(ip("192.0.2.2"), own));
        assert!(s(&["own", "10.0.0.0/8"]).contains(ip("10.1.1.1"), own));
        assert!(s(&["any"]).contains(ip("::1"), own));
        assert!(s(&["any"]).covers_all());
        assert!(!s(&["0.0.0.0/0"]).covers_all());
        assert!(s(&["0.0.0.0/0", "::/0"]).covers_all());
        assert!(!s(&["own", "10.0.0.0/8"]).covers_all());
        assert_eq!(
            s(&["192.0.2.1", "10.0.0.0/8"]).items()[0].to_string(),
            "192.0.2.1"
        );
        assert_eq!(s(&["10.0.0.0/8"]).items()[0].to_string(), "10.0.0.0/8");
        assert!("nope".parse::<AddressItem>().is_err());
    }
}
