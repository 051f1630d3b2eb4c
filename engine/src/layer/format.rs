//! The layer file format: encoding a layer, and checking and decoding one.
//!
//! ```text
//! +--------------+------------------------------------+---------+--------------+
//! | header 64 B  | data blocks: one per page version, | index   | footer 32 B  |
//! |              | each ending with its CRC32         |         |              |
//! +--------------+------------------------------------+---------+--------------+
//!
//! header (little-endian)
//!   0  8 magic "PFLAYER\0"
//!   8  4 format version (1)
//!  12  1 kind: 1 delta (versions in an LSN range), 2 image (whole pages at one LSN)
//!  13  3 zero
//!  16  8 branch id
//!  24  8 key range start, inclusive (rel u32, block u32)
//!  32  8 key range last key, inclusive (rel u32, block u32)
//!  40  8 LSN range start, inclusive (image: the image's LSN)
//!  48  8 LSN range end, exclusive (image: its LSN + 1)
//!  56  4 CRC32 of bytes 0..56
//!  60  4 zero
//!
//! data block (one page version)
//!   0  4 rel            4  4 block          8  8 LSN
//!  16  1 update: 1 image, 2 patch, 3 drop   17  3 zero
//!  20  4 patch offset (0 unless a patch)
//!  24  4 byte count n
//!  28  n bytes (the image, or the patch's bytes)
//! 28+n 4 CRC32 of the block's bytes 0..28+n
//!
//! index: entry count u64, then per version, sorted by (key, LSN):
//!        rel u32, block u32, LSN u64, block offset u64 (24 bytes); then CRC32 of the index
//!
//! footer (the last 32 bytes)
//!   0  8 index offset      8  8 index length (CRC included)
//!  16  8 data block count 24  4 CRC32 of bytes 0..24      28  4 magic "PFLE"
//! ```
//!
//! An image layer holds, for its key range, every page that exists at its LSN; a key in
//! its range with no block there did not exist at that LSN. The catalog keeps each layer's
//! size and the CRC32 of the whole file.

use bytes::{BufMut, Bytes};
use pagefork_wal::Lsn;

use crate::branch::BranchId;
use crate::key::Key;
use crate::update::Update;

pub(crate) const HEADER_LEN: usize = 64;
pub(crate) const FOOTER_LEN: usize = 32;
pub(super) const BLOCK_HEADER_LEN: usize = 28;
pub(super) const INDEX_ENTRY_LEN: usize = 24;
pub(super) const MAGIC: [u8; 8] = *b"PFLAYER\0";
pub(super) const FOOTER_MAGIC: [u8; 4] = *b"PFLE";
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Whether a layer holds versions over an LSN range or whole pages at one LSN.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LayerKind {
    /// Page versions with LSNs in `[lsn_start, lsn_end)`.
    Delta,
    /// Every page of the key range that exists at `lsn_start` (`lsn_end` = `lsn_start` + 1).
    Image,
}

/// What a layer covers: its header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LayerRange {
    /// Delta or image.
    pub kind: LayerKind,
    /// The branch whose versions it holds.
    pub branch: BranchId,
    /// First key covered.
    pub key_start: Key,
    /// Last key covered (inclusive, so the range can include the largest key).
    pub key_last: Key,
    /// First LSN covered.
    pub lsn_start: Lsn,
    /// First LSN past the range.
    pub lsn_end: Lsn,
}

impl LayerRange {
    /// Whether `key` lies in the key range.
    pub fn covers_key(&self, key: Key) -> bool {
        self.key_start <= key && key <= self.key_last
    }
}

/// One entry of the index: a version and where its block is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct IndexEntry {
    pub(crate) key: Key,
    pub(crate) lsn: Lsn,
    pub(crate) offset: u64,
}

pub(super) fn put_key(out: &mut Vec<u8>, key: Key) {
    out.put_u32_le(key.rel);
    out.put_u32_le(key.block);
}

/// The exact size of the file `encode` makes of `versions`.
pub(crate) fn encoded_len(versions: &[(Key, Lsn, Update)]) -> usize {
    let payloads: usize = versions
        .iter()
        .map(|(_, _, update)| update.payload_len())
        .sum();
    HEADER_LEN
        + FOOTER_LEN
        + 12
        + payloads
        + versions.len() * (BLOCK_HEADER_LEN + 4 + INDEX_ENTRY_LEN)
}

