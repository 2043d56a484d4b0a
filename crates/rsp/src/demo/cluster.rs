//! `rsp demo --cluster`: kill the registrar that is home to most PEs and
//! show what follows. The survivors see it down and one takes it over
//! (RFC 5353 3.5, their events); each PE of the dead registrar, its
//! connection reset, hunts to the next registrar of its list and
//! registers there (RFC 5352 3.6, the PE's events); and the demo asks
//! both survivors for the pool, as a pool user would, until both hand out
//! every PE, homed at a live registrar, the same at both.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rserpool::{ClientError, PoolUser};
use rserpool_wire::{PeId, PoolHandle, ServerId};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::lab::{Lab, Line, Source, START_LIMIT};
use super::report::{Outcome, Report};
use super::{Script, Tally, POOL};

/// How often the survivors are asked for the pool (and at once after a
/// PE or registrar said something that may have changed it).
const VIEW_PERIOD: Duration = Duration::from_millis(20);
/// PEs asked for in those resolutions (all of them: at most 16 run).
const VIEW_ITEMS: u32 = 128;

/// The PEs of the pool one registrar hands out, with their homes; or
/// why it did not answer.
type PesAt = Result<BTreeMap<PeId, ServerId>, String>;

/// The PEs of the pool at each registrar asked (by index).
#[derive(Debug, Clone)]
pub struct View {
    at: Instant,
    by: Vec<(usize, PesAt)>,
}

/// What [`RegistrarCrash::next`] saw.
pub enum Watched {
    Line(Line),
    View(View),
}

/// The registrar killed.
struct Killed {
    index: usize,
    at: Instant,
    /// Its PEs.
    pes: Vec<PeId>,
}

/// The end: every PE homed at a survivor, the same at both.
struct Rehomed {
    after: Duration,
    homes: BTreeMap<PeId, usize>,
}

/// The script of `rsp demo --cluster`.
pub struct RegistrarCrash {
    lines: mpsc::Receiver<Line>,
    handle: PoolHandle,
    /// A pool user per registrar (its only one), to ask it for the pool.
    askers: Vec<PoolUser>,
    /// Registrar names and server ids, by index.
    registrars: Vec<(String, ServerId)>,
    ids: Vec<PeId>,
    /// Homes as the registrars agreed before the kill.
    homes: BTreeMap<PeId, usize>,
    killed: Option<Killed>,
    /// Where each PE registered after the kill (its own word).
    registered: BTreeMap<PeId, usize>,
    views: Option<mpsc::Receiver<View>>,
    asking: Option<JoinHandle<()>>,
    /// Ask the survivors now.
    ask_now: Arc<Notify>,
    last_view: Option<View>,
    rehomed: Option<Rehomed>,
}

impl Drop for RegistrarCrash {
    fn drop(&mut self) {
        if let Some(t) = self.asking.take() {
            t.abort();
        }
    }
}

impl RegistrarCrash {
    pub fn new(lab: &mut Lab) -> anyhow::Result<RegistrarCrash> {
        let lines = lab.take_lines().context("the cluster lab gives no lines")?;
        let handle =
            PoolHandle::new(POOL.as_bytes().to_vec()).context("the demo pool handle is empty")?;
        let mut askers = Vec::new();
        for r in lab.registrars() {
            let mut config = lab.client_config(&[r.asap])?;
            config.pool_user.items = Some(VIEW_ITEMS);
            askers.push(PoolUser::new(config)?);
        }
        let mut ids: Vec<PeId> = lab.names().keys().copied().collect();
        ids.sort_unstable();
        Ok(RegistrarCrash {
            lines,
            handle,
            askers,
            registrars: lab
                .registrars()
                .iter()
                .map(|r| (r.name.clone(), r.server_id))
                .collect(),
            ids,
            homes: BTreeMap::new(),
            killed: None,
            registered: BTreeMap::new(),
            views: None,
            asking: None,
            ask_now: Arc::new(Notify::new()),
            last_view: None,
            rehomed: None,
        })
    }

