//! Tests of the whole database: matching order, namespaces, patterns,
//! scopes, the closing deny, the connection check, the defaults, every
//! change (an invalid one changes nothing), the TOML form and its error
//! messages; and the property that the index agrees with the scan.

use std::net::IpAddr;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn psk(s: &str) -> PeerIdentity {
    PeerIdentity::Psk(s.into())
}

const OWN: &str = "192.0.2.1";

fn db(text: &str) -> Apd {
    match Apd::from_toml(text) {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    }
}

/// `decide` and `decide_by_scan` agree; the verdict and the deciding
/// entry's name (`None`: the closing deny).
fn check(apd: &Apd, req: &Request<'_>) -> (bool, Option<String>) {
    let d = apd.decide(req);
    assert_eq!(
        d,
        apd.decide_by_scan(req),
        "index and scan differ on {req:?}"
    );
    (d.is_allowed(), d.entry().map(|e| e.name.to_string()))
}

fn reg(apd: &Apd, who: &PeerIdentity, pool: &str, addrs: &[&str]) -> Decision {
    apd.decide_registration(who, ip(OWN), pool.as_bytes(), addrs.iter().map(|a| ip(a)))
}

fn entry(name: &str, action: &str, ns: &str, id: &str, roles: &str, extra: &str) -> String {
    format!(
        "[[entry]]\nname = \"{name}\"\naction = \"{action}\"\nnamespace = \"{ns}\"\nidentity = \"{id}\"\nroles = [{roles}]\n{extra}\n"
    )
}

#[test]
fn a_database_holds_at_most_max_entries() {
    let entry = |i: usize| {
        Entry::new(
            &format!("e{i}"),
            Action::Allow,
            NamespaceScope::Psk,
            &format!("pe-{i}"),
            RoleSet::EMPTY.with(Role::Pe),
        )
        .unwrap()
    };
    let mut apd = Apd::new((0..MAX_ENTRIES).map(entry).collect()).unwrap();
    assert!(Apd::new((0..=MAX_ENTRIES).map(entry).collect()).is_err());
    assert_eq!(apd.len(), MAX_ENTRIES);
    // One more, by a change: refused, nothing changed.
    let e = apd.add(entry(MAX_ENTRIES)).unwrap_err();
    assert!(
        matches!(e, ApdError::TooManyEntries { entries, max } if entries == MAX_ENTRIES + 1 && max == MAX_ENTRIES),
        "{e}"
    );
    assert_eq!(apd.len(), MAX_ENTRIES);
    assert!(apd.find(&format!("e{MAX_ENTRIES}")).is_none());
}

#[test]
fn save_writes_what_load_reads_and_refuses_what_it_could_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apd.toml");
    let a = Apd::permissive(true);
    a.save(&path, crate::Existing::Refuse).unwrap();
    assert!(a.save(&path, crate::Existing::Refuse).is_err());
    let b = Apd::strict(&[Grant {
        identity: psk("pe-1"),
        roles: RoleSet::EMPTY.with(Role::Pe),
    }])
    .unwrap();
    b.save(&path, crate::Existing::Replace).unwrap();
    assert_eq!(Apd::load(&path).unwrap().entries(), b.entries());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
    // Long entries: more than a file may hold is refused, the file stays.
    let long = (0..MAX_ENTRIES)
        .map(|i| {
            Entry::new(
                &format!("e{i}"),
                Action::Allow,
                NamespaceScope::Psk,
                &format!("pe-{i}-{}", "x".repeat(100)),
                RoleSet::EMPTY.with(Role::Pe),
            )
            .unwrap()
        })
        .collect();
    let big = Apd::new(long).unwrap();
    let e = big.save(&path, crate::Existing::Replace).unwrap_err();
    assert!(e.to_string().contains("apd.toml"), "{e}");
    assert_eq!(Apd::load(&path).unwrap().entries(), b.entries());
}

#[test]
fn the_first_matching_entry_decides() {
    let a = db(&[
        entry("deny-bad", "deny", "psk", "pe-bad", "\"pe\"", ""),
        entry("allow-pes", "allow", "psk", "pe-*", "\"pe\"", ""),
        entry("deny-pes", "deny", "psk", "pe-*", "\"pe\"", ""),
    ]
    .concat());
    let d = reg(&a, &psk("pe-bad"), "echo", &[OWN]);
    assert!(!d.is_allowed());
    assert_eq!(
        d.entry().map(|e| (e.index, &*e.name)),
        Some((0, "deny-bad"))
    );
    assert_eq!(d.address, Some(ip(OWN)));
    assert_eq!(
        d.to_string(),
        "denied by entry 0 \"deny-bad\" for 192.0.2.1"
    );
    let d = reg(&a, &psk("pe-good"), "echo", &[OWN]);
    assert!(d.is_allowed());
    assert_eq!(d.entry().unwrap().name.as_ref(), "allow-pes");
    // Nothing matches: the closing deny.
    let d = reg(&a, &psk("pu-1"), "echo", &[OWN]);
    assert_eq!(d.by, DecidedBy::Closing);
    assert!(!d.is_allowed());
    assert_eq!(
        d.to_string(),
        "denied: no entry matches (closing deny) for 192.0.2.1"
    );
    // The other roles are not the entries' business.
    let (ok, by) = check(
        &a,
        &Request::new(&psk("pe-good"), Role::Pu, ip(OWN))
            .pool(b"echo")
            .address(ip(OWN)),
    );
    assert!(!ok && by.is_none());
}

