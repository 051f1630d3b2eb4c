//! A gigabyte through `pagefork mount`, as a user copies a database file in: the real
//! binary with its default thresholds, so flushes cut the file's runs into L0 files of
//! their own and compaction moves them to L1 unrewritten while it runs; then 300 writes
//! at odd offsets and lengths across it, a remount, and every byte compared, and a
//! read-only mount at the LSN before those writes compared with the original bytes.
//! Needs root and /dev/fuse (CI has both).

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use support::cli::{ok_json, pagefork};
use support::mount::{Mount, require_fuse};

const SIZE: usize = 1 << 30;
const CHUNK: usize = 1 << 20;

/// The file read back through `path` equals `expected`, compared a megabyte at a time.
fn assert_same_bytes(path: &Path, expected: &[u8], what: &str) {
    let mut file = fs::File::open(path).unwrap();
    assert_eq!(
        file.metadata().unwrap().len(),
        expected.len() as u64,
        "{what}"
    );
    let mut chunk = vec![0u8; CHUNK];
    for (index, want) in expected.chunks(CHUNK).enumerate() {
        file.read_exact(&mut chunk[..want.len()]).unwrap();
        assert!(
            chunk[..want.len()] == *want,
            "{what}: the megabyte at offset {} differs",
            index * CHUNK
        );
    }
}

/// Layer files the catalog lists at L1 against those written as L1: the rest were moved.
fn moved_layers(data: &Path) -> u64 {
    let stats = ok_json(pagefork(data, &["stats", "--json"]));
    let listed_l1 = stats["layers"]["l1"].as_u64().unwrap();
    let written_l1 = fs::read_dir(data.join("layers"))
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".l1")
        })
        .count() as u64;
    listed_l1.saturating_sub(written_l1)
}

#[test]
fn a_gigabyte_written_then_scattered_over_reads_back_exactly_at_both_lsns() {
    require_fuse();
    let root = tempfile::tempdir().unwrap();
    let (data, dir) = (root.path().join("data"), root.path().join("mnt"));
    ok_json(pagefork(&data, &["init", "--json"]));
    let mut original = vec![0u8; SIZE];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut original)
        .unwrap();

    let mount = Mount::start(&data, "main", &dir, &[]);
    let mut file = fs::File::create(mount.path("db")).unwrap();
    for chunk in original.chunks(CHUNK) {
        file.write_all(chunk).unwrap();
    }
    file.sync_all().unwrap();
    drop(file);
    assert!(mount.terminate().success());
    let written_at = ok_json(pagefork(&data, &["branch", "show", "main", "--json"]))["head"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        moved_layers(&data) > 0,
        "compaction moved the file's runs while it was written"
    );

    let mount = Mount::start(&data, "main", &dir, &[]);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(mount.path("db"))
        .unwrap();
    let mut current = original.clone();
    let mut state = 0x5EED_u64;
    let mut next = |below: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize % below
    };
    for round in 0..300u32 {
        let offset = next(SIZE - 70_000);
        let len = 1 + next(70_000);
        let bytes: Vec<u8> = (0..len).map(|i| (i as u32 ^ round) as u8).collect();
        file.write_all_at(&bytes, offset as u64).unwrap();
        current[offset..offset + len].copy_from_slice(&bytes);
    }
    file.sync_all().unwrap();
    drop(file);
    assert!(mount.terminate().success());

    let mount = Mount::start(&data, "main", &dir, &[]);
    assert_same_bytes(&mount.path("db"), &current, "main after a remount");
    assert!(mount.terminate().success());
    let then = Mount::start(&data, "main", &dir, &["--lsn", &written_at]);
    assert_same_bytes(
        &then.path("db"),
        &original,
        "main at the LSN before the writes",
    );
    assert!(then.terminate().success());
}
