//! SIGKILL of the uploading process at random moments: `pagefork sync --remote` (the real
//! binary) of a store with the demo's 63 MB catalog and a page per round, killed after a
//! random delay, against a real S3 server (`s3s-fs`); every other sync on average also
//! evicts every uploaded layer file (`--local-cache-bytes 0`), so kills land in evictions
//! too. After every kill the store opens and reads its pages (evicted layers read back from
//! the bucket), the bucket attaches (once any sync completed), nothing an index lists is
//! missing, and every page acknowledged before the last completed sync is there; what a
//! killed sync left unlisted, `pagefork remote scrub` removes, and the bucket still
//! attaches.
//!
//! Kills: 20 by default; `PAGEFORK_REMOTE_KILLS=N` runs N. The seed is printed;
//! `PAGEFORK_REMOTE_SEED=S` replays one.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use pagefork_tests::s3::{BUCKET, S3Server};
use pagefork_tests::{TestRng, seed_from_env};
use support::cli::{ok_json, pagefork, pagefork_s3, run_with_stdin};

fn run(dir: &Path, args: &[&str]) -> Output {
    pagefork_s3(dir, args).output().unwrap()
}

/// The page written in `round`.
fn page(round: u64) -> Vec<u8> {
    let mut page = vec![(round % 251) as u8; 8192];
    page[..8].copy_from_slice(&round.to_le_bytes());
    page
}

/// Attaches the bucket (claiming nothing) in a fresh directory under `scratch`; checks
/// that the pages of the rounds in `sample` (below `rounds`) it has are the right ones,
/// and that those up to `synced` (inclusive) are there. Without an index yet, attach must
/// say so.
fn check_bucket(
    scratch: &Path,
    url: &str,
    endpoint: &str,
    (rounds, sample): (u64, &[u64]),
    synced: Option<u64>,
) {
    let copy = scratch.join(format!(
        "copy-{rounds}-{}",
        Instant::now().elapsed().as_nanos()
    ));
    let attached = run(
        &copy,
        &[
            "attach",
            "--remote",
            url,
            "--s3-endpoint",
            endpoint,
            "--no-claim",
        ],
    );
    let stderr = String::from_utf8_lossy(&attached.stderr).into_owned();
    if !attached.status.success() {
        assert!(
            synced.is_none() && stderr.contains("holds no index"),
            "the bucket does not attach after round {rounds} (last completed sync: round {synced:?}): {stderr}"
        );
        return;
    }
    for &round in sample {
        let read = pagefork(&copy, &["page", "get", "main", "9", &round.to_string()]);
        let required = synced.is_some_and(|synced| round <= synced);
        match read.status.code() {
            Some(0) => assert!(
                read.stdout == page(round),
                "page of round {round} is wrong in the copy"
            ),
            Some(3) => assert!(
                !required,
                "page of round {round}, synced, is missing from the copy"
            ),
            _ => panic!(
                "reading the copy failed: {}",
                String::from_utf8_lossy(&read.stderr)
            ),
        }
    }
    std::fs::remove_dir_all(&copy).unwrap();
}

#[test]
fn killed_syncs_leave_a_bucket_that_attaches_with_every_synced_commit() {
    let kills: u64 = std::env::var("PAGEFORK_REMOTE_KILLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let seed = seed_from_env("PAGEFORK_REMOTE_SEED");
    println!("seed {seed} (PAGEFORK_REMOTE_SEED={seed} replays it)");
    let mut rng = TestRng::new(seed);
    let server = S3Server::start();
    let endpoint = server.endpoint();
    let url = format!("s3://{BUCKET}/crash");
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    ok_json(pagefork(&store, &["--json", "demo"]));

    let mut synced: Option<u64> = None;
    // Kills land within a sync's time or a little after: below twice what the last
    // completed one took (a sync that uploads only what the WAL gained is quick; the first
    // uploads the demo whole), so about half the syncs are killed midway.
    let mut sync_ms: u64 = 750;
    let mut killed = 0;
    let mut completed = 0;
    let mut round = 0;
    while killed < kills {
        assert!(
            round < kills * 4 + 20,
            "only {killed} of {round} syncs were killed"
        );
        // Credentials for every command: evicted layers are read back from the bucket.
        let put = run_with_stdin(
            pagefork_s3(&store, &["page", "put", "main", "9", &round.to_string()]),
            &page(round),
        );
        assert!(
            put.status.success(),
            "the store after a kill: {}",
            String::from_utf8_lossy(&put.stderr)
        );
        if round % 5 == 4 {
            ok_json(run(&store, &["--json", "compact"]));
        }
        let mut sync = vec!["sync", "--remote", &url, "--s3-endpoint", &endpoint];
        if rng.below(2) == 0 {
            sync.extend(["--local-cache-bytes", "0"]);
        }
        let mut child = pagefork_s3(&store, &sync)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(rng.below(2 * sync_ms.max(10)));
        let mut finished = None;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match finished {
            Some(status) => {
                assert!(status.success(), "sync failed on its own in round {round}");
                synced = Some(round);
                completed += 1;
                sync_ms = started.elapsed().as_millis() as u64;
            }
            None => {
                child.kill().unwrap();
                let status = child.wait().unwrap();
                if status.success() {
                    synced = Some(round);
                    completed += 1;
                } else {
                    killed += 1;
                }
            }
        }
        round += 1;
        // The store itself, whatever the kill interrupted: a page at random reads back.
        let written = rng.below(round);
        let local = run(&store, &["page", "get", "main", "9", &written.to_string()]);
        assert!(
            local.status.success() && local.stdout == page(written),
            "page of round {written} in the store after round {round}: {}",
            String::from_utf8_lossy(&local.stderr)
        );
        // The last synced round, the newest, the first, and two at random (each read is a
        // process: checking every round every time would grow quadratically).
        let mut sample = vec![0, round - 1, rng.below(round), rng.below(round)];
        sample.extend(synced);
        check_bucket(root.path(), &url, &endpoint, (round, &sample), synced);
    }
    println!("{killed} syncs killed, {completed} completed, in {round} rounds");
    assert!(
        completed > 0,
        "no sync ever completed: the kills came too early to test much"
    );

    // The last word: a sync to the end, then scrub the debris of the killed ones.
    let last = run(
        &store,
        &[
            "--json",
            "sync",
            "--remote",
            &url,
            "--s3-endpoint",
            &endpoint,
        ],
    );
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    let scrubbed = run(
        &store,
        &[
            "--json",
            "remote",
            "scrub",
            "--remote",
            &url,
            "--s3-endpoint",
            &endpoint,
            "--min-age",
            "0s",
        ],
    );
    assert!(
        scrubbed.status.success(),
        "{}",
        String::from_utf8_lossy(&scrubbed.stderr)
    );
    let every: Vec<u64> = (0..round).collect();
    check_bucket(
        root.path(),
        &url,
        &endpoint,
        (round, &every),
        Some(round - 1),
    );
}
