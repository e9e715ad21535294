//! What Redis answers, read into the store's types. Apart from the commands that ask,
//! because an answer of another shape (another httpsd version's script, a key an
//! operator wrote by hand) must be a [`StoreError::Protocol`] or a missing field, never
//! a panic.

use crate::store::{CoolingDown, DebugView, JobState, JobStatus, ReloadOutcome, StoreError};
use crate::store::{StoreResult, Taken};
use bytes::Bytes;
use redis::Value;
use std::collections::HashMap;
use std::time::Duration;

/// One path's row of the overview pipeline: entry (GET), error (GET), marker
/// (HGETALL), run report (GET), history (LRANGE) and cooldown (PTTL).
pub(super) type OverviewRow = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    HashMap<String, String>,
    Option<Vec<u8>>,
    Vec<Vec<u8>>,
    i64,
);

/// A path's [`DebugView`] from its overview row.
pub(super) fn debug_view(row: OverviewRow) -> DebugView {
    let (entry, error, marker, run, history, cooldown_ms) = row;
    DebugView {
        entry: entry.map(Bytes::from),
        error: error.map(Bytes::from),
        job: job_status(marker),
        run: run.map(Bytes::from),
        history: history.into_iter().map(Bytes::from).collect(),
        // PTTL: -2 no key, -1 no expiry (never set so by httpsd).
        reload_cooldown: u64::try_from(cooldown_ms).ok().map(Duration::from_millis),
    }
}

/// Reads a marker hash (HGETALL) into a status; `None` for no marker (or a state this
/// version does not know).
fn job_status(fields: HashMap<String, String>) -> Option<JobStatus> {
    let state = match fields.get("state")?.as_str() {
        "queued" => JobState::Queued,
        "running" => JobState::Running,
        _ => return None,
    };
    Some(JobStatus {
        state,
        worker_id: fields.get("worker").cloned().unwrap_or_default(),
        since: fields
            .get("since")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0),
    })
}

/// `reload.lua`'s answer: `{-1, ms left}` while cooling down, else `{cache cleared,
/// error cleared, enqueued}`.
pub(super) fn reload(answer: &[i64]) -> StoreResult<Result<ReloadOutcome, CoolingDown>> {
    match *answer {
        [-1, left] => Ok(Err(CoolingDown(Duration::from_millis(
            u64::try_from(left).unwrap_or(0),
        )))),
        [cache, error, enqueued] => Ok(Ok(ReloadOutcome {
            cache_cleared: cache > 0,
            error_cache_cleared: error > 0,
            enqueued: enqueued > 0,
        })),
        _ => Err(StoreError::Protocol(format!("reload returned {answer:?}"))),
    }
}

/// `take.lua`'s answer: a flat list of (job, lease id, attempts) triples.
pub(super) fn taken(flat: &[Value]) -> StoreResult<Vec<Taken>> {
    let protocol = |e: redis::ParsingError| StoreError::Protocol(format!("take: {e}"));
    let mut taken = Vec::with_capacity(flat.len() / 3);
    for triple in flat.chunks(3) {
        let [raw, id, attempts] = triple else {
            return Err(StoreError::Protocol(
                "take returned a partial triple".into(),
            ));
        };
        taken.push(Taken {
            raw: redis::from_redis_value_ref::<String>(raw).map_err(protocol)?,
            lease_id: redis::from_redis_value_ref::<String>(id).map_err(protocol)?,
            attempts: redis::from_redis_value_ref::<u32>(attempts).map_err(protocol)?,
        });
    }
    Ok(taken)
}
