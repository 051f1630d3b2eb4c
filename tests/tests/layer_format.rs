//! Layer files: round trip against a naive reference, image-layer semantics, every byte of
//! a small layer flipped in turn (every read is the right page or an error naming the file
//! and offset, never wrong data), and checked-in format fixtures.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use pagefork_engine::layer::{LayerFile, LayerKind, LayerRange, write_layer};
use pagefork_engine::{BranchId, Depth, EngineError, Key, Lsn, StdFileSystem, Update};
use proptest::prelude::*;

fn delta_range(lsn_end: u64) -> LayerRange {
    LayerRange {
        kind: LayerKind::Delta,
        branch: BranchId(7),
        key_start: Key::new(0, 0),
        key_last: Key::new(10, 0),
        lsn_start: Lsn(0x28),
        lsn_end: Lsn(lsn_end),
    }
}

fn update_strategy() -> impl Strategy<Value = Update> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| Update::Image(Bytes::from(bytes))),
        3 => (0u32..100, prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(offset, bytes)| Update::Patch { offset, bytes: Bytes::from(bytes) }),
        1 => Just(Update::Drop),
    ]
}

fn versions_strategy() -> impl Strategy<Value = Vec<(Key, Lsn, Update)>> {
    prop::collection::btree_map(
        (0u32..3, 0u32..20, 0x28u64..0x2000),
        update_strategy(),
        0..60,
    )
    .prop_map(|map| {
        map.into_iter()
            .map(|((rel, block, lsn), update)| (Key::new(rel, block), Lsn(lsn), update))
            .collect()
    })
}

/// The reference: versions of `key` at or below `lsn`, newest first, down to an image or drop.
fn naive(versions: &[(Key, Lsn, Update)], key: Key, lsn: Lsn, depth: Depth) -> (Vec<Update>, bool) {
    let mut out = Vec::new();
    for (_, _, update) in versions
        .iter()
        .rev()
        .filter(|(k, l, _)| *k == key && *l <= lsn)
    {
        out.push(update.clone());
        if update.is_initializing() || depth == Depth::Newest {
            return (out, true);
        }
    }
    (out, false)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn delta_layers_round_trip(versions in versions_strategy(), probes in prop::collection::vec((0u32..3, 0u32..20, 0u64..0x2100), 20)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer");
        let summary = write_layer(&StdFileSystem, &path, &delta_range(0x2000), &versions).unwrap();
        let layer = LayerFile::open(&path, Some((summary.size, summary.checksum))).unwrap();
        prop_assert_eq!(layer.versions().unwrap(), versions.clone());
        prop_assert_eq!(layer.version_count(), versions.len());
        for (rel, block, lsn) in probes {
            let (key, lsn) = (Key::new(rel, block), Lsn(lsn));
            for depth in [Depth::ToWhole, Depth::Newest] {
                let mut got = Vec::new();
                let stop = layer.collect_versions(key, lsn, depth, &mut got).unwrap();
                prop_assert_eq!((got, stop), naive(&versions, key, lsn, depth));
            }
        }
    }
}

#[test]
fn an_image_layer_proves_what_exists_in_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    let range = LayerRange {
        kind: LayerKind::Image,
        branch: BranchId(1),
        key_start: Key::new(1, 0),
        key_last: Key::new(1, 99),
        lsn_start: Lsn(0x500),
        lsn_end: Lsn(0x501),
    };
    let page = Bytes::from(vec![3u8; 64]);
    write_layer(
        &StdFileSystem,
        &path,
        &range,
        &[(Key::new(1, 5), Lsn(0x500), Update::Image(page.clone()))],
    )
    .unwrap();
    let layer = LayerFile::open(&path, None).unwrap();
    let mut out = Vec::new();
    assert!(
        layer
            .collect_versions(Key::new(1, 5), Lsn(0x600), Depth::ToWhole, &mut out)
            .unwrap()
    );
    assert_eq!(out, vec![Update::Image(page)]);
    out.clear();
    assert!(
        layer
            .collect_versions(Key::new(1, 6), Lsn(0x600), Depth::Newest, &mut out)
            .unwrap(),
        "absent in range: proven absent"
    );
    assert_eq!(out, vec![Update::Drop]);
    out.clear();
    assert!(
        !layer
            .collect_versions(Key::new(2, 0), Lsn(0x600), Depth::ToWhole, &mut out)
            .unwrap(),
        "outside the key range"
    );
    assert!(
        !layer
            .collect_versions(Key::new(1, 5), Lsn(0x4FF), Depth::ToWhole, &mut out)
            .unwrap(),
        "below the image's LSN"
    );
    assert!(out.is_empty());
}

