//! Field encodings shared by the WAL records and the checkpoint file: little-endian
//! integers, length-prefixed bytes, keys, updates, branch options and time answers, and a
//! `Cursor` that reads them back failing with the field's name, never panicking.

use std::time::Duration;

use bytes::{BufMut, Bytes};
use pagefork_wal::Lsn;

use crate::branch::{BranchId, BranchOptions, Expiry, LsnForTime, TimeKind};
use crate::key::Key;
use crate::time::Timestamp;
use crate::update::Update;

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.put_u32_le(u32::try_from(bytes.len()).expect("page bytes fit u32"));
    out.put_slice(bytes);
}

pub(crate) fn put_name(out: &mut Vec<u8>, name: &str) {
    out.put_u16_le(u16::try_from(name.len()).expect("names are at most 63 bytes"));
    out.put_slice(name.as_bytes());
}

/// has parent u8 (0/1) [+ parent branch id u64, branch point u64].
pub(crate) fn put_parent(out: &mut Vec<u8>, parent: Option<(BranchId, Lsn)>) {
    match parent {
        None => out.put_u8(0),
        Some((parent, branch_point)) => {
            out.put_u8(1);
            out.put_u64_le(parent.0);
            out.put_u64_le(branch_point.0);
        }
    }
}

pub(crate) fn put_key(out: &mut Vec<u8>, key: Key) {
    out.put_u32_le(key.rel);
    out.put_u32_le(key.block);
}

/// The bytes [`put_key`] writes.
pub(crate) const KEY_LEN: usize = 8;

/// The bytes [`put_update`] writes for `update`.
pub(crate) fn update_len(update: &Update) -> usize {
    match update {
        Update::Image(image) => 1 + 4 + image.len(),
        Update::Patch { bytes, .. } => 1 + 4 + 4 + bytes.len(),
        Update::Drop => 1,
    }
}

/// tag u8 (1 image, 2 patch, 3 drop); image: len u32 + bytes; patch: offset u32, len u32 + bytes.
pub(crate) fn put_update(out: &mut Vec<u8>, update: &Update) {
    match update {
        Update::Image(image) => {
            out.put_u8(1);
            put_bytes(out, image);
        }
        Update::Patch { offset, bytes } => {
            out.put_u8(2);
            out.put_u32_le(*offset);
            put_bytes(out, bytes);
        }
        Update::Drop => out.put_u8(3),
    }
}

/// expiry tag u8 (0 never, 1 ttl, 2 at) + u64 micros.
pub(crate) fn put_expiry(out: &mut Vec<u8>, expiry: Expiry) {
    let (tag, value) = match expiry {
        Expiry::Never => (0, 0),
        Expiry::Ttl(ttl) => (1, u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX)),
        Expiry::At(time) => (2, time.0),
    };
    out.put_u8(tag);
    out.put_u64_le(value);
}

/// has window u8 (0/1) + u64 micros (0 without).
pub(crate) fn put_window(out: &mut Vec<u8>, window: Option<Duration>) {
    out.put_u8(u8::from(window.is_some()));
    out.put_u64_le(window.map_or(0, |window| {
        u64::try_from(window.as_micros()).unwrap_or(u64::MAX)
    }));
}

/// expiry (as `put_expiry`), protected u8.
pub(crate) fn put_options(out: &mut Vec<u8>, options: BranchOptions) {
    put_expiry(out, options.expiry);
    out.put_u8(u8::from(options.protected));
}

/// present u8 (0/1) [+ requested u64, lsn u64, has commit time u8 + commit time u64, kind u8].
pub(crate) fn put_lsn_for_time(out: &mut Vec<u8>, answer: Option<LsnForTime>) {
    let Some(answer) = answer else {
        out.put_u8(0);
        return;
    };
    out.put_u8(1);
    out.put_u64_le(answer.requested.0);
    out.put_u64_le(answer.lsn.0);
    out.put_u8(u8::from(answer.commit_time.is_some()));
    out.put_u64_le(answer.commit_time.map_or(0, |time| time.0));
    out.put_u8(match answer.kind {
        TimeKind::Present => 0,
        TimeKind::Future => 1,
        TimeKind::Past => 2,
        TimeKind::NoData => 3,
    });
}

