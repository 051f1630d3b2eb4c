//! Remote storage under faults, against a real S3 server (`s3s-fs`) behind a client that
//! injects them (`pagefork_tests::faults`): a sync whose Nth request fails, for every N,
//! leaves a bucket that attaches to the last published state (nothing listed is missing)
//! and the next sync catches up; a background replicator reports failures and recovers;
//! a server that goes away mid-upload and comes back within the client's retries costs
//! nothing but time.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pagefork_engine::{At, Config, Key, Lsn, Store, Update};
use pagefork_remote::{
    RemoteError, RemoteLocation, Replicator, Uploader, attach, attach_without_claim, scrub,
};
use pagefork_tests::faults::{FaultPlan, FaultyStore};
use pagefork_tests::s3::S3Server;

fn faulty(server: &S3Server, prefix: &str) -> (RemoteLocation, Arc<FaultPlan>) {
    let location = server.location(prefix);
    let plan = Arc::new(FaultPlan::default());
    let client = Arc::new(FaultyStore::new(
        location.client().unwrap(),
        Arc::clone(&plan),
    ));
    (location.with_client(client), plan)
}

/// Commits `count` pages of relation 1 from `first`, each stamped with `round`.
fn write(store: &Store, first: u32, count: u32, round: u8) -> Lsn {
    let mut lsn = Lsn(0);
    for block in first..first + count {
        let page = Bytes::from(vec![round; 8192]);
        lsn = store
            .commit("main", vec![(Key::new(1, block), Update::Image(page))])
            .unwrap()
            .lsn;
    }
    lsn
}

/// The CRC32 of each page of relation 1 below `count` (0 for none), short enough to print.
fn pages(store: &Store, count: u32) -> Vec<u32> {
    (0..count)
        .map(|block| {
            store
                .get_page("main", Key::new(1, block), At::Latest)
                .unwrap()
                .map_or(0, |page| crc32fast::hash(&page))
        })
        .collect()
}

/// Attaches `location` (with no faults, claiming nothing, so the writer is not fenced) in
/// a fresh directory: its pages, or `None` if there is no index yet.
fn attached_pages(clean: &RemoteLocation, count: u32) -> Option<Vec<u32>> {
    let dir = tempfile::tempdir().unwrap();
    match attach_without_claim(clean, dir.path()) {
        Ok(_) => Some(pages(&Store::open(dir.path()).unwrap(), count)),
        Err(RemoteError::NoIndex { .. }) => None,
        Err(error) => panic!("the bucket does not attach: {error}"),
    }
}

/// Syncs `store` once per request position: the sync's Nth request fails (N = 0, 1, ...)
/// until a sync needs fewer requests than N. After each, the bucket must attach to the
/// last state a sync published. Returns how many syncs met their fault.
fn sweep_faults(
    store: &Store,
    location: &RemoteLocation,
    clean: &RemoteLocation,
    plan: &FaultPlan,
    published: &mut Option<Vec<u32>>,
) -> u64 {
    let mut failed_syncs = 0;
    for n in 0.. {
        // Something new to upload each round (a longer copy of the WAL replaces the last
        // one, so a published index is followed by deletions), and every third round a
        // checkpoint (new layers).
        write(store, (n as u32 % 8) * 16, 16, n as u8);
        if n % 3 == 0 {
            store.checkpoint().unwrap();
        }
        plan.fail_request(n);
        let before = plan.requests();
        let synced =
            Uploader::connect(location, store).and_then(|mut uploader| uploader.sync(store));
        let reached = plan.requests() - before > n;
        plan.clear();
        match synced {
            // Once its index is published a sync has succeeded: a deletion that fails after
            // it waits for the next sync.
            Ok(report) => {
                *published = Some(pages(store, 128));
                if !reached {
                    assert_eq!(report.deletions_pending, 0, "{report:?}");
                    break;
                }
                assert!(
                    report.deletions_pending >= 1,
                    "request {n} failed: {report:?}"
                );
            }
            Err(error) => {
                assert!(
                    reached,
                    "the sync failed without meeting its fault: {error}"
                );
                assert!(error.to_string().contains("injected fault"), "{error}");
                failed_syncs += 1;
            }
        }
        // The bucket always attaches, to the last state a sync published.
        assert_eq!(
            attached_pages(clean, 128),
            *published,
            "after a fault at request {n}"
        );
        assert!(n < 200, "the sync never got past its requests");
    }
    failed_syncs
}

#[test]
fn a_sync_failing_at_any_request_leaves_a_bucket_that_attaches_and_the_next_catches_up() {
    let server = S3Server::start();
    let (location, plan) = faulty(&server, "every-request");
    let clean = server.location("every-request");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    let mut published = None;
    // The first sync of a location (claiming a generation), then one that replaces and
    // deletes what an index listed, each failing at every request in turn.
    let first = sweep_faults(&store, &location, &clean, &plan, &mut published);
    let later = sweep_faults(&store, &location, &clean, &plan, &mut published);
    assert!(
        first >= 8 && later >= 8,
        "only {first} and {later} syncs met a fault"
    );
    // Debris of the failed syncs: scrub removes it, and the bucket still attaches.
    let report = scrub(&clean, Duration::ZERO, true).unwrap();
    assert!(!report.unlisted.is_empty(), "{report:?}");
    assert_eq!(attached_pages(&clean, 128), published, "{report:?}");
}