fn small_layer() -> Vec<(Key, Lsn, Update)> {
    vec![
        (
            Key::new(1, 1),
            Lsn(0x30),
            Update::Image(Bytes::from_static(b"first page image")),
        ),
        (
            Key::new(1, 1),
            Lsn(0x40),
            Update::Patch {
                offset: 2,
                bytes: Bytes::from_static(b"xy"),
            },
        ),
        (Key::new(1, 2), Lsn(0x38), Update::Drop),
        (
            Key::new(2, 0),
            Lsn(0x50),
            Update::Image(Bytes::from_static(b"second")),
        ),
    ]
}

#[test]
fn every_flipped_byte_is_an_error_naming_file_and_offset_or_a_right_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer");
    let versions = small_layer();
    let summary = write_layer(&StdFileSystem, &path, &delta_range(0x100), &versions).unwrap();
    let pristine = std::fs::read(&path).unwrap();
    let probes = [
        (Key::new(1, 1), Lsn(0x40)),
        (Key::new(1, 1), Lsn(0x35)),
        (Key::new(1, 2), Lsn(0x99)),
        (Key::new(2, 0), Lsn(0x99)),
    ];
    let expected: Vec<(Vec<Update>, bool)> = probes
        .iter()
        .map(|(key, lsn)| naive(&versions, *key, *lsn, Depth::ToWhole))
        .collect();
    let names_the_file = |error: &EngineError| match error {
        EngineError::CorruptFile {
            path: named,
            offset,
            ..
        } => named == &path && (*offset as usize) < pristine.len(),
        _ => false,
    };
    let (mut refused_at_open, mut refused_at_read) = (0, 0);
    for index in 0..pristine.len() {
        let mut damaged = pristine.clone();
        damaged[index] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        // With the catalog's checksum, every damaged byte is refused at open.
        let error = LayerFile::open(&path, Some((summary.size, summary.checksum))).unwrap_err();
        assert!(names_the_file(&error), "byte {index}: {error}");
        // Without it, the per-block checks must still never hand out wrong data.
        match LayerFile::open(&path, None) {
            Err(error) => {
                assert!(names_the_file(&error), "byte {index}: {error}");
                refused_at_open += 1;
            }
            Ok(layer) => {
                let mut any_error = false;
                for ((key, lsn), expected) in probes.iter().zip(&expected) {
                    let mut got = Vec::new();
                    match layer.collect_versions(*key, *lsn, Depth::ToWhole, &mut got) {
                        Ok(stop) => assert_eq!(
                            &(got, stop),
                            expected,
                            "byte {index}: wrong data for {key} at {lsn}"
                        ),
                        Err(error) => {
                            assert!(names_the_file(&error), "byte {index}: {error}");
                            any_error = true;
                        }
                    }
                }
                assert!(
                    any_error,
                    "byte {index} was flipped but every read succeeded"
                );
                refused_at_read += 1;
            }
        }
    }
    assert_eq!(refused_at_open + refused_at_read, pristine.len());
    assert!(refused_at_read > 0 && refused_at_open > 0);
}

#[test]
fn a_missing_layer_is_an_error_naming_it() {
    let missing = Path::new("/nonexistent/layer-file");
    let error = LayerFile::open(missing, None).unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/layer-file"),
        "{error}"
    );
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layer-v1")
}

/// Format version 1 layers checked into the repository must keep reading back exactly;
/// `PAGEFORK_WRITE_FIXTURES=1` writes them again after a deliberate format change.
#[test]
fn format_v1_layer_fixtures_read_back() {
    let image_range = LayerRange {
        kind: LayerKind::Image,
        branch: BranchId(1),
        key_start: Key::new(1, 0),
        key_last: Key::new(2, u32::MAX),
        lsn_start: Lsn(0x60),
        lsn_end: Lsn(0x61),
    };
    let image_versions = vec![
        (
            Key::new(1, 1),
            Lsn(0x60),
            Update::Image(Bytes::from_static(b"fiXt page image")),
        ),
        (
            Key::new(2, 0),
            Lsn(0x60),
            Update::Image(Bytes::from_static(b"second")),
        ),
    ];
    if std::env::var_os("PAGEFORK_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(fixture_dir()).unwrap();
        write_layer(
            &StdFileSystem,
            &fixture_dir().join("delta.layer"),
            &delta_range(0x100),
            &small_layer(),
        )
        .unwrap();
        write_layer(
            &StdFileSystem,
            &fixture_dir().join("image.layer"),
            &image_range,
            &image_versions,
        )
        .unwrap();
    }
    let delta = LayerFile::open(&fixture_dir().join("delta.layer"), None).unwrap();
    assert_eq!(delta.range(), &delta_range(0x100));
    assert_eq!(delta.versions().unwrap(), small_layer());
    let image = LayerFile::open(&fixture_dir().join("image.layer"), None).unwrap();
    assert_eq!(image.range(), &image_range);
    assert_eq!(image.versions().unwrap(), image_versions);
}
