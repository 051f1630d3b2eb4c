//! Scrubbing a location: the objects no index lists (left by a crash between uploading
//! and publishing, or by a deletion a crash cut short), listed and removed. Never removes
//! an object the newest index lists, a generation marker, the newest index, an object of
//! a generation newer than the newest index's (a process that attached and has not
//! published yet), one younger than `min_age` (an upload in flight), or one whose key is
//! not of this layout (another store's, synced to a prefix inside this one).

use std::time::{Duration, SystemTime};

use crate::bucket::Bucket;
use crate::error::Result;
use crate::generations;
use crate::keys;
use crate::location::RemoteLocation;
use crate::sync::read_index;

/// The directories of data objects.
const DATA_DIRS: [&str; 4] = ["layers", "wal", "catalogs", "meta"];

/// What a scrub found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrubReport {
    /// The location.
    pub location: String,
    /// The generation of the newest index (`None`: there is none).
    pub index_generation: Option<u32>,
    /// Objects the newest index lists.
    pub listed: usize,
    /// Keys (under the prefix) of the objects no index lists that were old enough.
    pub unlisted: Vec<String>,
    /// Unlisted objects kept because they are younger than the minimum age or belong to a
    /// newer generation.
    pub kept: usize,
    /// Whether `unlisted` was removed (false for a dry run).
    pub removed: bool,
}

/// Scrubs `location` (see the module docs); `remove: false` only lists.
pub fn scrub(location: &RemoteLocation, min_age: Duration, remove: bool) -> Result<ScrubReport> {
    let bucket = Bucket::connect(location)?;
    let index_generation = generations::newest_index(&bucket)?;
    let index = match index_generation {
        Some(generation) => Some(read_index(&bucket, generation)?),
        None => None,
    };
    let listed = index.as_ref().map(|index| index.keys()).unwrap_or_default();
    let newest = index_generation.unwrap_or(0);
    let now = SystemTime::now();
    let mut unlisted = Vec::new();
    let mut kept = 0;
    let mut candidates = Vec::new();
    for dir in DATA_DIRS {
        for (name, modified) in bucket.list_with_times(dir)? {
            // Only keys this layout writes: one name, carrying a generation. Anything
            // deeper belongs to something else, such as a store synced to a prefix
            // inside this one (a review found scrub deleting such a store whole).
            let key = format!("{dir}/{name}");
            if !name.contains('/') && keys::generation_of(&key).is_some() {
                candidates.push((key, modified));
            }
        }
    }
    for (name, modified) in bucket.list_with_times(keys::INDEX_DIR)? {
        if !name.contains('/')
            && keys::parse_index(&name).is_some_and(|generation| generation < newest)
        {
            candidates.push((format!("{}/{name}", keys::INDEX_DIR), modified));
        }
    }
    for (key, modified) in candidates {
        if listed.contains(&key) {
            continue;
        }
        let young = now.duration_since(modified).unwrap_or_default() < min_age;
        let newer = keys::generation_of(&key).is_some_and(|generation| generation > newest);
        if young || newer {
            kept += 1;
        } else {
            unlisted.push(key);
        }
    }
    if remove {
        for key in &unlisted {
            bucket.delete(key)?;
        }
    }
    Ok(ScrubReport {
        location: location.url(),
        index_generation,
        listed: listed.len(),
        unlisted: unlisted.iter().map(|key| location.key(key)).collect(),
        kept,
        removed: remove,
    })
}