    fn name(&self, index: usize) -> &str {
        self.registrars.get(index).map_or("?", |r| r.0.as_str())
    }

    fn index_of(&self, id: ServerId) -> Option<usize> {
        self.registrars.iter().position(|r| r.1 == id)
    }

    fn index_of_json(&self, v: &serde_json::Value) -> Option<usize> {
        serde_json::from_value::<ServerId>(v.clone())
            .ok()
            .and_then(|id| self.index_of(id))
    }

    /// Registrar names of PE homes by PE, for the report.
    fn home_names(&self, homes: &BTreeMap<PeId, usize>) -> BTreeMap<PeId, String> {
        homes
            .iter()
            .map(|(pe, i)| (*pe, self.name(*i).to_string()))
            .collect()
    }

    /// Homes every one of `view` agrees on, with every PE at each.
    fn agreed(&self, view: &View) -> Option<BTreeMap<PeId, usize>> {
        let mut agreed: Option<&BTreeMap<PeId, ServerId>> = None;
        for (_, pes) in &view.by {
            let pes = pes.as_ref().ok()?;
            if pes.keys().copied().ne(self.ids.iter().copied()) {
                return None;
            }
            match agreed {
                Some(a) if a != pes => return None,
                _ => agreed = Some(pes),
            }
        }
        agreed?
            .iter()
            .map(|(pe, home)| Some((*pe, self.index_of(*home)?)))
            .collect()
    }

