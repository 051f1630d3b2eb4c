//! The remote index: what one generation published, the account `attach` trusts.
//!
//! ```text
//! index/GGGGGGGG.json   (a text object of two lines)
//!   line 1  the index as one line of JSON (fields below)
//!   line 2  CRC32 of line 1's bytes, 8 lower-case hex digits
//! ```
//!
//! Fields: `format_version` (1), `generation`, `log_id` (the WAL's identity: which store
//! this is), `published_at_ms` (Unix time), `meta` (the store metadata file's object),
//! `catalog` (the last published catalog's object, `null` before the first), `replay_from`
//! (LSN), `layers` (each layer file's name and object), `segment_size`, `wal` (for each
//! WAL segment from the one holding `replay_from`, the object of its first `size` bytes),
//! `wal_end` (LSN: the recovery point). An object is `{key, size, crc32}`.
//!
//! Invariants it keeps (checked by [`RemoteIndex::decode`] and before encoding):
//! - There is at least one WAL segment; they are consecutive, the first holds
//!   `replay_from` (or ends exactly there), the last holds `wal_end`, and only the last
//!   may be partial.
//! - Every object key is one of this layout's (no path tricks), and layer names are
//!   unique.

use serde::{Deserialize, Serialize};

use crate::error::{RemoteError, Result};

/// The index format this build writes and reads.
pub const INDEX_FORMAT_VERSION: u32 = 1;

/// One object: its key under the location's prefix, length and CRC32.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteObject {
    /// The key under the prefix.
    pub key: String,
    /// Its length in bytes.
    pub size: u64,
    /// CRC32 of its bytes.
    pub crc32: u32,
}

/// One layer file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteLayer {
    /// Its file name in the store's `layers/`.
    pub name: String,
    /// Its object.
    pub object: RemoteObject,
}

/// The first `object.size` bytes of one WAL segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegment {
    /// The segment's start LSN.
    pub start: u64,
    /// Its object.
    pub object: RemoteObject,
}

/// What one generation published (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteIndex {
    /// [`INDEX_FORMAT_VERSION`].
    pub format_version: u32,
    /// The generation that published it.
    pub generation: u32,
    /// The store's WAL identity.
    pub log_id: u64,
    /// When it was published (Unix milliseconds).
    pub published_at_ms: u64,
    /// The store metadata file.
    pub meta: RemoteObject,
    /// The catalog, if the store had published one.
    pub catalog: Option<RemoteObject>,
    /// Replay starts after the record ending here.
    pub replay_from: u64,
    /// The catalog's layer files.
    pub layers: Vec<RemoteLayer>,
    /// The WAL's segment size.
    pub segment_size: u64,
    /// The WAL from the segment holding `replay_from`.
    pub wal: Vec<RemoteSegment>,
    /// The recovery point: every commit ending at or below it is here.
    pub wal_end: u64,
}

