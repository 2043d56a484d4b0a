//! Registrar-side pool member selection (RFC 5356 sections 4 and 5, and
//! RSPLIB's private types of DESIGN section 5), with one of five engines
//! per pool, each O(log n) or better per PE touched:
//!
//! * **Rotation** (round robin) walks the members in identifier order
//!   from a cursor and moves the cursor past the head it returned: the
//!   head advances by one element (RFC 5356 4.1.2) with no update at all.
//! * **Ranked** policies (priority, least used without degradation) keep
//!   their PEs in a sorted set by `(key, id)`; a resolution returns the
//!   best key's PEs starting after the last head (the round robin among
//!   equal loads of RFC 5356 5.1.2), then the next keys, and changes
//!   nothing but that cursor.
//! * **Ordered** policies (weighted round robin, degradation) keep their
//!   PEs in a sorted set by `(key, order, id)` and return the first `n`.
//!   The key is the policy value (load + degradation, or a
//!   stride-scheduling pass for weighted round robin) and changes as PEs
//!   are handed out; `order` rotates PEs of equal key: after a resolution
//!   the first PE returned moves behind its equals.
//! * **Uniform** (random) keeps the members in a dense array and draws
//!   `n` distinct ones by a partial Fisher-Yates shuffle (RFC 5356 4.3.2).
//! * **Weighted random** policies keep a Fenwick tree of weights and draw
//!   `n` distinct PEs with probability proportional to their weight
//!   (RFC 5356 4.4.2, 5.4.2).
//!
//! Degradation policies count how often each PE was handed out since it
//! last (re-)registered (RFC 5356 5.2.2) and include
//! `counter x load degradation` in the key or weight.

use rserpool_wire::Policy;

/// The full scale of loads, degradations and distance penalty factors.
pub const MAX_LOAD: u64 = 0xffff_ffff;

/// Stride scheduling constant for weighted round robin: a PE of weight w
/// advances its pass by `STRIDE / w` when it heads a resolution.
const STRIDE: u64 = 1 << 40;

/// Which engine a policy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Round robin over the members in identifier order: a cursor names
    /// the next head, and nothing else changes on a resolution.
    Rotation,
    /// Sorted by a key that a resolution does not change (priority, load);
    /// round robin among the PEs of the best key by a cursor.
    Ranked,
    /// Sorted by a key that handing a PE out changes (weighted round robin
    /// pass, degradation); round robin among equal keys.
    Ordered,
    /// Uniform random without replacement (a partial shuffle).
    Uniform,
    /// Weighted random without replacement.
    WeightedRandom,
}

/// The engine of a policy.
pub fn engine(p: &Policy) -> Engine {
    use Policy::*;
    match p {
        RoundRobin => Engine::Rotation,
        Random => Engine::Uniform,
        WeightedRandom { .. }
        | RandomizedLeastUsed { .. }
        | RandomizedPriorityLeastUsed { .. }
        | RandomizedLeastUsedDegradation { .. }
        | RandomizedPriorityLeastUsedDegradation { .. }
        | WeightedRandomDpf { .. } => Engine::WeightedRandom,
        Priority { .. } | LeastUsed { .. } | PriorityLeastUsed { .. } | LeastUsedDpf { .. } => {
            Engine::Ranked
        }
        _ => Engine::Ordered,
    }
}

/// Whether the policy's key or weight depends on the degradation counter.
pub fn uses_degradation(p: &Policy) -> bool {
    use Policy::*;
    matches!(
        p,
        LeastUsedDegradation { .. }
            | PriorityLeastUsedDegradation { .. }
            | RandomizedLeastUsedDegradation { .. }
            | RandomizedPriorityLeastUsedDegradation { .. }
            | LeastUsedDegradationDpf { .. }
    )
}

/// Distance penalty in load units: `distance x dpf`, where the distance
/// penalty factor is the load added per unit of distance (a fraction of
/// [`MAX_LOAD`]).
fn penalty(dpf: u32, distance: u32) -> u64 {
    u64::from(dpf) * u64::from(distance)
}

/// Sort key of a PE under an ordered policy (lower is preferred).
/// `pass` is the weighted round robin pass; `counter` the degradation
/// counter; `distance` what the registrar measured to the PE.
pub fn order_key(p: &Policy, counter: u32, distance: u32, pass: u64) -> u64 {
    use Policy::*;
    let c = u64::from(counter);
    match *p {
        RoundRobin => 0,
        WeightedRoundRobin { .. } => pass,
        Priority { priority } => u64::from(u32::MAX - priority),
        LeastUsed { load } => u64::from(load),
        LeastUsedDegradation {
            load,
            load_degradation,
        } => u64::from(load) + c * u64::from(load_degradation),
        PriorityLeastUsed {
            load,
            load_degradation,
        } => u64::from(load) + u64::from(load_degradation),
        PriorityLeastUsedDegradation {
            load,
            load_degradation,
        } => u64::from(load) + (c + 1) * u64::from(load_degradation),
        LeastUsedDpf {
            load,
            load_dpf,
            distance: _,
        } => u64::from(load) + penalty(load_dpf, distance),
        LeastUsedDegradationDpf {
            load,
            load_degradation,
            load_dpf,
            distance: _,
        } => u64::from(load) + c * u64::from(load_degradation) + penalty(load_dpf, distance),
        // Random policies and unknown types never reach an ordered pool;
        // treat them as round robin.
        _ => 0,
    }
}

/// How far a weighted round robin PE's pass advances when it heads a list.
pub fn wrr_stride(p: &Policy) -> u64 {
    match *p {
        Policy::WeightedRoundRobin { weight } => STRIDE / u64::from(weight.max(1)),
        _ => 0,
    }
}

/// Weight of a PE under a weighted random policy. Only an explicit
/// weighted random weight of 0 means "never picked" (a PE draining).
pub fn random_weight(p: &Policy, counter: u32, distance: u32) -> u64 {
    use Policy::*;
    let c = u64::from(counter);
    // At least 1: a pool whose PEs are all fully loaded still answers
    // (uniformly) instead of returning nothing.
    let unload = |used: u64| MAX_LOAD.saturating_sub(used).max(1);
    match *p {
        Random => 1,
        WeightedRandom { weight } => u64::from(weight),
        RandomizedLeastUsed { load } => unload(u64::from(load)),
        RandomizedPriorityLeastUsed {
            load,
            load_degradation,
        } => unload(u64::from(load) + u64::from(load_degradation)),
        RandomizedLeastUsedDegradation {
            load,
            load_degradation,
        } => unload(u64::from(load) + c * u64::from(load_degradation)),
        RandomizedPriorityLeastUsedDegradation {
            load,
            load_degradation,
        } => unload(u64::from(load) + (c + 1) * u64::from(load_degradation)),
        WeightedRandomDpf {
            weight,
            weight_dpf,
            distance: _,
        } => {
            // The weight shrinks by the fraction `distance x dpf / MAX_LOAD`
            // (at most all of it), but never below 1.
            let w = u64::from(weight);
            if w == 0 {
                return 0;
            }
            let fraction = penalty(weight_dpf, distance).min(MAX_LOAD);
            let cut = (u128::from(w) * u128::from(fraction) / u128::from(MAX_LOAD)) as u64;
            (w - cut).max(1)
        }
        _ => 1,
    }
}
