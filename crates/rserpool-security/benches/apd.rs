//! Cost of an authorised peer database decision with 0, 10 and 1,000
//! entries (mixed: exact PSK identities, prefixes, DNS suffixes, address
//! ranges, a few general globs, pool patterns), on the registrar's hot
//! paths: a registration (one address), a handle resolution, and a
//! connection; each for an identity whose entry is near the end of the
//! list and for one no entry knows (the closing deny). The linear scan
//! (the reference matcher) is timed at 1,000 entries for comparison.
//!
//! `cargo bench -p rserpool-security --bench apd`

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rserpool_security::apd::{
    Action, AddressScope, Apd, Entry, NamespaceScope, PoolScope, Request, Role, RoleSet,
};
use rserpool_security::PeerIdentity;

fn roles(r: &[Role]) -> RoleSet {
    r.iter().copied().collect()
}

fn pools(p: &[&str]) -> PoolScope {
    PoolScope::new(p.iter().map(|p| p.parse().unwrap()).collect()).unwrap()
}

/// `n` entries: 70 % exact PSK identities, 10 % prefixes, 10 % DNS
/// suffixes, 8 % ip ranges, 2 % general globs; the last is a closing deny.
fn database(n: usize) -> Apd {
    let mut entries = Vec::with_capacity(n);
    for i in 0..n.saturating_sub(1) {
        let name = format!("e{i}");
        let pe_pu = roles(&[Role::Pe, Role::Pu]);
        let e = match i % 50 {
            0..=34 => Entry::new(
                &name,
                Action::Allow,
                NamespaceScope::Psk,
                &format!("pe-{i}"),
                pe_pu,
            )
            .unwrap()
            .with_pools(pools(&[&format!("pool-{}", i % 20), "shared-*"])),
            35..=39 => Entry::new(
                &name,
                Action::Allow,
                NamespaceScope::Psk,
                &format!("grp{i}-*"),
                pe_pu,
            )
            .unwrap()
            .with_pools(pools(&["*"])),
            40..=44 => Entry::new(
                &name,
                Action::Allow,
                NamespaceScope::DnsName,
                &format!("*.site{i}.example.net"),
                roles(&[Role::Pu, Role::Registrar]),
            )
            .unwrap(),
            45..=48 => Entry::new(
                &name,
                if i % 2 == 0 {
                    Action::Allow
                } else {
                    Action::Deny
                },
                NamespaceScope::IpAddress,
                &format!("10.{}.{}.0/24", (i / 256) % 256, i % 256),
                roles(&[Role::Pu]),
            )
            .unwrap()
            .with_addresses(AddressScope::new(vec!["10.0.0.0/8".parse().unwrap()]).unwrap()),
            _ => Entry::new(
                &name,
                Action::Deny,
                NamespaceScope::Psk,
                &format!("bad-{i}-?-*"),
                RoleSet::ALL,
            )
            .unwrap(),
        };
        entries.push(e);
    }
    if n > 0 {
        entries.push(
            Entry::new(
                "deny-everyone-else",
                Action::Deny,
                NamespaceScope::Any,
                "*",
                RoleSet::ALL,
            )
            .unwrap(),
        );
    }
    Apd::new(entries).unwrap()
}

fn bench(c: &mut Criterion) {
    let own: IpAddr = "192.0.2.1".parse().unwrap();
    let mut g = c.benchmark_group("apd");
    for n in [0usize, 10, 1000] {
        let apd = database(n);
        // An exact identity near the end of the list.
        let last = (0..n.saturating_sub(1))
            .rev()
            .find(|i| i % 50 <= 34)
            .unwrap_or(0);
        let known = PeerIdentity::Psk(format!("pe-{last}"));
        let pool = format!("pool-{}", last % 20);
        let stranger = PeerIdentity::Psk("nobody".into());
        if n > 0 {
            assert!(apd
                .decide_registration(&known, own, pool.as_bytes(), [own])
                .is_allowed());
        }
        g.bench_with_input(BenchmarkId::new("registration", n), &n, |b, _| {
            b.iter(|| {
                apd.decide_registration(black_box(&known), own, black_box(pool.as_bytes()), [own])
            })
        });
        g.bench_with_input(BenchmarkId::new("registration_unknown", n), &n, |b, _| {
            b.iter(|| {
                apd.decide_registration(
                    black_box(&stranger),
                    own,
                    black_box(pool.as_bytes()),
                    [own],
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("resolution", n), &n, |b, _| {
            b.iter(|| apd.decide_resolution(black_box(&known), own, black_box(pool.as_bytes())))
        });
        g.bench_with_input(BenchmarkId::new("connection", n), &n, |b, _| {
            b.iter(|| apd.decide_connection(black_box(&known), Role::Pe, own))
        });
        if n == 1000 {
            let req = Request::new(&known, Role::Pe, own)
                .pool(pool.as_bytes())
                .address(own);
            g.bench_function(BenchmarkId::new("registration_by_scan", n), |b| {
                b.iter(|| apd.decide_by_scan(black_box(&req)))
            });
        }
    }
    let permissive = Apd::permissive(false);
    let known = PeerIdentity::Psk("pe-1".into());
    g.bench_function("registration_permissive", |b| {
        b.iter(|| permissive.decide_registration(black_box(&known), own, black_box(b"echo"), [own]))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