#[test]
fn each_namespace_matches_its_identities() {
    let a = db(&[
        entry("psk", "allow", "psk", "k-*", "\"pu\"", "pools = [\"psk\"]"),
        entry("cert", "allow", "cert", "CN *", "\"pu\"", "pools = [\"cert\"]"),
        entry("dns", "allow", "dns", "*.Example.NET", "\"pu\"", "pools = [\"dns\"]"),
        entry("ip", "allow", "ip", "198.51.100.0/24", "\"pu\"", "pools = [\"ip\"]"),
        "[[entry]]\nname = \"anon\"\naction = \"allow\"\nnamespace = \"anonymous\"\nroles = [\"pu\"]\npools = [\"anon\"]\n".into(),
        entry("authn", "allow", "authenticated", "*", "\"pu\"", "pools = [\"authn\"]"),
        entry("any", "allow", "any", "*", "\"pu\"", "pools = [\"any\"]"),
    ]
    .concat());
    let ids = [
        ("psk", psk("k-1")),
        ("cert", PeerIdentity::Certificate("CN 7".into())),
        ("dns", PeerIdentity::DnsName("Host.example.net".into())),
        ("ip", PeerIdentity::IpAddress(ip("198.51.100.9"))),
        ("anon", PeerIdentity::Anonymous),
    ];
    for (own_pool, id) in &ids {
        for pool in ["psk", "cert", "dns", "ip", "anon", "authn", "any"] {
            let d = a.decide_resolution(id, ip(OWN), pool.as_bytes());
            assert_eq!(
                d,
                a.decide_by_scan(
                    &Request::new(id, Role::Pu, ip(OWN))
                        .pool(pool.as_bytes())
                        .address(ip(OWN))
                )
            );
            let expected =
                pool == *own_pool || pool == "any" || (pool == "authn" && *own_pool != "anon");
            assert_eq!(d.is_allowed(), expected, "{id} in pool {pool}: {d}");
        }
    }
    // Values outside the patterns.
    for id in [
        psk("x-1"),
        PeerIdentity::Certificate("cn 7".into()),
        PeerIdentity::DnsName("example.net".into()),
        PeerIdentity::IpAddress(ip("198.51.101.9")),
    ] {
        let pool = match id.namespace() {
            crate::Namespace::Psk => "psk",
            crate::Namespace::CertificateSubject => "cert",
            crate::Namespace::DnsName => "dns",
            _ => "ip",
        };
        assert!(
            !a.decide_resolution(&id, ip(OWN), pool.as_bytes())
                .is_allowed(),
            "{id}"
        );
    }
    // A PSK identity that looks like a certificate name is still a PSK.
    assert!(!a
        .decide_resolution(&psk("CN 7"), ip(OWN), b"cert")
        .is_allowed());
}

#[test]
fn prefix_suffix_glob_and_exact_patterns() {
    let a = db(&[
        entry(
            "exact",
            "allow",
            "psk",
            "pe-1",
            "\"pe\"",
            "pools = [\"exact\"]",
        ),
        entry(
            "prefix",
            "allow",
            "psk",
            "pe-*",
            "\"pe\"",
            "pools = [\"prefix\"]",
        ),
        entry(
            "suffix",
            "allow",
            "psk",
            "*-eu",
            "\"pe\"",
            "pools = [\"suffix\"]",
        ),
        entry(
            "glob",
            "allow",
            "psk",
            "pe-?-*-eu",
            "\"pe\"",
            "pools = [\"glob\"]",
        ),
        entry(
            "star",
            "allow",
            "psk",
            "x\\\\*",
            "\"pe\"",
            "pools = [\"star\"]",
        ),
    ]
    .concat());
    let ok = |id: &str, pool: &str| reg(&a, &psk(id), pool, &[OWN]).is_allowed();
    assert!(ok("pe-1", "exact") && !ok("pe-12", "exact"));
    assert!(ok("pe-12", "prefix") && ok("pe-", "prefix") && !ok("p-1", "prefix"));
    assert!(ok("a-eu", "suffix") && !ok("a-eu2", "suffix"));
    assert!(ok("pe-1-x-eu", "glob") && !ok("pe-12-x-eu", "glob"));
    assert!(ok("x*", "star") && !ok("xy", "star"));
}

#[test]
fn pools_and_address_scopes() {
    let a = db(&[
        entry(
            "ranges",
            "allow",
            "psk",
            "multi",
            "\"pe\"",
            "pools = [\"echo\", \"0x00ff*\"]\naddresses = [\"own\", \"10.0.0.0/8\", \"2001:db8::/32\"]",
        ),
        entry("own", "allow", "psk", "single", "\"pe\"", ""),
        entry("any", "allow", "psk", "proxy", "\"pe\"", "addresses = [\"any\"]"),
    ]
    .concat());
    let m = psk("multi");
    assert!(reg(&a, &m, "echo", &[OWN, "10.1.2.3", "2001:db8::7"]).is_allowed());
    assert!(reg(&a, &m, "echo", &["::ffff:10.9.9.9"]).is_allowed());
    let d = reg(&a, &m, "echo", &[OWN, "11.0.0.1", "12.0.0.1"]);
    assert!(!d.is_allowed());
    assert_eq!(d.address, Some(ip("11.0.0.1")), "the first address denied");
    assert!(!reg(&a, &m, "echo2", &[OWN]).is_allowed());
    assert!(a
        .decide_registration(&m, ip(OWN), &[0, 255, 1], [ip(OWN)])
        .is_allowed());
    assert!(!a
        .decide_registration(&m, ip(OWN), &[0, 254], [ip(OWN)])
        .is_allowed());
    let s = psk("single");
    assert!(reg(&a, &s, "any-pool", &[OWN]).is_allowed());
    assert!(!reg(&a, &s, "any-pool", &["192.0.2.2"]).is_allowed());
    // own is the connection's address, IPv4-mapped or not.
    assert!(a
        .decide_registration(&s, ip("::ffff:192.0.2.1"), b"p", [ip(OWN)])
        .is_allowed());
    assert!(reg(&a, &psk("proxy"), "p", &["203.0.113.5", "::1"]).is_allowed());
}

