//! Encoding a layer file (the layout is in `format`): streamed to a sink piece by piece
//! (each block's header, payload and CRC as they are made), so writing a layer of any size
//! takes the index and what the sink holds (a streamed publish: one aligned block of
//! `fs::STAGING_BYTES`), not the layer's size, and each byte is copied once on its way to
//! the file.
//!
//! Invariants: versions are written sorted by (key, LSN), unique, inside the layer's
//! ranges, and an image layer holds only images (asserted: a violation is a caller's bug);
//! every block ends with the CRC32 of its bytes; the size and CRC32 returned are those of
//! exactly the bytes handed to the sink.

use bytes::BufMut;
use pagefork_wal::Lsn;

use super::format::{
    BLOCK_HEADER_LEN, FOOTER_LEN, FOOTER_MAGIC, FORMAT_VERSION, HEADER_LEN, INDEX_ENTRY_LEN,
    IndexEntry, LayerKind, LayerRange, MAGIC, encoded_len, put_key,
};
use crate::key::Key;
use crate::update::Update;

/// The memory writing a layer of `versions` holds: [`encode_to`]'s index, and the aligned
/// block the streamed publish gathers writes in (`fs::STAGING_BYTES`).
pub(crate) fn encoding_memory(versions: &[(Key, Lsn, Update)]) -> usize {
    crate::fs::STAGING_BYTES + versions.len() * std::mem::size_of::<IndexEntry>()
}

/// Encodes a layer into one `Vec`.
#[cfg(test)]
pub(crate) fn encode(range: &LayerRange, versions: &[(Key, Lsn, Update)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(versions));
    encode_to(range, versions, &mut |chunk| {
        out.extend_from_slice(chunk);
        Ok(())
    })
    .expect("a Vec takes every chunk");
    out
}

/// What [`encode_to`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Encoded {
    /// Bytes written: the file's size.
    pub(crate) size: u64,
    /// CRC32 of all of them.
    pub(crate) checksum: u32,
}

/// Encodes a layer and hands its bytes to `sink` in order, piece by piece (the sink
/// gathers them: a layer's pages are copied once, into the sink's buffer, not first into
/// a chunk of the encoder's). `versions` must be sorted by (key, LSN) with no duplicates,
/// inside the range (checked: a violation is a bug in the caller and asserts). An error
/// from `sink` ends the encoding and is returned.
pub(crate) fn encode_to(
    range: &LayerRange,
    versions: &[(Key, Lsn, Update)],
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<Encoded> {
    let mut out = Output::new(sink);
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.put_slice(&MAGIC);
    header.put_u32_le(FORMAT_VERSION);
    header.put_u8(match range.kind {
        LayerKind::Delta => 1,
        LayerKind::Image => 2,
    });
    header.put_slice(&[0; 3]);
    header.put_u64_le(range.branch.0);
    put_key(&mut header, range.key_start);
    put_key(&mut header, range.key_last);
    header.put_u64_le(range.lsn_start.0);
    header.put_u64_le(range.lsn_end.0);
    let header_crc = crc32fast::hash(&header);
    header.put_u32_le(header_crc);
    header.put_u32_le(0);
    debug_assert_eq!(header.len(), HEADER_LEN);
    out.put(&header)?;

    let mut index = Vec::with_capacity(versions.len());
    let mut previous: Option<(Key, Lsn)> = None;
    let mut block_header = Vec::with_capacity(BLOCK_HEADER_LEN);
    for (key, lsn, update) in versions {
        assert!(
            range.covers_key(*key),
            "{key} outside the layer's key range"
        );
        assert!(
            range.lsn_start <= *lsn && *lsn < range.lsn_end,
            "LSN {lsn} outside the layer's range"
        );
        assert!(
            previous < Some((*key, *lsn)),
            "layer versions must be sorted and unique"
        );
        if range.kind == LayerKind::Image {
            assert!(
                matches!(update, Update::Image(_)),
                "an image layer holds only images"
            );
        }
        previous = Some((*key, *lsn));
        let offset = out.offset();
        let (tag, patch_offset, bytes): (u8, u32, &[u8]) = match update {
            Update::Image(image) => (1, 0, image),
            Update::Patch { offset, bytes } => (2, *offset, bytes),
            Update::Drop => (3, 0, &[]),
        };
        block_header.clear();
        put_key(&mut block_header, *key);
        block_header.put_u64_le(lsn.0);
        block_header.put_u8(tag);
        block_header.put_slice(&[0; 3]);
        block_header.put_u32_le(patch_offset);
        block_header.put_u32_le(u32::try_from(bytes.len()).expect("a page fits u32"));
        out.put_block(&block_header, bytes)?;
        index.push(IndexEntry {
            key: *key,
            lsn: *lsn,
            offset,
        });
    }

    let index_offset = out.offset();
    let mut encoded_index = Vec::with_capacity(8 + index.len() * INDEX_ENTRY_LEN + 4);
    encoded_index.put_u64_le(index.len() as u64);
    for entry in &index {
        put_key(&mut encoded_index, entry.key);
        encoded_index.put_u64_le(entry.lsn.0);
        encoded_index.put_u64_le(entry.offset);
    }
    let index_crc = crc32fast::hash(&encoded_index);
    encoded_index.put_u32_le(index_crc);
    out.put(&encoded_index)?;

    let mut footer = Vec::with_capacity(FOOTER_LEN);
    footer.put_u64_le(index_offset);
    footer.put_u64_le(encoded_index.len() as u64);
    footer.put_u64_le(index.len() as u64);
    let footer_crc = crc32fast::hash(&footer);
    footer.put_u32_le(footer_crc);
    footer.put_slice(&FOOTER_MAGIC);
    out.put(&footer)?;
    let encoded = out.finish();
    debug_assert_eq!(encoded.size, encoded_len(versions) as u64);
    Ok(encoded)
}

/// Hands bytes to a sink, counting the offset and the CRC32 of everything handed over.
struct Output<'a> {
    sink: &'a mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    /// Bytes already handed to the sink.
    passed: u64,
    crc: crc32fast::Hasher,
}

