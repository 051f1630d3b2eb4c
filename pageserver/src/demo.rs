//! `pagefork demo`: the experiment Thoughtworks ran on Databricks Lakebase with a Backstage
//! catalog, reproduced on the local disk with pagefork, measured, and checked.
//!
//! Steps: load a ~63 MB catalog (32 entity pages in relation 1, bulk pages in relation 2),
//! branch it with a one-hour TTL, run a "migration" on the branch and check `main` is
//! untouched, note a time, wipe the 32 entity pages on `main`, create a recovery branch at
//! the noted time, and check it has all 32 while `main` has none. Every check that fails
//! makes the demo fail; every figure it prints was measured in this run.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use pagefork_engine::{
    At, BranchOptions, Config, Expiry, Key, LsnForTime, Store, Timestamp, Update,
};
use serde_json::json;

use crate::commands::describe_time_answer;
use crate::output::out;
use crate::views::time_answer_json;

const PAGE_SIZE: usize = 8192;
const ENTITY_REL: u32 = 1;
const BULK_REL: u32 = 2;
const ENTITY_PAGES: u32 = 32;
/// ~63 MB, the size of the Backstage catalog in the experiment.
const CATALOG_BYTES: u64 = 63_000_000;
const PAGES_PER_COMMIT: u32 = 256;
const READS: usize = 2000;

/// Lakebase's published figures (the blog post the project grew from).
const LAKEBASE_BRANCH: &str = "1.09 s";
const LAKEBASE_RESTORE: &str = "3.78 s";
const LAKEBASE_SNAP: &str = "12 s back, silently";

fn entity_page(index: u32) -> Bytes {
    let text = format!(
        "final_entities row {index:02}: kind=Component name=service-{index:02} owner=team-{} lifecycle=production\n",
        index % 4
    );
    let mut page = text.into_bytes();
    page.resize(PAGE_SIZE, b' ');
    Bytes::from(page)
}