/// Found by a review: a claim left by an attach killed before it published an index
/// fenced `serve`'s replicator, and deleting that marker, as the fencing error advises
/// once its process is gone, did not help until a restart (the CLI synced at once). A
/// fenced replicator now looks again at each sync, and connects afresh.
#[test]
fn regression_a_fenced_replicator_syncs_again_once_the_newer_claim_is_deleted() {
    let server = S3Server::start();
    let location = server.location("refenced");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    write(&store, 0, 16, 1);
    let replicator =
        Replicator::start(&location, store.clone(), Duration::from_secs(3600), None).unwrap();
    replicator.sync_now().unwrap();
    let mine = replicator.status().generation;
    // A newer claim, as a killed attach leaves it.
    let marker = server.object_file(&format!("refenced/generations/{:08}", mine + 1));
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, b"{}").unwrap();
    let end = write(&store, 16, 16, 2);
    let objects = server.object_keys("refenced");
    match replicator.sync_now() {
        Err(RemoteError::Fenced { newer, .. }) => assert_eq!(newer, mine + 1),
        other => panic!("not fenced: {other:?}"),
    }
    assert_eq!(replicator.status().fenced_by, Some(mine + 1));
    match replicator.sync_now() {
        Err(RemoteError::Fenced { .. }) => {}
        other => panic!("not fenced: {other:?}"),
    }
    assert_eq!(
        server.object_keys("refenced"),
        objects,
        "a fenced sync uploaded something"
    );

    std::fs::remove_file(&marker).unwrap();
    let report = replicator.sync_now().unwrap();
    assert!(report.recovery_point >= end);
    let status = replicator.status();
    assert_eq!((status.fenced_by, status.last_error), (None, None));
    assert_eq!(attached_pages(&location, 32), Some(pages(&store, 32)));
}

#[test]
fn a_replicator_reports_failures_and_recovers() {
    let server = S3Server::start();
    let (location, plan) = faulty(&server, "replicated");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    write(&store, 0, 64, 1);
    plan.fail_all(true);
    let replicator =
        Replicator::start(&location, store.clone(), Duration::from_secs(3600), None).unwrap();
    let error = replicator.sync_now().unwrap_err();
    assert!(error.to_string().contains("injected fault"), "{error}");
    let status = replicator.status();
    assert!(
        status.failures >= 1 && status.last_error.is_some() && status.recovery_point.is_none(),
        "{status:?}"
    );
    // The store goes on locally meanwhile.
    let end = write(&store, 64, 64, 2);
    plan.fail_all(false);
    let report = replicator.sync_now().unwrap();
    assert!(report.recovery_point >= end);
    let status = replicator.status();
    assert_eq!(status.last_error, None);
    assert_eq!(status.recovery_point, Some(report.recovery_point));
    assert_eq!(
        attached_pages(&server.location("replicated"), 128),
        Some(pages(&store, 128))
    );
}

#[test]
fn a_server_that_goes_away_mid_upload_and_comes_back_costs_only_time() {
    let mut server = S3Server::start();
    let location = server.location("restarted");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    // About 96 MiB in layers and WAL: long enough to be cut off in the middle.
    for round in 0..12u8 {
        write(&store, 0, 1024, round);
        if round % 4 == 3 {
            store.checkpoint().unwrap();
        }
    }
    let expected = pages(&store, 1024);
    let uploading = {
        let store = store.clone();
        let location = location.clone();
        std::thread::spawn(move || {
            Uploader::connect(&location, &store).and_then(|mut u| u.sync(&store))
        })
    };
    std::thread::sleep(Duration::from_millis(150));
    server.stop();
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    let report = uploading.join().unwrap().unwrap();
    assert!(report.uploaded_bytes > 50_000_000, "{report:?}");
    let copy = tempfile::tempdir().unwrap();
    attach(&server.location("restarted"), copy.path()).unwrap();
    assert_eq!(pages(&Store::open(copy.path()).unwrap(), 1024), expected);
}

/// Found by a review: an index put that landed but whose answer was lost, then a next
/// one that failed outright, left `pagefork.remote` knowing neither the index in the
/// bucket nor anything since: every later sync was refused as "another copy of this
/// directory published there", for good. The index a sync checks is now recorded as the
/// directory's own before the next one is announced.
#[test]
fn regression_a_lost_answer_then_a_failed_index_put_do_not_lock_a_directory_out() {
    let server = S3Server::start();
    let (location, plan) = faulty(&server, "lost");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    write(&store, 0, 4, 1);
    Uploader::connect(&location, &store)
        .unwrap()
        .sync(&store)
        .unwrap();

    // One uploader, as `serve`'s replicator keeps, and then a new one, as the next
    // command makes.
    let mut uploader = Uploader::connect(&location, &store).unwrap();
    write(&store, 4, 4, 2);
    plan.fail_next_put_to("/index/", true);
    assert!(
        uploader.sync(&store).is_err(),
        "the planned fault did not happen"
    );
    write(&store, 8, 4, 3);
    plan.fail_next_put_to("/index/", false);
    assert!(
        uploader.sync(&store).is_err(),
        "the planned fault did not happen"
    );

    write(&store, 12, 4, 4);
    uploader.sync(&store).unwrap();
    Uploader::connect(&location, &store)
        .unwrap()
        .sync(&store)
        .unwrap();
    assert_eq!(
        attached_pages(&server.location("lost"), 16),
        Some(pages(&store, 16))
    );
}
