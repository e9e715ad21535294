//! A CPU-bound generator for benchmarks: `?n=<iterations>` rounds of a hash mix, then
//! one target carrying the result (so the work cannot be optimised away).

use generator_sdk::{Params, Result, TargetGroup};

fn generate(params: &Params) -> Result<Vec<TargetGroup>> {
    let n: u64 = params.parse("n")?.unwrap_or(5_000_000);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..n {
        h ^= i & 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
        h = h.rotate_left(5) ^ (h >> 7);
    }
    Ok(vec![TargetGroup::new().target("bench:1").label("hash", format!("{h:016x}"))])
}

generator_sdk::export_generator!(generate);