    fn on_line(&mut self, line: Line, lab: &Lab, report: &Report, start: Instant) {
        tracing::debug!(from = ?line.from, event = %line.event, "child process line");
        let Some(killed) = &self.killed else {
            // Nothing to show before the kill.
            return;
        };
        let v = &line.event;
        let event = v["event"].as_str().unwrap_or("");
        if matches!(
            event,
            "registered" | "taken_over" | "reregistered" | "table_synced"
        ) {
            self.ask_now.notify_one();
        }
        match line.from {
            Source::Registrar(i) => match event {
                "peer_down" if self.index_of_json(&v["server_id"]) == Some(killed.index) => {
                    report.peer_down(
                        start,
                        self.name(i),
                        self.name(killed.index),
                        v["reason"].as_str().unwrap_or(""),
                    );
                }
                "taken_over" => {
                    let target = self.index_of_json(&v["target"]);
                    let winner = self.index_of_json(&v["winner"]);
                    report.taken_over(
                        start,
                        self.name(i),
                        target.map_or("?", |t| self.name(t)),
                        winner.map_or("?", |w| self.name(w)),
                        v["pes"].as_u64().unwrap_or(0),
                    );
                }
                _ => {}
            },
            Source::Pe(id) => {
                let registrar = v["registrar"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .and_then(|a| lab.registrar_name(a));
                let pe = lab.names().get(&id).map_or("?", String::as_str);
                match event {
                    "reregistered" => {
                        if let Some(i) = self
                            .registrars
                            .iter()
                            .position(|r| Some(&r.0) == registrar.as_ref())
                        {
                            self.registered.insert(id, i);
                        }
                        report.pe_event(start, pe, event, registrar.as_deref(), v);
                    }
                    "rehomed" => {
                        let home = self.index_of_json(&v["server_id"]).map(|i| self.name(i));
                        report.pe_event(start, pe, event, home, v);
                    }
                    "registrar_lost"
                    | "no_registrar"
                    | "refused"
                    | "registration_failed"
                    | "removed_by_registrar" => {
                        report.pe_event(start, pe, event, registrar.as_deref(), v);
                    }
                    _ => {}
                }
            }
        }
    }

    fn on_view(&mut self, view: View, lab: &Lab, report: &Report, start: Instant) {
        tracing::debug!(view = ?view.by, "PEs at the survivors");
        let Some(killed) = &self.killed else {
            return;
        };
        if self.rehomed.is_none() {
            let dead = killed.index;
            // Every PE at both survivors, the same home at both, a live
            // one; and every PE of the dead registrar registered again
            // (its own word).
            let done = self.agreed(&view).filter(|homes| {
                homes.values().all(|&h| h != dead)
                    && killed.pes.iter().all(|pe| self.registered.contains_key(pe))
            });
            if let Some(homes) = done {
                let after = view.at.saturating_duration_since(killed.at);
                let names = self.home_names(&homes);
                // A takeover's claim may win over the PE's own
                // registration elsewhere (same ownership epoch, larger
                // server id): say so.
                let mismatched: Vec<(PeId, String)> = killed
                    .pes
                    .iter()
                    .filter_map(|pe| {
                        let with = *self.registered.get(pe)?;
                        (homes.get(pe) != Some(&with)).then(|| (*pe, self.name(with).to_string()))
                    })
                    .collect();
                let survivors: Vec<&str> = view.by.iter().map(|(i, _)| self.name(*i)).collect();
                report.rehomed(
                    start,
                    lab.names(),
                    &killed.pes,
                    &names,
                    &mismatched,
                    &survivors,
                    after,
                );
                self.rehomed = Some(Rehomed { after, homes });
            }
        }
        self.last_view = Some(view);
    }
}

/// The number of PE `name` ("pe-12": 12), to list PEs in order.
fn pe_number(name: &str) -> u32 {
    name.trim_start_matches("pe-").parse().unwrap_or(u32::MAX)
}

/// Ask each of `askers` (index, pool user) for the pool.
async fn view(askers: &[(usize, PoolUser)], handle: &PoolHandle) -> View {
    let mut by = Vec::new();
    for (i, pu) in askers {
        by.push((*i, pes_at(pu, handle).await));
    }
    View {
        at: Instant::now(),
        by,
    }
}

/// The PEs one registrar hands out, fresh (not from the cache).
async fn pes_at(pu: &PoolUser, handle: &PoolHandle) -> Result<BTreeMap<PeId, ServerId>, String> {
    pu.purge(handle).await.map_err(|e| e.to_string())?;
    match pu.resolve(handle).await {
        Ok(pes) => Ok(pes
            .iter()
            .map(|p| (p.identifier, p.home_registrar))
            .collect()),
        Err(ClientError::UnknownPoolHandle(_)) => Ok(BTreeMap::new()),
        Err(e) => Err(e.to_string()),
    }
}

impl Script for RegistrarCrash {
    type Watched = Watched;

    /// Wait until the three registrars hand out every PE with the same
    /// homes, and show them.
    async fn prepare(&mut self, lab: &mut Lab, report: &Report) -> anyhow::Result<()> {
        let all: Vec<(usize, PoolUser)> = self.askers.iter().cloned().enumerate().collect();
        let mut tick = tokio::time::interval(VIEW_PERIOD);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        let homes = loop {
            let v = match tokio::time::timeout_at(deadline, async {
                tick.tick().await;
                view(&all, &self.handle).await
            })
            .await
            {
                Ok(v) => v,
                Err(_) => anyhow::bail!(
                    "the registrars did not agree on the PEs within {START_LIMIT:?}: {:?}",
                    self.last_view.as_ref().map(|v| &v.by)
                ),
            };
            if let Some(h) = self.agreed(&v) {
                break h;
            }
            self.last_view = Some(v);
        };
        self.last_view = None;
        // Their lines so far tell nothing new.
        while self.lines.try_recv().is_ok() {}
        let names: Vec<String> = self.registrars.iter().map(|r| r.0.clone()).collect();
        let by_registrar: Vec<Vec<String>> = (0..names.len())
            .map(|i| {
                let mut pes: Vec<String> = homes
                    .iter()
                    .filter(|&(_, &h)| h == i)
                    .filter_map(|(pe, _)| lab.names().get(pe).cloned())
                    .collect();
                pes.sort_by_key(|n| pe_number(n));
                pes
            })
            .collect();
        report.homes(&names, &by_registrar);
        self.homes = homes;
        Ok(())
    }

