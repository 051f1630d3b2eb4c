//! fsx through the real mount: random operations made with ordinary system calls (create,
//! mkdir, symlink, writes at odd offsets and lengths, holes, past 4 GiB, truncations up and
//! down, chmod, unlink, rmdir, rename with replacement) against the model of
//! `pagefork_tests::files_model`, comparing every outcome (the errno of a refusal too),
//! with remounts, and read-only mounts at earlier times and LSNs checked against the
//! model's state then. `PAGEFORK_FSX_SEED` and `PAGEFORK_FSX_STEPS` change the run.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pagefork_engine::Timestamp;
use pagefork_tests::TestRng;
use pagefork_tests::files_model::{
    FileOp, Model, Node, OpLimits, Outcome, SparseFile, Special, random_op,
};
use support::cli::{ok_json, pagefork};
use support::mount::Mount;

fn path_of(root: &Path, path: &[Vec<u8>]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut full = root.to_path_buf();
    for name in path {
        full.push(std::ffi::OsStr::from_bytes(name));
    }
    full
}

fn refusal(error: &std::io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(2) => "NotFound",
        Some(17) => "Exists",
        Some(20) => "NotDirectory",
        Some(21) => "IsDirectory",
        Some(39) => "NotEmpty",
        Some(36) => "NameTooLong",
        Some(22) => "IntoOwnSubtree",
        _ => panic!("unexpected error: {error}"),
    }
}

fn run(root: &Path, op: &FileOp) -> Outcome {
    use std::os::unix::ffi::OsStrExt;
    let at = |path: &[Vec<u8>]| path_of(root, path);
    let joined = |dir: &[Vec<u8>], name: &[u8]| at(dir).join(std::ffi::OsStr::from_bytes(name));
    let result = match op {
        FileOp::Create(dir, name, mode) => fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(joined(dir, name))
            .and_then(|file| file.set_permissions(fs::Permissions::from_mode(*mode))),
        FileOp::Mkdir(dir, name, mode) => fs::create_dir(joined(dir, name)).and_then(|()| {
            fs::set_permissions(joined(dir, name), fs::Permissions::from_mode(*mode))
        }),
        FileOp::Symlink(dir, name, target) => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), joined(dir, name))
        }
        FileOp::Mknod(dir, name, special, mode) => {
            let (kind, rdev) = special_kind(*special);
            nix::sys::stat::mknod(
                &joined(dir, name),
                kind,
                nix::sys::stat::Mode::from_bits_truncate(0),
                u64::from(rdev),
            )
            .map_err(std::io::Error::from)
            .and_then(|()| {
                fs::set_permissions(joined(dir, name), fs::Permissions::from_mode(*mode))
            })
        }
        FileOp::Write(path, offset, data) => fs::OpenOptions::new()
            .write(true)
            .open(at(path))
            .and_then(|file| file.write_all_at(data, *offset)),
        FileOp::Truncate(path, size) => fs::OpenOptions::new()
            .write(true)
            .open(at(path))
            .and_then(|file| file.set_len(*size)),
        FileOp::Chmod(path, mode) => {
            fs::set_permissions(at(path), fs::Permissions::from_mode(*mode))
        }
        FileOp::Unlink(path) => fs::remove_file(at(path)),
        FileOp::Rmdir(path) => fs::remove_dir(at(path)),
        FileOp::Rename(from, dir, name) => fs::rename(at(from), joined(dir, name)),
    };
    result.map_err(|error| refusal(&error))
}

/// Asserts that the directory tree under `root` is exactly `model`.
fn check(root: &Path, model: &Model, context: &str) {
    check_node(root, &model.root, context);
}

fn check_node(path: &Path, node: &Node, context: &str) {
    let metadata = fs::symlink_metadata(path)
        .unwrap_or_else(|error| panic!("{context}: {}: {error}", path.display()));
    let where_ = format!("{context}: {}", path.display());
    match node {
        Node::Dir(entries, mode) => {
            assert!(metadata.is_dir(), "{where_}: not a directory");
            assert_eq!(metadata.mode() & 0o7777, *mode, "{where_}: mode");
            let mut names: Vec<Vec<u8>> = fs::read_dir(path)
                .unwrap()
                .map(|entry| {
                    use std::os::unix::ffi::OsStrExt;
                    entry.unwrap().file_name().as_bytes().to_vec()
                })
                .collect();
            names.sort();
            let expected: Vec<Vec<u8>> = entries.keys().cloned().collect();
            assert_eq!(names, expected, "{where_}: entries");
            let subdirs = entries
                .values()
                .filter(|node| matches!(node, Node::Dir(..)))
                .count();
            assert_eq!(
                metadata.nlink() as usize,
                2 + subdirs,
                "{where_}: link count"
            );
            for (name, child) in entries {
                check_node(&path_of(path, std::slice::from_ref(name)), child, context);
            }
        }
        Node::File(file, mode) => {
            assert!(metadata.is_file(), "{where_}: not a file");
            assert_eq!(metadata.mode() & 0o7777, *mode, "{where_}: mode");
            assert_eq!(metadata.len(), file.size, "{where_}: size");
            check_bytes(path, file, &where_);
        }
        Node::Link(target) => {
            use std::os::unix::ffi::OsStrExt;
            assert!(metadata.file_type().is_symlink(), "{where_}: not a symlink");
            assert_eq!(
                fs::read_link(path).unwrap().as_os_str().as_bytes(),
                &target[..],
                "{where_}"
            );
        }
        Node::Special(special, mode) => {
            let (kind, rdev) = special_kind(*special);
            let format = nix::sys::stat::SFlag::S_IFMT.bits();
            assert_eq!(metadata.mode() & format, kind.bits(), "{where_}: kind");
            assert_eq!(metadata.rdev(), u64::from(rdev), "{where_}: device");
            assert_eq!(metadata.mode() & 0o7777, *mode, "{where_}: mode");
        }
    }
}