#[test]
fn address_ranges_restrict_where_other_roles_connect_from() {
    let a = db(&entry(
        "lan-pus",
        "allow",
        "any",
        "*",
        "\"pu\"",
        "addresses = [\"10.0.0.0/8\"]",
    ));
    let id = PeerIdentity::Anonymous;
    assert!(a.decide_resolution(&id, ip("10.1.1.1"), b"p").is_allowed());
    assert!(!a.decide_resolution(&id, ip("192.0.2.1"), b"p").is_allowed());
    assert!(a.decide_report(&id, ip("10.1.1.1"), b"p").is_allowed());
    assert!(a
        .decide_connection(&id, Role::Pu, ip("10.1.1.1"))
        .is_allowed());
    assert!(!a
        .decide_connection(&id, Role::Pu, ip("192.0.2.1"))
        .is_allowed());
}

#[test]
fn a_final_wildcard_deny_closes_the_list() {
    let a = Apd::strict(&[Grant {
        identity: psk("pe-1"),
        roles: RoleSet::EMPTY.with(Role::Pe),
    }])
    .unwrap();
    let d = reg(&a, &psk("pe-2"), "p", &[OWN]);
    assert_eq!(d.entry().map(|e| &*e.name), Some(CLOSING_DENY));
    let d = a.decide_connection(&PeerIdentity::Anonymous, Role::Pu, ip(OWN));
    assert_eq!(
        d.entry().map(|e| (e.index, &*e.name)),
        Some((1, CLOSING_DENY))
    );
    assert!(reg(&a, &psk("pe-1"), "p", &[OWN]).is_allowed());
    assert!(!reg(&a, &psk("pe-1"), "p", &["192.0.2.99"]).is_allowed());
    // An entry added after the closing deny never decides.
    let mut b = a.clone();
    b.add(
        Entry::new(
            "late",
            Action::Allow,
            NamespaceScope::Psk,
            "pe-2",
            RoleSet::ALL,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(!reg(&b, &psk("pe-2"), "p", &[OWN]).is_allowed());
    // The empty database denies everything.
    let e = Apd::empty();
    assert_eq!(reg(&e, &psk("pe-1"), "p", &[OWN]).by, DecidedBy::Closing);
    assert_eq!(
        e.decide_connection(&psk("r"), Role::Registrar, ip(OWN)).by,
        DecidedBy::Closing
    );
}

#[test]
fn the_connection_check_allows_what_could_be_allowed() {
    let a = db(&[
        // A conditional deny (one pool) does not stop connecting.
        entry(
            "no-secret",
            "deny",
            "psk",
            "pe-*",
            "\"pe\"",
            "pools = [\"secret\"]",
        ),
        // A deny of only some addresses neither.
        entry(
            "no-lab",
            "deny",
            "psk",
            "pe-*",
            "\"pe\"",
            "addresses = [\"10.0.0.0/8\"]",
        ),
        entry(
            "pe-echo",
            "allow",
            "psk",
            "pe-echo",
            "\"pe\"",
            "pools = [\"echo\"]",
        ),
        // Unconditional: every pool, every address.
        entry("no-pes", "deny", "psk", "pe-*", "\"pe\"", ""),
        entry("pe-late", "allow", "psk", "pe-late", "\"pe\"", ""),
        entry(
            "v4-only",
            "deny",
            "psk",
            "r-*",
            "\"registrar\"",
            "addresses = [\"0.0.0.0/0\"]",
        ),
        entry("r-1", "allow", "psk", "r-1", "\"registrar\"", ""),
        entry(
            "no-r",
            "deny",
            "psk",
            "r-*",
            "\"registrar\"",
            "addresses = [\"0.0.0.0/0\", \"::/0\"]",
        ),
        entry("r-late", "allow", "psk", "r-late", "\"registrar\"", ""),
    ]
    .concat());
    let conn = |id: &str, role| a.decide_connection(&psk(id), role, ip(OWN));
    let d = conn("pe-echo", Role::Pe);
    assert!(d.is_allowed());
    assert_eq!(d.entry().unwrap().name.as_ref(), "pe-echo");
    let d = conn("pe-late", Role::Pe);
    assert!(!d.is_allowed());
    assert_eq!(d.entry().unwrap().name.as_ref(), "no-pes");
    assert!(!conn("pe-echo", Role::Pu).is_allowed(), "no pu entry");
    // For registrar the address is the source: a v4 source is denied by
    // "v4-only" already, a v6 one reaches r-1.
    assert_eq!(
        conn("r-1", Role::Registrar).entry().unwrap().name.as_ref(),
        "v4-only"
    );
    let d = a.decide_connection(&psk("r-1"), Role::Registrar, ip("2001:db8::1"));
    assert!(d.is_allowed());
    let d = a.decide_connection(&psk("r-late"), Role::Registrar, ip("2001:db8::1"));
    assert_eq!(d.entry().unwrap().name.as_ref(), "no-r");
    // The admitted PE still gets each registration checked.
    assert!(!reg(&a, &psk("pe-echo"), "secret", &[OWN]).is_allowed());
    assert!(!reg(&a, &psk("pe-echo"), "echo", &["10.0.0.1"]).is_allowed());
    assert!(reg(&a, &psk("pe-echo"), "echo", &[OWN]).is_allowed());
    assert!(!reg(&a, &psk("pe-echo"), "other", &[OWN]).is_allowed());
}

#[test]
fn handle_updates_check_the_peer_and_the_registrant() {
    let a = db(&[
        entry(
            "peers",
            "allow",
            "psk",
            "reg-*",
            "\"registrar\"",
            "pools = [\"echo*\"]",
        ),
        entry("pes", "allow", "psk", "pe-*", "\"pe\"", ""),
    ]
    .concat());
    let update = |peer: &str, pool: &str, registrant: &str, addr: &str| {
        a.decide_handle_update(
            &psk(peer),
            ip("203.0.113.1"),
            pool.as_bytes(),
            &psk(registrant),
            ip(OWN),
            [ip(addr)],
        )
    };
    assert!(update("reg-1", "echo", "pe-1", OWN).is_allowed());
    let d = update("evil", "echo", "pe-1", OWN);
    assert_eq!((d.is_allowed(), d.by), (false, DecidedBy::Closing));
    assert!(!update("reg-1", "other", "pe-1", OWN).is_allowed());
    let d = update("reg-1", "echo", "pe-1", "192.0.2.77");
    assert_eq!(d.address, Some(ip("192.0.2.77")));
    assert!(!d.is_allowed());
    assert!(!update("reg-1", "echo", "x", OWN).is_allowed());
    assert!(a
        .decide_connection(&psk("reg-1"), Role::Registrar, ip("203.0.113.1"))
        .is_allowed());
}

#[test]
fn the_permissive_default_is_what_keys_could_do_before() {
    let a = Apd::permissive(false);
    assert_eq!(
        a.origin().to_string(),
        "no authorised peer database: every authenticated identity may be pe and pu in any \
         pool, registering only its own address; anonymous clients may be pu; no identity may \
         be a peer registrar"
    );
    let ids = [
        psk("pe-1"),
        PeerIdentity::Certificate("pu".into()),
        PeerIdentity::DnsName("r.example".into()),
        PeerIdentity::IpAddress(ip("192.0.2.5")),
    ];
    for id in &ids {
        for role in [Role::Pe, Role::Pu] {
            assert!(
                a.decide_connection(id, role, ip(OWN)).is_allowed(),
                "{id} {role}"
            );
        }
        // Peer registrars are the peer keys only.
        assert!(!a
            .decide_connection(id, Role::Registrar, ip(OWN))
            .is_allowed());
        assert!(!a.decide_connection(id, Role::Admin, ip(OWN)).is_allowed());
        assert!(reg(&a, id, "any", &[OWN]).is_allowed());
        let d = reg(&a, id, "any", &[OWN, "192.0.2.9"]);
        assert!(!d.is_allowed());
        assert_eq!(d.address, Some(ip("192.0.2.9")));
        assert!(a.decide_resolution(id, ip(OWN), b"x").is_allowed());
    }
    let anon = PeerIdentity::Anonymous;
    assert!(a.decide_connection(&anon, Role::Pu, ip(OWN)).is_allowed());
    assert!(a.decide_resolution(&anon, ip(OWN), b"x").is_allowed());
    assert!(a.decide_report(&anon, ip(OWN), b"x").is_allowed());
    assert!(!a.decide_connection(&anon, Role::Pe, ip(OWN)).is_allowed());
    assert!(!a
        .decide_connection(&anon, Role::Registrar, ip(OWN))
        .is_allowed());
    assert!(!reg(&a, &anon, "x", &[OWN]).is_allowed());
    let d = reg(&a, &psk("k"), "x", &[OWN]);
    assert_eq!(d.entry().unwrap().name.as_ref(), PERMISSIVE_AUTHENTICATED);

    let f = Apd::permissive(true);
    assert!(f.origin().to_string().contains("registering any address"));
    assert!(reg(&f, &psk("pe-1"), "any", &[OWN, "198.51.100.1", "::1"]).is_allowed());
    assert_eq!(
        f.origin(),
        &Origin::Permissive {
            allow_foreign_addresses: true,
            registrars: 0,
        }
    );
    // The registrar role: only the peer keys given.
    let conn = |a: &Apd, who: &PeerIdentity| {
        a.decide_connection(who, Role::Registrar, OWN.parse().unwrap())
            .is_allowed()
    };
    assert!(!conn(&f, &psk("pe-1")), "a PE key never speaks ENRP");
    let r = Apd::permissive_with_registrars(false, &[psk("reg-b"), psk("reg-c")]);
    assert!(conn(&r, &psk("reg-b")) && conn(&r, &psk("reg-c")));
    assert!(!conn(&r, &psk("pe-1")));
    assert!(reg(&r, &psk("pe-1"), "x", &[OWN]).is_allowed());
    assert!(r
        .origin()
        .to_string()
        .contains("2 identities (their peer keys)"));
    // A change makes it a configured database.
    let mut g = f.clone();
    g.delete(PERMISSIVE_ANONYMOUS).unwrap();
    assert_eq!(g.origin(), &Origin::Configured);
}

#[test]
fn strict_starting_files_from_keys() {
    let grants = [
        Grant {
            identity: psk("pe-echo-1"),
            roles: RoleSet::EMPTY.with(Role::Pe).with(Role::Pu),
        },
        Grant {
            identity: psk("odd*"),
            roles: RoleSet::EMPTY.with(Role::Pe),
        },
        Grant {
            identity: PeerIdentity::Certificate("registrar 2".into()),
            roles: RoleSet::EMPTY.with(Role::Registrar),
        },
        Grant {
            identity: PeerIdentity::IpAddress(ip("2001:db8::9")),
            roles: RoleSet::EMPTY.with(Role::Pu),
        },
        Grant {
            identity: PeerIdentity::Anonymous,
            roles: RoleSet::EMPTY.with(Role::Pu),
        },
        Grant {
            identity: psk("pe-echo-1"),
            roles: RoleSet::EMPTY.with(Role::Admin),
        },
    ];
    let text = Apd::strict_toml(&grants).unwrap();
    let a = db(&text);
    let names: Vec<&str> = a.entries().iter().map(Entry::name).collect();
    assert_eq!(
        names,
        [
            "allow-psk-pe-echo-1",
            "allow-psk-odd-",
            "allow-cert-registrar-2",
            "allow-ip-2001-db8--9",
            "allow-anonymous",
            "allow-psk-pe-echo-1-2",
            CLOSING_DENY
        ]
    );
    assert!(reg(&a, &psk("pe-echo-1"), "p", &[OWN]).is_allowed());
    assert!(!reg(&a, &psk("pe-echo-1"), "p", &["192.0.2.3"]).is_allowed());
    assert!(reg(&a, &psk("odd*"), "p", &[OWN]).is_allowed());
    assert!(!reg(&a, &psk("oddx"), "p", &[OWN]).is_allowed());
    assert!(a
        .decide_connection(
            &PeerIdentity::Certificate("registrar 2".into()),
            Role::Registrar,
            ip(OWN)
        )
        .is_allowed());
    assert!(a
        .decide_connection(&psk("pe-echo-1"), Role::Admin, ip(OWN))
        .is_allowed());
    assert!(a
        .decide_resolution(&PeerIdentity::IpAddress(ip("2001:db8::9")), ip(OWN), b"p")
        .is_allowed());
    assert!(text.contains("name = \"deny-everyone-else\"\naction = \"deny\"\nnamespace = \"any\"\nidentity = \"*\"\nroles = [\"pe\", \"pu\", \"registrar\", \"admin\"]\npools = [\"*\"]\naddresses = [\"any\"]"), "{text}");
    let e = Apd::strict(&[Grant {
        identity: psk("x"),
        roles: RoleSet::EMPTY,
    }])
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "grant[0].roles: is empty; give one item at least"
    );
}

#[test]
fn toml_round_trip() {
    let text = r#"
# a comment
[[entry]]
name = "echo-pes"
action = "allow"
namespace = "psk"
identity = "pe-echo-*"
roles = ["pe", "pu"]
pools = ["echo", "0x00ff*", "e*"]
addresses = ["own", "10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
comment = "the echo service \"quoted\"\tand tabbed"

[[entry]]
name = "odd.names_ok-1"
action = "deny"
namespace = "dns"
identity = "*.Example.net"
roles = ["registrar"]

[[entry]]
name = "anon"
action = "allow"
namespace = "anonymous"
roles = ["pu"]

[[entry]]
name = "ips"
action = "allow"
namespace = "ip"
identity = "198.51.100.0/24"
roles = ["admin"]
addresses = ["any"]
"#;
    let a = db(text);
    assert_eq!(a.len(), 4);
    let e = &a.entries()[1];
    assert_eq!(e.addresses(), &AddressScope::any(), "a deny's default");
    assert_eq!(e.pools(), &PoolScope::any());
    assert_eq!(
        a.entries()[2].addresses(),
        &AddressScope::own(),
        "an allow's default"
    );
    assert_eq!(
        a.entries()[0].comment(),
        Some("the echo service \"quoted\"\tand tabbed")
    );
    let written = a.to_toml();
    let b = db(&written);
    assert_eq!(a.entries(), b.entries());
    assert_eq!(written, b.to_toml());
    // Specs round-trip too (the admin API's JSON form).
    for e in a.entries() {
        assert_eq!(&Entry::from_spec(&e.to_spec()).unwrap(), e);
    }
    // An odd identity and a control character survive.
    let mut c = Apd::empty();
    c.add(
        Entry::new(
            "odd",
            Action::Allow,
            NamespaceScope::Psk,
            "a\"b\\\\c\u{1}",
            RoleSet::ALL,
        )
        .unwrap()
        .with_comment("line\nbreak"),
    )
    .unwrap();
    let d = db(&c.to_toml());
    assert_eq!(c.entries(), d.entries());
    assert!(reg(&d, &psk("a\"b\\c\u{1}"), "p", &[OWN]).is_allowed());
}

fn err(text: &str) -> String {
    match Apd::from_toml(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_line_and_the_key() {
    let good = entry("a", "allow", "psk", "x", "\"pe\"", "");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{good}\n[[entry]]\nname = \"b\"\naction = \"allow\"\nnamespace = \"psk\"\nidentity = \"y\"\nroles = [\"pe\", \"pee\"]\n"),
            "line 14: entry[1].roles[1]: unknown role \"pee\" (pe, pu, registrar or admin)",
        ),
        (
            format!("{good}\n[[entry]]\nname = \"b\"\naction = \"allow\"\nnamespace = \"psk\"\nroles = [\"pe\"]\n"),
            "line 9: entry[1].identity: missing (required)",
        ),
        (
            format!("{good}\n[[entry]]\nname = \"a\"\naction = \"allow\"\nnamespace = \"psk\"\nidentity = \"y\"\nroles = [\"pe\"]\n"),
            "line 10: entry[1].name: the name \"a\" is already that of entry 0",
        ),
        (
            entry("a", "permit", "psk", "x", "\"pe\"", ""),
            "line 3: entry[0].action: unknown action \"permit\" (allow or deny)",
        ),
        (
            entry("a", "allow", "pks", "x", "\"pe\"", ""),
            "line 4: entry[0].namespace: unknown namespace \"pks\" (psk, cert, dns, ip, anonymous, authenticated or any)",
        ),
        (
            entry("a", "allow", "ip", "10.1.2.3/8", "\"pe\"", ""),
            "line 5: entry[0].identity: in namespace ip, \"10.1.2.3/8\" is neither `*` nor an address or range: \"10.1.2.3/8\" has host bits set; the range is 10.0.0.0/8",
        ),
        (
            entry("a", "allow", "psk", "x", "\"pe\"", "pools = [\"echo\", \"e*o\"]"),
            "line 7: entry[0].pools[1]: \"e*o\": `*` may only end a pool pattern (a prefix); write handles with `*` in hex (0x...)",
        ),
        (
            entry("a", "allow", "psk", "x", "\"pe\"", "addresses = [\n  \"own\",\n  \"10.0.0.0/33\",\n]"),
            "line 9: entry[0].addresses[1]: \"10.0.0.0/33\": the prefix length must be 0 to 32",
        ),
        (
            entry("a", "allow", "psk", "x", "\"pe\"", "addresses = []"),
            "line 7: entry[0].addresses: is empty; give one item at least",
        ),
        (
            entry("a", "allow", "psk", "x", "", ""),
            "line 6: entry[0].roles: is empty; give one item at least",
        ),
        (
            entry("a", "allow", "psk", "x", "\"pe\", \"pe\"", ""),
            "line 6: entry[0].roles[1]: role pe is listed twice",
        ),
        (
            entry("a", "allow", "psk", "x", "\"pe\"", "rolls = [\"pe\"]"),
            "line 7: entry[0].rolls: unknown key (an entry has name, action, namespace, identity, roles, pools, addresses, comment; the file has [[entry]] tables)",
        ),
        (
            entry("a", "allow", "psk", "x", "\"pe\"", "pools = \"echo\""),
            "line 7: entry[0].pools: is a string, expected a list of strings",
        ),
        (
            entry("a", "allow", "psk", "x", "\"pe\"", "pools = [\"echo\", 7]"),
            "line 7: entry[0].pools[1]: is a integer, expected a string",
        ),
        (
            entry("a", "allow", "psk", "x", "\"pe\"", "comment = 7"),
            "line 7: entry[0].comment: is a integer, expected a string",
        ),
        (
            entry("1", "allow", "psk", "x", "\"pe\"", ""),
            "line 2: entry[0].name: \"1\" is no entry name (1 to 200 letters, digits, '.', '_', '-', not only digits)",
        ),
        ("version = 2\n".into(), "line 1: version: unknown key (an entry has name, action, namespace, identity, roles, pools, addresses, comment; the file has [[entry]] tables)"),
        ("entry = 3\n".into(), "line 1: entry: is a integer, expected a list of tables ([[entry]])"),
    ];
    for (text, expected) in cases {
        assert_eq!(err(&text), expected, "for:\n{text}");
    }
    // Syntax errors: the parser's words, with line and column.
    let e = Apd::from_toml(&format!("{good}\nname = \n")).unwrap_err();
    assert_eq!(e.line(), Some(9), "{e}");
    assert_eq!(
        e.to_string(),
        "line 9, column 8: string values must be quoted, expected literal string"
    );
    let e = Apd::from_toml("[[entry]]\nname = \"a\"\nname = \"b\"\n").unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    // The accessors.
    let e = Apd::from_toml(&entry("a", "allow", "psk", "x", "\"px\"", "")).unwrap_err();
    assert_eq!(
        e.key().map(ToString::to_string).as_deref(),
        Some("entry[0].roles[0]")
    );
    assert!(matches!(e.problem(), Some(Problem::Role(_))));
}

#[test]
fn commands_are_checked_with_line_and_key() {
    let e = Entry::from_toml("name = \"x\"\naction = \"allow\"\nnamespace = \"psk\"\nidentity = \"y\"\nroles = [\"pe\"]\npools = [\"\"]\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 6: pools[0]: a pool handle cannot be empty (`*` is every pool)"
    );
    let e = Entry::from_toml("name = \"x\"\naction = \"allow\"\n").unwrap_err();
    assert_eq!(e.to_string(), "line 1: namespace: missing (required)");
    let ok = Entry::from_toml("name = \"x\"\naction = \"deny\"\nnamespace = \"any\"\nidentity = \"*\"\nroles = [\"pu\"]\n").unwrap();
    assert_eq!(ok.addresses(), &AddressScope::any());
    let spec = EntrySpec {
        name: "x".into(),
        action: "allow".into(),
        namespace: "psk".into(),
        identity: None,
        roles: vec!["pe".into()],
        pools: None,
        addresses: None,
        comment: None,
    };
    assert_eq!(
        Entry::from_spec(&spec).unwrap_err().to_string(),
        "identity: missing (required)"
    );
}

fn sample() -> Apd {
    db(&[
        entry("a", "allow", "psk", "a", "\"pe\"", ""),
        entry("b", "allow", "psk", "b", "\"pe\"", ""),
        entry("c", "allow", "psk", "c", "\"pe\"", ""),
    ]
    .concat())
}

fn names(a: &Apd) -> Vec<&str> {
    a.entries().iter().map(Entry::name).collect()
}

fn new(name: &str) -> Entry {
    Entry::new(name, Action::Deny, NamespaceScope::Psk, name, RoleSet::ALL).unwrap()
}

#[test]
fn every_change_applies_and_the_index_follows() {
    let mut a = sample();
    assert_eq!(a.add(new("d")).unwrap(), 3);
    assert_eq!(names(&a), ["a", "b", "c", "d"]);
    assert_eq!(a.insert(0, new("z")).unwrap(), 0);
    assert_eq!(names(&a), ["z", "a", "b", "c", "d"]);
    assert_eq!(a.insert(5, new("y")).unwrap(), 5);
    assert_eq!(names(&a), ["z", "a", "b", "c", "d", "y"]);
    // Modify by name and by position; the new entry decides at once.
    assert!(reg(&a, &psk("b"), "p", &[OWN]).is_allowed());
    assert_eq!(a.modify("b", new("b2")).unwrap(), 2);
    assert!(!reg(&a, &psk("b"), "p", &[OWN]).is_allowed());
    let d = reg(&a, &psk("b2"), "p", &[OWN]);
    assert_eq!(d.entry().map(|e| (e.index, &*e.name)), Some((2, "b2")));
    assert_eq!(a.modify(2usize, new("b3")).unwrap(), 2);
    assert_eq!(names(&a), ["z", "a", "b3", "c", "d", "y"]);
    // Move: the position afterwards; decisions name the new index.
    assert_eq!(a.move_entry("y", 0).unwrap(), 0);
    assert_eq!(names(&a), ["y", "z", "a", "b3", "c", "d"]);
    assert_eq!(a.move_entry(0usize, 5).unwrap(), 5);
    assert_eq!(names(&a), ["z", "a", "b3", "c", "d", "y"]);
    assert_eq!(reg(&a, &psk("c"), "p", &[OWN]).entry().unwrap().index, 3);
    // Delete.
    assert_eq!(a.delete("a").unwrap(), 1);
    assert!(!reg(&a, &psk("a"), "p", &[OWN]).is_allowed());
    assert_eq!(a.delete(0usize).unwrap(), 0);
    assert_eq!(names(&a), ["b3", "c", "d", "y"]);
    assert_eq!(reg(&a, &psk("c"), "p", &[OWN]).entry().unwrap().index, 1);
    assert_eq!(a.position(&"d".parse().unwrap()).unwrap(), 2);
    assert_eq!(a.position(&"2".parse().unwrap()).unwrap(), 2);
    // Moving an allow ahead of a deny changes the decision.
    let mut b = db(&[
        entry("deny-all", "deny", "any", "*", "\"pe\"", ""),
        entry("allow-x", "allow", "psk", "x", "\"pe\"", ""),
    ]
    .concat());
    assert!(!reg(&b, &psk("x"), "p", &[OWN]).is_allowed());
    b.move_entry("allow-x", 0).unwrap();
    assert!(reg(&b, &psk("x"), "p", &[OWN]).is_allowed());
}

#[test]
fn an_invalid_change_changes_nothing() {
    let mut a = sample();
    let before = a.to_toml();
    let fails: Vec<(Change, &str)> = vec![
        (Change::Add(new("a")), "entry[3].name: the name \"a\" is already that of entry 0"),
        (
            Change::Insert {
                position: 4,
                entry: new("x"),
            },
            "position 4 is out of range: the database has 3 entries (positions 0 to 3 for insert, to 2 otherwise)",
        ),
        (
            Change::Insert {
                position: 1,
                entry: new("c"),
            },
            "entry[3].name: the name \"c\" is already that of entry 1",
        ),
        (
            Change::Modify {
                entry: "nope".into(),
                with: new("x"),
            },
            "no entry named \"nope\"",
        ),
        (
            Change::Modify {
                entry: 0.into(),
                with: new("b"),
            },
            "entry[1].name: the name \"b\" is already that of entry 0",
        ),
        (
            Change::Move {
                entry: "a".into(),
                to: 3,
            },
            "position 3 is out of range: the database has 3 entries (positions 0 to 3 for insert, to 2 otherwise)",
        ),
        (
            Change::Move {
                entry: 7.into(),
                to: 0,
            },
            "no entry at position 7",
        ),
        (Change::Delete("zz".into()), "no entry named \"zz\""),
        (Change::Delete(3.into()), "no entry at position 3"),
    ];
    for (change, expected) in fails {
        let e = a.apply(change.clone()).unwrap_err();
        assert_eq!(e.to_string(), expected, "{change:?}");
        assert_eq!(a.to_toml(), before, "{change:?} changed the database");
        assert!(reg(&a, &psk("a"), "p", &[OWN]).is_allowed());
    }
    // A reload from an invalid text changes nothing either.
    let e = a.replace_from_toml("[[entry]]\nname = 3\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: entry[0].name: is a integer, expected a string"
    );
    assert_eq!(a.to_toml(), before);
    a.replace_from_toml(&entry("q", "allow", "psk", "q", "\"pe\"", ""))
        .unwrap();
    assert_eq!(names(&a), ["q"]);
    // Invalid entries cannot even be made.
    assert_eq!(
        Entry::new("", Action::Allow, NamespaceScope::Psk, "x", RoleSet::ALL),
        Err(Problem::Name(String::new()))
    );
    assert_eq!(
        Entry::new("n", Action::Allow, NamespaceScope::Psk, "x", RoleSet::EMPTY),
        Err(Problem::EmptyList)
    );
}

#[test]
fn files_are_read_with_the_credential_file_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apd.toml");
    std::fs::write(&path, Apd::permissive(false).to_toml()).unwrap();
    let a = Apd::load(&path).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a.origin(), &Origin::Configured);
    std::fs::write(&path, "[[entry]]\nname = \"x\"\n").unwrap();
    let e = Apd::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: line 1: entry[0].action: missing (required)",
            path.display()
        )
    );
    assert_eq!(e.line(), Some(1));
    std::fs::write(&path, b"# ok\n# \xff\n").unwrap();
    let e = Apd::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: line 2: is not UTF-8 text", path.display())
    );
    let e = Apd::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("a regular file is needed"), "{e}");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    const VALUES: [&str; 8] = ["a", "ab", "abc", "b", "ba", "A.b", "é", "éab"];
    const PATTERNS: [&str; 14] = [
        "*", "a", "ab", "a*", "ab*", "*b", "*c", "a*c", "?b", "a.b", "*a*", "?b*", "é*?", "*é",
    ];
    const IP_PATTERNS: [&str; 5] = [
        "*",
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.3",
        "2001:db8::/32",
    ];
    const IPS: [&str; 5] = ["10.1.2.3", "10.2.0.1", "11.0.0.1", "2001:db8::1", "::1"];
    const POOLS: [&str; 5] = ["*", "p", "p*", "pq", "q*"];
    const POOL_VALUES: [&str; 4] = ["p", "pq", "q", "qq"];
    const ADDRS: [&str; 7] = [
        "own",
        "any",
        "10.0.0.0/8",
        "10.1.2.3",
        "0.0.0.0/0",
        "::/0",
        "2001:db8::/32",
    ];
    const NAMESPACES: [&str; 7] = [
        "psk",
        "cert",
        "dns",
        "ip",
        "anonymous",
        "authenticated",
        "any",
    ];

    /// namespace, allow, pattern, ip pattern, role bits, pools, addresses.
    type RawEntry = (usize, bool, usize, usize, u8, Vec<usize>, Vec<usize>);

    fn arb_entry() -> impl Strategy<Value = RawEntry> {
        (
            0..NAMESPACES.len(),
            any::<bool>(),
            0..PATTERNS.len(),
            0..IP_PATTERNS.len(),
            1u8..16,
            prop::collection::vec(0..POOLS.len(), 1..3),
            prop::collection::vec(0..ADDRS.len(), 1..3),
        )
    }

    fn build(raw: &[RawEntry]) -> Apd {
        let entries = raw
            .iter()
            .enumerate()
            .map(|(i, (ns, allow, p, ipp, roles, pools, addrs))| {
                let namespace: NamespaceScope = NAMESPACES[*ns].parse().unwrap();
                let pattern = match namespace {
                    NamespaceScope::IpAddress => IP_PATTERNS[*ipp],
                    NamespaceScope::Anonymous => "*",
                    _ => PATTERNS[*p],
                };
                let roles: RoleSet = Role::ALL
                    .into_iter()
                    .enumerate()
                    .filter(|(k, _)| roles & (1 << k) != 0)
                    .map(|(_, r)| r)
                    .collect();
                let action = if *allow { Action::Allow } else { Action::Deny };
                Entry::new(&format!("e{i}"), action, namespace, pattern, roles)
                    .unwrap()
                    .with_pools(
                        PoolScope::new(pools.iter().map(|p| POOLS[*p].parse().unwrap()).collect())
                            .unwrap(),
                    )
                    .with_addresses(
                        AddressScope::new(
                            addrs.iter().map(|a| ADDRS[*a].parse().unwrap()).collect(),
                        )
                        .unwrap(),
                    )
            })
            .collect();
        Apd::new(entries).unwrap()
    }

    fn identity(kind: usize, v: usize, ipi: usize) -> PeerIdentity {
        match kind {
            0 => PeerIdentity::Psk(VALUES[v].into()),
            1 => PeerIdentity::Certificate(VALUES[v].into()),
            2 => PeerIdentity::DnsName(VALUES[v].into()),
            3 => PeerIdentity::IpAddress(ip(IPS[ipi])),
            _ => PeerIdentity::Anonymous,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The key correctness test: the index decides as the scan does,
        /// on random databases and requests, open or not.
        #[test]
        fn the_index_agrees_with_the_scan(
            raw in prop::collection::vec(arb_entry(), 0..40),
            queries in prop::collection::vec(
                (0usize..5, 0..VALUES.len(), 0..IPS.len(), 0usize..4,
                 prop::option::of(0..POOL_VALUES.len()), prop::option::of(0..IPS.len()), 0..IPS.len()),
                1..20),
        ) {
            let apd = build(&raw);
            for (kind, v, ipi, role, pool, addr, own) in queries {
                let id = identity(kind, v, ipi);
                let mut req = Request::new(&id, Role::ALL[role], ip(IPS[own]));
                if let Some(p) = pool {
                    req = req.pool(POOL_VALUES[p].as_bytes());
                }
                if let Some(a) = addr {
                    req = req.address(ip(IPS[a]));
                }
                prop_assert_eq!(apd.decide(&req), apd.decide_by_scan(&req), "{:?}", req);
            }
            // And after a round trip through the file.
            let back = Apd::from_toml(&apd.to_toml()).unwrap();
            prop_assert_eq!(back.entries(), apd.entries());
        }

        /// A connection refused could have had nothing allowed.
        #[test]
        fn a_refused_connection_could_do_nothing(
            raw in prop::collection::vec(arb_entry(), 0..30),
            kind in 0usize..5, v in 0..VALUES.len(), ipi in 0..IPS.len(),
            role in 0usize..4, source in 0..IPS.len(),
        ) {
            let apd = build(&raw);
            let id = identity(kind, v, ipi);
            let role = Role::ALL[role];
            let src = ip(IPS[source]);
            if !apd.decide_connection(&id, role, src).is_allowed() {
                for pool in POOL_VALUES {
                    for a in IPS {
                        // Other roles are checked at the source address.
                        let addr = if role == Role::Pe { ip(a) } else { src };
                        let req = Request::new(&id, role, src).pool(pool.as_bytes()).address(addr);
                        prop_assert!(!apd.decide(&req).is_allowed(), "{:?}", req);
                    }
                }
            }
        }
    }
}

