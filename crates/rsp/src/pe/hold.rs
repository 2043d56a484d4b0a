//! The life of a PE of `rsp pe`, shared by the echo server and `rsp pe
//! register`: register (the library keeps the registration alive,
//! re-registers and fails over, RFC 5352 3.1, 3.6), print what happens,
//! follow an optional health check (deregister when it fails, register
//! again with the same identifier when it passes) and deregister on
//! SIGINT/SIGTERM (RFC 5352 3.2), whatever the state.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use rserpool::{ClientConfig, ClientError, PeCore, PeEvent, PoolElement, PoolElementSpec};
use rserpool_wire::{CauseCode, PeId};
use tokio::sync::broadcast;

use super::check::Checker;
use super::health::{Change, HealthGate};
use super::printer::Printer;

/// A health check and the gate its results go through.
pub struct Health {
    pub checker: Checker,
    pub gate: HealthGate,
    /// What is checked, for messages ("TCP connect to 127.0.0.1:80").
    pub what: String,
    /// Passed checks in a row that register again, for messages.
    pub successes: u32,
}

/// What to register and how to say so.
pub struct Plan {
    pub config: ClientConfig,
    /// With its identifier chosen (the same on every registration).
    pub spec: PoolElementSpec,
    /// The pool handle as given.
    pub handle: String,
    /// The service in the "registered" line ("echo on port 7007").
    pub service: String,
    pub shutdown_timeout: Duration,
    pub json: bool,
}

impl Plan {
    /// Whether the library will take the configuration and the PE: a dry
    /// run of its checks on a core that does nothing else.
    fn check(&self) -> Result<(), ClientError> {
        self.config.validate()?;
        let registrars = self.config.registrars.iter().map(|r| r.address);
        PeCore::new(
            registrars.collect(),
            self.config.timers,
            self.config.registration_lifetime,
            0,
        )
        .add_element(std::time::Instant::now(), self.spec.clone())
        .map(|_| ())
    }
}

/// `n check(s)` in words.
fn checks(n: u32) -> String {
    crate::display::plural(u64::from(n), "check", "checks")
}

/// A PE identifier for `--id` left out: random, non-zero (RFC 5352 3.1
/// R2.2). Chosen here rather than by the library so that the lines
/// printed before the first registration name it too.
pub fn random_identifier() -> PeId {
    loop {
        let id = rserpool_security::random_seed() as u32;
        if id != 0 {
            return PeId::new(id);
        }
    }
}

/// One registration: a running [`PoolElement`] and what it said so far.
struct Registration {
    pe: PoolElement,
    events: broadcast::Receiver<PeEvent>,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
    confirmed: bool,
    /// Why it was refused or given up, if it was.
    failure: Option<ClientError>,
}

impl Registration {
    fn start(plan: &Plan) -> Result<Self, ClientError> {
        let (pe, events) = PoolElement::spawn(plan.config.clone(), plan.spec.clone())?;
        let stopped = Box::pin(pe.stopped());
        Ok(Registration {
            pe,
            events,
            stopped,
            confirmed: false,
            failure: None,
        })
    }
}

enum Wake {
    Event(PeEvent),
    /// The PE stopped by itself: refused or given up.
    Stopped,
    Check(Result<(), String>),
}

/// Hold the registration of `plan` until `stop` resolves (then
/// deregister) or a registrar refuses it or none can be reached (an
/// error, after the event line). With `health`, the service is
/// registered only while it passes its checks.
pub async fn hold(
    plan: Plan,
    mut health: Option<Health>,
    mut stop: Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<()> {
    let id = plan.spec.identifier.unwrap_or(PeId::new(0));
    let out = Printer {
        json: plan.json,
        id,
    };
    // A bad setting is an error now, not when a first check passes.
    plan.check()?;
    let mut current = match health {
        Some(_) => None,
        None => Some(Registration::start(&plan)?),
    };
    loop {
        let wake = tokio::select! {
            biased;
            () = &mut stop => break,
            w = watch(&mut current) => w,
            r = next_check(&mut health) => Wake::Check(r),
        };
        match wake {
            Wake::Event(e) => {
                if let Some(reg) = current.as_mut() {
                    on_event(&plan, &out, reg, &e);
                }
            }
            Wake::Stopped => {
                let failure = current.take().and_then(|r| r.failure);
                return Err(explain(
                    failure.unwrap_or(ClientError::Stopped),
                    plan.spec.address,
                ));
            }
            Wake::Check(result) => {
                if let Some(h) = health.as_mut() {
                    on_check(&plan, &out, h, &mut current, result).await?;
                }
            }
        }
    }
    // Stopped by a signal: a PE deregistered for its health just exits.
    if let Some(reg) = current.take() {
        deregister(&plan, &out, reg, None).await;
    }
    Ok(())
}

/// A check result: register, deregister or say nothing (a failure
/// short of the count is logged).
async fn on_check(
    plan: &Plan,
    out: &Printer,
    h: &mut Health,
    current: &mut Option<Registration>,
    result: Result<(), String>,
) -> Result<(), ClientError> {
    let id = out.id;
    match h.gate.record(result.is_ok()) {
        None => {
            if let Err(e) = &result {
                let so_far = h.gate.failures_so_far();
                if so_far > 0 {
                    tracing::warn!("PE {id:#010x}: health check failed ({so_far} in a row): {e}");
                }
            }
        }
        Some(Change::Healthy { passes, recovered }) => {
            if recovered {
                out.line(
                    serde_json::json!({"event": "health_recovered", "identifier": id, "passes": passes, "check": h.what}),
                    format!(
                        "PE {id:#010x}: {} passed in a row; registering again",
                        checks(passes)
                    ),
                );
            }
            *current = Some(Registration::start(plan)?);
        }
        Some(Change::Unhealthy { failures }) => {
            let error = result.err().unwrap_or_default();
            out.json_only(serde_json::json!({
                "event": "health_failed", "identifier": id, "failures": failures,
                "error": error, "check": h.what, "registered": current.is_some(),
            }));
            match current.take() {
                Some(reg) => {
                    let times = match failures {
                        1 => "once".to_string(),
                        n => format!("{n} times"),
                    };
                    let reason = format!("health check failed {times}: {error}");
                    deregister(plan, out, reg, Some(&reason)).await;
                }
                None => out.text_only(format!(
                    "PE {id:#010x} not registered: health check failed: {error} \
                     (registers after {} passed in a row)",
                    checks(h.successes)
                )),
            }
        }
    }
    Ok(())
}

/// The next event or the end of the current registration; never, if
/// there is none.
async fn watch(current: &mut Option<Registration>) -> Wake {
    let Some(reg) = current.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            // An event sent before the PE stopped says why it stopped.
            biased;
            e = reg.events.recv() => match e {
                Ok(e) => return Wake::Event(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("{n} PE events were dropped (too many at once)");
                }
                Err(broadcast::error::RecvError::Closed) => return Wake::Stopped,
            },
            () = &mut reg.stopped => return Wake::Stopped,
        }
    }
}