/// A problem with a layer's bytes: where it is and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FormatError {
    pub(crate) offset: u64,
    pub(crate) reason: String,
}

fn error(offset: usize, reason: impl Into<String>) -> FormatError {
    FormatError {
        offset: offset as u64,
        reason: reason.into(),
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn read_key(bytes: &[u8], at: usize) -> Option<Key> {
    Some(Key::new(read_u32(bytes, at)?, read_u32(bytes, at + 4)?))
}

/// Checks header, footer and index, and returns the range and the index. Data blocks are
/// checked when read (`decode_block`).
pub(crate) fn decode_layout(bytes: &[u8]) -> Result<(LayerRange, Vec<IndexEntry>), FormatError> {
    let len = bytes.len();
    if len < HEADER_LEN + FOOTER_LEN {
        return Err(error(
            0,
            format!("{len} bytes is shorter than a header and a footer"),
        ));
    }
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| error(0, "no header"))?;
    let range = decode_header(header)?;
    let footer = decode_footer(
        bytes.get(len - FOOTER_LEN..).unwrap_or_default(),
        len as u64,
    )?;
    let index = bytes
        .get(footer.index_offset as usize..)
        .ok_or_else(|| error(footer.index_offset as usize, "no index"))?;
    let entries = decode_index(index, &footer, &range)?;
    Ok((range, entries))
}

/// Checks a layer's header (its first `HEADER_LEN` bytes) and returns its range.
pub(crate) fn decode_header(header: &[u8]) -> Result<LayerRange, FormatError> {
    if header.len() < HEADER_LEN {
        return Err(error(
            0,
            format!("{} bytes is shorter than a header", header.len()),
        ));
    }
    if header.get(..8) != Some(&MAGIC[..]) {
        return Err(error(0, "bad magic: not a pagefork layer file"));
    }
    if Some(crc32fast::hash(header.get(..56).unwrap_or_default())) != read_u32(header, 56)
        || read_u32(header, 60) != Some(0)
    {
        return Err(error(56, "header checksum mismatch"));
    }
    let version = read_u32(header, 8).unwrap_or_default();
    if version != FORMAT_VERSION {
        return Err(error(8, format!("unsupported format version {version}")));
    }
    let kind = match header.get(12) {
        Some(1) => LayerKind::Delta,
        Some(2) => LayerKind::Image,
        other => return Err(error(12, format!("unknown layer kind {other:?}"))),
    };
    let field = |at: usize| read_u64(header, at).unwrap_or_default();
    let range = LayerRange {
        kind,
        branch: BranchId(field(16)),
        key_start: read_key(header, 24).unwrap_or(Key::new(0, 0)),
        key_last: read_key(header, 32).unwrap_or(Key::new(0, 0)),
        lsn_start: Lsn(field(40)),
        lsn_end: Lsn(field(48)),
    };
    if range.key_start > range.key_last || range.lsn_start >= range.lsn_end {
        return Err(error(24, "empty key or LSN range"));
    }
    Ok(range)
}

/// What a layer's footer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Footer {
    /// Where the index starts (and the data blocks end).
    pub(crate) index_offset: u64,
    /// The index's length, its CRC32 included.
    index_len: u64,
    block_count: u64,
}

/// Checks the footer (the last `FOOTER_LEN` bytes of a file of `file_len` bytes); errors
/// name offsets in the file.
pub(crate) fn decode_footer(footer: &[u8], file_len: u64) -> Result<Footer, FormatError> {
    let footer_at = file_len.saturating_sub(FOOTER_LEN as u64) as usize;
    if footer.len() != FOOTER_LEN || file_len < (HEADER_LEN + FOOTER_LEN) as u64 {
        return Err(error(footer_at, "no footer"));
    }
    if footer.get(28..32) != Some(&FOOTER_MAGIC[..]) {
        return Err(error(
            footer_at + 28,
            "bad footer magic: the file is truncated or not a layer",
        ));
    }
    if Some(crc32fast::hash(footer.get(..24).unwrap_or_default())) != read_u32(footer, 24) {
        return Err(error(footer_at + 24, "footer checksum mismatch"));
    }
    let index_offset = read_u64(footer, 0).unwrap_or_default();
    let index_len = read_u64(footer, 8).unwrap_or_default();
    if index_offset < HEADER_LEN as u64
        || index_offset.checked_add(index_len) != Some(footer_at as u64)
        || index_len < 12
    {
        return Err(error(
            footer_at,
            "index offset and length do not fit the file",
        ));
    }
    Ok(Footer {
        index_offset,
        index_len,
        block_count: read_u64(footer, 16).unwrap_or_default(),
    })
}

