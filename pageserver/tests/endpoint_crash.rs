//! Durability of a real database on an endpoint: a client commits transactions one after
//! another through `pagefork endpoint start` and records each whose `COMMIT` returned;
//! the pagefork process is SIGKILLed at random moments (its Postgres must die with it),
//! the endpoint is started again, and every recorded transaction must be there, with no
//! gap and at most the one in flight beyond; at the end `pg_amcheck` (heap and every
//! index) finds nothing wrong. `PAGEFORK_CRASH_KILLS` sets the number of kills (10 by
//! default, as CI runs). Needs root, /dev/fuse and postgresql-15 (with
//! postgresql-client-15's pg_amcheck).

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pagefork_tests::{TestRng, crash_kills};
use support::cli::{ok_json, pagefork};
use support::endpoint::{Endpoint, pg_amcheck, psql, require_postgres};
use support::mount::require_fuse;

/// Commits `INSERT n` one after another until `stop`; `acknowledged` is the highest `n`
/// whose commit returned.
fn writer(url: String, stop: Arc<AtomicBool>, acknowledged: Arc<AtomicU64>) {
    let mut next = acknowledged.load(Ordering::SeqCst) + 1;
    while !stop.load(Ordering::SeqCst) {
        let sql = format!(
            "BEGIN; INSERT INTO ledger VALUES ({next}, repeat('x', 500 + {next} % 3000)); \
             UPDATE total SET rows = rows + 1, last = {next}; COMMIT;"
        );
        match psql(&url, &sql) {
            Ok(_) => {
                acknowledged.store(next, Ordering::SeqCst);
                next += 1;
            }
            // The server died under it: nothing more can be acknowledged.
            Err(_) => return,
        }
    }
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn every_acknowledged_commit_survives_sigkills_of_the_endpoint() {
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    let (data, mount) = (root.path().join("data"), root.path().join("mnt"));
    std::fs::create_dir(&mount).unwrap();
    ok_json(pagefork(&data, &["init", "--json"]));
    let mut endpoint = Endpoint::start(&data, "main", Some(&mount), &[]);
    let mut url = endpoint.url();
    psql(
        &url,
        "CREATE TABLE ledger(n bigint PRIMARY KEY, payload text NOT NULL); \
         CREATE INDEX ledger_by_length ON ledger(length(payload)); \
         CREATE TABLE total(rows bigint, last bigint); INSERT INTO total VALUES (0, 0);",
    )
    .unwrap();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let mut rng = TestRng::new(4242);
    for kill in 0..crash_kills(10) {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (url, stop, acknowledged) =
                (url.clone(), Arc::clone(&stop), Arc::clone(&acknowledged));
            std::thread::spawn(move || writer(url, stop, acknowledged))
        };
        std::thread::sleep(Duration::from_millis(rng.between(100, 1500)));
        let postgres = endpoint.postgres_pid();
        endpoint.kill();
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        // Postgres dies with its pagefork (PR_SET_PDEATHSIG), not on its own later.
        for _ in 0..500 {
            if !alive(postgres) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !alive(postgres),
            "kill {kill}: Postgres outlived its pagefork"
        );
        let promised = acknowledged.load(Ordering::SeqCst);

        endpoint = Endpoint::start(&data, "main", Some(&mount), &[]);
        url = endpoint.url();
        let summary = psql(&url, "SELECT count(*), coalesce(max(n), 0) FROM ledger").unwrap();
        let (count, max) = summary.split_once('|').unwrap();
        let (count, max): (u64, u64) = (count.parse().unwrap(), max.parse().unwrap());
        assert!(
            max >= promised,
            "kill {kill}: acknowledged up to {promised}, only {max} there"
        );
        assert!(
            max <= promised + 1,
            "kill {kill}: {max} rows, {promised} acknowledged"
        );
        assert_eq!(count, max, "kill {kill}: a gap below {max}");
        assert_eq!(
            psql(&url, "SELECT rows, last FROM total").unwrap(),
            format!("{max}|{max}"),
            "kill {kill}: the counter disagrees with the ledger"
        );
        acknowledged.store(max, Ordering::SeqCst);
    }
    eprintln!(
        "{} kills, {} transactions acknowledged, none lost",
        crash_kills(10),
        acknowledged.load(Ordering::SeqCst)
    );
    let port = url
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    pg_amcheck(&port);
    assert!(endpoint.stop().success());
}
