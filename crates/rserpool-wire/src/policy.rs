//! Pool member selection policies as they appear on the wire: the nine of
//! RFC 5356 (sections 4 and 5, parameter format of RFC 5354 section 3.8),
//! RSPLIB's private types (DESIGN section 5), and unknown types kept as
//! type + bytes so that a registrar can refuse them with the right cause.
//!
//! Loads, load degradations and distance penalty factors are fractions of
//! 0xFFFFFFFF (RFC 5356 section 3.1). Semantics live in the handlespace.

use serde::Serialize;

use crate::error::{DecodeErrorKind, EncodeError};
use crate::tlv::{be32, ptype, Ctx, Tlv, Writer};

/// The values of a policy by name (RFC 5356 sections 4 and 5; the DPF
/// ones are RSPLIB's). A policy has at most one of weight, priority and
/// load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyParameters {
    /// Weight (WRR, WRAND, WRAND-DPF).
    pub weight: Option<u32>,
    /// Priority (PRIO).
    pub priority: Option<u32>,
    /// Load (the least-used family).
    pub load: Option<u32>,
    /// Load degradation (the policies with degradation, and PLU/RPLU).
    pub load_degradation: Option<u32>,
    /// Weight distance penalty factor (WRAND-DPF).
    pub weight_dpf: Option<u32>,
    /// Load distance penalty factor (LU-DPF, LUD-DPF).
    pub load_dpf: Option<u32>,
    /// Distance (the DPF policies).
    pub distance: Option<u32>,
}

impl PolicyParameters {
    /// The values present, in the order they follow the policy type on
    /// the wire (every policy's wire order is this fixed order).
    pub fn in_wire_order(&self) -> impl Iterator<Item = u32> {
        [
            self.weight,
            self.priority,
            self.load,
            self.load_degradation,
            self.weight_dpf,
            self.load_dpf,
            self.distance,
        ]
        .into_iter()
        .flatten()
    }
}

/// Policy type codes (RFC 5356 section 7.1; RSPLIB private types).
pub mod policy_type {
    /// Round Robin (RFC 5356 4.1).
    pub const ROUND_ROBIN: u32 = 0x0000_0001;
    /// Weighted Round Robin (4.2).
    pub const WEIGHTED_ROUND_ROBIN: u32 = 0x0000_0002;
    /// Random (4.3).
    pub const RANDOM: u32 = 0x0000_0003;
    /// Weighted Random (4.4).
    pub const WEIGHTED_RANDOM: u32 = 0x0000_0004;
    /// Priority (4.5).
    pub const PRIORITY: u32 = 0x0000_0005;
    /// Least Used (5.1).
    pub const LEAST_USED: u32 = 0x4000_0001;
    /// Least Used with Degradation (5.2).
    pub const LEAST_USED_DEGRADATION: u32 = 0x4000_0002;
    /// Priority Least Used (5.3).
    pub const PRIORITY_LEAST_USED: u32 = 0x4000_0003;
    /// Randomized Least Used (5.4).
    pub const RANDOMIZED_LEAST_USED: u32 = 0x4000_0004;
    /// RSPLIB: Randomized Priority Least Used.
    pub const RANDOMIZED_PRIORITY_LEAST_USED: u32 = 0xb000_1001;
    /// RSPLIB: Randomized Least Used with Degradation.
    pub const RANDOMIZED_LEAST_USED_DEGRADATION: u32 = 0xb000_1002;
    /// RSPLIB: Priority Least Used with Degradation.
    pub const PRIORITY_LEAST_USED_DEGRADATION: u32 = 0xb000_1003;
    /// RSPLIB: Randomized Priority Least Used with Degradation.
    pub const RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION: u32 = 0xb000_1004;
    /// RSPLIB: Weighted Random with Distance Penalty Factor.
    pub const WEIGHTED_RANDOM_DPF: u32 = 0xb000_2001;
    /// RSPLIB: Least Used with Distance Penalty Factor.
    pub const LEAST_USED_DPF: u32 = 0xb000_2002;
    /// RSPLIB: Least Used with Degradation and Distance Penalty Factor.
    pub const LEAST_USED_DEGRADATION_DPF: u32 = 0xb000_2003;
}