/// A layer's outline decoded: what opening needs of a layer whose blocks are elsewhere.
pub(crate) struct Outline {
    pub(crate) range: LayerRange,
    pub(crate) index_offset: u64,
    pub(crate) index: Vec<IndexEntry>,
}

/// Checks and decodes the outline of a layer file of `size` bytes: its header, then its
/// bytes from the index to the end (index and footer). Errors name offsets in the file.
pub(crate) fn decode_outline(outline: &[u8], size: u64) -> Result<Outline, FormatError> {
    let header = outline.get(..HEADER_LEN).unwrap_or_default();
    let range = decode_header(header)?;
    let footer_at = outline.len().checked_sub(FOOTER_LEN);
    let footer = footer_at
        .and_then(|at| outline.get(at..))
        .unwrap_or_default();
    let footer = decode_footer(footer, size)?;
    if HEADER_LEN as u64 + (size - footer.index_offset) != outline.len() as u64 {
        return Err(error(
            0,
            format!(
                "an outline of {} bytes does not fit a layer of {size}",
                outline.len()
            ),
        ));
    }
    let index = decode_index(
        outline.get(HEADER_LEN..).unwrap_or_default(),
        &footer,
        &range,
    )?;
    Ok(Outline {
        range,
        index_offset: footer.index_offset,
        index,
    })
}