/// Reads fields off encoded bytes, failing with the field's name instead of panicking.
pub(crate) struct Cursor {
    bytes: Bytes,
    position: usize,
}

impl Cursor {
    pub(crate) fn new(bytes: Bytes) -> Cursor {
        Cursor { bytes, position: 0 }
    }

    pub(crate) fn take(&mut self, len: usize, field: &str) -> Result<Bytes, String> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "data ends at byte {} while reading {field} ({len} bytes at byte {})",
                self.bytes.len(),
                self.position
            ));
        };
        let slice = self.bytes.slice(self.position..end);
        self.position = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], String> {
        let bytes = self.take(N, field)?;
        let mut array = [0u8; N];
        array.copy_from_slice(&bytes);
        Ok(array)
    }

    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn flag(&mut self, field: &str) -> Result<bool, String> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(format!("{field} is {value}, expected 0 or 1")),
        }
    }

    pub(crate) fn u16(&mut self, field: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn bytes(&mut self, field: &str) -> Result<Bytes, String> {
        let len = self.u32(field)? as usize;
        self.take(len, field)
    }

    pub(crate) fn name(&mut self) -> Result<String, String> {
        let len = self.u16("name length")?;
        String::from_utf8(self.take(len as usize, "name")?.to_vec())
            .map_err(|_| "branch name is not UTF-8".to_owned())
    }

    pub(crate) fn parent(&mut self) -> Result<Option<(BranchId, Lsn)>, String> {
        if !self.flag("has parent")? {
            return Ok(None);
        }
        Ok(Some((
            BranchId(self.u64("parent id")?),
            Lsn(self.u64("branch point")?),
        )))
    }

    pub(crate) fn key(&mut self) -> Result<Key, String> {
        Ok(Key::new(self.u32("rel")?, self.u32("block")?))
    }

    pub(crate) fn update(&mut self, key: Key) -> Result<Update, String> {
        Ok(match self.u8("update tag")? {
            1 => Update::Image(self.bytes("image")?),
            2 => {
                let offset = self.u32("patch offset")?;
                Update::Patch {
                    offset,
                    bytes: self.bytes("patch")?,
                }
            }
            3 => Update::Drop,
            tag => return Err(format!("unknown update tag {tag} for {key}")),
        })
    }

    pub(crate) fn expiry(&mut self) -> Result<Expiry, String> {
        let tag = self.u8("expiry tag")?;
        let value = self.u64("expiry")?;
        Ok(match tag {
            0 => Expiry::Never,
            1 => Expiry::Ttl(Duration::from_micros(value)),
            2 => Expiry::At(Timestamp(value)),
            tag => return Err(format!("unknown expiry tag {tag}")),
        })
    }

    pub(crate) fn window(&mut self) -> Result<Option<Duration>, String> {
        let present = self.flag("has PITR window")?;
        let micros = self.u64("PITR window")?;
        Ok(present.then(|| Duration::from_micros(micros)))
    }

    pub(crate) fn options(&mut self) -> Result<BranchOptions, String> {
        Ok(BranchOptions {
            expiry: self.expiry()?,
            protected: self.flag("protected")?,
        })
    }

    pub(crate) fn lsn_for_time(&mut self) -> Result<Option<LsnForTime>, String> {
        if !self.flag("created at a time")? {
            return Ok(None);
        }
        let requested = Timestamp(self.u64("requested time")?);
        let lsn = Lsn(self.u64("resolved LSN")?);
        let has_commit_time = self.flag("has commit time")?;
        let commit_time = Timestamp(self.u64("commit time")?);
        let kind = match self.u8("time kind")? {
            0 => TimeKind::Present,
            1 => TimeKind::Future,
            2 => TimeKind::Past,
            3 => TimeKind::NoData,
            tag => return Err(format!("unknown time kind {tag}")),
        };
        Ok(Some(LsnForTime {
            requested,
            lsn,
            commit_time: has_commit_time.then_some(commit_time),
            kind,
        }))
    }

    /// How many bytes have been read: where a failed read or check stopped (damage is
    /// said at this offset).
    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// Fails if bytes are left after the last field.
    pub(crate) fn finish(self) -> Result<(), String> {
        if self.position == self.bytes.len() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected bytes after the last field",
                self.bytes.len() - self.position
            ))
        }
    }
}