use policy_type as pt;

/// A pool member selection policy with its per-PE values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum Policy {
    /// RFC 5356 4.1.
    RoundRobin,
    /// RFC 5356 4.2.
    WeightedRoundRobin {
        /// Weight (RFC 5356 3.2).
        weight: u32,
    },
    /// RFC 5356 4.3.
    Random,
    /// RFC 5356 4.4.
    WeightedRandom {
        /// Weight.
        weight: u32,
    },
    /// RFC 5356 4.5: larger numbers are higher priorities.
    Priority {
        /// Priority.
        priority: u32,
    },
    /// RFC 5356 5.1.
    LeastUsed {
        /// Load.
        load: u32,
    },
    /// RFC 5356 5.2.
    LeastUsedDegradation {
        /// Load.
        load: u32,
        /// Load degradation.
        load_degradation: u32,
    },
    /// RFC 5356 5.3.
    PriorityLeastUsed {
        /// Load.
        load: u32,
        /// Load degradation.
        load_degradation: u32,
    },
    /// RFC 5356 5.4.
    RandomizedLeastUsed {
        /// Load.
        load: u32,
    },
    /// RSPLIB 0xb0001001. RSPLIB sends the load only; the degradation then
    /// decodes as 0 and is always encoded.
    RandomizedPriorityLeastUsed {
        /// Load.
        load: u32,
        /// Load degradation.
        load_degradation: u32,
    },
    /// RSPLIB 0xb0001002.
    RandomizedLeastUsedDegradation {
        /// Load.
        load: u32,
        /// Load degradation.
        load_degradation: u32,
    },
    /// RSPLIB 0xb0001003.
    PriorityLeastUsedDegradation {
        /// Load.
        load: u32,
        /// Load degradation.
        load_degradation: u32,
    },
    /// RSPLIB 0xb0001004.
    RandomizedPriorityLeastUsedDegradation {
        /// Load.
        load: u32,
        /// Load degradation.
        load_degradation: u32,
    },
    /// RSPLIB 0xb0002001.
    WeightedRandomDpf {
        /// Weight.
        weight: u32,
        /// Weight distance penalty factor.
        weight_dpf: u32,
        /// Distance measured by the registrar.
        distance: u32,
    },
    /// RSPLIB 0xb0002002.
    LeastUsedDpf {
        /// Load.
        load: u32,
        /// Load distance penalty factor.
        load_dpf: u32,
        /// Distance measured by the registrar.
        distance: u32,
    },
    /// RSPLIB 0xb0002003.
    LeastUsedDegradationDpf {
        /// Load.
        load: u32,
        /// Load degradation.
        load_degradation: u32,
        /// Load distance penalty factor.
        load_dpf: u32,
        /// Distance measured by the registrar.
        distance: u32,
    },
    /// A policy type this implementation does not know. It must not use
    /// one of the known type codes.
    Unknown {
        /// The policy type.
        policy_type: u32,
        /// The policy-specific data.
        #[serde(with = "crate::hex_bytes")]
        data: Vec<u8>,
    },
}

