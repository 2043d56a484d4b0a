//! Pool-user-side selection (the "Pool User Considerations" of RFC 5356
//! sections 4.x.3 and 5.x.3): how a PU picks one PE from the list a
//! handle resolution returned, and moves on when a PE fails.
//!
//! * Round robin and weighted round robin (4.1.3, 4.2.3): the list in
//!   turn, starting with the first, wrapping around.
//! * Random (4.3.3): a uniform pick from the list.
//! * Weighted random (4.4.3) and the randomized least used family (5.4.3
//!   "see WRAND", and RSPLIB's randomized types): a pick weighted like the
//!   registrar weighs them ([`crate::selection::random_weight`]).
//! * Priority (4.5.3): the active PE with the highest priority.
//! * Least used and its variants (5.1.3-5.3.3): the list in the order the
//!   registrar returned it, the first active one.
//!
//! A PE the PU found unreachable is marked and never picked again from
//! this list; when none is left the PU resolves the handle again.

use rand::{Rng, RngExt};
use rserpool_wire::{PeId, Policy, PoolElement};

use crate::selection::{self, random_weight, Engine};

/// How a PU picks from a list, by policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Cycle,
    Uniform,
    Weighted,
    HighestPriority,
    InOrder,
}

/// The PU rule follows from the registrar's engine for the policy, so the
/// two sides classify policies in one place ([`selection::engine`]).
fn rule(p: &Policy) -> Rule {
    match selection::engine(p) {
        Engine::Rotation => Rule::Cycle,
        Engine::Uniform => Rule::Uniform,
        Engine::WeightedRandom => Rule::Weighted,
        Engine::Ranked | Engine::Ordered => match p {
            Policy::WeightedRoundRobin { .. } => Rule::Cycle,
            Policy::Priority { .. } => Rule::HighestPriority,
            // The least used family, and a policy we cannot interpret:
            // trust the registrar's order.
            _ => Rule::InOrder,
        },
    }
}

/// The PU's working copy of one handle resolution.
#[derive(Debug, Clone)]
pub struct PoolUserSelection {
    elements: Vec<PoolElement>,
    failed: Vec<bool>,
    /// Next index to try under [`Rule::Cycle`].
    next: usize,
}

impl PoolUserSelection {
    /// A selection over the PEs a handle resolution returned, in the
    /// order returned.
    pub fn new(elements: Vec<PoolElement>) -> Self {
        let failed = vec![false; elements.len()];
        PoolUserSelection {
            elements,
            failed,
            next: 0,
        }
    }

    /// The PEs of the list that have not failed.
    pub fn active(&self) -> impl Iterator<Item = &PoolElement> {
        self.elements
            .iter()
            .zip(&self.failed)
            .filter(|(_, f)| !**f)
            .map(|(e, _)| e)
    }

    /// Whether every PE of the list failed (or it was empty): time to
    /// resolve the handle again.
    pub fn is_exhausted(&self) -> bool {
        self.failed.iter().all(|f| *f)
    }

    /// Mark a PE unreachable. Returns false if it is not in the list.
    pub fn mark_failed(&mut self, identifier: PeId) -> bool {
        let mut found = false;
        for (e, f) in self.elements.iter().zip(self.failed.iter_mut()) {
            if e.identifier == identifier {
                *f = true;
                found = true;
            }
        }
        found
    }

    /// Pick the PE to use for the next request, by the pool's policy
    /// (the list's first PE carries it). `None` when all failed.
    pub fn select(&mut self, rng: &mut impl Rng) -> Option<&PoolElement> {
        let policy = &self.elements.first()?.policy;
        let i = match rule(policy) {
            Rule::Cycle => self.cycle()?,
            Rule::InOrder => self.failed.iter().position(|f| !f)?,
            Rule::HighestPriority => self.highest_priority()?,
            Rule::Uniform => self.weighted(rng, |_| 1)?,
            Rule::Weighted => self.weighted(rng, |p| random_weight(p, 0, dpf_distance(p)))?,
        };
        self.elements.get(i)
    }

    fn cycle(&mut self) -> Option<usize> {
        let n = self.elements.len();
        let i = (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| !self.failed[i])?;
        self.next = (i + 1) % n;
        Some(i)
    }

    fn highest_priority(&self) -> Option<usize> {
        let prio = |p: &Policy| match *p {
            Policy::Priority { priority } => priority,
            _ => 0,
        };
        // The first of the highest, so that ties keep the registrar's order.
        self.elements
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.failed[*i])
            .fold(None, |best: Option<(usize, u32)>, (i, e)| {
                let p = prio(&e.policy);
                match best {
                    Some((_, b)) if b >= p => best,
                    _ => Some((i, p)),
                }
            })
            .map(|(i, _)| i)
    }

    /// A pick among the active PEs with probability proportional to
    /// `weight`; if every active PE weighs 0, the first active one.
    fn weighted(&self, rng: &mut impl Rng, weight: impl Fn(&Policy) -> u64) -> Option<usize> {
        let candidates = || {
            self.elements
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.failed[*i])
                .map(|(i, e)| (i, weight(&e.policy)))
        };
        let total: u64 = candidates().map(|(_, w)| w).sum();
        if total == 0 {
            return candidates().map(|(i, _)| i).next();
        }
        let mut t = rng.random_range(0..total);
        for (i, w) in candidates() {
            if t < w {
                return Some(i);
            }
            t -= w;
        }
        None
    }
}