fn bulk_page(block: u32) -> Bytes {
    let seed = block.wrapping_mul(2_654_435_761);
    Bytes::from(
        (0..PAGE_SIZE)
            .map(|i| (seed.wrapping_add(i as u32) >> 3) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn count_entities(store: &Store, branch: &str) -> Result<u32> {
    let mut count = 0;
    for block in 0..ENTITY_PAGES {
        if store
            .get_page(branch, Key::new(ENTITY_REL, block), At::Latest)?
            .is_some()
        {
            count += 1;
        }
    }
    Ok(count)
}

fn entities_match_originals(store: &Store, branch: &str) -> Result<bool> {
    for block in 0..ENTITY_PAGES {
        let page = store.get_page(branch, Key::new(ENTITY_REL, block), At::Latest)?;
        if page.as_deref() != Some(&entity_page(block)[..]) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A duration with the unit that keeps it short: ns, µs, ms or s.
pub(crate) fn format_duration(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1.0 {
        format!("{:.0} ns", micros * 1e3)
    } else if micros < 1000.0 {
        format!("{micros:.1} µs")
    } else if micros < 1e6 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// Runs the demo in `data_dir`, or in a temporary directory when `None`.
pub(crate) fn run(data_dir: Option<PathBuf>, json: bool) -> Result<()> {
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dir = data_dir.unwrap_or_else(|| temp.path().join("store"));
    let say = |line: String| -> Result<()> {
        if !json {
            out!("{line}");
        }
        Ok(())
    };
    let store = Store::create(&dir, Config::default())
        .with_context(|| format!("cannot create a store in {}", dir.display()))?;
    say(format!(
        "pagefork demo: the Lakebase branching and PITR experiment, on this disk ({})",
        dir.display()
    ))?;
    say("every commit and branch below is fsynced before it is acknowledged\n".to_owned())?;

    // 1. Load the catalog.
    let total_pages = (CATALOG_BYTES / PAGE_SIZE as u64) as u32;
    let progress = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(u64::from(total_pages))
    };
    progress.set_style(
        ProgressStyle::with_template(
            "  loading catalog [{bar:40}] {pos}/{len} pages {binary_bytes_per_sec}",
        )
        .context("progress bar template")?
        .progress_chars("=> "),
    );
    let load_started = Instant::now();
    let entities = (0..ENTITY_PAGES).map(|block| {
        (
            Key::new(ENTITY_REL, block),
            Update::Image(entity_page(block)),
        )
    });
    store.commit("main", entities.collect())?;
    progress.inc(u64::from(ENTITY_PAGES));
    let bulk_pages = total_pages - ENTITY_PAGES;
    for first in (0..bulk_pages).step_by(PAGES_PER_COMMIT as usize) {
        let last = (first + PAGES_PER_COMMIT).min(bulk_pages);
        let updates =
            (first..last).map(|block| (Key::new(BULK_REL, block), Update::Image(bulk_page(block))));
        store.commit("main", updates.collect())?;
        progress.inc(u64::from(last - first));
    }
    progress.finish_and_clear();
    let load = load_started.elapsed();
    say(format!(
        "1. loaded a {:.1} MB catalog: {ENTITY_PAGES} entity pages + {bulk_pages} bulk pages of 8 KiB, in {}",
        (u64::from(total_pages) * PAGE_SIZE as u64) as f64 / 1e6,
        format_duration(load)
    ))?;

    // 2. Branch it with a one-hour TTL.
    let today = Timestamp::from_system_time(SystemTime::now())
        .to_string()
        .get(..10)
        .unwrap_or("today")
        .replace('-', "");
    let migration_branch = format!("migration-test-{today}");
    let options = BranchOptions {
        expiry: Expiry::Ttl(Duration::from_secs(3600)),
        protected: false,
    };
    let started = Instant::now();
    let branch = store.create_branch(&migration_branch, "main", At::Latest, options)?;
    let branch_time = started.elapsed();
    say(format!(
        "2. created branch {migration_branch} (TTL 1h, expires {}) in {}: nothing copied",
        branch
            .expires_at
            .map_or("never".to_owned(), |time| time.to_string()),
        format_duration(branch_time)
    ))?;

    // 3. A migration on the branch; main must not see it.
    let started = Instant::now();
    let migration = (0..ENTITY_PAGES)
        .map(|block| {
            let patch = Update::Patch {
                offset: 512,
                bytes: Bytes::from_static(
                    b"schema=v2 annotations={backstage.io/managed-by-location}",
                ),
            };
            (Key::new(ENTITY_REL, block), patch)
        })
        .collect();
    store.commit(&migration_branch, migration)?;
    let migration_time = started.elapsed();
    if !entities_match_originals(&store, "main")? {
        bail!("demo check failed: the migration on {migration_branch} changed main");
    }
    if entities_match_originals(&store, &migration_branch)? {
        bail!("demo check failed: the migration is not visible on {migration_branch}");
    }
    say(format!(
        "3. migrated the {ENTITY_PAGES} entity pages on the branch in {}; main is untouched (checked page by page)",
        format_duration(migration_time)
    ))?;

    // 4. Note a time; 5. wipe the entity pages on main.
    let noted = Timestamp::from_system_time(SystemTime::now());
    std::thread::sleep(Duration::from_millis(20));
    let wipe = (0..ENTITY_PAGES)
        .map(|block| (Key::new(ENTITY_REL, block), Update::Drop))
        .collect();
    let wiped = store.commit("main", wipe)?;
    let left_on_main = count_entities(&store, "main")?;
    if left_on_main != 0 {
        bail!("demo check failed: {left_on_main} entity pages survived the wipe on main");
    }
    say(format!("4. noted the time {noted}"))?;
    say(format!(
        "5. wiped the entity pages on main at LSN {}: main now has {left_on_main} of {ENTITY_PAGES}",
        wiped.lsn
    ))?;

    // 6. Recover with a branch at the noted time.
    let recovery_branch = format!("recovered-{today}");
    let started = Instant::now();
    let recovered = store.create_branch(
        &recovery_branch,
        "main",
        At::Time(noted),
        BranchOptions::default(),
    )?;
    let restore_time = started.elapsed();
    let answer: LsnForTime = recovered
        .created_at_time
        .context("a branch created at a time carries its time answer")?;
    let recovered_count = count_entities(&store, &recovery_branch)?;
    if recovered_count != ENTITY_PAGES || !entities_match_originals(&store, &recovery_branch)? {
        bail!(
            "demo check failed: {recovery_branch} has {recovered_count} of {ENTITY_PAGES} entity pages, or they differ"
        );
    }
    if count_entities(&store, "main")? != 0 {
        bail!("demo check failed: the recovery changed main");
    }
    say(format!(
        "6. created {recovery_branch} at the noted time in {}",
        format_duration(restore_time)
    ))?;
    say(format!("   snapped: {}", describe_time_answer(&answer)))?;
    say(format!(
        "7. checked: {recovery_branch} has all {recovered_count} entity pages, byte for byte; main has 0\n"
    ))?;

    // 8. Reads on the recovered branch (through its parent).
    let mut latencies = Vec::with_capacity(READS);
    for read in 0..READS {
        let key = if read % 2 == 0 {
            Key::new(ENTITY_REL, read as u32 % ENTITY_PAGES)
        } else {
            Key::new(BULK_REL, (read as u32).wrapping_mul(7919) % bulk_pages)
        };
        let started = Instant::now();
        let page = store.get_page(&recovery_branch, key, At::Latest)?;
        latencies.push(started.elapsed());
        if page.is_none() {
            bail!("demo check failed: {key} is missing on {recovery_branch}");
        }
    }
    latencies.sort();
    let percentile = |p: usize| {
        latencies
            .get(latencies.len() * p / 100)
            .copied()
            .unwrap_or_default()
    };
    let (read_p50, read_p99) = (percentile(50), percentile(99));

    let snapped_back = answer.snapped_back().unwrap_or_default();
    if json {
        out!(
            "{}",
            json!({
                "data_dir": dir.display().to_string(),
                "catalog_bytes": u64::from(total_pages) * PAGE_SIZE as u64,
                "load_us": load.as_micros() as u64,
                "branch_create_us": branch_time.as_micros() as u64,
                "migration_us": migration_time.as_micros() as u64,
                "pitr_branch_us": restore_time.as_micros() as u64,
                "pitr": time_answer_json(&answer),
                "read_p50_ns": read_p50.as_nanos() as u64,
                "read_p99_ns": read_p99.as_nanos() as u64,
                "entities_on_main": 0,
                "entities_recovered": recovered_count,
                "checks": "passed",
            })
        );
        return Ok(());
    }
    let rows = [
        (
            "branch the 63 MB catalog",
            format_duration(branch_time),
            LAKEBASE_BRANCH.to_owned(),
        ),
        (
            "restore by PITR (branch at a time)",
            format_duration(restore_time),
            LAKEBASE_RESTORE.to_owned(),
        ),
        (
            "requested time snapped back",
            format!(
                "{}, to LSN {} (reported)",
                format_duration(snapped_back),
                answer.lsn
            ),
            LAKEBASE_SNAP.to_owned(),
        ),
        (
            "read a page on the recovered branch",
            format!(
                "p50 {} / p99 {}",
                format_duration(read_p50),
                format_duration(read_p99)
            ),
            "not published".to_owned(),
        ),
    ];
    let (ours, theirs) = (
        "pagefork (measured now, this machine)",
        "Lakebase (published)",
    );
    out!("{:<38} {ours:<42} {theirs}", "");
    for (what, ours, theirs) in rows {
        out!("{what:<38} {ours:<42} {theirs}");
    }
    out!(
        "\nThe snap went to the last commit at or before the noted time (the end of the catalog \
         load); the migration ran on its own branch and the wipe came after. Lakebase's figures \
         are from its blog post and include a control plane and network; these are local and \
         in-process. All checks passed."
    );
    Ok(())
}