impl Policy {
    /// The policy type code.
    pub fn policy_type(&self) -> u32 {
        match self {
            Policy::RoundRobin => pt::ROUND_ROBIN,
            Policy::WeightedRoundRobin { .. } => pt::WEIGHTED_ROUND_ROBIN,
            Policy::Random => pt::RANDOM,
            Policy::WeightedRandom { .. } => pt::WEIGHTED_RANDOM,
            Policy::Priority { .. } => pt::PRIORITY,
            Policy::LeastUsed { .. } => pt::LEAST_USED,
            Policy::LeastUsedDegradation { .. } => pt::LEAST_USED_DEGRADATION,
            Policy::PriorityLeastUsed { .. } => pt::PRIORITY_LEAST_USED,
            Policy::RandomizedLeastUsed { .. } => pt::RANDOMIZED_LEAST_USED,
            Policy::RandomizedPriorityLeastUsed { .. } => pt::RANDOMIZED_PRIORITY_LEAST_USED,
            Policy::RandomizedLeastUsedDegradation { .. } => pt::RANDOMIZED_LEAST_USED_DEGRADATION,
            Policy::PriorityLeastUsedDegradation { .. } => pt::PRIORITY_LEAST_USED_DEGRADATION,
            Policy::RandomizedPriorityLeastUsedDegradation { .. } => {
                pt::RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION
            }
            Policy::WeightedRandomDpf { .. } => pt::WEIGHTED_RANDOM_DPF,
            Policy::LeastUsedDpf { .. } => pt::LEAST_USED_DPF,
            Policy::LeastUsedDegradationDpf { .. } => pt::LEAST_USED_DEGRADATION_DPF,
            Policy::Unknown { policy_type, .. } => *policy_type,
        }
    }

    /// Whether `t` is a policy type this crate decodes into a typed variant.
    pub fn is_known_type(t: u32) -> bool {
        matches!(
            t,
            pt::ROUND_ROBIN
                | pt::WEIGHTED_ROUND_ROBIN
                | pt::RANDOM
                | pt::WEIGHTED_RANDOM
                | pt::PRIORITY
                | pt::LEAST_USED
                | pt::LEAST_USED_DEGRADATION
                | pt::PRIORITY_LEAST_USED
                | pt::RANDOMIZED_LEAST_USED
                | pt::RANDOMIZED_PRIORITY_LEAST_USED
                | pt::RANDOMIZED_LEAST_USED_DEGRADATION
                | pt::PRIORITY_LEAST_USED_DEGRADATION
                | pt::RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION
                | pt::WEIGHTED_RANDOM_DPF
                | pt::LEAST_USED_DPF
                | pt::LEAST_USED_DEGRADATION_DPF
        )
    }

