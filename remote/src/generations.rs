//! Generations: a process claims one above every generation at a location before it writes
//! there, and checks that none newer appeared before it publishes an index (Neon's
//! generations, without a control plane: the bucket's markers are the record).
//!
//! Claiming writes `generations/G` only if it does not exist (a conditional put), so two
//! processes claiming at once never both get G; one retries with G + 1. The claim then
//! reads its marker back and counts only if its own body (with a random nonce) is there:
//! a server whose conditional put checks and then writes (s3s-fs) can let both puts
//! succeed, and the later one wins. That narrows such a server's race to the moment
//! between one claim's read-back and the other's write; on S3 the put alone is atomic.

use bytes::Bytes;

use crate::bucket::Bucket;
use crate::error::{RemoteError, Result};
use crate::keys;

/// How many times a claim retries after losing a race for the same number.
const CLAIM_ATTEMPTS: u32 = 16;

/// The newest generation at the location: the highest marker or index.
pub(crate) fn newest(bucket: &Bucket) -> Result<Option<u32>> {
    let markers = bucket
        .list(keys::GENERATIONS_DIR)?
        .iter()
        .filter_map(|name| keys::parse_generation_marker(name))
        .max();
    let indexes = newest_index(bucket)?;
    Ok(markers.max(indexes))
}

/// The generation of the newest index at the location.
pub(crate) fn newest_index(bucket: &Bucket) -> Result<Option<u32>> {
    Ok(bucket
        .list(keys::INDEX_DIR)?
        .iter()
        .filter_map(|name| keys::parse_index(name))
        .max())
}

/// Claims a generation above every one at the location.
pub(crate) fn claim(bucket: &Bucket, why: &str) -> Result<u32> {
    let mut next = newest(bucket)?.map_or(1, |newest| newest.saturating_add(1));
    for _ in 0..CLAIM_ATTEMPTS {
        let body = format!(
            "{{\"generation\":{next},\"claimed_by\":\"{why}\",\"pid\":{},\"nonce\":{}}}\n",
            std::process::id(),
            crate::sync::random_u64()
        );
        let marker = keys::generation_marker(next);
        // Read back: a server whose conditional put is not atomic (s3s-fs checks, then
        // writes) can let two claims of one number both succeed; the later write wins,
        // and the claim whose body is not there lost (a review saw two attaches share a
        // generation).
        if bucket.put_new(&marker, Bytes::from(body.clone()))?
            && bucket
                .get(&marker)?
                .is_some_and(|there| there == body.as_bytes())
        {
            tracing::info!(location = %bucket.location().url(), generation = next, why, "claimed a remote generation");
            return Ok(next);
        }
        next = next.saturating_add(1);
    }
    Err(RemoteError::InvalidLocation {
        location: bucket.location().url(),
        why: format!(
            "{CLAIM_ATTEMPTS} generation claims in a row lost a race with other processes"
        ),
    })
}

/// Refuses with `Fenced` if a generation above `mine` exists.
pub(crate) fn check_current(bucket: &Bucket, mine: u32) -> Result<()> {
    match newest(bucket)? {
        Some(newer) if newer > mine => Err(RemoteError::Fenced {
            location: bucket.location().url(),
            mine,
            newer,
            claimed_by: claimant(bucket, newer),
        }),
        _ => Ok(()),
    }
}

/// Who claimed generation `generation`, in words, from its marker: "an attach (process
/// 12)" (a marker's body is `claim`'s JSON; what cannot be read is said so).
fn claimant(bucket: &Bucket, generation: u32) -> String {
    let body = match bucket.get(&keys::generation_marker(generation)) {
        Ok(Some(body)) => body,
        Ok(None) => return "a process whose marker is gone (only its index is there)".to_owned(),
        Err(error) => return format!("a process whose marker could not be read ({error})"),
    };
    let Ok(marker) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return "a process whose marker is not JSON".to_owned();
    };
    let what = match marker.get("claimed_by").and_then(serde_json::Value::as_str) {
        Some("sync") => "a first sync of a store".to_owned(),
        Some("attach") => "an attach".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "a process that did not say why".to_owned(),
    };
    match marker.get("pid").and_then(serde_json::Value::as_u64) {
        Some(pid) => format!("{what} (process {pid})"),
        None => what,
    }
}
