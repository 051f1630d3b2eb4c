//! "Give me a copy of this database and answer a query on it", "recover it as it was at
//! time T", and "run my workload on it", on endpoints against Postgres on the host's file
//! systems, in the same run (issue 21's comparisons). Rows, at each size
//! (`PAGEFORK_BENCH_SIZES`, MiB, default `64,1024`), each until a query by primary key on
//! the copy answers, the median of three rounds (the rows right after heavy writes: one):
//!
//! - `CREATE DATABASE ... TEMPLATE` with `STRATEGY FILE_COPY` and `WAL_LOG` on a host
//!   cluster;
//! - a btrfs snapshot of a running cluster's data directory (a loop-mounted btrfs image)
//!   with a second Postgres started on it, after a checkpoint and right after heavy writes
//!   (it then replays the WAL written since the last checkpoint);
//! - a pagefork branch plus an endpoint on it, the same two ways, and right after heavy
//!   writes with `checkpoint_endpoint` (a `CHECKPOINT` on the source first);
//! - PITR to a time noted before a `DELETE`: Postgres' own (base backup, WAL archive,
//!   `recovery_target_time`, promotion) against a pagefork branch at that time plus an
//!   endpoint; both must find the deleted row;
//!
//! then pgbench (scale 10, 4 clients, `PAGEFORK_PGBENCH_SECONDS`, default 60, fsync on) on
//! an endpoint against a host cluster. Draws the copy and PITR rows as an SVG
//! (`PAGEFORK_BENCH_PLOT`, default `/var/tmp/pagefork-endpoints.svg`) and prints the
//! pagefork store's size after each size's rows.
//!
//! Needs root, /dev/fuse, Debian's postgresql-15 and btrfs-progs. Run with
//! `cargo bench -p pagefork-pageserver --bench endpoints`.

#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "../support/mod.rs"]
mod support;

mod btrfs;
mod host;
mod pitr;
mod plot;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use host::{HostCluster, PROBE, bytes_under, load, pgbench, psql, write_more};
use plot::Bar;

/// Rounds of each copy and recovery row: the tables give the median.
const ROUNDS: usize = 3;

/// The median of `ROUNDS` runs of `run` (given the round's number).
fn median(mut run: impl FnMut(usize) -> Duration) -> Duration {
    let mut runs: Vec<Duration> = (0..ROUNDS).map(&mut run).collect();
    runs.sort();
    runs[ROUNDS / 2]
}

fn seconds(duration: Duration) -> String {
    format!("{:.3} s", duration.as_secs_f64())
}

fn ratio(slower: Duration, faster: Duration) -> f64 {
    slower.as_secs_f64() / faster.as_secs_f64()
}

/// A time between two transactions: noted 300 ms after the last one, 300 ms before the
/// next.
fn note_time() -> String {
    std::thread::sleep(Duration::from_millis(300));
    let noted = pagefork_engine::Timestamp::from_system_time(SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(300));
    noted
}

/// The probe's answer once the row `DELETE`d after the noted time is back.
const PROBED_LENGTH: &str = "4000";
const DELETE_PROBED: &str = "DELETE FROM filler WHERE id = 4242";

/// `CREATE DATABASE ... TEMPLATE src` with each strategy, until the copy answers.
fn template_rows(dir: &Path, mib: u64) -> (Duration, Duration) {
    let host = HostCluster::create(&dir.join("template/pgdata"), &[]);
    load(&|db: &str| host.url(db), mib);
    psql(&host.url("postgres"), "CHECKPOINT");
    let template = |strategy: &str, name: &str| {
        let started = Instant::now();
        psql(
            &host.url("postgres"),
            &format!("CREATE DATABASE {name} TEMPLATE src STRATEGY {strategy}"),
        );
        psql(&host.url(name), PROBE);
        started.elapsed()
    };
    (
        median(|round| template("FILE_COPY", &format!("copy_file_{round}"))),
        median(|round| template("WAL_LOG", &format!("copy_wal_{round}"))),
    )
}