/// Checks the index against the footer and the range and decodes it. `index` starts at
/// the index and may run on (into the footer); errors name offsets in the file.
pub(crate) fn decode_index(
    index: &[u8],
    footer: &Footer,
    range: &LayerRange,
) -> Result<Vec<IndexEntry>, FormatError> {
    let index_offset = footer.index_offset as usize;
    let index = index
        .get(..footer.index_len as usize)
        .ok_or_else(|| error(index_offset, "the index is cut short"))?;
    let crc_at = index.len() - 4;
    if Some(crc32fast::hash(index.get(..crc_at).unwrap_or_default())) != read_u32(index, crc_at) {
        return Err(error(index_offset + crc_at, "index checksum mismatch"));
    }
    let count = read_u64(index, 0).unwrap_or_default();
    // Checked: the count comes off disk, and an absurd one must be an error, not an overflow.
    let entries_len = usize::try_from(count)
        .ok()
        .and_then(|count| count.checked_mul(INDEX_ENTRY_LEN));
    if count != footer.block_count || entries_len.and_then(|len| len.checked_add(8)) != Some(crc_at)
    {
        return Err(error(
            index_offset,
            "index entry count disagrees with the footer or the index size",
        ));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for number in 0..count as usize {
        let at = 8 + number * INDEX_ENTRY_LEN;
        let entry = IndexEntry {
            key: read_key(index, at).unwrap_or(Key::new(0, 0)),
            lsn: Lsn(read_u64(index, at + 8).unwrap_or_default()),
            offset: read_u64(index, at + 16).unwrap_or_default(),
        };
        let in_data = (HEADER_LEN as u64..footer.index_offset).contains(&entry.offset);
        let ordered = entries
            .last()
            .is_none_or(|last: &IndexEntry| (last.key, last.lsn) < (entry.key, entry.lsn));
        let in_range = range.covers_key(entry.key)
            && range.lsn_start <= entry.lsn
            && entry.lsn < range.lsn_end;
        if !in_data || !ordered || !in_range {
            return Err(error(
                index_offset + at,
                format!("index entry {number} is out of order or out of range"),
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Where the index starts (and the data blocks end), from a footer `decode_layout` checked.
pub(crate) fn index_offset(bytes: &[u8]) -> usize {
    let footer_at = bytes.len().saturating_sub(FOOTER_LEN);
    read_u64(bytes, footer_at).map_or(HEADER_LEN, |offset| offset as usize)
}

/// Decodes and checks the data block of `entry`. `bytes` is the whole file, shared, so an
/// image comes back as a zero-copy slice of it.
pub(crate) fn decode_block(
    bytes: &Bytes,
    entry: &IndexEntry,
    index_offset: usize,
) -> Result<Update, FormatError> {
    let at = entry.offset as usize;
    let end = index_offset.min(bytes.len());
    if at >= end {
        return Err(error(at, "data block starts past the data"));
    }
    decode_block_at(bytes.slice(at..end), entry)
}

/// Decodes and checks the data block of `entry` from `block`, which starts at the block
/// (at file offset `entry.offset`) and may run on past its end.
pub(crate) fn decode_block_at(block: Bytes, entry: &IndexEntry) -> Result<Update, FormatError> {
    let base = entry.offset as usize;
    let len = read_u32(&block, 24)
        .ok_or_else(|| error(base, "data block header runs past the data"))? as usize;
    let end = BLOCK_HEADER_LEN + len;
    let Some(stored_crc) = read_u32(&block, end) else {
        return Err(error(base, "data block runs past the data"));
    };
    if crc32fast::hash(block.get(..end).unwrap_or_default()) != stored_crc {
        return Err(error(base, "data block checksum mismatch"));
    }
    if read_key(&block, 0) != Some(entry.key) || read_u64(&block, 8) != Some(entry.lsn.0) {
        return Err(error(
            base,
            "data block does not hold the version the index points to",
        ));
    }
    let payload = block.slice(BLOCK_HEADER_LEN..end);
    let patch_offset = read_u32(&block, 20).unwrap_or_default();
    match block.get(16) {
        Some(1) => Ok(Update::Image(payload)),
        Some(2) => Ok(Update::Patch {
            offset: patch_offset,
            bytes: payload,
        }),
        Some(3) if len == 0 => Ok(Update::Drop),
        Some(3) => Err(error(
            base + 16,
            format!("a drop (update tag 3) with a {len}-byte payload; a drop has none"),
        )),
        Some(tag) => Err(error(base + 16, format!("unknown update tag {tag}"))),
        None => Err(error(base + 16, "data block header runs past the data")),
    }
}

/// Bytes of a data block beside its payload: the block header before it, the CRC after.
pub(crate) const BLOCK_FRAMING_LEN: usize = BLOCK_HEADER_LEN + 4;

/// Where a block's payload length sits in its header.
pub(crate) const BLOCK_LEN_OFFSET: usize = 24;

#[cfg(test)]
mod tests {
    use super::super::encode::encode;
    use super::*;

    /// An index whose entry count would overflow the size computation, with every checksum
    /// recomputed so only the count is wrong: an error naming the index, not a panic.
    #[test]
    fn an_absurd_index_count_is_an_error_not_an_overflow() {
        let range = LayerRange {
            kind: LayerKind::Delta,
            branch: BranchId(1),
            key_start: Key::new(0, 0),
            key_last: Key::new(9, 0),
            lsn_start: Lsn(8),
            lsn_end: Lsn(100),
        };
        let mut bytes = encode(&range, &[(Key::new(1, 1), Lsn(16), Update::Drop)]);
        let index_at = index_offset(&bytes);
        let footer_at = bytes.len() - FOOTER_LEN;
        let huge = u64::MAX / 2;
        bytes[index_at..index_at + 8].copy_from_slice(&huge.to_le_bytes());
        let crc = crc32fast::hash(&bytes[index_at..footer_at - 4]);
        bytes[footer_at - 4..footer_at].copy_from_slice(&crc.to_le_bytes());
        bytes[footer_at + 16..footer_at + 24].copy_from_slice(&huge.to_le_bytes());
        let crc = crc32fast::hash(&bytes[footer_at..footer_at + 24]);
        bytes[footer_at + 24..footer_at + 28].copy_from_slice(&crc.to_le_bytes());
        let error = decode_layout(&bytes).unwrap_err();
        assert_eq!(error.offset, index_at as u64, "{error:?}");
    }
}
