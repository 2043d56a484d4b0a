//! ASAP decoding: never panics, and whatever decodes round-trips
//! (see `common::round_trip`).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rserpool_wire::AsapMessage;

fuzz_target!(|data: &[u8]| common::round_trip::<AsapMessage>(data));
