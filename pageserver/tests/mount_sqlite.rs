//! SQLite (Debian's `sqlite3`, unmodified) on a mounted branch while the `pagefork mount`
//! process is SIGKILLed at random moments: after each kill the branch is mounted again,
//! `PRAGMA integrity_check` must say `ok`, and every transaction sqlite3 reported
//! committed must be there, with no gap before it. Runs in rollback-journal and WAL mode.
//! `PAGEFORK_CRASH_KILLS` sets the number of kills (20 by default, as CI runs).

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pagefork_tests::{TestRng, crash_kills};
use support::cli::{ok_json, pagefork};
use support::mount::Mount;

fn sqlite(db: &Path, sql: &str) -> Result<String, String> {
    let output = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| {
            format!("this test needs Debian's sqlite3 (apt-get install sqlite3): {error}")
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Runs transactions one after another until `stop`; `acknowledged` is the highest row
/// whose transaction sqlite3 reported committed (exit status 0).
fn writer(db: PathBuf, stop: Arc<AtomicBool>, acknowledged: Arc<AtomicU64>) {
    let mut next = acknowledged.load(Ordering::SeqCst) + 1;
    while !stop.load(Ordering::SeqCst) {
        let transaction = format!(
            "PRAGMA busy_timeout=1000; BEGIN; \
             INSERT INTO rows(n, payload) VALUES({next}, randomblob(3000 + {next} % 5000)); \
             UPDATE counter SET total = total + 1, last = {next}; \
             COMMIT;"
        );
        match sqlite(&db, &transaction) {
            Ok(_) => {
                acknowledged.store(next, Ordering::SeqCst);
                next += 1;
            }
            // The mount died under it: nothing more can be acknowledged.
            Err(_) => return,
        }
    }
}

fn run(journal_mode: &str) {
    let root = tempfile::tempdir().unwrap();
    let (data, dir) = (root.path().join("data"), root.path().join("mnt"));
    ok_json(pagefork(&data, &["init", "--json"]));
    let db = dir.join("app.db");
    let mut mount = Mount::start(&data, "main", &dir, &[]);
    sqlite(
        &db,
        &format!(
            "PRAGMA journal_mode={journal_mode}; PRAGMA page_size=4096; \
             CREATE TABLE rows(n INTEGER PRIMARY KEY, payload BLOB NOT NULL); \
             CREATE INDEX rows_by_size ON rows(length(payload)); \
             CREATE TABLE counter(total INTEGER, last INTEGER); \
             INSERT INTO counter VALUES (0, 0);"
        ),
    )
    .unwrap();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let mut rng = TestRng::new(u64::from(journal_mode.len() as u32) * 7919);
    let kills = crash_kills(20);
    for kill in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (db, stop, acknowledged) =
                (db.clone(), Arc::clone(&stop), Arc::clone(&acknowledged));
            std::thread::spawn(move || writer(db, stop, acknowledged))
        };
        std::thread::sleep(Duration::from_millis(rng.between(50, 700)));
        // The writer sees the dead mount (ENOTCONN) and stops before it is detached, so
        // nothing it runs can land in the directory underneath.
        let dead = mount.kill();
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        drop(dead);
        let promised = acknowledged.load(Ordering::SeqCst);

        mount = Mount::start(&data, "main", &dir, &[]);
        let check = sqlite(&db, "PRAGMA integrity_check;").unwrap();
        assert_eq!(check, "ok", "kill {kill}: integrity_check");
        let summary = sqlite(
            &db,
            "SELECT count(*), coalesce(max(n), 0) FROM rows; SELECT total, last FROM counter;",
        )
        .unwrap();
        let numbers: Vec<u64> = summary
            .split(['|', '\n'])
            .map(|field| field.trim().parse().unwrap())
            .collect();
        let [count, max, total, last] = numbers[..] else {
            panic!("kill {kill}: unexpected summary {summary:?}");
        };
        assert!(
            max >= promised,
            "kill {kill}: transaction {promised} was acknowledged but is gone (max {max})"
        );
        assert_eq!(count, max, "kill {kill}: rows 1..={max} must all be there");
        assert_eq!(
            (total, last),
            (max, max),
            "kill {kill}: the counter disagrees with the rows"
        );
        // What survived beyond the acknowledged is the writer's next transaction, whole.
        assert!(
            max <= promised + 1,
            "kill {kill}: {max} rows but only {promised} were ever begun"
        );
        acknowledged.store(max, Ordering::SeqCst);
        eprintln!("kill {kill}: {promised} acknowledged, {max} present");
    }
    assert!(
        acknowledged.load(Ordering::SeqCst) > kills,
        "the workload barely ran"
    );
    assert!(mount.terminate().success());
}

#[test]
fn sqlite_in_rollback_journal_mode_survives_sigkills_of_the_mount() {
    run("delete");
}

#[test]
fn sqlite_in_wal_mode_survives_sigkills_of_the_mount() {
    run("wal");
}