/// A btrfs snapshot of a running cluster plus a second Postgres on it, after a checkpoint
/// and right after `mib / 4` MiB of writes.
fn btrfs_rows(dir: &Path, mib: u64) -> (Duration, Duration) {
    let volume = btrfs::Btrfs::create(&dir.join("btrfs"), (mib << 23).max(4 << 30));
    let subvolume = volume.subvolume("pg");
    let host = HostCluster::create(&subvolume.join("pgdata"), &[]);
    load(&|db: &str| host.url(db), mib);
    psql(&host.url("postgres"), "CHECKPOINT");
    let copy = |name: &str| {
        let started = Instant::now();
        let snapshot = volume.snapshot(&subvolume, name);
        // Its server runs: the copy holds its postmaster.pid, which a second server on the
        // same machine must not take for its own.
        std::fs::remove_file(snapshot.join("pgdata/postmaster.pid")).unwrap();
        let second = HostCluster::start(&snapshot.join("pgdata"), &[]);
        psql(&second.url("src"), PROBE);
        started.elapsed()
    };
    let after_checkpoint = median(|round| copy(&format!("copy{round}")));
    write_more(&host.url("src"), mib, mib / 4, 1);
    (after_checkpoint, copy("hot"))
}

/// What the pagefork rows measured.
struct PageforkRows {
    branched: Duration,
    copy: Duration,
    after_writes: Duration,
    with_checkpoint: Duration,
    checkpoint_ms: u64,
    pitr: Duration,
    store_bytes: u64,
}