fn special_kind(special: Special) -> (nix::sys::stat::SFlag, u32) {
    use nix::sys::stat::SFlag;
    match special {
        Special::Fifo => (SFlag::S_IFIFO, 0),
        Special::Socket => (SFlag::S_IFSOCK, 0),
        Special::CharDevice(rdev) => (SFlag::S_IFCHR, rdev),
        Special::BlockDevice(rdev) => (SFlag::S_IFBLK, rdev),
    }
}

fn check_bytes(path: &Path, file: &SparseFile, where_: &str) {
    let handle = fs::File::open(path).unwrap();
    if file.size <= 1 << 20 {
        assert!(
            fs::read(path).unwrap() == file.read(0, 2 << 20),
            "{where_}: bytes differ"
        );
    }
    for (offset, len) in file.probes() {
        let expected = file.read(offset, len);
        let mut read = vec![0u8; expected.len()];
        handle.read_exact_at(&mut read, offset).unwrap();
        assert!(
            read == expected,
            "{where_}: bytes at {offset} (+{len}) differ"
        );
    }
}

fn number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_operations_through_the_mount_match_the_model_at_every_state() {
    let seed = number("PAGEFORK_FSX_SEED", 7);
    let steps = number("PAGEFORK_FSX_STEPS", 260);
    eprintln!("PAGEFORK_FSX_SEED={seed}");
    let root = tempfile::tempdir().unwrap();
    let (data, dir) = (root.path().join("data"), root.path().join("mnt"));
    ok_json(pagefork(&data, &["init", "--json"]));
    let mut mount = Some(Mount::start(&data, "main", &dir, &[]));
    let mut rng = TestRng::new(seed);
    let limits = OpLimits {
        max_write: 3 * 8192,
        page_size: 8192,
        far_per_mille: 10,
        path_names_only: true,
    };
    let mut model = Model::default();
    // (time after the operation, LSN after it once known, the model then)
    let mut history: Vec<(Timestamp, Model)> = Vec::new();
    let (mut remounts, mut views, mut refusals) = (0, 0, 0);
    for step in 0..steps {
        let context = format!("seed {seed} step {step}");
        match rng.below(100) {
            0..=1 => {
                assert!(mount.take().unwrap().terminate().success());
                mount = Some(Mount::start(&data, "main", &dir, &[]));
                check(&dir, &model, &format!("{context} after a remount"));
                remounts += 1;
            }
            2..=3 if !history.is_empty() => {
                assert!(mount.take().unwrap().terminate().success());
                let (time, past) = rng.pick(&history).unwrap().clone();
                let view_dir = root.path().join("view");
                let view = Mount::start(&data, "main", &view_dir, &["--time", &time.to_string()]);
                check(&view_dir, &past, &format!("{context} read-only at {time}"));
                let refused = fs::write(view_dir.join("new-file"), b"x").unwrap_err();
                assert_eq!(refused.raw_os_error(), Some(30), "{context}: EROFS");
                assert!(view.terminate().success());
                // The same state by LSN: the time's answer names it.
                let answer = ok_json(pagefork(
                    &data,
                    &["lsn-for-time", "main", &time.to_string(), "--json"],
                ));
                let lsn = answer["lsn"].as_str().unwrap().to_owned();
                let view = Mount::start(&data, "main", &view_dir, &["--lsn", &lsn]);
                check(&view_dir, &past, &format!("{context} read-only at {lsn}"));
                assert!(view.terminate().success());
                mount = Some(Mount::start(&data, "main", &dir, &[]));
                views += 1;
            }
            _ => {
                let op = random_op(&mut rng, &model, limits);
                let expected = model.apply(&op);
                let got = run(&dir, &op);
                assert_eq!(got, expected, "{context}: {op:?}");
                refusals += usize::from(got.is_err());
                if got.is_ok() {
                    // The next operation's commit comes later than this instant.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    history.push((
                        Timestamp::from_system_time(std::time::SystemTime::now()),
                        model.clone(),
                    ));
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                if step % 10 == 0 {
                    check(&dir, &model, &format!("{context} after {op:?}"));
                }
            }
        }
    }
    check(&dir, &model, &format!("seed {seed} at the end"));
    assert!(mount.take().unwrap().terminate().success());
    eprintln!("remounts {remounts}, past views {views}, refusals {refusals}");
    assert!(
        remounts > 0 && views > 0 && refusals > 0,
        "the generator missed a kind of step"
    );
}
