//! Object keys under a location's prefix. Every key of an object a process writes carries
//! its generation, so two processes never write one key, and one key always names one
//! content: a layer's and a WAL object's key carry the CRC32 of their bytes, a catalog's
//! and the metadata file's a random number, created only if free.

use pagefork_wal::Lsn;

/// Directory of the generation markers.
pub(crate) const GENERATIONS_DIR: &str = "generations";
/// Directory of the indexes.
pub(crate) const INDEX_DIR: &str = "index";

/// The marker a process writes when it claims `generation`.
pub(crate) fn generation_marker(generation: u32) -> String {
    format!("{GENERATIONS_DIR}/{generation:08X}")
}

/// The generation a marker's name (below `generations/`) stands for.
pub(crate) fn parse_generation_marker(name: &str) -> Option<u32> {
    parse_hex_u32(name)
}

/// Generation `generation`'s index.
pub(crate) fn index(generation: u32) -> String {
    format!("{INDEX_DIR}/{generation:08X}.json")
}

/// The generation an index's name (below `index/`) stands for.
pub(crate) fn parse_index(name: &str) -> Option<u32> {
    parse_hex_u32(name.strip_suffix(".json")?)
}

/// A layer file's object.
pub(crate) fn layer(name: &str, crc32: u32, generation: u32) -> String {
    format!("layers/{name}.{crc32:08X}.g{generation:08X}")
}

/// The object of `len` bytes of a WAL segment from `offset`.
pub(crate) fn wal(start: Lsn, offset: u64, len: u64, crc32: u32, generation: u32) -> String {
    format!(
        "wal/{:016X}-{offset:08X}-{len:08X}.{crc32:08X}.g{generation:08X}",
        start.0
    )
}

/// A catalog's object: `unique` is random, and the object is created only if the key is
/// free. (Not named by a checksum: a catalog ends with the CRC32 of what precedes it, so
/// the CRC32 of every catalog is the same constant, CRC-32's residue.)
pub(crate) fn catalog(unique: u64, generation: u32) -> String {
    format!("catalogs/{unique:016X}.g{generation:08X}")
}

/// The store metadata file's object (named like a catalog's, for the same reason).
pub(crate) fn meta(unique: u64, generation: u32) -> String {
    format!("meta/{unique:016X}.g{generation:08X}")
}

/// The generation a data object's key carries (its `.gGGGGGGGG` suffix).
pub(crate) fn generation_of(key: &str) -> Option<u32> {
    let (_, suffix) = key.rsplit_once(".g")?;
    parse_hex_u32(suffix)
}

fn parse_hex_u32(hex: &str) -> Option<u32> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_refuse_strangers() {
        assert_eq!(parse_generation_marker("0000002A"), Some(42));
        assert_eq!(
            parse_index(index(7).strip_prefix("index/").unwrap_or_default()),
            Some(7)
        );
        assert_eq!(parse_index("0000002A"), None);
        assert_eq!(parse_generation_marker("2A"), None);
        assert_eq!(parse_generation_marker("0000002G"), None);
        assert_eq!(generation_of(&layer("a.l0", 1, 0x2A)), Some(0x2A));
        assert_eq!(generation_of("layers/a.l0"), None);
        assert_eq!(
            wal(Lsn(0x100_0000), 0x10, 0x28, 0xDEAD_BEEF, 3),
            "wal/0000000001000000-00000010-00000028.DEADBEEF.g00000003"
        );
    }
}
