//! The log's on-disk format: segment headers and record frames, encoded and checked.
//!
//! This module owns every byte layout of the log and nothing else: it does no I/O.
//! Invariants it keeps: every frame it encodes is 8-byte aligned and checksummed; every
//! frame it decodes has been checked against its checksums, its position (LSN) and the
//! log's salt before any field is trusted.
//!
//! # Address space and segments
//!
//! The log is one address space of bytes cut into fixed-size segments (a power of two,
//! 4 KiB to 1 GiB, default 16 MiB). Segment `n` covers LSNs `[n * size, (n + 1) * size)`
//! and lives in a file named by its start LSN as 16 hex digits, `0000000001000000.wal`.
//! Records never span segments: a record that does not fit in the rest of a segment goes
//! to the next one, and the rest of the old one is closed by a segment-end frame.
//!
//! ```text
//! segment file (segment_size bytes, preallocated with zeros)
//! +----------------+----------+----------+-----+-------------+-----------------+
//! | segment header | record 1 | record 2 | ... | segment end | zeros (unused)  |
//! | 40 bytes       | 8-aligned| 8-aligned|     | frame       |                 |
//! +----------------+----------+----------+-----+-------------+-----------------+
//! ^ LSN = start                                              segment end = start + size ^
//! ```
//!
//! # Segment header (40 bytes, little-endian)
//!
//! ```text
//! offset size field
//!      0    8 magic "PFWALSEG"
//!      8    4 format version (2)
//!     12    4 segment size in bytes
//!     16    8 start LSN of this segment (must match the file name)
//!     24    8 salt: random per log, chosen when the log is created
//!     32    4 CRC32 of bytes 0..32
//!     36    4 zero
//! ```
//!
//! # Record frame (24-byte header, then the body padded to 8 bytes)
//!
//! ```text
//! offset size field
//!      0    4 header CRC32: over salt (u64 LE) ++ frame start LSN (u64 LE) ++ header bytes 4..24
//!      4    4 body CRC32: over the payload and its zero padding
//!      8    4 payload length in bytes
//!     12    1 frame type: 1 = record, 2 = segment end (0 never appears in a valid frame)
//!     13    1 record kind (chosen by the caller; 0 for a segment end)
//!     14    2 zero
//!     16    8 synced through: the log's durable LSN when the frame was encoded (<= its start)
//!     24    n payload, then zeros up to the next multiple of 8
//! ```
//!
//! The header CRC covers the body CRC, so the two together cover header and payload. Mixing
//! the salt and the frame's own start LSN into the header CRC is the stale-record guard: a
//! record left in the file space by an earlier log (different salt) or at another position
//! (a recycled or reused segment) fails its check and is never replayed. Because the header
//! has its own CRC, recovery can test any aligned position for "is a valid frame here"
//! cheaply, which is how it tells a torn tail from corruption in the middle.
//!
//! "Synced through" is how recovery tells an unsynced tail from damage. A power cut may
//! keep any subset of the pages written since the last fsync (the disk writes them back in
//! any order), so a bad frame followed by valid ones is what a crash normally leaves when
//! the lost page was never fsynced. A valid later frame whose "synced through" lies past
//! the bad frame proves the bad frame had been fsynced before: that is damage, not a crash.
//! Version 1 frames (16-byte headers, no such field) are not read by this build.
//!
//! A record's LSN is its end: `start + 24 + payload length rounded up to 8`. A segment-end
//! frame has no payload; it says "the log continues at the next segment". When fewer than
//! 24 bytes remain in a segment, no segment-end frame fits and the remaining bytes stay zero.

use crate::lsn::Lsn;

/// Magic bytes at the start of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"PFWALSEG";
/// Format version written in every segment header (the only one this build reads).
pub const FORMAT_VERSION: u32 = 2;
/// Size of the segment header; the first frame of a segment starts right after it.
pub const SEGMENT_HEADER_LEN: u64 = 40;
/// Size of a frame header.
pub const FRAME_HEADER_LEN: u64 = 24;
/// Every frame starts and ends on a multiple of this.
pub const FRAME_ALIGNMENT: u64 = 8;
/// Smallest allowed segment size.
pub(crate) const MIN_SEGMENT_SIZE: u64 = 4 * 1024;
/// Largest allowed segment size.
pub(crate) const MAX_SEGMENT_SIZE: u64 = 1024 * 1024 * 1024;

/// Offset of the frame type byte in a frame header; it is never 0 in a valid frame.
pub(crate) const FRAME_TYPE_OFFSET: u64 = 12;
const FRAME_TYPE_RECORD: u8 = 1;
const FRAME_TYPE_SEGMENT_END: u8 = 2;