    /// Short name (as RSPLIB and the literature abbreviate them).
    pub fn name(&self) -> &'static str {
        match self {
            Policy::RoundRobin => "RR",
            Policy::WeightedRoundRobin { .. } => "WRR",
            Policy::Random => "RAND",
            Policy::WeightedRandom { .. } => "WRAND",
            Policy::Priority { .. } => "PRI",
            Policy::LeastUsed { .. } => "LU",
            Policy::LeastUsedDegradation { .. } => "LUD",
            Policy::PriorityLeastUsed { .. } => "PLU",
            Policy::RandomizedLeastUsed { .. } => "RLU",
            Policy::RandomizedPriorityLeastUsed { .. } => "RPLU",
            Policy::RandomizedLeastUsedDegradation { .. } => "RLUD",
            Policy::PriorityLeastUsedDegradation { .. } => "PLUD",
            Policy::RandomizedPriorityLeastUsedDegradation { .. } => "RPLUD",
            Policy::WeightedRandomDpf { .. } => "WRAND-DPF",
            Policy::LeastUsedDpf { .. } => "LU-DPF",
            Policy::LeastUsedDegradationDpf { .. } => "LUD-DPF",
            Policy::Unknown { .. } => "unknown",
        }
    }

    /// The policy's name in words (RFC 5356 section 4 and RSPLIB's), for
    /// messages to people: "round robin", "least used with degradation".
    pub fn long_name(&self) -> &'static str {
        match self {
            Policy::RoundRobin => "round robin",
            Policy::WeightedRoundRobin { .. } => "weighted round robin",
            Policy::Random => "random",
            Policy::WeightedRandom { .. } => "weighted random",
            Policy::Priority { .. } => "priority",
            Policy::LeastUsed { .. } => "least used",
            Policy::LeastUsedDegradation { .. } => "least used with degradation",
            Policy::PriorityLeastUsed { .. } => "priority least used",
            Policy::RandomizedLeastUsed { .. } => "randomized least used",
            Policy::RandomizedPriorityLeastUsed { .. } => "randomized priority least used",
            Policy::RandomizedLeastUsedDegradation { .. } => {
                "randomized least used with degradation"
            }
            Policy::PriorityLeastUsedDegradation { .. } => "priority least used with degradation",
            Policy::RandomizedPriorityLeastUsedDegradation { .. } => {
                "randomized priority least used with degradation"
            }
            Policy::WeightedRandomDpf { .. } => "weighted random with distance penalty",
            Policy::LeastUsedDpf { .. } => "least used with distance penalty",
            Policy::LeastUsedDegradationDpf { .. } => {
                "least used with degradation and distance penalty"
            }
            Policy::Unknown { .. } => "unknown policy",
        }
    }

    /// The policy's values by name; the ones a policy does not have are
    /// `None` (all of them for an unknown policy).
    pub fn parameters(&self) -> PolicyParameters {
        use Policy::*;
        let none = PolicyParameters::default();
        match *self {
            RoundRobin | Random | Unknown { .. } => none,
            WeightedRoundRobin { weight } | WeightedRandom { weight } => PolicyParameters {
                weight: Some(weight),
                ..none
            },
            Priority { priority } => PolicyParameters {
                priority: Some(priority),
                ..none
            },
            LeastUsed { load } | RandomizedLeastUsed { load } => PolicyParameters {
                load: Some(load),
                ..none
            },
            LeastUsedDegradation {
                load,
                load_degradation,
            }
            | PriorityLeastUsed {
                load,
                load_degradation,
            }
            | RandomizedPriorityLeastUsed {
                load,
                load_degradation,
            }
            | RandomizedLeastUsedDegradation {
                load,
                load_degradation,
            }
            | PriorityLeastUsedDegradation {
                load,
                load_degradation,
            }
            | RandomizedPriorityLeastUsedDegradation {
                load,
                load_degradation,
            } => PolicyParameters {
                load: Some(load),
                load_degradation: Some(load_degradation),
                ..none
            },
            WeightedRandomDpf {
                weight,
                weight_dpf,
                distance,
            } => PolicyParameters {
                weight: Some(weight),
                weight_dpf: Some(weight_dpf),
                distance: Some(distance),
                ..none
            },
            LeastUsedDpf {
                load,
                load_dpf,
                distance,
            } => PolicyParameters {
                load: Some(load),
                load_dpf: Some(load_dpf),
                distance: Some(distance),
                ..none
            },
            LeastUsedDegradationDpf {
                load,
                load_degradation,
                load_dpf,
                distance,
            } => PolicyParameters {
                load: Some(load),
                load_degradation: Some(load_degradation),
                load_dpf: Some(load_dpf),
                distance: Some(distance),
                ..none
            },
        }
    }

    /// The policy as a complete Pool Member Selection Policy parameter
    /// (RFC 5354 section 3.8), without trailing padding: the information
    /// of an Inconsistent Pooling Policy cause (section 3.12.6).
    pub fn to_tlv(&self) -> Result<Vec<u8>, EncodeError> {
        crate::tlv::encode_single(|w| self.encode(w))
    }

    /// A policy from a complete Pool Member Selection Policy parameter
    /// (its padding may follow), as [`Policy::to_tlv`] writes it.
    pub fn from_tlv(bytes: &[u8]) -> Result<Policy, crate::DecodeError> {
        crate::tlv::decode_single(
            bytes,
            &[ptype::POLICY],
            "Pool Member Selection Policy parameter",
            |ctx, tlv| Policy::decode(ctx, tlv),
        )
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let s = w.begin(ptype::POLICY);
        w.u32(self.policy_type());
        if let Policy::Unknown { policy_type, data } = self {
            if Self::is_known_type(*policy_type) {
                return Err(EncodeError::Invalid(
                    "an unknown policy with a known policy type",
                ));
            }
            w.bytes(data);
        } else {
            for x in self.parameters().in_wire_order() {
                w.u32(x);
            }
        }
        w.finish(s, "Pool Member Selection Policy parameter")
    }

    pub(crate) fn decode(ctx: &Ctx<'_>, tlv: &Tlv) -> Result<Policy, crate::DecodeError> {
        tlv.min_len("Pool Member Selection Policy parameter", 4)?;
        let v = tlv.value(ctx);
        let t = be32(v, 0);
        let data = &v[4..];
        if !Self::is_known_type(t) {
            return Ok(Policy::Unknown {
                policy_type: t,
                data: data.to_vec(),
            });
        }
        let words = |n: usize| -> Result<[u32; 4], crate::DecodeError> {
            if data.len() != 4 * n {
                return Err(tlv.err(DecodeErrorKind::InvalidLength {
                    what: "Pool Member Selection Policy parameter",
                    length: tlv.value_len() + 4,
                }));
            }
            let mut out = [0u32; 4];
            for (i, o) in out.iter_mut().enumerate().take(n) {
                *o = be32(data, 4 * i);
            }
            Ok(out)
        };
        use Policy::*;
        Ok(match t {
            pt::ROUND_ROBIN => {
                words(0)?;
                RoundRobin
            }
            pt::RANDOM => {
                words(0)?;
                Random
            }
            pt::WEIGHTED_ROUND_ROBIN => WeightedRoundRobin {
                weight: words(1)?[0],
            },
            pt::WEIGHTED_RANDOM => WeightedRandom {
                weight: words(1)?[0],
            },
            pt::PRIORITY => Priority {
                priority: words(1)?[0],
            },
            pt::LEAST_USED => LeastUsed { load: words(1)?[0] },
            pt::RANDOMIZED_LEAST_USED => RandomizedLeastUsed { load: words(1)?[0] },
            pt::RANDOMIZED_PRIORITY_LEAST_USED if data.len() == 4 => RandomizedPriorityLeastUsed {
                load: words(1)?[0],
                load_degradation: 0,
            },
            pt::WEIGHTED_RANDOM_DPF => {
                let [weight, weight_dpf, distance, _] = words(3)?;
                WeightedRandomDpf {
                    weight,
                    weight_dpf,
                    distance,
                }
            }
            pt::LEAST_USED_DPF => {
                let [load, load_dpf, distance, _] = words(3)?;
                LeastUsedDpf {
                    load,
                    load_dpf,
                    distance,
                }
            }
            pt::LEAST_USED_DEGRADATION_DPF => {
                let [load, load_degradation, load_dpf, distance] = words(4)?;
                LeastUsedDegradationDpf {
                    load,
                    load_degradation,
                    load_dpf,
                    distance,
                }
            }
            _ => {
                let [load, load_degradation, _, _] = words(2)?;
                match t {
                    pt::LEAST_USED_DEGRADATION => LeastUsedDegradation {
                        load,
                        load_degradation,
                    },
                    pt::PRIORITY_LEAST_USED => PriorityLeastUsed {
                        load,
                        load_degradation,
                    },
                    pt::RANDOMIZED_PRIORITY_LEAST_USED => RandomizedPriorityLeastUsed {
                        load,
                        load_degradation,
                    },
                    pt::RANDOMIZED_LEAST_USED_DEGRADATION => RandomizedLeastUsedDegradation {
                        load,
                        load_degradation,
                    },
                    pt::PRIORITY_LEAST_USED_DEGRADATION => PriorityLeastUsedDegradation {
                        load,
                        load_degradation,
                    },
                    _ => RandomizedPriorityLeastUsedDegradation {
                        load,
                        load_degradation,
                    },
                }
            }
        })
    }
}
