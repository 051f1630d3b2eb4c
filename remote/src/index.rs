//! The remote index: what one generation published, the account `attach` trusts.
//!
//! ```text
//! index/GGGGGGGG.json   (a text object of two lines)
//!   line 1  the index as one line of JSON (fields below)
//!   line 2  CRC32 of line 1's bytes, 8 lower-case hex digits
//! ```
//!
//! Fields: `format_version` (2), `generation`, `log_id` (the WAL's identity: which store
//! this is), `published_at_ms` (Unix time), `meta` (the store metadata file's object),
//! `catalog` (the last published catalog's object, `null` before the first), `replay_from`
//! (LSN), `layers` (each layer file's name and object), `segment_size`, `wal` (the WAL
//! segments from the one holding `replay_from`, each in one or more pieces: a piece is
//! the segment's bytes from `offset` on, `object.size` of them), `wal_end` (LSN: the
//! recovery point), `publish_id` (a random number drawn for each index published, absent
//! in older ones). An object is `{key, size, crc32}`. Version 1, which this build still
//! reads, had one piece per segment and no `offset`. Pieces let a sync upload only what a
//! segment gained since the last one.
//!
//! Invariants it keeps (checked by [`RemoteIndex::decode`] and before encoding):
//! - There is at least one WAL segment; they are consecutive, the first holds
//!   `replay_from` (or ends exactly there), the last holds `wal_end`, and only the last
//!   may be partial. A segment's pieces are in order, the first at offset 0 and each
//!   starting where the one before ends, all within the segment.
//! - Every object key is one of this layout's (no path tricks), and layer names are
//!   unique.

use serde::{Deserialize, Serialize};

use crate::error::{RemoteError, Result};

/// The index format this build writes (it reads this one and version 1).
pub const INDEX_FORMAT_VERSION: u32 = 2;

/// The older index format this build still reads.
const OLDEST_READABLE_FORMAT: u32 = 1;

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

/// A piece of one WAL segment: its `object.size` bytes from `offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegment {
    /// The segment's start LSN.
    pub start: u64,
    /// Where in the segment the piece starts (0 in a version 1 index).
    #[serde(default)]
    pub offset: u64,
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
    /// Drawn at random for each index published (absent in indexes published before it
    /// was): with `wal_end`, which publication of the store this is (see [`IndexMark`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_id: Option<u64>,
}

/// Which publication an index is: a copy of a store (a directory) remembers the mark of
/// the index it last published or attached from, and publishes over the location's
/// newest index only if that index is one it knows (`sync`): so a stale copy of the
/// directory, or a second copy writing beside it, never rolls the bucket back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMark {
    /// The index's generation.
    pub generation: u32,
    /// Its recovery point.
    pub wal_end: u64,
    /// Its publish id (`None` for an index published before there were any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_id: Option<u64>,
}

