//! The store metadata file, `pagefork.meta`: what a directory is and how it was created.
//!
//! ```text
//! offset size field (little-endian)
//!      0    8 magic "PFSTORE\0"
//!      8    4 format version (2)
//!     12    4 page size in bytes
//!     16    4 backend: 0 native layer files, 1 RocksDB
//!     20    4 CRC32 of bytes 0..20
//! ```
//!
//! A native store is written as format version 1, the same layout without the backend
//! field (CRC32 of bytes 0..16 at 16), so builds from before the RocksDB backend still
//! open it; both versions are read.
//!
//! Written once, last, when a store is created (through `publish_file`), so a directory
//! with this file holds a complete store; checked on every open.

use std::path::Path;

use crate::backend::Backend;
use crate::error::{EngineError, Result};

pub(crate) const META_FILE_NAME: &str = "pagefork.meta";
const MAGIC: [u8; 8] = *b"PFSTORE\0";
pub(crate) const FORMAT_VERSION: u32 = 2;
const META_LEN: usize = 24;
/// Length of a version 1 file, which had no backend field.
const META_V1_LEN: usize = 20;

/// What the metadata file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreMeta {
    pub(crate) page_size: u32,
    pub(crate) backend: Backend,
}

/// The format version a store with `backend` has its metadata file written in: 1 for a
/// native store (older builds open it), [`FORMAT_VERSION`] for RocksDB.
pub(crate) fn format_version(backend: Backend) -> u32 {
    match backend {
        Backend::Native => 1,
        Backend::RocksDb => FORMAT_VERSION,
    }
}

impl StoreMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let version = format_version(self.backend);
        let mut bytes = Vec::with_capacity(META_LEN);
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&self.page_size.to_le_bytes());
        if version == FORMAT_VERSION {
            bytes.extend_from_slice(&self.backend.code().to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<StoreMeta> {
        let corrupt = |offset: u64, reason: &str| EngineError::CorruptFile {
            path: path.to_owned(),
            offset,
            reason: reason.to_owned(),
        };
        let field = |range: std::ops::Range<usize>| {
            let mut word = [0u8; 4];
            if let Some(slice) = bytes.get(range) {
                word.copy_from_slice(slice);
            }
            u32::from_le_bytes(word)
        };
        if bytes.get(0..8) != Some(&MAGIC[..]) {
            return Err(corrupt(0, "bad magic: not a pagefork store metadata file"));
        }
        // The version says how long the file is: checked first, so a version this build
        // does not read is named as such, not as a wrong length.
        let version = field(8..12);
        if version != 1 && version != FORMAT_VERSION {
            return Err(corrupt(
                8,
                &format!(
                    "format version {version}: this build reads versions 1 and {FORMAT_VERSION} (a newer pagefork wrote it, or the field is damaged)"
                ),
            ));
        }
        let len = if version == 1 { META_V1_LEN } else { META_LEN };
        if bytes.len() != len {
            return Err(corrupt(
                0,
                &format!(
                    "{} bytes, expected {len} for format version {version}",
                    bytes.len()
                ),
            ));
        }
        let crc_at = len - 4;
        if crc32fast::hash(bytes.get(0..crc_at).unwrap_or_default()) != field(crc_at..len) {
            return Err(corrupt(
                crc_at as u64,
                &crate::checkpoint::whole_file_checksum_mismatch(crc_at),
            ));
        }
        let backend = if version == 1 {
            Backend::Native
        } else {
            let code = field(16..20);
            Backend::from_code(code)
                .ok_or_else(|| corrupt(16, &format!("unknown backend code {code}")))?
        };
        Ok(StoreMeta {
            page_size: field(12..16),
            backend,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_every_bit_flip_is_refused() {
        for backend in Backend::ALL {
            let meta = StoreMeta {
                page_size: 8192,
                backend,
            };
            let bytes = meta.encode();
            let path = Path::new("pagefork.meta");
            assert_eq!(StoreMeta::decode(&bytes, path).unwrap(), meta);
            let expected_len = match backend {
                Backend::Native => META_V1_LEN,
                Backend::RocksDb => META_LEN,
            };
            assert_eq!(bytes.len(), expected_len);
            for bit in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert!(StoreMeta::decode(&flipped, path).is_err(), "bit {bit}");
            }
            assert!(StoreMeta::decode(&bytes[..10], path).is_err());
            // Found by a review: a damaged version was reported as a wrong length.
            let mut version = bytes.clone();
            version[10] ^= 0xFF;
            let message = StoreMeta::decode(&version, path).unwrap_err().to_string();
            assert!(message.contains("format version"), "{message}");
        }
    }

    #[test]
    fn a_native_store_is_written_as_version_1_as_older_builds_read_it() {
        let meta = StoreMeta {
            page_size: 4096,
            backend: Backend::Native,
        };
        let bytes = meta.encode();
        assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
        assert_eq!(&bytes[16..20], &crc32fast::hash(&bytes[..16]).to_le_bytes());
    }

    #[test]
    fn a_version_1_file_is_read_as_a_native_store() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&4096u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let meta = StoreMeta::decode(&bytes, Path::new("pagefork.meta")).unwrap();
        assert_eq!(
            meta,
            StoreMeta {
                page_size: 4096,
                backend: Backend::Native
            }
        );
    }
}