/// The largest payload a log with this segment size accepts: a record must fit in one
/// segment after the segment header.
pub(crate) fn max_payload_len(segment_size: u64) -> u64 {
    segment_size - SEGMENT_HEADER_LEN - FRAME_HEADER_LEN
}

/// `len` rounded up to the frame alignment.
pub(crate) fn align_up(len: u64) -> u64 {
    len.div_ceil(FRAME_ALIGNMENT) * FRAME_ALIGNMENT
}

/// Total bytes a record with this payload length occupies in the log.
pub(crate) fn frame_len(payload_len: u64) -> u64 {
    FRAME_HEADER_LEN + align_up(payload_len)
}

/// The decoded, checked header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) segment_size: u64,
    pub(crate) start: Lsn,
    pub(crate) salt: u64,
}

/// Why a segment header is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentHeaderProblem {
    TooShort,
    BadMagic,
    UnsupportedVersion(u32),
    ChecksumMismatch,
}

impl std::fmt::Display for SegmentHeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentHeaderProblem::TooShort => write!(f, "file is shorter than a segment header"),
            SegmentHeaderProblem::BadMagic => write!(f, "bad magic (not a pagefork WAL segment)"),
            SegmentHeaderProblem::UnsupportedVersion(version) => {
                write!(
                    f,
                    "unsupported format version {version} (this build reads {FORMAT_VERSION})"
                )
            }
            SegmentHeaderProblem::ChecksumMismatch => write!(f, "segment header checksum mismatch"),
        }
    }
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut bytes = [0u8; SEGMENT_HEADER_LEN as usize];
        bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let size = u32::try_from(self.segment_size).expect("segment size checked at creation");
        bytes[12..16].copy_from_slice(&size.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.start.0.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.salt.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..32]);
        bytes[32..36].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<SegmentHeader, SegmentHeaderProblem> {
        let header = bytes
            .get(..SEGMENT_HEADER_LEN as usize)
            .ok_or(SegmentHeaderProblem::TooShort)?;
        if header.get(0..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err(SegmentHeaderProblem::BadMagic);
        }
        let stored_crc = read_u32(header, 32);
        let zero_tail = read_u32(header, 36);
        let body = header.get(0..32).ok_or(SegmentHeaderProblem::TooShort)?;
        if crc32fast::hash(body) != stored_crc || zero_tail != 0 {
            return Err(SegmentHeaderProblem::ChecksumMismatch);
        }
        let version = read_u32(header, 8);
        if version != FORMAT_VERSION {
            return Err(SegmentHeaderProblem::UnsupportedVersion(version));
        }
        Ok(SegmentHeader {
            segment_size: u64::from(read_u32(header, 12)),
            start: Lsn(read_u64(header, 16)),
            salt: read_u64(header, 24),
        })
    }
}

/// What a valid frame at some position is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A record: its kind, payload length, and the CRC its body must match.
    Record {
        kind: u8,
        payload_len: u64,
        body_crc: u32,
        synced_through: Lsn,
    },
    /// The log continues at the next segment.
    SegmentEnd { synced_through: Lsn },
}

impl Frame {
    /// Bytes this frame occupies, header included.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Frame::Record { payload_len, .. } => frame_len(*payload_len),
            Frame::SegmentEnd { .. } => FRAME_HEADER_LEN,
        }
    }

    /// The log's durable LSN when this frame was encoded: every byte below it had been
    /// fsynced before this frame was written.
    pub(crate) fn synced_through(&self) -> Lsn {
        match self {
            Frame::Record { synced_through, .. } | Frame::SegmentEnd { synced_through } => {
                *synced_through
            }
        }
    }
}

/// The fields of a frame header that are not checksums.
struct HeaderFields {
    frame_type: u8,
    kind: u8,
    payload_len: u32,
    body_crc: u32,
    synced_through: Lsn,
}

fn header_crc(salt: u64, start: Lsn, header_tail: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(&start.0.to_le_bytes());
    hasher.update(header_tail);
    hasher.finalize()
}

/// CRC of a record body: the payload followed by its zero padding.
pub(crate) fn body_crc(payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(payload);
    let padding = align_up(payload.len() as u64) - payload.len() as u64;
    hasher.update(
        [0u8; FRAME_ALIGNMENT as usize]
            .get(..padding as usize)
            .unwrap_or(&[]),
    );
    hasher.finalize()
}