/// A branch plus an endpoint: after a checkpoint, right after heavy writes, with
/// `checkpoint_endpoint`; then a branch at a time noted before a `DELETE`.
fn pagefork_rows(dir: &Path, mib: u64) -> PageforkRows {
    let data = dir.join("pagefork");
    let served = support::Served::start(&data);
    served.post_ok("/v1/projects", r#"{"project_id": "p"}"#, 201);
    let main = served.post_ok("/v1/projects/p/branches/main/endpoint", "{}", 201);
    let port = main["endpoint"]["port"].as_u64().unwrap();
    let url_of = |db: &str| format!("postgresql://postgres@127.0.0.1:{port}/{db}");
    load(&url_of, mib);
    psql(&url_of("postgres"), "CHECKPOINT");
    // Branch `name` (with `spec` fields beside no_expiry), start an endpoint on it, probe
    // it, stop it; how long the branch took and how long until the probe answered.
    let branch = |name: &str, spec: &str| {
        let started = Instant::now();
        let created = served.post_ok(
            "/v1/projects/p/branches",
            &format!(r#"{{"branch_id": "{name}", "spec": {{"no_expiry": true{spec}}}}}"#),
            201,
        );
        let branched = started.elapsed();
        let endpoint = served.post_ok(
            &format!("/v1/projects/p/branches/{name}/endpoint"),
            "{}",
            201,
        );
        let port = endpoint["endpoint"]["port"].as_u64().unwrap();
        let probed = psql(
            &format!("postgresql://postgres@127.0.0.1:{port}/src"),
            PROBE,
        );
        let answered = started.elapsed();
        served.delete_ok(&format!("/v1/projects/p/branches/{name}/endpoint"));
        (branched, answered, created, probed)
    };
    let mut branch_alone = Vec::new();
    let copy = median(|round| {
        let (branched, answered, _, _) = branch(&format!("copy{round}"), "");
        branch_alone.push(branched);
        answered
    });
    branch_alone.sort();
    let branched = branch_alone[ROUNDS / 2];
    write_more(&url_of("src"), mib, mib / 4, 1);
    let (_, after_writes, _, _) = branch("hot", "");
    write_more(&url_of("src"), mib, mib / 4, 2);
    let (_, with_checkpoint, created, _) =
        branch("checkpointed", r#", "checkpoint_endpoint": true"#);
    let checkpoint_ms = created["endpoint_checkpoint_ms"].as_u64().unwrap();
    let noted = note_time();
    psql(&url_of("src"), DELETE_PROBED);
    let at_time = format!(r#", "source_branch_time": "{noted}""#);
    let pitr = median(|round| {
        let (_, pitr, _, probed) = branch(&format!("recovered{round}"), &at_time);
        assert_eq!(
            probed, PROBED_LENGTH,
            "the branch at {noted} has the deleted row"
        );
        pitr
    });
    let store_bytes = bytes_under(&data.join("projects"));
    PageforkRows {
        branched,
        copy,
        after_writes,
        with_checkpoint,
        checkpoint_ms,
        pitr,
        store_bytes,
    }
}

/// Postgres' own PITR: a base backup after the load, `mib / 4` MiB of writes, a noted
/// time, a `DELETE`; then the backup recovered to the noted time, until it answers.
fn postgres_pitr_row(dir: &Path, mib: u64) -> Duration {
    let mut archiving = pitr::Archiving::create(&dir.join("pitr"));
    load(&|db: &str| archiving.url(db), mib);
    archiving.base_backup();
    write_more(&archiving.url("src"), mib, mib / 4, 1);
    let noted = note_time();
    psql(&archiving.url("src"), DELETE_PROBED);
    archiving.archive_all_and_stop();
    median(|round| {
        let started = Instant::now();
        let recovered = archiving.recover_to(&noted, &format!("recovered{round}"));
        let probed = psql(&recovered.url("src"), PROBE);
        let elapsed = started.elapsed();
        assert_eq!(
            probed, PROBED_LENGTH,
            "Postgres recovered to {noted} has the deleted row"
        );
        elapsed
    })
}

/// Bytes of free space the rows at `mib` MiB take at their peak, about 32 times the
/// database: host clusters, a btrfs image, a WAL archive and a base backup, and pagefork's
/// store with every page version of its PITR window (14 GB after the 1 GiB rows). A run
/// at 1 GiB with 31 GB free died half-way of a full disk.
const FREE_BYTES_PER_MIB: u64 = 32 << 20;

/// Fails at once, saying what it needs, unless `dir` has room for the rows at `mib` MiB.
fn require_free_space(dir: &Path, mib: u64) {
    let stats = nix::sys::statvfs::statvfs(dir).unwrap();
    let free = stats.blocks_available() * stats.fragment_size();
    let needed = mib * FREE_BYTES_PER_MIB;
    assert!(
        free >= needed,
        "the endpoint rows at {mib} MiB need about {} GB free under {} and it has {} GB: \
         free some, or set PAGEFORK_BENCH_DIR or smaller PAGEFORK_BENCH_SIZES",
        needed / 1_000_000_000,
        dir.display(),
        free / 1_000_000_000
    );
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let sizes: Vec<u64> = std::env::var("PAGEFORK_BENCH_SIZES")
        .unwrap_or_else(|_| "64,1024".to_owned())
        .split(',')
        .map(|size| size.trim().parse().unwrap())
        .collect();
    let pgbench_seconds: u64 = std::env::var("PAGEFORK_PGBENCH_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60);
    let plot_path = std::env::var("PAGEFORK_BENCH_PLOT")
        .unwrap_or_else(|_| "/var/tmp/pagefork-endpoints.svg".to_owned());
    let root = tempfile::tempdir_in(
        std::env::var("PAGEFORK_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".to_owned()),
    )
    .unwrap();
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    require_free_space(root.path(), sizes.iter().copied().max().unwrap_or(0));
    let mut bars = Vec::new();
    let mut bar = |label: String, duration: Duration, pagefork: bool| {
        bars.push(Bar {
            label,
            seconds: duration.as_secs_f64(),
            pagefork,
        });
    };
    println!("copies of a database and recoveries to a time, until a query by primary key answers");
    for &mib in &sizes {
        let dir = root.path().join(format!("{mib}"));
        let (file_copy, wal_log) = template_rows(&dir, mib);
        let (btrfs_copy, btrfs_hot) = btrfs_rows(&dir, mib);
        let pagefork = pagefork_rows(&dir, mib);
        let postgres_pitr = postgres_pitr_row(&dir, mib);
        std::fs::remove_dir_all(&dir).unwrap();
        let hot = mib / 4;
        println!("{mib} MiB:");
        println!(
            "  CREATE DATABASE TEMPLATE, FILE_COPY        {}",
            seconds(file_copy)
        );
        println!(
            "  CREATE DATABASE TEMPLATE, WAL_LOG          {}",
            seconds(wal_log)
        );
        println!(
            "  btrfs snapshot + second Postgres           {}",
            seconds(btrfs_copy)
        );
        println!(
            "  pagefork branch + endpoint                 {} (the branch itself {}); FILE_COPY / pagefork {:.2}, WAL_LOG / pagefork {:.2}, btrfs / pagefork {:.2}",
            seconds(pagefork.copy),
            seconds(pagefork.branched),
            ratio(file_copy, pagefork.copy),
            ratio(wal_log, pagefork.copy),
            ratio(btrfs_copy, pagefork.copy)
        );
        println!(
            "  right after {hot} MiB of writes: btrfs {}, pagefork {} (both replay them); pagefork with checkpoint_endpoint {} (the CHECKPOINT {} ms of it)",
            seconds(btrfs_hot),
            seconds(pagefork.after_writes),
            seconds(pagefork.with_checkpoint),
            pagefork.checkpoint_ms
        );
        println!(
            "  PITR: Postgres (base backup, WAL archive, recovery_target_time) {}, pagefork branch at the time + endpoint {}; Postgres / pagefork {:.2}",
            seconds(postgres_pitr),
            seconds(pagefork.pitr),
            ratio(postgres_pitr, pagefork.pitr)
        );
        println!(
            "  pagefork's store after these rows: {:.2} GB",
            pagefork.store_bytes as f64 / 1e9
        );
        bar(format!("{mib} MiB: TEMPLATE FILE_COPY"), file_copy, false);
        bar(format!("{mib} MiB: TEMPLATE WAL_LOG"), wal_log, false);
        bar(
            format!("{mib} MiB: btrfs snapshot + Postgres"),
            btrfs_copy,
            false,
        );
        bar(
            format!("{mib} MiB: pagefork branch + endpoint"),
            pagefork.copy,
            true,
        );
        bar(
            format!("{mib} MiB after {hot} MiB of writes: btrfs"),
            btrfs_hot,
            false,
        );
        bar(
            format!("{mib} MiB after {hot} MiB of writes: pagefork"),
            pagefork.after_writes,
            true,
        );
        bar(
            format!("{mib} MiB after {hot} MiB of writes: pagefork, checkpoint first"),
            pagefork.with_checkpoint,
            true,
        );
        bar(format!("{mib} MiB: Postgres PITR"), postgres_pitr, false);
        bar(
            format!("{mib} MiB: pagefork PITR branch + endpoint"),
            pagefork.pitr,
            true,
        );
    }
    plot::write(
        Path::new(&plot_path),
        "A copy of a database, and a recovery to a time, until it answers",
        &bars,
    );
    println!("chart: {plot_path}");

    // pgbench on an endpoint against a host cluster.
    let dir = root.path().join("pgbench");
    let host = HostCluster::create(&dir.join("host/pgdata"), &[]);
    let host_tps = pgbench(host.port, pgbench_seconds);
    drop(host);
    let served = support::Served::start(&dir.join("pagefork"));
    served.post_ok("/v1/projects", r#"{"project_id": "p"}"#, 201);
    let main = served.post_ok("/v1/projects/p/branches/main/endpoint", "{}", 201);
    let port = u16::try_from(main["endpoint"]["port"].as_u64().unwrap()).unwrap();
    let endpoint_tps = pgbench(port, pgbench_seconds);
    let store_bytes = bytes_under(&dir.join("pagefork/projects"));
    drop(served);
    println!(
        "pgbench scale 10, 4 clients, {pgbench_seconds} s: endpoint {endpoint_tps:.0} tps, host {host_tps:.0} tps, ratio {:.2}; pagefork's store after it: {:.2} GB",
        endpoint_tps / host_tps,
        store_bytes as f64 / 1e9
    );
}
