//! A registrar (TLS PSK, identity `pe-1`) with its admin API on loopback,
//! in this process on a runtime of its own, with PEs registered through
//! the library: the registrar `rsp status`, `rsp watch`, `rsp pools` and
//! the other admin clients are tested against.

use std::net::SocketAddr;
use std::sync::Arc;

use rserpool::{ClientConfig, PoolElement, PoolElementSpec, RegistrarEndpoint};
use rserpool_registrar::admin::{AdminConfig, AdminServer, AdminToken};
use rserpool_registrar::{CoreConfig, Registrar, ServiceConfig};
use rserpool_security::{Psk, PskStore, TlsClient, TlsClientConfig, TlsServer, TlsServerConfig};
use rserpool_wire::{PeId, Policy, PoolHandle, ServerId};

pub const SERVER_ID: u32 = 0x00c0_ffee;

/// A registrar with its admin API, on a runtime of its own.
pub struct Lab {
    pub rt: tokio::runtime::Runtime,
    pub registrar: Option<Registrar>,
    pub admin: Option<AdminServer>,
    pub url: String,
    pub psk: Psk,
    pub dir: tempfile::TempDir,
    pub pes: Vec<PoolElement>,
}

impl Lab {
    pub fn start() -> Lab {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let token = AdminToken::write_new(&dir.path().join("admin.token")).unwrap();
        let psk = Psk::generate("pe-1").unwrap();
        let mut store = PskStore::default();
        store.insert(psk.clone()).unwrap();
        let tls = TlsServer::new(&TlsServerConfig {
            psks: Some(Arc::new(store)),
            ..TlsServerConfig::default()
        })
        .unwrap();
        let (registrar, admin) = rt.block_on(async {
            let registrar = Registrar::start(ServiceConfig {
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                tls: Some(Arc::new(tls)),
                core: CoreConfig {
                    server_id: ServerId::new(SERVER_ID),
                    ..CoreConfig::default()
                },
                ..ServiceConfig::default()
            })
            .await
            .unwrap();
            let admin = AdminServer::start(
                AdminConfig::new("127.0.0.1:0".parse().unwrap(), token),
                registrar.handle(),
            )
            .await
            .unwrap();
            (registrar, admin)
        });
        let url = format!("http://{}", admin.local_addr());
        Lab {
            rt,
            registrar: Some(registrar),
            admin: Some(admin),
            url,
            psk,
            dir,
            pes: Vec::new(),
        }
    }

    pub fn token_file(&self) -> String {
        self.dir.path().join("admin.token").display().to_string()
    }

    pub fn asap_addr(&self) -> SocketAddr {
        self.registrar.as_ref().unwrap().local_addrs()[0]
    }

    /// Register a PE in pool "echo", round robin, port 7 (it stays
    /// registered while the lab lives).
    pub fn register_pe(&mut self, id: u32) {
        self.register("echo", Policy::RoundRobin, 7, id);
    }

    /// Register a PE (it stays registered while the lab lives).
    pub fn register(&mut self, pool: &str, policy: Policy, port: u16, id: u32) {
        let tls = TlsClient::new(&TlsClientConfig {
            psk: Some(self.psk.clone()),
            ..TlsClientConfig::default()
        })
        .unwrap();
        let config = ClientConfig::new(vec![RegistrarEndpoint::new(self.asap_addr())], Some(tls));
        let handle = PoolHandle::new(pool.as_bytes().to_vec()).unwrap();
        let mut spec = PoolElementSpec::new(handle, policy, port);
        spec.identifier = Some(PeId::new(id));
        let pe = self
            .rt
            .block_on(PoolElement::start(config, spec))
            .expect("the PE registers");
        self.pes.push(pe);
    }

    pub fn stop_registrar(&mut self) {
        if let Some(r) = self.registrar.take() {
            self.rt.block_on(r.shutdown());
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let pes = std::mem::take(&mut self.pes);
        let admin = self.admin.take();
        let registrar = self.registrar.take();
        self.rt.block_on(async move {
            drop(pes);
            if let Some(a) = admin {
                a.shutdown().await;
            }
            if let Some(r) = registrar {
                r.shutdown().await;
            }
        });
    }
}