fn encode_header(salt: u64, start: Lsn, fields: HeaderFields) -> [u8; FRAME_HEADER_LEN as usize] {
    assert!(
        fields.synced_through <= start,
        "a frame at {start} cannot know of a sync through {}",
        fields.synced_through
    );
    let mut header = [0u8; FRAME_HEADER_LEN as usize];
    header[4..8].copy_from_slice(&fields.body_crc.to_le_bytes());
    header[8..12].copy_from_slice(&fields.payload_len.to_le_bytes());
    header[12] = fields.frame_type;
    header[13] = fields.kind;
    header[16..24].copy_from_slice(&fields.synced_through.0.to_le_bytes());
    let crc = header_crc(salt, start, &header[4..]);
    header[0..4].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A record to encode: its kind, payload and the payload's [`body_crc`] (computed by the
/// caller before it takes a lock).
pub(crate) struct RecordToEncode<'a> {
    pub(crate) kind: u8,
    pub(crate) payload: &'a [u8],
    pub(crate) payload_body_crc: u32,
}

/// Appends a record frame starting at `start` to `out`: header, payload, zero padding.
/// `synced_through` is the log's durable LSN now (at most `start`).
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    salt: u64,
    start: Lsn,
    synced_through: Lsn,
    record: RecordToEncode<'_>,
) {
    let RecordToEncode {
        kind,
        payload,
        payload_body_crc,
    } = record;
    debug_assert_eq!(payload_body_crc, body_crc(payload));
    assert!(
        start.is_aligned(FRAME_ALIGNMENT),
        "frame start {start} is not aligned"
    );
    let payload_len = u32::try_from(payload.len()).expect("payload length checked by append");
    let fields = record_fields(kind, payload_len, payload_body_crc, synced_through);
    out.extend_from_slice(&encode_header(salt, start, fields));
    out.extend_from_slice(payload);
    let padding = align_up(payload.len() as u64) - payload.len() as u64;
    out.extend(std::iter::repeat_n(0u8, padding as usize));
}

/// The header fields of a record frame.
fn record_fields(kind: u8, payload_len: u32, body_crc: u32, synced_through: Lsn) -> HeaderFields {
    HeaderFields {
        frame_type: FRAME_TYPE_RECORD,
        kind,
        payload_len,
        body_crc,
        synced_through,
    }
}

/// Appends a record frame starting at `start` to `out` whose payload `write_payload`
/// appends in place (`len` bytes): header, payload, zero padding, with the body CRC taken
/// over the bytes as written. If `write_payload` appends another number of bytes, `out` is
/// cut back to where it was and the count written is returned as the error.
pub(crate) fn encode_record_in_place(
    out: &mut Vec<u8>,
    salt: u64,
    start: Lsn,
    synced_through: Lsn,
    (kind, len): (u8, u64),
    write_payload: impl FnOnce(&mut Vec<u8>),
) -> std::result::Result<(), u64> {
    assert!(
        start.is_aligned(FRAME_ALIGNMENT),
        "frame start {start} is not aligned"
    );
    let header_at = out.len();
    let body_at = header_at + FRAME_HEADER_LEN as usize;
    out.resize(body_at, 0);
    write_payload(out);
    let written = (out.len() - body_at) as u64;
    let payload_len = u32::try_from(len).ok().filter(|_| written == len);
    let Some(payload_len) = payload_len else {
        out.truncate(header_at);
        return Err(written);
    };
    out.resize(body_at + align_up(len) as usize, 0);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(out.get(body_at..).expect("the body was just written"));
    let fields = record_fields(kind, payload_len, hasher.finalize(), synced_through);
    let header = encode_header(salt, start, fields);
    out.get_mut(header_at..body_at)
        .expect("the header's place was just made")
        .copy_from_slice(&header);
    Ok(())
}

/// Encodes the segment-end frame for position `start`.
pub(crate) fn encode_segment_end(
    salt: u64,
    start: Lsn,
    synced_through: Lsn,
) -> [u8; FRAME_HEADER_LEN as usize] {
    encode_header(
        salt,
        start,
        HeaderFields {
            frame_type: FRAME_TYPE_SEGMENT_END,
            kind: 0,
            payload_len: 0,
            body_crc: body_crc(&[]),
            synced_through,
        },
    )
}

/// Decodes and checks the frame header at `start`. `None` means there is no valid frame
/// header here: zeros, garbage, a torn write, or a stale frame from an earlier use of this
/// file space. The body of a record is not checked here; see [`check_body`].
pub(crate) fn decode_header(salt: u64, start: Lsn, bytes: &[u8]) -> Option<Frame> {
    let header = bytes.get(..FRAME_HEADER_LEN as usize)?;
    let stored_crc = read_u32(header, 0);
    if header.get(FRAME_TYPE_OFFSET as usize).copied().unwrap_or(0) == 0 {
        // Fast path for zeroed space: frame type 0 is never valid.
        return None;
    }
    if header_crc(salt, start, header.get(4..)?) != stored_crc {
        return None;
    }
    let body_crc = read_u32(header, 4);
    let payload_len = u64::from(read_u32(header, 8));
    let frame_type = *header.get(12)?;
    let kind = *header.get(13)?;
    let reserved_zero = header.get(14..16)? == [0, 0];
    let synced_through = Lsn(read_u64(header, 16));
    if !reserved_zero || synced_through > start {
        return None;
    }
    match frame_type {
        FRAME_TYPE_RECORD => Some(Frame::Record {
            kind,
            payload_len,
            body_crc,
            synced_through,
        }),
        FRAME_TYPE_SEGMENT_END if payload_len == 0 && kind == 0 => {
            Some(Frame::SegmentEnd { synced_through })
        }
        _ => None,
    }
}