    async fn kill(&mut self, lab: &mut Lab, report: &Report, start: Instant) -> anyhow::Result<()> {
        let count = |i: usize| self.homes.values().filter(|&&h| h == i).count();
        // The home of most PEs (the first of those on a tie).
        let index = (0..self.registrars.len())
            .rev()
            .max_by_key(|&i| count(i))
            .context("no registrar to kill")?;
        let pes: Vec<PeId> = self
            .homes
            .iter()
            .filter(|&(_, &h)| h == index)
            .map(|(pe, _)| *pe)
            .collect();
        let mut pe_names: Vec<String> = pes
            .iter()
            .filter_map(|pe| lab.names().get(pe).cloned())
            .collect();
        pe_names.sort_by_key(|n| pe_number(n));
        let (name, server_id) = self
            .registrars
            .get(index)
            .cloned()
            .context("no registrar to kill")?;
        report.registrar_killing(start, &name, server_id, lab.registrar_pid(index), &pe_names);
        lab.kill_registrar(index).await?;
        self.killed = Some(Killed {
            index,
            at: Instant::now(),
            pes,
        });
        // Ask the survivors from now on.
        let survivors: Vec<(usize, PoolUser)> = self
            .askers
            .iter()
            .cloned()
            .enumerate()
            .filter(|&(i, _)| i != index)
            .collect();
        let handle = self.handle.clone();
        let now = self.ask_now.clone();
        let (tx, rx) = mpsc::channel(4);
        self.views = Some(rx);
        self.asking = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(VIEW_PERIOD);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = now.notified() => tick.reset(),
                }
                if tx.send(view(&survivors, &handle).await).await.is_err() {
                    break;
                }
            }
        }));
        Ok(())
    }

    async fn next(&mut self) -> anyhow::Result<Watched> {
        let views = async {
            match &mut self.views {
                Some(v) => v.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            l = self.lines.recv() => l.map(Watched::Line).context("the registrars' and PEs' output ended"),
            v = views => v.map(Watched::View).context("asking the survivors stopped"),
        }
    }

    fn on(&mut self, w: Watched, lab: &Lab, report: &Report, start: Instant) {
        match w {
            Watched::Line(l) => self.on_line(l, lab, report, start),
            Watched::View(v) => self.on_view(v, lab, report, start),
        }
    }

    fn settled(&self) -> bool {
        self.rehomed.is_some()
    }

    fn summary(&self, tally: &Tally, lab: &Lab, report: &Report) {
        let killed = self.killed.as_ref();
        // PEs each survivor handed out last.
        let at_survivors: BTreeMap<String, usize> = match (&self.rehomed, &self.last_view) {
            (_, Some(v)) => {
                v.by.iter()
                    .map(|(i, pes)| {
                        let n = pes
                            .as_ref()
                            .map_or(0, |p| p.keys().filter(|pe| self.ids.contains(pe)).count());
                        (self.name(*i).to_string(), n)
                    })
                    .collect()
            }
            _ => BTreeMap::new(),
        };
        let lost = at_survivors
            .values()
            .map(|&n| self.ids.len().saturating_sub(n))
            .max()
            .unwrap_or(0);
        report.summary(
            tally,
            lab.names(),
            Outcome::Rehomed {
                registrar_killed: killed.map(|k| self.name(k.index).to_string()),
                pes_of_killed: killed.map_or(0, |k| k.pes.len()),
                rehomed: self
                    .rehomed
                    .as_ref()
                    .map(|r| (r.after, self.home_names(&r.homes))),
                pes: self.ids.len(),
                lost,
                at_survivors,
            },
        );
    }

    fn unsettled(&self) -> &'static str {
        "the killed registrar's PEs were not re-homed at both survivors in time"
    }
}