impl RemoteIndex {
    /// Which publication this is.
    pub fn mark(&self) -> IndexMark {
        IndexMark {
            generation: self.generation,
            wal_end: self.wal_end,
            publish_id: self.publish_id,
        }
    }

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
        let readable = u64::from(OLDEST_READABLE_FORMAT)..=u64::from(INDEX_FORMAT_VERSION);
        if !found.is_some_and(|version| readable.contains(&version)) {
            return Err(damaged(
                0,
                format!(
                    "format version {} is not one this build reads ({OLDEST_READABLE_FORMAT} to {INDEX_FORMAT_VERSION})",
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

    /// Each WAL segment's start and the bytes its pieces hold, checking that the pieces of
    /// each are in order, contiguous from offset 0 and within the segment.
    fn segments(&self) -> std::result::Result<Vec<(u64, u64)>, String> {
        let mut segments: Vec<(u64, u64)> = Vec::new();
        for piece in &self.wal {
            let held = match segments.last_mut() {
                Some((start, held)) if *start == piece.start => held,
                _ => {
                    segments.push((piece.start, 0));
                    &mut segments.last_mut().ok_or("no segment")?.1
                }
            };
            if piece.offset != *held {
                return Err(format!(
                    "the WAL piece of segment {:#x} at offset {:#x} does not start where the one before ends ({:#x})",
                    piece.start, piece.offset, *held
                ));
            }
            *held = held
                .checked_add(piece.object.size)
                .filter(|held| *held <= self.segment_size)
                .ok_or_else(|| {
                    format!(
                        "the WAL pieces of segment {:#x} run past its {} bytes",
                        piece.start, self.segment_size
                    )
                })?;
        }
        Ok(segments)
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
        let segments = self.segments()?;
        let (Some(&(first, _)), Some(&(last, last_len))) = (segments.first(), segments.last())
        else {
            return Err("no WAL segment".to_owned());
        };
        // A replay start at the very end of the first segment is in it: a record can fill a
        // segment to its last byte.
        if first > self.replay_from || first + self.segment_size < self.replay_from {
            return Err(format!(
                "the first WAL segment (at {first:#x}) does not hold the replay start {:#x}",
                self.replay_from
            ));
        }
        for pair in segments.windows(2) {
            if let [(before, before_len), (after, _)] = pair {
                if *after != before + self.segment_size {
                    return Err(format!(
                        "WAL segments at {before:#x} and {after:#x} are not consecutive"
                    ));
                }
                if *before_len != self.segment_size {
                    return Err(format!(
                        "WAL segment at {before:#x} is partial ({before_len} bytes) but not the last"
                    ));
                }
            }
        }
        if self.wal_end > last + last_len || self.wal_end < self.replay_from {
            return Err(format!(
                "the recovery point {:#x} is not within the last WAL segment's {last_len} bytes at {last:#x}, or is below the replay start",
                self.wal_end
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
            publish_id: Some(42),
            wal: vec![
                RemoteSegment {
                    start: 0x100_0000,
                    offset: 0,
                    object: object("wal/a", 0x100_0000),
                },
                RemoteSegment {
                    start: 0x200_0000,
                    offset: 0,
                    object: object("wal/b", 0x800),
                },
                RemoteSegment {
                    start: 0x200_0000,
                    offset: 0x800,
                    object: object("wal/c", 0x800),
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
    fn reads_a_version_1_index_as_one_piece_per_segment() -> Result<()> {
        let mut index = sample();
        index.wal.truncate(2);
        if let Some(last) = index.wal.get_mut(1) {
            last.object.size = 0x1000;
        }
        index.format_version = 1;
        let mut value = serde_json::to_value(&index).map_err(|error| RemoteError::Stopped {
            location: error.to_string(),
        })?;
        if let Some(pieces) = value.get_mut("wal").and_then(|wal| wal.as_array_mut()) {
            for piece in pieces {
                if let Some(piece) = piece.as_object_mut() {
                    piece.remove("offset");
                }
            }
        }
        let line = value.to_string();
        assert!(!line.contains("offset"));
        let decoded = RemoteIndex::decode("index/00000002.json", &crate::framing::encode(&line))?;
        assert_eq!(decoded, index);
        let mut future = index;
        future.format_version = INDEX_FORMAT_VERSION + 1;
        let line = serde_json::to_string(&future).unwrap_or_default();
        assert!(
            RemoteIndex::decode("index/00000002.json", &crate::framing::encode(&line)).is_err()
        );
        Ok(())
    }

    #[test]
    fn refuses_to_publish_a_broken_account() {
        let mut gap = sample();
        for segment in gap.wal.iter_mut().skip(1) {
            segment.start += 0x100_0000;
        }
        let mut piece_gap = sample();
        if let Some(segment) = piece_gap.wal.get_mut(2) {
            segment.offset += 1;
        }
        let mut pieces_past_end = sample();
        if let Some(segment) = pieces_past_end.wal.get_mut(2) {
            segment.object.size = 0x100_0000;
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
        for broken in [
            gap,
            piece_gap,
            pieces_past_end,
            partial_middle,
            past_end,
            escape,
            twice,
        ] {
            assert!(broken.encode().is_err(), "{broken:?} was encoded");
        }
    }
}