impl RemoteIndex {
    /// The object's bytes. Refuses (as damage) an index that breaks its invariants, so
    /// none is ever published.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        self.check().map_err(|why| RemoteError::Damaged {
            what: "index about to be published",
            name: crate::keys::index(self.generation),
            offset: 0,
            why,
        })?;
        let line = serde_json::to_string(self).map_err(|error| RemoteError::Damaged {
            what: "index about to be published",
            name: crate::keys::index(self.generation),
            offset: 0,
            why: error.to_string(),
        })?;
        Ok(crate::framing::encode(&line))
    }

    /// Reads the index object `key`; damage is an error naming it and the offset.
    pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<RemoteIndex> {
        let damaged = |offset: u64, why: String| RemoteError::Damaged {
            what: "remote object",
            name: key.to_owned(),
            offset,
            why,
        };
        let line = crate::framing::decode(bytes).map_err(|(offset, why)| damaged(offset, why))?;
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|error| damaged(error.column() as u64, error.to_string()))?;
        let found = crate::framing::format_version(&value);
        if found != Some(u64::from(INDEX_FORMAT_VERSION)) {
            return Err(damaged(
                0,
                format!(
                    "format version {} is not the one this build reads ({INDEX_FORMAT_VERSION})",
                    found.map_or_else(|| "missing".to_owned(), |v| v.to_string())
                ),
            ));
        }
        let index: RemoteIndex =
            serde_json::from_value(value).map_err(|error| damaged(0, error.to_string()))?;
        index.check().map_err(|why| damaged(0, why))?;
        Ok(index)
    }

    /// The key of every object it lists.
    pub(crate) fn keys(&self) -> std::collections::BTreeSet<String> {
        self.layers
            .iter()
            .map(|layer| &layer.object)
            .chain(self.wal.iter().map(|segment| &segment.object))
            .chain(self.catalog.iter())
            .chain(std::iter::once(&self.meta))
            .map(|object| object.key.clone())
            .collect()
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.segment_size == 0 {
            return Err("segment size 0".to_owned());
        }
        let mut names = std::collections::BTreeSet::new();
        for layer in &self.layers {
            if !names.insert(&layer.name) {
                return Err(format!("layer {} is listed twice", layer.name));
            }
            if layer.name.contains('/') || layer.name.starts_with('.') {
                return Err(format!("layer name {:?} is not a file name", layer.name));
            }
        }
        let objects = self
            .layers
            .iter()
            .map(|layer| &layer.object)
            .chain(self.wal.iter().map(|segment| &segment.object))
            .chain(self.catalog.iter())
            .chain(std::iter::once(&self.meta));
        for object in objects {
            if object
                .key
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
            {
                return Err(format!("object key {:?} is not a plain key", object.key));
            }
        }
        let (Some(first), Some(last)) = (self.wal.first(), self.wal.last()) else {
            return Err("no WAL segment".to_owned());
        };
        // A replay start at the very end of the first segment is in it: a record can fill a
        // segment to its last byte.
        if first.start > self.replay_from || first.start + self.segment_size < self.replay_from {
            return Err(format!(
                "the first WAL segment (at {:#x}) does not hold the replay start {:#x}",
                first.start, self.replay_from
            ));
        }
        for pair in self.wal.windows(2) {
            if let [before, after] = pair {
                if after.start != before.start + self.segment_size {
                    return Err(format!(
                        "WAL segments at {:#x} and {:#x} are not consecutive",
                        before.start, after.start
                    ));
                }
                if before.object.size != self.segment_size {
                    return Err(format!(
                        "WAL segment at {:#x} is partial ({} bytes) but not the last",
                        before.start, before.object.size
                    ));
                }
            }
        }
        if last.object.size > self.segment_size
            || self.wal_end > last.start + last.object.size
            || self.wal_end < self.replay_from
        {
            return Err(format!(
                "the recovery point {:#x} is not within the last WAL segment's {} bytes at {:#x}, or is below the replay start",
                self.wal_end, last.object.size, last.start
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: u64) -> RemoteObject {
        RemoteObject {
            key: key.to_owned(),
            size,
            crc32: 7,
        }
    }

    fn sample() -> RemoteIndex {
        RemoteIndex {
            format_version: INDEX_FORMAT_VERSION,
            generation: 2,
            log_id: u64::MAX - 5,
            published_at_ms: 1_700_000_000_000,
            meta: object("meta/00000007.g00000002", 20),
            catalog: Some(object("catalogs/00000007.g00000002", 900)),
            replay_from: 0x100_0100,
            layers: vec![RemoteLayer {
                name: "a.l0".to_owned(),
                object: object("layers/a.l0.00000007.g00000001", 8192),
            }],
            segment_size: 0x100_0000,
            wal: vec![
                RemoteSegment {
                    start: 0x100_0000,
                    object: object("wal/a", 0x100_0000),
                },
                RemoteSegment {
                    start: 0x200_0000,
                    object: object("wal/b", 0x1000),
                },
            ],
            wal_end: 0x200_0F00,
        }
    }

    #[test]
    fn round_trips_and_names_damage() -> Result<()> {
        let index = sample();
        let bytes = index.encode()?;
        assert_eq!(RemoteIndex::decode("index/00000002.json", &bytes)?, index);
        let mut flipped = bytes.clone();
        if let Some(byte) = flipped.get_mut(20) {
            *byte ^= 1;
        }
        let error = RemoteIndex::decode("index/00000002.json", &flipped)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("index/00000002.json") && error.contains("CRC32"),
            "{error}"
        );
        let truncated = bytes.get(..bytes.len() / 2).unwrap_or_default();
        assert!(RemoteIndex::decode("index/00000002.json", truncated).is_err());
        Ok(())
    }

    #[test]
    fn refuses_to_publish_a_broken_account() {
        let mut gap = sample();
        if let Some(segment) = gap.wal.get_mut(1) {
            segment.start += 0x100_0000;
        }
        let mut partial_middle = sample();
        if let Some(segment) = partial_middle.wal.get_mut(0) {
            segment.object.size = 10;
        }
        let mut past_end = sample();
        past_end.wal_end = 0x200_2000;
        let mut escape = sample();
        escape.meta.key = "../meta".to_owned();
        let mut twice = sample();
        twice.layers.push(
            twice
                .layers
                .first()
                .cloned()
                .unwrap_or_else(|| RemoteLayer {
                    name: String::new(),
                    object: object("x", 0),
                }),
        );
        for broken in [gap, partial_middle, past_end, escape, twice] {
            assert!(broken.encode().is_err(), "{broken:?} was encoded");
        }
    }
}
