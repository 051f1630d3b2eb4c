//! `WalReader`: iterating records from a record boundary while writes go on.
//!
//! Invariants it keeps: it starts only at a real record boundary (checked by walking the
//! frames of that segment from its start, not guessed); it returns only records below the
//! log's written end; every record it returns has passed its header and body CRCs. Sealed
//! segments are read through a shared memory map, so payloads are zero-copy `Bytes` slices;
//! the segment still being written is read with positioned reads.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::error::{Result, WalError};
use crate::format::{FRAME_HEADER_LEN, Frame, SEGMENT_HEADER_LEN, check_body, decode_header};
use crate::log::Inner;
use crate::lsn::Lsn;
use crate::segment::Segment;

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// Where the record's frame starts.
    pub start: Lsn,
    /// The record's LSN: the position just after it.
    pub end: Lsn,
    /// The kind given to `append`.
    pub kind: u8,
    /// The payload given to `append`.
    pub payload: Bytes,
}

/// An iterator over records; see [`crate::Wal::read_from`]. Ends (`None`) when it reaches
/// the written end of the log; calling `next` again later returns records written since.
/// After an error it returns `None`.
#[derive(Debug)]
pub struct WalReader {
    inner: Arc<Inner>,
    /// Where the next frame starts (or a segment start, meaning its first frame).
    position: Lsn,
    failed: bool,
}

/// What lies at a position, once the segment's layout is taken into account.
enum Step {
    Record(WalRecord),
    /// Nothing more is readable yet.
    End,
}

impl WalReader {
    pub(crate) fn new(inner: Arc<Inner>, from: Lsn) -> Result<WalReader> {
        let reader = WalReader {
            inner,
            position: from,
            failed: false,
        };
        reader.check_boundary(from)?;
        Ok(reader)
    }

    /// The position the next record starts from: the end of the last record returned.
    pub fn position(&self) -> Lsn {
        self.position
    }

    fn written(&self) -> Lsn {
        Lsn(self.inner.written.load(Ordering::Acquire))
    }

    fn segment_start_of(&self, lsn: Lsn) -> Lsn {
        Lsn(lsn.0 & !(self.inner.segment_size - 1))
    }

    fn segment(&self, lsn: Lsn) -> Result<Arc<Segment>> {
        let start = self.segment_start_of(lsn);
        let segment = self.inner.segments.read().get(&start).cloned();
        segment.ok_or_else(|| WalError::Truncated {
            lsn,
            oldest: self.inner.oldest_lsn(),
        })
    }

    /// Bytes `[lsn, lsn + len)` of `segment`, all below the written end.
    fn read(&self, segment: &Segment, lsn: Lsn, len: u64) -> Result<Bytes> {
        let sealed = self.written() >= segment.end();
        if sealed {
            segment.read_sealed(lsn, len)
        } else {
            segment.read_at(lsn, len)
        }
    }

    fn checksum_error(segment: &Segment, lsn: Lsn) -> WalError {
        WalError::ChecksumMismatch {
            lsn,
            path: segment.path.clone(),
            offset: segment.offset_of(lsn),
        }
    }

    /// Fails unless `from` is a record boundary that can still be read.
    fn check_boundary(&self, from: Lsn) -> Result<()> {
        let oldest = self.inner.oldest_lsn();
        let written = self.written();
        if !from.is_valid() || !from.is_aligned(crate::format::FRAME_ALIGNMENT) {
            return Err(WalError::NotRecordBoundary { lsn: from });
        }
        if from > written {
            return Err(WalError::PastEnd {
                lsn: from,
                end: written,
            });
        }
        let segment_start = self.segment_start_of(from);
        if from == segment_start {
            // The end of a record that filled the previous segment to its last byte.
            let previous = self
                .segment(Lsn(from.0 - 1))
                .map_err(|_| WalError::Truncated { lsn: from, oldest })?;
            return self.walk_to(&previous, from);
        }
        if from < oldest {
            return Err(WalError::Truncated { lsn: from, oldest });
        }
        let segment = self.segment(from)?;
        self.walk_to(&segment, from)
    }

    /// Walks frame headers from the start of `segment` and fails unless one ends (or the
    /// first one starts) exactly at `target`.
    fn walk_to(&self, segment: &Segment, target: Lsn) -> Result<()> {
        let mut position = Lsn(segment.start.0 + SEGMENT_HEADER_LEN);
        let written = self.written();
        while position < target && position < written {
            if segment.end().0 - position.0 < FRAME_HEADER_LEN {
                break;
            }
            let header = self.read(segment, position, FRAME_HEADER_LEN)?;
            match decode_header(self.inner.salt, position, &header) {
                Some(frame @ Frame::Record { .. }) => position = Lsn(position.0 + frame.len()),
                Some(Frame::SegmentEnd { .. }) => break,
                None => return Err(Self::checksum_error(segment, position)),
            }
        }
        if position == target {
            Ok(())
        } else {
            Err(WalError::NotRecordBoundary { lsn: target })
        }
    }

    fn step(&mut self) -> Result<Step> {
        loop {
            let written = self.written();
            let segment_start = self.segment_start_of(self.position);
            if self.position == segment_start {
                self.position = Lsn(segment_start.0 + SEGMENT_HEADER_LEN);
            }
            if self.position >= written {
                return Ok(Step::End);
            }
            let segment = self.segment(self.position)?;
            if segment.end().0 - self.position.0 < FRAME_HEADER_LEN {
                self.position = segment.end();
                continue;
            }
            let header = self.read(&segment, self.position, FRAME_HEADER_LEN)?;
            let frame = decode_header(self.inner.salt, self.position, &header)
                .ok_or_else(|| Self::checksum_error(&segment, self.position))?;
            let (kind, payload_len, body_crc) = match frame {
                Frame::SegmentEnd { .. } => {
                    self.position = segment.end();
                    continue;
                }
                Frame::Record {
                    kind,
                    payload_len,
                    body_crc,
                    ..
                } => (kind, payload_len, body_crc),
            };
            let start = self.position;
            let end = Lsn(start.0 + frame.len());
            if end > written || end > segment.end() {
                return Err(Self::checksum_error(&segment, start));
            }
            let body_start = Lsn(start.0 + FRAME_HEADER_LEN);
            let body = self.read(&segment, body_start, frame.len() - FRAME_HEADER_LEN)?;
            if !check_body(&body, payload_len, body_crc) {
                return Err(Self::checksum_error(&segment, start));
            }
            self.position = end;
            return Ok(Step::Record(WalRecord {
                start,
                end,
                kind,
                payload: body.slice(..payload_len as usize),
            }));
        }
    }
}

impl Iterator for WalReader {
    type Item = Result<WalRecord>;

    fn next(&mut self) -> Option<Result<WalRecord>> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(Step::Record(record)) => Some(Ok(record)),
            Ok(Step::End) => None,
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}