/// The next health check result; never, without a check.
async fn next_check(health: &mut Option<Health>) -> Result<(), String> {
    match health {
        Some(h) => h.checker.next().await,
        None => std::future::pending().await,
    }
}

fn on_event(plan: &Plan, out: &Printer, reg: &mut Registration, e: &PeEvent) {
    match e {
        PeEvent::Registered { registrar, .. } if !reg.confirmed => {
            reg.confirmed = true;
            let (id, policy) = (out.id, plan.spec.policy.name());
            out.line(
                serde_json::json!({
                    "event": "registered", "pool_handle": plan.handle, "identifier": id,
                    "port": plan.spec.port, "address": plan.spec.address.map(|a| a.to_string()),
                    "policy": policy, "registrar": registrar.to_string(),
                }),
                format!(
                    "PE {id:#010x} registered in pool {:?} (policy {policy}), {}, registrar {registrar}",
                    plan.handle, plan.service
                ),
            );
            return;
        }
        PeEvent::RegistrationRefused {
            registrar,
            identifier,
            cause,
            detail,
        } => {
            reg.failure = Some(ClientError::RegistrationRefused {
                registrar: *registrar,
                identifier: *identifier,
                cause: *cause,
                detail: detail.clone(),
            });
        }
        PeEvent::RegistrationFailed { error, .. } => reg.failure = Some(error.clone()),
        _ => {}
    }
    out.event(e);
}

/// Deregister, waiting at most `--shutdown-timeout`, and say how it went
/// (`reason`: why, when it is not a signal).
async fn deregister(plan: &Plan, out: &Printer, reg: Registration, reason: Option<&str>) {
    let id = out.id;
    let confirmed = reg.confirmed;
    // RFC 5352 3.2 allows T3 (30 s) for the answer; an operator stopping a
    // PE waits at most --shutdown-timeout. Unconfirmed, the registrar
    // removes the PE after its keep-alive timeout anyway.
    let failure = match tokio::time::timeout(plan.shutdown_timeout, reg.pe.shutdown()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!(
            "no answer within {:?}; the registrar drops the PE after its keep-alive timeout",
            plan.shutdown_timeout
        )),
    };
    let why = reason.map_or(String::new(), |r| format!(": {r}"));
    match failure {
        // Nothing to take back: say so rather than "deregistered" (a
        // registration in flight was withdrawn all the same).
        _ if !confirmed => out.line(
            serde_json::json!({"event": "stopped", "identifier": id, "registered": false, "reason": reason}),
            format!("PE {id:#010x} stopped before any registrar confirmed its registration{why}"),
        ),
        None => out.line(
            serde_json::json!({"event": "deregistered", "identifier": id, "reason": reason}),
            format!("PE {id:#010x} deregistered{why}"),
        ),
        Some(e) => out.line(
            serde_json::json!({"event": "deregistration_failed", "identifier": id, "error": e, "reason": reason}),
            format!("PE {id:#010x}: deregistration not confirmed{why}: {e}"),
        ),
    }
}

/// The error a refusal ends with; a refusal for security reasons of a
/// PE registered at `--address` names the likely reason: a registrar
/// registers only the address a PE connects from unless it allows
/// foreign addresses (DESIGN section 4, RFC 5355 2.3).
fn explain(error: ClientError, address: Option<IpAddr>) -> anyhow::Error {
    let foreign = matches!(
        error,
        ClientError::RegistrationRefused {
            cause: CauseCode::RejectedSecurity,
            ..
        }
    );
    match address {
        Some(a) if foreign => anyhow::anyhow!(
            "{error}. With --address {a}: a registrar registers only the address a PE connects \
             from (this host's address on the registrar connection) unless its authorised peer \
             database allows this key other addresses (addresses = [\"any\"] or a CIDR range \
             in its entry; without a database: rsp registrar --allow-foreign-addresses); or it \
             does not allow this key this pool at all. Leave --address out to register this \
             host's address"
        ),
        _ => error.into(),
    }
}