/// The example of docs/security.md reads and decides as the page says.
#[test]
fn the_documented_example_holds() {
    let page = include_str!("../../../../docs/security.md");
    let from = page.find("### File format").expect("the section");
    let block = &page[from..];
    let start = block.find("```toml\n").expect("an example") + "```toml\n".len();
    let text = &block[start..start + block[start..].find("```").unwrap()];
    let a = db(text);
    assert_eq!(a.len(), 5);
    let pe = psk("pe-echo-3");
    assert!(reg(&a, &pe, "echo", &[OWN]).is_allowed());
    assert!(a.decide_resolution(&pe, ip(OWN), b"echo").is_allowed());
    assert!(!reg(&a, &pe, "web-1", &[OWN]).is_allowed());
    let proxy = PeerIdentity::Certificate("proxy.dc1".into());
    assert!(reg(&a, &proxy, "web-1", &["10.1.7.7", OWN]).is_allowed());
    assert!(!reg(&a, &proxy, "web-1", &["10.2.7.7"]).is_allowed());
    let peer = PeerIdentity::DnsName("R1.registrars.example.net".into());
    assert!(a
        .decide_connection(&peer, Role::Registrar, ip(OWN))
        .is_allowed());
    let anon = PeerIdentity::Anonymous;
    assert!(a
        .decide_resolution(&anon, ip("192.0.2.200"), b"echo")
        .is_allowed());
    let d = a.decide_resolution(&anon, ip("198.51.100.1"), b"echo");
    assert_eq!(d.entry().map(|e| &*e.name), Some(CLOSING_DENY));
    assert!(!a
        .decide_connection(&anon, Role::Pu, ip("198.51.100.1"))
        .is_allowed());
}
