//! `pagefork mount` as users run it: the real binary mounting a branch with FUSE, files
//! written with ordinary system calls, SIGTERM and `umount` to stop it, read-only mounts
//! at an LSN and at a time, branches of the tree, SIGKILL, and the refusals that must
//! leave the store as it was. Needs root and /dev/fuse (CI has both).

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pagefork_tests::tree_snapshot;
use support::cli::{ok_json, pagefork};
use support::mount::{Mount, is_mounted, require_fuse};

fn init(data: &Path) {
    ok_json(pagefork(data, &["init", "--json"]));
}

fn head(data: &Path, branch: &str) -> String {
    ok_json(pagefork(data, &["branch", "show", branch, "--json"]))["head"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A new store in a temporary directory with `main` mounted: the temporary directory
/// (removed when dropped, so the test keeps it), the data directory, the mount point and
/// the mount.
fn store_with_main_mounted() -> (tempfile::TempDir, PathBuf, PathBuf, Mount) {
    let root = tempfile::tempdir().unwrap();
    let (data, dir) = (root.path().join("data"), root.path().join("mnt"));
    init(&data);
    let mount = Mount::start(&data, "main", &dir, &[]);
    (root, data, dir, mount)
}

/// The permission bits `stat` shows for `path` (set-user-ID, set-group-ID and sticky
/// included).
fn permission_bits(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Bytes that differ everywhere and are not page-aligned in length.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn files_written_through_a_mount_survive_unmount_and_remount() {
    let (_root, data, dir, mount) = store_with_main_mounted();
    assert!(mount.announced.contains("writable"), "{}", mount.announced);
    // Sequential readers get 4 MiB of read-ahead, not FUSE's 128 KiB.
    let device = std::os::unix::fs::MetadataExt::dev(&fs::metadata(&dir).unwrap());
    let read_ahead = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        nix::sys::stat::major(device),
        nix::sys::stat::minor(device)
    );
    assert_eq!(fs::read_to_string(&read_ahead).unwrap().trim(), "4096");
    // Other commands are refused while the mount holds the store, and told what to do;
    // `recover` too, which called such a store damaged beyond salvage (found by a review).
    for command in [
        &["branch", "list"][..],
        &["recover"],
        &["--json", "recover"],
    ] {
        let refused = pagefork(&data, command);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        let stdout = String::from_utf8_lossy(&refused.stdout);
        assert!(
            !refused.status.success()
                && stderr.contains("another pagefork process has this store open")
                && stderr.contains("pagefork serve")
                && !stdout.contains("unsalvageable"),
            "{command:?}: {stdout}{stderr}"
        );
    }
    // A file still open shows the blocks it was given once they reached the mount (a
    // review found 0 until the close: `du` said 0 and `tar -S` archived holes).
    {
        use std::os::unix::fs::MetadataExt;
        let mut open = fs::File::create(mount.path("open")).unwrap();
        open.write_all(&pattern(75_000, 3)).unwrap();
        open.sync_all().unwrap();
        let blocks = fs::metadata(mount.path("open")).unwrap().blocks();
        assert!(blocks * 512 >= 75_000, "{blocks} blocks for 75,000 bytes");
    }
    let big = pattern(20 << 20, 7);
    fs::write(mount.path("big"), &big).unwrap();
    fs::create_dir_all(mount.path("a/b/c")).unwrap();
    fs::write(mount.path("a/b/c/small"), b"hello").unwrap();
    std::os::unix::fs::symlink("../big", mount.path("a/link")).unwrap();
    fs::rename(mount.path("a/b/c/small"), mount.path("a/moved")).unwrap();
    fs::set_permissions(mount.path("a/moved"), fs::Permissions::from_mode(0o640)).unwrap();
    // A sparse file past 4 GiB, written at odd offsets.
    let sparse = fs::File::create(mount.path("sparse")).unwrap();
    sparse.write_all_at(b"far", (5 << 30) + 3).unwrap();
    sparse.write_all_at(b"near", 8191).unwrap();
    sparse.sync_all().unwrap();
    drop(sparse);
    // Truncated down into a page, then up again: the cut bytes read as zeros.
    let mut cut = fs::File::create(mount.path("cut")).unwrap();
    cut.write_all(&pattern(30_000, 1)).unwrap();
    cut.set_len(10_001).unwrap();
    cut.set_len(20_000).unwrap();
    drop(cut);
    assert_eq!(
        fs::read_link(mount.path("a/link")).unwrap(),
        Path::new("../big")
    );
    assert!(
        matches!(fs::hard_link(mount.path("big"), mount.path("hard")), Err(error) if error.raw_os_error() == Some(1))
    );
    let status = mount.terminate();
    assert!(status.success(), "{status}");
    assert!(!is_mounted(&dir));
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        0,
        "the mount point is empty again"
    );

    let mount = Mount::start(&data, "main", &dir, &[]);
    assert!(
        fs::read(mount.path("big")).unwrap() == big,
        "big file differs after remount"
    );
    assert_eq!(fs::read(mount.path("a/moved")).unwrap(), b"hello");
    let mode = fs::metadata(mount.path("a/moved"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
    assert!(!mount.path("a/b/c/small").exists());
    let sparse = fs::File::open(mount.path("sparse")).unwrap();
    assert_eq!(sparse.metadata().unwrap().len(), (5 << 30) + 6);
    let mut buffer = [1u8; 16];
    sparse.read_exact_at(&mut buffer, (5 << 30) - 10).unwrap();
    assert_eq!(&buffer[..13], &[0; 13]);
    assert_eq!(&buffer[13..], b"far");
    sparse.read_exact_at(&mut buffer[..6], 8190).unwrap();
    assert_eq!(&buffer[..6], b"\0near\0");
    drop(sparse);
    let cut = fs::read(mount.path("cut")).unwrap();
    assert_eq!(cut.len(), 20_000);
    assert_eq!(cut[..10_001], pattern(30_000, 1)[..10_001]);
    assert!(
        cut[10_001..].iter().all(|&byte| byte == 0),
        "bytes cut off came back"
    );
    let status = mount.unmount_externally();
    assert!(
        status.success(),
        "umount must end the command cleanly: {status}"
    );
}

#[test]
fn read_only_mounts_show_the_state_at_an_lsn_or_a_time() {
    let (_root, data, dir, mount) = store_with_main_mounted();
    fs::write(mount.path("state"), b"first").unwrap();
    fs::File::open(mount.path("state"))
        .unwrap()
        .sync_all()
        .unwrap();
    assert!(mount.terminate().success());
    let first_lsn = head(&data, "main");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = pagefork_engine::Timestamp::from_system_time(std::time::SystemTime::now());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mount = Mount::start(&data, "main", &dir, &[]);
    fs::write(mount.path("state"), b"second").unwrap();
    fs::write(mount.path("later"), b"x").unwrap();
    assert!(mount.terminate().success());

    let at_lsn = Mount::start(&data, "main", &dir, &["--lsn", &first_lsn]);
    assert!(
        at_lsn
            .announced
            .contains(&format!("read-only at {first_lsn}")),
        "{}",
        at_lsn.announced
    );
    assert_eq!(fs::read(at_lsn.path("state")).unwrap(), b"first");
    assert!(!at_lsn.path("later").exists());
    let refused = fs::write(at_lsn.path("new"), b"x").unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ReadOnlyFilesystem);
    assert!(at_lsn.terminate().success());

    let at_time = Mount::start(&data, "main", &dir, &["--time", &between.to_string()]);
    assert!(
        at_time
            .announced
            .contains(&format!("{between} -> LSN {first_lsn}")),
        "says what the time snapped to: {}",
        at_time.announced
    );
    assert_eq!(fs::read(at_time.path("state")).unwrap(), b"first");
    assert!(at_time.terminate().success());

    let latest = Mount::start(&data, "main", &dir, &["--read-only"]);
    assert_eq!(fs::read(latest.path("state")).unwrap(), b"second");
    assert!(fs::remove_file(latest.path("later")).is_err());
    assert!(latest.terminate().success());
}

/// A kernel before 6.16 gets no writeback cache (found by a review: its writeback did not
/// wait for the mount, so a branch at latest could miss a write that had returned): the
/// mount then hands every write over before it returns, as `PAGEFORK_MOUNT_WRITE_THROUGH`
/// makes it do here. What it shows is what a remount shows.
#[test]
fn a_write_through_mount_keeps_what_it_shows() {
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    let (data, dir) = (root.path().join("data"), root.path().join("mnt"));
    init(&data);
    let through = [("PAGEFORK_MOUNT_WRITE_THROUGH", "1")];
    let mount = Mount::try_start_with_env(&data, "main", &dir, &[], &through).unwrap();
    assert!(
        mount.announced.contains("writes go through"),
        "{}",
        mount.announced
    );
    let mut file = fs::File::create(mount.path("f")).unwrap();
    file.write_all(&pattern(3 << 20, 5)).unwrap();
    file.write_all_at(b"odd", (5 << 20) + 17).unwrap();
    file.set_len((4 << 20) + 9).unwrap();
    file.write_all_at(b"tail", (6 << 20) + 1).unwrap();
    drop(file);
    let shown = fs::metadata(mount.path("f")).unwrap();
    let bytes = fs::read(mount.path("f")).unwrap();
    assert_eq!(bytes.len() as u64, (6 << 20) + 5);
    assert!(bytes[..3 << 20] == pattern(3 << 20, 5)[..]);
    assert!(bytes[3 << 20..(6 << 20) + 1].iter().all(|&byte| byte == 0));
    assert!(mount.terminate().success());
    let json = Mount::try_start_with_env(&data, "main", &dir, &["--json"], &through).unwrap();
    let announced: serde_json::Value = serde_json::from_str(&json.announced).unwrap();
    assert_eq!(announced["write_through"], true, "{announced}");
    assert!(json.terminate().success());
    let again = Mount::start(&data, "main", &dir, &["--json"]);
    let announced: serde_json::Value = serde_json::from_str(&again.announced).unwrap();
    assert_eq!(announced["write_through"], false, "{announced}");
    let remounted = fs::metadata(again.path("f")).unwrap();
    assert_eq!(
        (remounted.size(), remounted.mtime(), remounted.mtime_nsec()),
        (shown.size(), shown.mtime(), shown.mtime_nsec())
    );
    assert!(fs::read(again.path("f")).unwrap() == bytes);
    assert!(again.terminate().success());
}

/// Found by a review: a directory opened before a change and read after it gave the kernel
/// the listing of the open, which it then kept as the directory's until the next change:
/// every later listing missed the new name.
#[test]
fn a_listing_read_after_a_change_through_an_older_handle_is_not_kept_stale() {
    let (_root, _data, _dir, mount) = store_with_main_mounted();
    let dir = mount.path("d");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("old"), b"o").unwrap();
    // Opened, not read yet (the C library reads at the first entry asked for).
    let opened = fs::read_dir(&dir).unwrap();
    fs::write(dir.join("new"), b"n").unwrap();
    // The kernel has the directory's new attributes before the first read of the handle.
    fs::metadata(&dir).unwrap();
    let mut first: Vec<String> = opened
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    first.sort();
    assert_eq!(first, ["new", "old"]);
    assert_eq!(listing(&dir), ["new", "old"], "a later listing");
    assert!(mount.terminate().success());
}

/// Found by a review: mounts were `dev` and `suid`, so a device node or set-user-ID root
/// program crafted in a branch's pages (the HTTP page API writes any page) worked for every
/// user of the machine.
#[test]
fn device_nodes_and_set_user_id_bits_do_not_work_on_a_mount() {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    use nix::sys::statvfs::{FsFlags, statvfs};
    let (_root, _data, _dir, mount) = store_with_main_mounted();
    let null = mount.path("null");
    mknod(
        &null,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    let refused = fs::OpenOptions::new().write(true).open(&null).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(nix::libc::EACCES), "{refused}");
    let flags = statvfs(&mount.path("")).unwrap().flags();
    assert!(
        flags.contains(FsFlags::ST_NOSUID) && flags.contains(FsFlags::ST_NODEV),
        "{flags:?}"
    );
    // The bits are stored and shown all the same.
    fs::write(mount.path("program"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(mount.path("program"), fs::Permissions::from_mode(0o4755)).unwrap();
    assert_eq!(permission_bits(&mount.path("program")), 0o4755);
    assert!(mount.terminate().success());
}

#[test]
fn a_branch_of_a_tree_is_the_tree_and_diverges_from_it() {
    let (_root, data, dir, mount) = store_with_main_mounted();
    fs::create_dir(mount.path("db")).unwrap();
    fs::write(mount.path("db/table"), pattern(100_000, 3)).unwrap();
    fs::write(mount.path("db/gone"), b"soon gone").unwrap();
    fs::write(mount.path("same"), b"untouched").unwrap();
    fs::write(mount.path("meta"), b"m").unwrap();
    // Two names alike once made UTF-8 (found by a review: one went missing from a diff,
    // and a change to the other was not reported).
    let odd = |byte: u8| {
        use std::os::unix::ffi::OsStrExt;
        mount
            .path("db")
            .join(std::ffi::OsStr::from_bytes(&[byte, b'x']))
    };
    fs::write(odd(0xfe), b"22").unwrap();
    fs::write(odd(0xff), b"1").unwrap();
    assert!(mount.terminate().success());
    ok_json(pagefork(&data, &["branch", "create", "test", "--json"]));

    let branch = Mount::start(&data, "test", &dir, &[]);
    assert!(fs::read(branch.path("db/table")).unwrap() == pattern(100_000, 3));
    let mut table = fs::OpenOptions::new()
        .write(true)
        .open(branch.path("db/table"))
        .unwrap();
    table.write_all(b"migrated").unwrap();
    drop(table);
    fs::remove_file(branch.path("db/gone")).unwrap();
    fs::write(branch.path("only-on-test"), b"t").unwrap();
    {
        use std::os::unix::ffi::OsStrExt;
        let name = |bytes: &[u8]| branch.path("db").join(std::ffi::OsStr::from_bytes(bytes));
        fs::write(name(&[0xfe, b'x']), b"changed-content").unwrap();
        fs::write(name(b"evil\n+ fake"), b"3").unwrap();
    }
    // Metadata alone (found by a review: a chmod, chown or touch was no change at all).
    let meta = branch.path("meta");
    fs::set_permissions(&meta, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&meta, Some(1), Some(1)).unwrap();
    let epoch_plus = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    fs::File::options()
        .write(true)
        .open(&meta)
        .unwrap()
        .set_modified(epoch_plus)
        .unwrap();
    // The root's own (found by a review: `/` was in no diff).
    fs::set_permissions(
        branch.path(""),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::chown(branch.path(""), Some(2), Some(2)).unwrap();
    assert!(branch.terminate().success());

    // The diff, told as files.
    let diff = ok_json(pagefork(
        &data,
        &["branch", "diff", "main", "test", "--files", "--json"],
    ));
    let paths = |side: &str| -> Vec<String> {
        diff[side]
            .as_array()
            .unwrap()
            .iter()
            .map(|change| change["path"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        paths("added"),
        ["/db/evil\\x0a+ fake", "/only-on-test"],
        "{diff}"
    );
    assert_eq!(paths("removed"), ["/db/gone"], "{diff}");
    // `/` and `/db` too: their entries changed, and with them their modification times.
    assert_eq!(
        paths("changed"),
        ["/", "/db", "/db/table", "/db/\\xfex", "/meta"],
        "{diff}"
    );
    let differences = |index: usize| -> Vec<&str> {
        diff["changed"][index]["differences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect()
    };
    assert!(
        differences(1).contains(&"mtime") && !differences(1).contains(&"content"),
        "{diff}"
    );
    assert_eq!(diff["changed"][2]["bytes"], 100_000);
    assert_eq!(differences(2), ["content", "mtime"]);
    assert_eq!(diff["changed"][3]["bytes"], 15);
    assert_eq!(diff["changed"][3]["previous_bytes"], 2);
    assert_eq!(differences(3), ["content", "size", "mtime"]);
    assert_eq!(differences(4), ["mode", "owner", "mtime"]);
    assert_eq!(differences(0), ["mode", "owner", "mtime"]);
    assert_eq!(diff["added"][0]["differences"], serde_json::json!([]));
    let text = pagefork(&data, &["branch", "diff", "main", "test", "--files"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("2 added, 1 removed, 5 changed"), "{text}");
    assert!(
        text.contains("~ /meta (file, 1 -> 1 bytes; mode, owner, mtime)"),
        "{text}"
    );
    // A name's newline cannot pass for a line of the answer.
    assert!(
        !text.lines().any(|line| line.starts_with("+ fake")),
        "{text}"
    );

    let main = Mount::start(&data, "main", &dir, &["--read-only"]);
    assert!(
        fs::read(main.path("db/table")).unwrap() == pattern(100_000, 3),
        "main changed"
    );
    assert!(!main.path("only-on-test").exists());
    assert!(main.terminate().success());
}

#[test]
fn what_was_synced_survives_sigkill_and_the_tree_mounts_again() {
    let (_root, data, dir, mount) = store_with_main_mounted();
    let mut synced = fs::File::create(mount.path("synced")).unwrap();
    synced.write_all(&pattern(1 << 20, 9)).unwrap();
    synced.sync_all().unwrap();
    fs::create_dir(mount.path("dir")).unwrap();
    fs::File::open(mount.path(".")).unwrap().sync_all().unwrap();
    // Unsynced work in flight when the process dies.
    let mut open = fs::File::create(mount.path("dir/unsynced")).unwrap();
    open.write_all(b"maybe").unwrap();
    let dead = mount.kill();
    let mut buffer = Vec::new();
    let _ = open.read_to_end(&mut buffer);
    drop(open);
    // A mount on the dead mount point is refused saying what it is and what to do (a
    // review saw "does not exist: Transport endpoint is not connected").
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_pagefork"))
        .arg("--data-dir")
        .arg(&data)
        .args(["mount", "main"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("FUSE server has gone") && message.contains("umount -l"),
        "{message}"
    );
    drop(dead);

    let mount = Mount::start(&data, "main", &dir, &[]);
    assert!(fs::read(mount.path("synced")).unwrap() == pattern(1 << 20, 9));
    assert!(mount.path("dir").is_dir());
    let unsynced = fs::read(mount.path("dir/unsynced")).unwrap_or_default();
    assert!(
        unsynced.is_empty() || unsynced == b"maybe",
        "a write came back torn: {unsynced:?}"
    );
    assert!(mount.terminate().success());
}

#[test]
fn changes_of_names_sizes_and_modes_outlive_a_sigkill_without_any_fsync() {
    // SQLite commits a rollback-journal transaction by deleting the journal and never
    // syncs the directory: once an unlink (create, rename, mkdir, rmdir) has returned, a
    // killed mount must not bring the old name back. No fsync anywhere here.
    let (_root, data, dir, mount) = store_with_main_mounted();
    fs::create_dir(mount.path("kept")).unwrap();
    fs::create_dir(mount.path("gone")).unwrap();
    for index in 0..40 {
        fs::File::create(mount.path(&format!("kept/{index}"))).unwrap();
    }
    for index in (0..40).step_by(2) {
        fs::rename(
            mount.path(&format!("kept/{index}")),
            mount.path(&format!("kept/{index}.renamed")),
        )
        .unwrap();
    }
    for index in (1..40).step_by(4) {
        fs::remove_file(mount.path(&format!("kept/{index}"))).unwrap();
    }
    fs::remove_dir(mount.path("gone")).unwrap();
    std::os::unix::fs::symlink("kept/0.renamed", mount.path("link")).unwrap();
    // A truncation and a chmod last, with no change of names after them to carry them
    // (found by a review: both were lost; SQLite with `journal_mode=TRUNCATE` commits by
    // truncating its journal). The journal's bytes were fsynced, the truncation not.
    let journal = fs::File::create(mount.path("journal")).unwrap();
    journal.write_all_at(&pattern(100_000, 1), 0).unwrap();
    journal.sync_all().unwrap();
    journal.set_len(0).unwrap();
    fs::set_permissions(mount.path("kept/3"), fs::Permissions::from_mode(0o600)).unwrap();
    let expected = names_under(&mount.path("."));
    drop(mount.kill());

    let mount = Mount::start(&data, "main", &dir, &[]);
    assert_eq!(names_under(&mount.path(".")), expected);
    assert_eq!(
        fs::read_link(mount.path("link")).unwrap(),
        Path::new("kept/0.renamed")
    );
    assert_eq!(fs::metadata(mount.path("journal")).unwrap().len(), 0);
    assert_eq!(permission_bits(&mount.path("kept/3")), 0o600);
    assert!(mount.terminate().success());
}

/// Every path under `dir`, sorted, directories marked with a trailing slash.
fn names_under(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let entry = entry.unwrap();
            let relative = entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string();
            if entry.file_type().unwrap().is_dir() {
                names.push(format!("{relative}/"));
                pending.push(entry.path());
            } else {
                names.push(relative);
            }
        }
    }
    names.sort();
    names
}

/// The names directly in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The mount lets the kernel keep what it learned of names: a name found missing (a
/// negative entry) and a directory's listing, until a change through the mount. Every
/// change of a name must show at once in lookups and listings, and a fresh mount must
/// agree.
#[test]
fn names_found_missing_and_listings_follow_every_change() {
    require_fuse();
    let (_root, data, dir, mount) = store_with_main_mounted();
    let missing = |path: &Path| {
        let error = fs::symlink_metadata(path).unwrap_err();
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::NotFound,
            "{}",
            path.display()
        );
    };
    let (a, b) = (dir.join("a"), dir.join("b"));
    // Looked up twice while missing (the second answer may come from the kernel).
    missing(&a);
    missing(&a);
    assert_eq!(listing(&dir), Vec::<String>::new());
    fs::write(&a, b"one").unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"one");
    assert_eq!(listing(&dir), ["a"]);
    missing(&b);
    fs::rename(&a, &b).unwrap();
    missing(&a);
    assert_eq!(fs::read(&b).unwrap(), b"one");
    assert_eq!(listing(&dir), ["b"]);
    fs::create_dir(&a).unwrap();
    assert!(fs::metadata(&a).unwrap().is_dir());
    assert_eq!(listing(&dir), ["a", "b"]);
    assert_eq!(listing(&a), Vec::<String>::new());
    let inner = a.join("inner");
    missing(&inner);
    fs::write(&inner, b"two").unwrap();
    assert_eq!(listing(&a), ["inner"]);
    // A rename that replaces a name, across directories.
    fs::rename(&inner, &b).unwrap();
    assert_eq!(fs::read(&b).unwrap(), b"two");
    missing(&inner);
    assert_eq!(listing(&a), Vec::<String>::new());
    fs::remove_dir(&a).unwrap();
    fs::remove_file(&b).unwrap();
    missing(&a);
    missing(&b);
    assert_eq!(listing(&dir), Vec::<String>::new());
    fs::create_dir(&b).unwrap();
    std::os::unix::fs::symlink("b", &a).unwrap();
    assert_eq!(fs::read_link(&a).unwrap(), Path::new("b"));
    assert_eq!(listing(&dir), ["a", "b"]);
    assert!(mount.terminate().success());
    let mount = Mount::start(&data, "main", &dir, &[]);
    assert_eq!(listing(&dir), ["a", "b"]);
    assert_eq!(fs::read_link(&a).unwrap(), Path::new("b"));
    missing(&inner);
    assert!(mount.terminate().success());
}

/// A directory too big for one `READDIR`, scanned while names come and go: every name
/// there through the whole scan is listed exactly once, nothing twice, and nothing that
/// was never there. The offsets the mount hands out must resume exactly where the kernel
/// stopped (offsets one entry further, planted, fail this). This kernel reads the whole
/// listing into its cache at a scan's first read and serves the rest from there, so the
/// changes during the scan reach the mount only when that cache is dropped.
#[test]
fn a_listing_read_while_names_change_lists_each_unchanged_name_once() {
    require_fuse();
    let (_root, _data, dir, mount) = store_with_main_mounted();
    let stable: Vec<String> = (0..1500).map(|i| format!("s-stable-{i:05}")).collect();
    for name in &stable {
        fs::write(dir.join(name), b"").unwrap();
    }
    let mut churn: VecDeque<String> = VecDeque::new();
    let mut next_churn = 0;
    let mut make_churn = |churn: &mut VecDeque<String>| {
        let name = format!("a-churn-{next_churn:06}");
        next_churn += 1;
        fs::write(dir.join(&name), b"").unwrap();
        churn.push_back(name);
    };
    for _ in 0..600 {
        make_churn(&mut churn);
    }
    for round in 0..3 {
        let mut seen = BTreeMap::<String, usize>::new();
        let mut changes = 0;
        for (index, entry) in fs::read_dir(&dir).unwrap().enumerate() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            *seen.entry(name).or_default() += 1;
            if index % 100 == 99 {
                // Between two reads of the directory: names that sort before every
                // unchanged one go, and as many come.
                for _ in 0..40 {
                    let old = churn.pop_front().unwrap();
                    fs::remove_file(dir.join(old)).unwrap();
                    make_churn(&mut churn);
                    changes += 1;
                }
            }
        }
        let twice: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
        assert!(twice.is_empty(), "round {round}: listed twice: {twice:?}");
        let missing: Vec<_> = stable
            .iter()
            .filter(|name| !seen.contains_key(*name))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: never listed: {missing:?}"
        );
        let strangers: Vec<_> = seen
            .keys()
            .filter(|name| !name.starts_with("s-stable-") && !name.starts_with("a-churn-"))
            .collect();
        assert!(strangers.is_empty(), "round {round}: {strangers:?}");
        assert!(
            changes > 0,
            "round {round}: the scan never changed the directory"
        );
    }
    assert!(mount.terminate().success());
}

#[test]
fn refused_mounts_say_why_and_change_nothing() {
    require_fuse();
    let root = tempfile::tempdir().unwrap();
    let (data, dir) = (root.path().join("data"), root.path().join("mnt"));
    init(&data);
    fs::create_dir(&dir).unwrap();
    let before = tree_snapshot(&data);
    let refuse = |args: &[&str], says: &str| {
        let output = pagefork(&data, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{args:?} should say {says:?}: {stderr}"
        );
        assert!(!is_mounted(&dir));
        assert_eq!(tree_snapshot(&data), before, "{args:?} changed the store");
    };
    let dir_text = dir.to_str().unwrap();
    let missing = root.path().join("missing");
    refuse(
        &["mount", "main", missing.to_str().unwrap()],
        "does not exist",
    );
    refuse(&["mount", "nope", dir_text], "nope");
    fs::write(dir.join("occupied"), b"x").unwrap();
    refuse(&["mount", "main", dir_text], "not empty");
    fs::remove_file(dir.join("occupied")).unwrap();
    let file = root.path().join("file");
    fs::write(&file, b"x").unwrap();
    refuse(
        &["mount", "main", file.to_str().unwrap()],
        "not a directory",
    );
    // A read-only mount of a branch with no tree on it yet.
    refuse(
        &["mount", "main", dir_text, "--read-only"],
        "holds no file tree",
    );
    refuse(&["mount", "main", dir_text, "--lsn", "0/1"], "0/1");
}

#[test]
fn a_foreground_mount_logs_the_failure_that_poisoned_its_store() {
    // A store on a small disk, filled up under a running mount: the write that needs a
    // new WAL segment fails, the store is poisoned, and the mount says so on standard
    // error (it logged nothing before: a user saw only EIO).
    let disk = support::SmallDisk::mount(48);
    let data = disk.path().join("store");
    init(&data);
    let work = tempfile::tempdir().unwrap();
    let mount = Mount::start(&data, "main", &work.path().join("m"), &[]);
    // Open before the failure (a poisoned mount refuses to open a file for writing).
    let mut small = fs::File::create(mount.path("small")).unwrap();
    let listed_later = fs::read_dir(mount.path("")).unwrap();
    disk.fill();
    let written = fs::File::create(mount.path("big")).and_then(|mut file| {
        for block in 0..40u8 {
            file.write_all(&pattern(1 << 20, block))?;
        }
        file.sync_all()
    });
    assert!(written.is_err(), "40 MiB went onto a full disk");
    // A write the kernel only cached is handed over at `close`, which reports its failure
    // (the mount answers no FLUSH, and the kernel still writes the pages back there).
    small.write_all(&pattern(4096, 9)).unwrap();
    let fd = std::os::fd::IntoRawFd::into_raw_fd(small);
    // Closed by hand to see its result (dropping a `File` ignores it).
    let closed = nix::unistd::close(fd);
    assert!(
        closed.is_err(),
        "close reported nothing of a failed write-back"
    );
    // Everything answers EIO now, a listing of a directory opened before and the file
    // system's counts included (found by a review: both still answered).
    let entries: Vec<std::io::Result<fs::DirEntry>> = listed_later.collect();
    assert!(
        entries.iter().any(|entry| entry
            .as_ref()
            .is_err_and(|error| error.raw_os_error() == Some(nix::libc::EIO))),
        "{entries:?}"
    );
    let counted = nix::sys::statvfs::statvfs(&mount.path(""));
    assert_eq!(counted.err(), Some(nix::errno::Errno::EIO));
    let (_, stderr) = mount.terminate_with_stderr();
    assert!(stderr.contains("store poisoned"), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
}

/// Found by a review: a time before 1970 with a fraction of a second was stored wrong
/// (fuser turns the kernel's `(secs, nsec)` into `secs - nsec`): `touch -d
/// '1969-12-31 23:59:58.25'` read back 23:59:57.75. Set on a file and a directory, the
/// times read back exactly, before and after a remount.
#[test]
fn regression_times_before_1970_with_a_fraction_round_trip() {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    use std::os::unix::fs::MetadataExt;
    let (_root, data, dir, mount) = store_with_main_mounted();
    std::fs::write(dir.join("old"), b"x").unwrap();
    std::fs::create_dir(dir.join("older")).unwrap();
    // (seconds, nanoseconds) as stat gives them: -1.75 s and -2.999999999 s.
    let (atime, mtime) = ((-2, 250_000_000), (-3, 1));
    let check = |dir: &Path, when: &str| {
        for name in ["old", "older"] {
            let metadata = std::fs::metadata(dir.join(name)).unwrap();
            assert_eq!(
                (metadata.atime(), metadata.atime_nsec()),
                atime,
                "{name} {when}"
            );
            assert_eq!(
                (metadata.mtime(), metadata.mtime_nsec()),
                mtime,
                "{name} {when}"
            );
        }
    };
    for name in ["old", "older"] {
        utimensat(
            nix::fcntl::AT_FDCWD,
            &dir.join(name),
            &TimeSpec::new(atime.0, atime.1),
            &TimeSpec::new(mtime.0, mtime.1),
            UtimensatFlags::FollowSymlink,
        )
        .unwrap();
    }
    check(&dir, "as set");
    assert!(mount.terminate().success());
    let mount = Mount::start(&data, "main", &dir, &[]);
    check(&dir, "after a remount");
    // The earliest time there is: fuser negated its seconds with overflow checks on,
    // which panicked the request's thread (and hung the caller).
    utimensat(
        nix::fcntl::AT_FDCWD,
        &dir.join("old"),
        &TimeSpec::new(i64::MIN, 0),
        &TimeSpec::new(i64::MIN, 0),
        UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(dir.join("old")).unwrap().mtime(),
        i64::MIN
    );
    std::fs::write(dir.join("after"), b"the mount still answers").unwrap();
    assert!(mount.terminate().success());
}

/// The times `stat` shows through a writable mount are the ones stored: the kernel keeps a
/// written file's mtime and ctime (FUSE's writeback cache) and hands them over, and the
/// tree no longer puts its own clock's in their place. A review found every rewritten,
/// appended or truncated file with other times after a remount, or on a branch.
#[test]
fn the_times_a_mount_shows_are_the_times_stored() {
    use std::os::unix::fs::MetadataExt;
    let (_root, data, dir, mount) = store_with_main_mounted();
    fs::create_dir(mount.path("t")).unwrap();
    for name in ["rewritten", "appended", "truncated"] {
        fs::write(mount.path(&format!("t/{name}")), b"first\n").unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(mount.path("t/rewritten"), b"second\n").unwrap();
    let append = || {
        fs::OpenOptions::new()
            .append(true)
            .open(mount.path("t/appended"))
            .unwrap()
    };
    append().write_all(b"more\n").unwrap();
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(mount.path("t/truncated"))
        .unwrap();
    file.write_all(b"more\n").unwrap();
    file.set_len(3).unwrap();
    drop(file);
    fs::write(mount.path("t/created"), b"new\n").unwrap();
    let times = |root: &Path| -> Vec<(String, i64, i64, i64, i64)> {
        let mut names: Vec<String> = fs::read_dir(root.join("t"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let meta = fs::metadata(root.join("t").join(&name)).unwrap();
                (
                    name,
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.ctime(),
                    meta.ctime_nsec(),
                )
            })
            .collect()
    };
    let shown = times(&dir);
    assert!(mount.terminate().success());
    let again = Mount::start(&data, "main", &dir, &["--read-only"]);
    assert_eq!(times(&dir), shown, "after a remount");
    assert!(again.terminate().success());
}