/// Whether a record body (payload plus padding, exactly `align_up(payload_len)` bytes)
/// matches its CRC and its padding is zero.
pub(crate) fn check_body(body_with_padding: &[u8], payload_len: u64, expected_crc: u32) -> bool {
    let Some(payload) = body_with_padding.get(..payload_len as usize) else {
        return false;
    };
    let padding_is_zero = body_with_padding
        .get(payload_len as usize..)
        .is_some_and(|padding| padding.iter().all(|&b| b == 0));
    padding_is_zero && body_crc(payload) == expected_crc
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut buf = [0u8; 4];
    if let Some(src) = bytes.get(offset..offset + 4) {
        buf.copy_from_slice(src);
    }
    u32::from_le_bytes(buf)
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut buf = [0u8; 8];
    if let Some(src) = bytes.get(offset..offset + 8) {
        buf.copy_from_slice(src);
    }
    u64::from_le_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trips_and_detects_every_bit_flip() {
        let header = SegmentHeader {
            segment_size: 16 * 1024 * 1024,
            start: Lsn(0x1000000),
            salt: 0xDEAD_BEEF_0123_4567,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn record_frame_round_trips() {
        let mut out = Vec::new();
        let payload = b"hello, log";
        encode_record(&mut out, 7, Lsn(40), Lsn(32), record(3, payload));
        assert_eq!(out.len() as u64, frame_len(payload.len() as u64));
        assert_eq!(out.len() % 8, 0);
        let frame = decode_header(7, Lsn(40), &out).expect("valid frame");
        let Frame::Record {
            kind,
            payload_len,
            body_crc,
            synced_through,
        } = frame
        else {
            panic!("expected a record, got {frame:?}");
        };
        assert_eq!((kind, payload_len), (3, payload.len() as u64));
        assert_eq!(synced_through, Lsn(32));
        assert!(check_body(&out[24..], payload_len, body_crc));
        for bit in 0..FRAME_HEADER_LEN as usize * 8 {
            let mut flipped = out.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_header(7, Lsn(40), &flipped).is_none(), "bit {bit}");
        }
    }

    #[test]
    fn a_frame_is_bound_to_its_salt_and_position() {
        let mut out = Vec::new();
        encode_record(&mut out, 7, Lsn(40), Lsn(40), record(3, b"x"));
        assert!(decode_header(8, Lsn(40), &out).is_none(), "other salt");
        assert!(decode_header(7, Lsn(48), &out).is_none(), "other position");
    }

    #[test]
    fn zeros_are_never_a_frame() {
        assert!(decode_header(0, Lsn(0), &[0u8; FRAME_HEADER_LEN as usize]).is_none());
    }

    #[test]
    fn segment_end_frame_decodes() {
        let bytes = encode_segment_end(9, Lsn(4096 - 24), Lsn(1000));
        assert_eq!(
            decode_header(9, Lsn(4096 - 24), &bytes),
            Some(Frame::SegmentEnd {
                synced_through: Lsn(1000)
            })
        );
    }

    #[test]
    fn a_frame_claiming_a_sync_past_its_own_start_is_not_valid() {
        // encode_header refuses to write one; a forged header with a correct CRC is read
        // as "no frame here".
        let mut header = [0u8; FRAME_HEADER_LEN as usize];
        header[4..8].copy_from_slice(&body_crc(&[]).to_le_bytes());
        header[12] = FRAME_TYPE_SEGMENT_END;
        header[16..24].copy_from_slice(&48u64.to_le_bytes());
        let crc = header_crc(9, Lsn(40), &header[4..]);
        header[0..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_header(9, Lsn(40), &header), None);
        let crc = header_crc(9, Lsn(48), &header[4..]);
        header[0..4].copy_from_slice(&crc.to_le_bytes());
        assert!(decode_header(9, Lsn(48), &header).is_some());
    }

    fn record(kind: u8, payload: &[u8]) -> RecordToEncode<'_> {
        RecordToEncode {
            kind,
            payload,
            payload_body_crc: body_crc(payload),
        }
    }
}
