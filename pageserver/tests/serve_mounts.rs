//! Mounts through `pagefork serve`: `POST`/`DELETE .../branches/B/mount` and `GET
//! .../mounts`, so a branch can be branched while a program writes to it. Checked: files
//! written through a served mount; a branch of the mounted branch taken while SQLite
//! commits opens and passes `integrity_check`; every operation that would change a mounted
//! branch under its writer is refused naming the mount, and works again once unmounted;
//! mount points outside the mount root, missing, occupied or already used are refused and
//! change nothing; an unmount with files open is refused; SIGTERM unmounts and what was
//! written is there after a restart, also when files are held open under a mount past the
//! shutdown grace. Needs root and /dev/fuse, and `sqlite3`.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use support::Server;
use support::mount::{is_mounted, require_fuse};

const B: &str = "/v1/projects/p/branches";

fn sqlite(db: &Path, sql: &str) -> Result<String, String> {
    let output = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("this test needs Debian's sqlite3");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn start(data: &Path) -> Server {
    require_fuse();
    Server::start(data, &[])
}

/// A server on a new data directory with project `p` and these empty directories in its
/// mount root: the temporary directory (the test keeps it), the data directory, the
/// server and the mount root.
fn server_with_mount_points(points: &[&str]) -> (tempfile::TempDir, PathBuf, Server, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = start(&data);
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    let mounts = data.join("mounts");
    for point in points {
        std::fs::create_dir_all(mounts.join(point)).unwrap();
    }
    (root, data, server, mounts)
}

#[test]
fn a_served_mount_is_branched_while_sqlite_writes_and_guards_its_branch() {
    let (_root, data, server, mounts) = server_with_mount_points(&["main", "copy"]);
    let mounted = server
        .post(&format!("{B}/main/mount"), r#"{"path": "main"}"#)
        .expect(201);
    let dir = Path::new(mounted["path"].as_str().unwrap()).to_path_buf();
    assert!(is_mounted(&dir));
    assert_eq!(mounted["read_only"], false);
    let listed = server.get("/v1/projects/p/mounts").expect(200);
    assert_eq!(listed["mounts"][0]["branch"], "main", "{listed}");

    // SQLite commits on main while a branch of it is taken.
    let db = dir.join("app.db");
    sqlite(
        &db,
        "CREATE TABLE t(n INTEGER PRIMARY KEY, v BLOB); PRAGMA journal_mode=wal;",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, stop, committed) = (db.clone(), Arc::clone(&stop), Arc::clone(&committed));
        std::thread::spawn(move || {
            let mut n = 1;
            while !stop.load(Ordering::SeqCst) {
                sqlite(
                    &db,
                    &format!("INSERT INTO t VALUES ({n}, randomblob(5000));"),
                )
                .unwrap();
                committed.store(n, Ordering::SeqCst);
                n += 1;
            }
        })
    };
    while committed.load(Ordering::SeqCst) < 20 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before = committed.load(Ordering::SeqCst);
    server
        .post(
            B,
            r#"{"branch_id": "copy", "spec": {"source_branch": "main", "no_expiry": true}}"#,
        )
        .expect(201);
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let copy = server
        .post(&format!("{B}/copy/mount"), r#"{"path": "copy"}"#)
        .expect(201);
    let copy_db = Path::new(copy["path"].as_str().unwrap()).join("app.db");
    assert_eq!(sqlite(&copy_db, "PRAGMA integrity_check;").unwrap(), "ok");
    let rows: u64 = sqlite(&copy_db, "SELECT count(*) FROM t;")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rows >= before,
        "the branch lost acknowledged rows: {rows} < {before}"
    );
    let all: u64 = sqlite(&db, "SELECT count(*) FROM t;")
        .unwrap()
        .parse()
        .unwrap();
    assert!(rows <= all);
    // The branch diverges: main keeps its rows.
    sqlite(&copy_db, "DELETE FROM t;").unwrap();
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM t;").unwrap(),
        all.to_string()
    );

    // Written, neither fsynced nor closed (the kernel holds it in its writeback cache):
    // a branch at latest still gets it.
    let pattern: Vec<u8> = (0..3u32 << 20).map(|index| (index % 251) as u8).collect();
    let mut unsynced = std::fs::File::create(dir.join("unsynced")).unwrap();
    std::io::Write::write_all(&mut unsynced, &pattern).unwrap();
    server
        .post(
            B,
            r#"{"branch_id": "later", "spec": {"source_branch": "main", "no_expiry": true}}"#,
        )
        .expect(201);
    std::fs::create_dir_all(mounts.join("later")).unwrap();
    let later = server
        .post(
            &format!("{B}/later/mount"),
            r#"{"path": "later", "read_only": true}"#,
        )
        .expect(201);
    let later_dir = Path::new(later["path"].as_str().unwrap()).to_path_buf();
    let seen = std::fs::read(later_dir.join("unsynced")).unwrap();
    let differs = seen.iter().zip(&pattern).position(|(a, b)| a != b);
    assert!(
        seen == pattern,
        "a branch at latest missed writes still in the kernel's cache: {} bytes, first difference at {differs:?}",
        seen.len()
    );
    // Diffs over HTTP tell files too, and see writes still in the kernel's cache.
    std::io::Write::write_all(&mut unsynced, b"12345").unwrap();
    let files = server
        .get(&format!("{B}/later/diff/files?to=main"))
        .expect(200);
    let changed = files["changed"].as_array().unwrap();
    assert!(
        changed.iter().any(|change| change["path"] == "/unsynced"
            && change["kind"] == "file"
            && change["bytes"] == (3 << 20) + 5
            && change["previous_bytes"] == 3 << 20),
        "{files}"
    );
    assert_eq!(files["from"], "later");
    let pages = server.get(&format!("{B}/later/diff?to=main")).expect(200);
    assert!(!pages["changed"].as_array().unwrap().is_empty(), "{pages}");
    server
        .get(&format!("{B}/nobody/diff/files"))
        .expect_error(404, "branch_not_found");
    drop(unsynced);
    server.delete(&format!("{B}/later/mount")).expect(200);

    // What would change main under its writer is refused, naming the mount.
    let refusals: [(&str, String, &str); 6] = [
        ("DELETE", format!("{B}/main"), "{}"),
        ("POST", format!("{B}/main/reset"), "{}"),
        ("POST", format!("{B}/main/restore"), "{}"),
        (
            "POST",
            format!("{B}/main/rename"),
            r#"{"new_branch_id": "other"}"#,
        ),
        ("POST", format!("{B}/main/detach"), "{}"),
        (
            "POST",
            format!("{B}/main/commit"),
            r#"{"updates": [{"rel": 1, "block": 0, "drop": true}]}"#,
        ),
    ];
    for (method, path, body) in &refusals {
        let message = server
            .send(method, path, body)
            .expect_error(409, "branch_mounted");
        assert!(
            message.contains(dir.to_str().unwrap()),
            "{method} {path}: {message}"
        );
    }
    let message = server
        .put_page(&format!("{B}/main/pages/1/0"), &[1; 8192])
        .expect_error(409, "branch_mounted");
    assert!(message.contains("mounted"), "{message}");
    assert!(sqlite(&db, "PRAGMA integrity_check;").unwrap() == "ok");

    // Mount refusals. A second mount, even read-only at an earlier state, says how to see
    // that state (a review was told to unmount the writer).
    let message = server
        .post(
            &format!("{B}/main/mount"),
            r#"{"path": "copy", "read_only": true}"#,
        )
        .expect_error(409, "branch_mounted");
    assert!(
        message.contains("create a branch at that LSN or time"),
        "{message}"
    );
    std::fs::create_dir_all(mounts.join("third")).unwrap();
    server
        .post(&format!("{B}/nope/mount"), r#"{"path": "third"}"#)
        .expect_error(404, "branch_not_found");
    for path in ["/tmp", "../data", "missing", "", "."] {
        let body = serde_json::json!({ "path": path }).to_string();
        server.post(&format!("{B}/copy/mount"), &body).expect(409);
        let body = serde_json::json!({ "path": path }).to_string();
        let answer = server.post(&format!("{B}/trial/mount"), &body);
        assert!(
            matches!(answer.status, 404 | 422),
            "{path:?}: {}",
            answer.status
        );
    }
    std::fs::write(mounts.join("third/occupied"), b"x").unwrap();
    server
        .post(B, r#"{"branch_id": "trial", "spec": {"no_expiry": true}}"#)
        .expect(201);
    let message = server
        .post(&format!("{B}/trial/mount"), r#"{"path": "third"}"#)
        .expect_error(422, "invalid_mount_point");
    // The mount point named once (found by a review: "mount point P: mount point P is not
    // empty").
    assert_eq!(message.matches("third").count(), 1, "{message}");
    assert!(message.contains("is not empty"), "{message}");
    server
        .delete(&format!("{B}/trial/mount"))
        .expect_error(404, "not_mounted");

    // An unmount with a file open is refused; closed, it goes through.
    let open = std::fs::File::open(&db).unwrap();
    server
        .delete(&format!("{B}/main/mount"))
        .expect_error(409, "mount_busy");
    assert!(is_mounted(&dir));
    drop(open);
    server.delete(&format!("{B}/main/mount")).expect(200);
    assert!(!is_mounted(&dir));
    server
        .post(
            &format!("{B}/main/rename"),
            r#"{"new_branch_id": "renamed"}"#,
        )
        .expect(200);
    assert_eq!(
        server.get("/v1/projects/p/mounts").expect(200)["mounts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // SIGTERM unmounts the rest; what was written is there after a restart.
    let copy_dir = Path::new(copy["path"].as_str().unwrap()).to_path_buf();
    std::fs::write(copy_dir.join("note"), b"written before SIGTERM").unwrap();
    assert!(server.terminate().success());
    assert!(!is_mounted(&copy_dir));
    let server = start(&data);
    server
        .post(
            &format!("{B}/copy/mount"),
            r#"{"path": "copy", "read_only": true}"#,
        )
        .expect(201);
    assert_eq!(
        std::fs::read(copy_dir.join("note")).unwrap(),
        b"written before SIGTERM"
    );
    assert!(
        std::fs::write(copy_dir.join("more"), b"x").is_err(),
        "a read-only mount took a write"
    );
    server.delete(&format!("{B}/copy/mount")).expect(200);
}

/// Found by a review: an expiring branch was deleted under its mount's writer (what it
/// wrote lost, the writer answered EIO, the unmount 500), and GC removed the state a
/// read-only mount at an LSN showed. A mount now holds its branch (`Store::hold`): a
/// branch whose expiry passes while mounted stays until it is unmounted, and GC keeps a
/// read-only mount's state, saying so. The mount's answer also said nothing of what its
/// time snapped to: it now does.
#[test]
fn regression_a_mounted_branch_outlives_its_expiry_and_a_past_state_mount_its_gc() {
    let (_root, _data, server, mounts) = server_with_mount_points(&["t1", "w", "ro"]);
    let write = |path: &Path, bytes: &[u8]| {
        let mut file = std::fs::File::create(path).unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        file.sync_all().unwrap();
    };

    server
        .post(B, r#"{"branch_id": "tb", "spec": {"ttl": "2s"}}"#)
        .expect(201);
    server
        .post(&format!("{B}/tb/mount"), r#"{"path": "t1"}"#)
        .expect(201);
    write(&mounts.join("t1/data.txt"), b"important");
    std::thread::sleep(std::time::Duration::from_millis(3500));
    server.get(&format!("{B}/tb")).expect(200);
    assert_eq!(
        std::fs::read(mounts.join("t1/data.txt")).unwrap(),
        b"important"
    );
    write(&mounts.join("t1/more.txt"), b"still writable");
    server.delete(&format!("{B}/tb/mount")).expect(200);
    // Unmounted, the expired branch goes at the next sweep (about a second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.get(&format!("{B}/tb")).status != 404 {
        assert!(std::time::Instant::now() < deadline, "never swept");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    server
        .post(B, r#"{"branch_id": "g", "spec": {"no_expiry": true}}"#)
        .expect(201);
    let rewrite = |text: &[u8]| {
        server
            .post(&format!("{B}/g/mount"), r#"{"path": "w"}"#)
            .expect(201);
        write(&mounts.join("w/f.txt"), text);
        server.delete(&format!("{B}/g/mount")).expect(200);
        server.get(&format!("{B}/g")).expect(200)["head"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let shown = rewrite(b"version0");
    let time = pagefork_engine::Timestamp::from_system_time(std::time::SystemTime::now());
    std::thread::sleep(std::time::Duration::from_millis(20));
    rewrite(b"version1");
    // A time before the history is refused as a read there is (a review found "holds no
    // file tree: mount it writable first"), and a state before the tree was made says so.
    let message = server
        .post(
            &format!("{B}/g/mount"),
            r#"{"path": "ro", "timestamp": "2000-01-01T00:00:00Z"}"#,
        )
        .expect_error(422, "invalid_time");
    assert!(message.contains("before the history"), "{message}");
    server
        .post("/v1/projects", r#"{"project_id": "q"}"#)
        .expect(201);
    let head = server.get("/v1/projects/q/branches/main").expect(200)["head"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = serde_json::json!({"path": "ro", "lsn": head}).to_string();
    let message = server
        .post("/v1/projects/q/branches/main/mount", &body)
        .expect_error(422, "no_file_tree");
    assert!(
        message.contains(&format!("at LSN {head}")) && message.contains("made later"),
        "{message}"
    );
    // Pages the page API wrote at the tree's reserved superblock key are other data, not
    // a damaged tree (found by a review: 500 "corrupt superblock" for a mount and a diff).
    let page_size = server.get("/v1/projects/q").expect(200)["page_size"]
        .as_u64()
        .unwrap();
    server
        .put_page(
            "/v1/projects/q/branches/main/pages/2147483648/0",
            &vec![7; usize::try_from(page_size).unwrap()],
        )
        .expect(200);
    for answer in [
        server.post("/v1/projects/q/branches/main/mount", r#"{"path": "ro"}"#),
        server.get("/v1/projects/q/branches/main/diff/files?to=main"),
    ] {
        let message = answer.expect_error(422, "no_file_tree");
        assert!(message.contains("not a superblock"), "{message}");
    }
    // A mount at a time says what the time snapped to, as a branch at a time does.
    let body = serde_json::json!({"path": "ro", "timestamp": time.to_string()}).to_string();
    let mounted = server.post(&format!("{B}/g/mount"), &body).expect(201);
    assert_eq!(mounted["lsn"], shown.as_str(), "{mounted}");
    assert_eq!(mounted["read_only"], true);
    assert_eq!(mounted["snap"]["lsn"], shown.as_str(), "{mounted}");
    assert_eq!(mounted["snap"]["kind"], "present", "{mounted}");
    assert_eq!(mounted["snap"]["requested"], time.to_string().as_str());
    let listed = server.get("/v1/projects/p/mounts").expect(200);
    assert_eq!(listed["mounts"][0]["snap"], mounted["snap"], "{listed}");
    server
        .send(
            "PATCH",
            &format!("{B}/g"),
            r#"{"spec": {"pitr_window": "1s"}}"#,
        )
        .expect(200);
    // Mounted read-only, the branch is still guarded from a second mount.
    server
        .post(&format!("{B}/g/mount"), r#"{"path": "w"}"#)
        .expect_error(409, "branch_mounted");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let gc = server.post("/v1/projects/p/gc", "{}").expect(200);
    assert!(gc.to_string().contains("the mount at"), "{gc}");
    let superblock = format!("{B}/g/pages/2147483648/0?lsn={shown}");
    let page = server.get(&superblock);
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    assert!(page.body.starts_with(b"PFFILES"), "the tree's superblock");
    assert_eq!(std::fs::read(mounts.join("ro/f.txt")).unwrap(), b"version0");
    server.delete(&format!("{B}/g/mount")).expect(200);
    server.post("/v1/projects/p/gc", "{}").expect(200);
    server.get(&superblock).expect_error(410, "below_gc_cutoff");
}

/// Found by a review: SIGTERM detached a mount whose files a program still held open and
/// then waited for that program, for as long as it kept them (a shell `cd`'d into the
/// mount was enough), whatever `--shutdown-grace` said. A mount still held at the end of
/// the grace is now cut off (its FUSE connection aborted): the server exits, what was
/// fsynced through the mount is kept, and the holder's next call fails.
#[test]
fn regression_sigterm_cuts_off_a_mount_still_held_at_the_end_of_the_grace() {
    require_fuse();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(data.join("mounts/m")).unwrap();
    let mut server = Server::start(&data, &["--shutdown-grace", "1s"]);
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    server
        .post(&format!("{B}/main/mount"), r#"{"path": "m"}"#)
        .expect(201);
    let dir = data.join("mounts/m");
    let mut held = std::fs::File::create(dir.join("held")).unwrap();
    std::io::Write::write_all(&mut held, b"fsynced before SIGTERM").unwrap();
    held.sync_all().unwrap();

    let status = server.terminate_within(std::time::Duration::from_secs(20));
    assert!(
        status.is_some_and(|status| status.success()),
        "the server waited for the file held open under its mount: {status:?}"
    );
    assert!(!is_mounted(&dir));
    let failed = std::io::Write::write_all(&mut held, b"after").and_then(|()| held.sync_all());
    assert!(failed.is_err(), "a write to a cut-off mount succeeded");
    drop(held);

    let server = start(&data);
    server
        .post(
            &format!("{B}/main/mount"),
            r#"{"path": "m", "read_only": true}"#,
        )
        .expect(201);
    assert_eq!(
        std::fs::read(dir.join("held")).unwrap(),
        b"fsynced before SIGTERM"
    );
    server.delete(&format!("{B}/main/mount")).expect(200);
}

/// A server killed with SIGKILL leaves its mounts dead in the kernel's table (every use
/// fails with ENOTCONN, and a new mount there was refused); the next server on the data
/// directory detaches them before it serves, so the same mount point mounts again, with
/// what was fsynced through it. A live mount elsewhere is left alone.
#[test]
fn regression_a_killed_servers_dead_mounts_are_detached_by_the_next() {
    let (_root, data, mut server, _mounts) = server_with_mount_points(&["m"]);
    let mounted = server
        .post(&format!("{B}/main/mount"), r#"{"path": "m"}"#)
        .expect(201);
    let dir = PathBuf::from(mounted["path"].as_str().unwrap());
    std::fs::write(dir.join("kept"), b"fsynced").unwrap();
    std::fs::File::open(dir.join("kept"))
        .unwrap()
        .sync_all()
        .unwrap();
    server.kill();
    assert!(is_mounted(&dir), "a killed server's mount stays, dead");
    let server = start(&data);
    assert!(!is_mounted(&dir), "the next server detached it");
    server
        .post(&format!("{B}/main/mount"), r#"{"path": "m"}"#)
        .expect(201);
    assert_eq!(std::fs::read(dir.join("kept")).unwrap(), b"fsynced");
    // A live mount in a server's root is left alone: a foreground mount of another
    // store inside the mount root of a server that starts meanwhile.
    let other = tempfile::tempdir().unwrap();
    let live_dir = other.path().join("data/mounts/live");
    std::fs::create_dir_all(&live_dir).unwrap();
    let store = other.path().join("store");
    assert!(
        Command::new(env!("CARGO_BIN_EXE_pagefork"))
            .args(["--data-dir", store.to_str().unwrap(), "init"])
            .status()
            .unwrap()
            .success()
    );
    let live = support::mount::Mount::start(&store, "main", &live_dir, &[]);
    std::fs::write(live_dir.join("alive"), b"yes").unwrap();
    let bystander = start(&other.path().join("data"));
    assert!(is_mounted(&live_dir), "a live mount was detached");
    assert_eq!(std::fs::read(live_dir.join("alive")).unwrap(), b"yes");
    assert!(bystander.terminate().success());
    assert!(live.terminate().success());
    server.delete(&format!("{B}/main/mount")).expect(200);
    assert!(server.terminate().success());
}