/// The distance a weighted random DPF policy parameter carries (what the
/// registrar measured, RSPLIB's convention); 0 for the others.
fn dpf_distance(p: &Policy) -> u32 {
    match *p {
        Policy::WeightedRandomDpf { distance, .. } => distance,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    use super::*;
    use crate::tests::pe;

    fn picks(s: &mut PoolUserSelection, rng: &mut SmallRng, n: usize) -> Vec<u32> {
        (0..n)
            .map(|_| s.select(rng).map_or(0, |e| e.identifier.get()))
            .collect()
    }

    #[test]
    fn round_robin_cycles_from_the_first_and_skips_failed() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut s = PoolUserSelection::new((1..=3).map(|i| pe(i, Policy::RoundRobin)).collect());
        assert_eq!(picks(&mut s, &mut rng, 4), vec![1, 2, 3, 1]);
        assert!(s.mark_failed(PeId::new(3)));
        assert_eq!(picks(&mut s, &mut rng, 3), vec![2, 1, 2]);
        assert!(s.mark_failed(PeId::new(1)) && s.mark_failed(PeId::new(2)));
        assert!(s.is_exhausted());
        assert!(s.select(&mut rng).is_none());
        assert!(!s.mark_failed(PeId::new(9)));
    }

    #[test]
    fn least_used_takes_the_first_active_in_the_returned_order() {
        let mut rng = SmallRng::seed_from_u64(1);
        let lu = |load| Policy::LeastUsed { load };
        let mut s = PoolUserSelection::new(vec![pe(4, lu(1)), pe(2, lu(5)), pe(9, lu(7))]);
        assert_eq!(picks(&mut s, &mut rng, 3), vec![4, 4, 4]);
        s.mark_failed(PeId::new(4));
        assert_eq!(picks(&mut s, &mut rng, 2), vec![2, 2]);
    }

    #[test]
    fn priority_takes_the_highest_active() {
        let mut rng = SmallRng::seed_from_u64(1);
        let pr = |priority| Policy::Priority { priority };
        let mut s = PoolUserSelection::new(vec![pe(1, pr(3)), pe(2, pr(8)), pe(3, pr(8))]);
        assert_eq!(picks(&mut s, &mut rng, 2), vec![2, 2]);
        s.mark_failed(PeId::new(2));
        assert_eq!(picks(&mut s, &mut rng, 1), vec![3]);
        s.mark_failed(PeId::new(3));
        assert_eq!(picks(&mut s, &mut rng, 1), vec![1]);
    }

    #[test]
    fn weighted_random_follows_weights_among_the_active() {
        let mut rng = SmallRng::seed_from_u64(3);
        let w = |weight| Policy::WeightedRandom { weight };
        let mut s = PoolUserSelection::new(vec![pe(1, w(1)), pe(2, w(3)), pe(3, w(0))]);
        let mut count = [0u32; 4];
        for id in picks(&mut s, &mut rng, 20_000) {
            count[id as usize] += 1;
        }
        assert_eq!(count[3], 0, "weight 0 is never picked");
        let share = f64::from(count[2]) / 20_000.0;
        assert!((share - 0.75).abs() < 0.015, "share {share}");
        s.mark_failed(PeId::new(2));
        assert!(picks(&mut s, &mut rng, 100).iter().all(|&id| id == 1));
        s.mark_failed(PeId::new(1));
        // Only a zero-weight PE is left: still usable.
        assert_eq!(picks(&mut s, &mut rng, 1), vec![3]);
    }

    #[test]
    fn random_is_uniform_over_the_active() {
        let mut rng = SmallRng::seed_from_u64(5);
        let mut s = PoolUserSelection::new((1..=4).map(|i| pe(i, Policy::Random)).collect());
        s.mark_failed(PeId::new(4));
        let mut count = [0u32; 5];
        for id in picks(&mut s, &mut rng, 30_000) {
            count[id as usize] += 1;
        }
        assert_eq!(count[4], 0);
        for c in &count[1..4] {
            assert!(
                (f64::from(*c) / 30_000.0 - 1.0 / 3.0).abs() < 0.015,
                "{count:?}"
            );
        }
    }

    #[test]
    fn an_empty_list_is_exhausted() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut s = PoolUserSelection::new(Vec::new());
        assert!(s.is_exhausted());
        assert!(s.select(&mut rng).is_none());
    }
}