impl<'a> Output<'a> {
    fn new(sink: &'a mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> Self {
        Output {
            sink,
            passed: 0,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// The offset the next byte will have.
    fn offset(&self) -> u64 {
        self.passed
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.pass_on(bytes)
    }

    /// A block: its header, its payload, and the CRC32 of both. The payload is hashed
    /// once: the file's CRC takes the block's in (`combine`) rather than hashing it again.
    fn put_block(&mut self, header: &[u8], payload: &[u8]) -> std::io::Result<()> {
        let mut block = crc32fast::Hasher::new();
        block.update(header);
        block.update(payload);
        let block_crc = block.clone().finalize().to_le_bytes();
        self.crc.combine(&block);
        self.crc.update(&block_crc);
        self.pass_on(header)?;
        self.pass_on(payload)?;
        self.pass_on(&block_crc)
    }

    fn pass_on(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if !bytes.is_empty() {
            (self.sink)(bytes)?;
            self.passed += bytes.len() as u64;
        }
        Ok(())
    }

    fn finish(self) -> Encoded {
        Encoded {
            size: self.passed,
            checksum: self.crc.finalize(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::branch::BranchId;
    use crate::layer::format::{decode_block, decode_layout};

    const PAGE: usize = 8192;

    /// 600 versions, about 2.9 MiB: images, patches and drops.
    fn versions() -> Vec<(Key, Lsn, Update)> {
        (0..600u32)
            .map(|block| {
                let update = match block % 5 {
                    0 => Update::Drop,
                    1 => Update::Patch {
                        offset: block,
                        bytes: Bytes::from(vec![block as u8; 100]),
                    },
                    _ => Update::Image(Bytes::from(vec![(block % 251) as u8; PAGE])),
                };
                (Key::new(7, block), Lsn(1000 + u64::from(block)), update)
            })
            .collect()
    }

    fn range() -> LayerRange {
        LayerRange {
            kind: LayerKind::Delta,
            branch: BranchId(3),
            key_start: Key::new(7, 0),
            key_last: Key::new(7, 599),
            lsn_start: Lsn(1000),
            lsn_end: Lsn(1600),
        }
    }

    #[test]
    fn a_layer_streams_in_pieces_no_bigger_than_a_page_and_decodes() {
        let versions = versions();
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        let encoded = encode_to(&range(), &versions, &mut |piece| {
            pieces.push(piece.to_vec());
            Ok(())
        })
        .unwrap();
        // The index is the one piece larger than a page (its count and CRC, and an entry
        // per version).
        let index_len = 12 + super::super::format::INDEX_ENTRY_LEN * versions.len();
        assert!(
            pieces
                .iter()
                .all(|piece| !piece.is_empty() && (piece.len() <= PAGE || piece.len() == index_len)),
            "piece sizes {:?}",
            pieces.iter().map(Vec::len).collect::<Vec<_>>()
        );
        let file: Vec<u8> = pieces.concat();
        assert_eq!(encoded.size, file.len() as u64);
        assert_eq!(file.len(), encoded_len(&versions));
        assert_eq!(encoded.checksum, crc32fast::hash(&file));
        let (decoded_range, index) = decode_layout(&file).unwrap();
        assert_eq!(decoded_range, range());
        assert_eq!(index.len(), versions.len());
        let file = Bytes::from(file);
        let index_at = super::super::format::index_offset(&file);
        for (entry, (key, lsn, update)) in index.iter().zip(&versions) {
            assert_eq!((entry.key, entry.lsn), (*key, *lsn));
            assert_eq!(&decode_block(&file, entry, index_at).unwrap(), update);
        }
    }

    #[test]
    fn a_failing_sink_ends_the_encoding_with_its_error() {
        let mut calls = 0;
        let error = encode_to(&range(), &versions(), &mut |_| {
            calls += 1;
            match calls {
                2 => Err(std::io::Error::other("disk full")),
                _ => Ok(()),
            }
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "disk full");
        assert_eq!(calls, 2, "nothing is handed over after the error");
    }
}
