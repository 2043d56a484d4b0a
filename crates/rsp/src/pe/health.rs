//! The health gate of `rsp pe register` (sans-IO): check results in,
//! "register" or "deregister" out. A service is registered once its
//! first check passes; a registered one is deregistered after
//! `failures` failed checks in a row; a deregistered one (or one that
//! was down at start) is registered again after `successes` passed
//! checks in a row. The counts damp a flapping service, as the rise and
//! fall counts of load-balancer health checks do.

/// How many results in a row change the verdict (each at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Failed checks in a row that deregister a registered service.
    pub failures: u32,
    /// Passed checks in a row that register an unhealthy service again.
    pub successes: u32,
}

/// A change of verdict: what the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Register: the first check passed, or `passes` in a row after the
    /// service was unhealthy (`recovered`).
    Healthy {
        /// Passed checks in a row.
        passes: u32,
        /// Whether the service had been found unhealthy before.
        recovered: bool,
    },
    /// Deregister (or stay unregistered): `failures` failed checks in a
    /// row while healthy, or the first failure before any check passed.
    Unhealthy {
        /// Failed checks in a row.
        failures: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No result yet: the service is not registered.
    Unknown,
    /// Registered; `failures` in a row so far.
    Healthy { failures: u32 },
    /// Not registered; `passes` in a row so far.
    Unhealthy { passes: u32 },
}

/// Consecutive check results, and the verdict they give.
#[derive(Debug, Clone)]
pub struct HealthGate {
    thresholds: Thresholds,
    state: State,
}

impl HealthGate {
    /// A gate with no result yet (the service is not registered).
    pub fn new(thresholds: Thresholds) -> Self {
        HealthGate {
            thresholds: Thresholds {
                failures: thresholds.failures.max(1),
                successes: thresholds.successes.max(1),
            },
            state: State::Unknown,
        }
    }

    /// Record one check result; a change of verdict, if it makes one.
    pub fn record(&mut self, passed: bool) -> Option<Change> {
        let t = self.thresholds;
        let (state, change) = match (self.state, passed) {
            (State::Unknown, true) => (
                State::Healthy { failures: 0 },
                Some(Change::Healthy {
                    passes: 1,
                    recovered: false,
                }),
            ),
            (State::Unknown, false) => (
                State::Unhealthy { passes: 0 },
                Some(Change::Unhealthy { failures: 1 }),
            ),
            (State::Healthy { .. }, true) => (State::Healthy { failures: 0 }, None),
            (State::Healthy { failures }, false) if failures + 1 >= t.failures => (
                State::Unhealthy { passes: 0 },
                Some(Change::Unhealthy {
                    failures: failures + 1,
                }),
            ),
            (State::Healthy { failures }, false) => (
                State::Healthy {
                    failures: failures + 1,
                },
                None,
            ),
            (State::Unhealthy { passes }, true) if passes + 1 >= t.successes => (
                State::Healthy { failures: 0 },
                Some(Change::Healthy {
                    passes: passes + 1,
                    recovered: true,
                }),
            ),
            (State::Unhealthy { passes }, true) => (State::Unhealthy { passes: passes + 1 }, None),
            (State::Unhealthy { .. }, false) => (State::Unhealthy { passes: 0 }, None),
        };
        self.state = state;
        change
    }

    /// Failed checks in a row while still healthy (a warning, not yet a
    /// deregistration).
    pub fn failures_so_far(&self) -> u32 {
        match self.state {
            State::Healthy { failures } => failures,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(failures: u32, successes: u32) -> HealthGate {
        HealthGate::new(Thresholds {
            failures,
            successes,
        })
    }

    fn feed(g: &mut HealthGate, results: &str) -> Vec<Option<Change>> {
        results.chars().map(|c| g.record(c == '+')).collect()
    }

    const UP: Option<Change> = Some(Change::Healthy {
        passes: 1,
        recovered: false,
    });

    #[test]
    fn the_first_pass_registers_at_once() {
        let mut g = gate(3, 2);
        assert_eq!(feed(&mut g, "+++"), vec![UP, None, None]);
    }

    #[test]
    fn a_service_down_at_start_is_reported_once_and_registered_after_the_rise_count() {
        let mut g = gate(3, 2);
        assert_eq!(
            feed(&mut g, "--+-++"),
            vec![
                Some(Change::Unhealthy { failures: 1 }),
                None,
                None,
                None,
                None,
                Some(Change::Healthy {
                    passes: 2,
                    recovered: true
                }),
            ]
        );
    }

    #[test]
    fn only_failures_in_a_row_deregister() {
        let mut g = gate(3, 1);
        assert_eq!(feed(&mut g, "+--+--")[1..], [None; 5]);
        assert_eq!(g.failures_so_far(), 2);
        assert_eq!(g.record(false), Some(Change::Unhealthy { failures: 3 }));
        assert_eq!(g.failures_so_far(), 0);
        // Down: more failures change nothing; one pass (successes = 1)
        // registers again.
        assert_eq!(feed(&mut g, "--"), vec![None, None]);
        assert_eq!(
            g.record(true),
            Some(Change::Healthy {
                passes: 1,
                recovered: true
            })
        );
    }

    #[test]
    fn thresholds_of_one_follow_every_change_and_zero_counts_as_one() {
        let mut g = gate(0, 0);
        assert_eq!(
            feed(&mut g, "+-+"),
            vec![
                UP,
                Some(Change::Unhealthy { failures: 1 }),
                Some(Change::Healthy {
                    passes: 1,
                    recovered: true
                })
            ]
        );
    }
}
