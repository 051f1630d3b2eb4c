//! "Give me a copy of this database and answer a query on it", and "run my workload on
//! it", on endpoints against the same Postgres on the host disk, in the same run (issue
//! 21's comparisons). Rows:
//!
//! - a copy at each size (`PAGEFORK_BENCH_SIZES`, MiB, default `64,1024`): `CREATE
//!   DATABASE ... TEMPLATE` with `STRATEGY FILE_COPY` and `WAL_LOG` on the host cluster,
//!   against a pagefork branch plus an endpoint on it, each until a query by primary key
//!   on the copy answers; the branch taken both after a checkpoint and right after heavy
//!   writes (the endpoint then replays the WAL written since the last checkpoint);
//! - pgbench (scale 10, 4 clients, `PAGEFORK_PGBENCH_SECONDS`, default 60, fsync on) on
//!   an endpoint against the host cluster.
//!
//! Needs root, /dev/fuse and Debian's postgresql-15. Run with
//! `cargo bench -p pagefork-pageserver --bench endpoints`.

#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A Postgres program run as the `postgres` user (the child is the program itself, so a
/// signal to it reaches Postgres).
fn postgres_command(program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let user = nix::unistd::User::from_name("postgres")
        .unwrap()
        .expect("this benchmark runs Postgres as the postgres user (postgresql-15 creates it)");
    let mut command = Command::new(Path::new(BIN).join(program));
    command
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .current_dir("/")
        .stdin(Stdio::null());
    command
}

fn run(mut command: Command, what: &str) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn psql(url: &str, sql: &str) -> String {
    let mut command = postgres_command("psql");
    command.args([
        url,
        "-X",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ]);
    run(command, sql)
}

/// The host's cluster: initdb'd into a directory of the same disk, started with the
/// settings an endpoint gets.
struct HostCluster {
    server: Child,
    port: u16,
}

impl HostCluster {
    fn start(dir: &Path, port: u16) -> HostCluster {
        let data = dir.join("host-pgdata");
        std::fs::create_dir_all(&data).unwrap();
        run(
            {
                let mut command = Command::new("chown");
                command.args(["-R", "postgres:postgres"]).arg(dir);
                command
            },
            "chown",
        );
        let mut initdb = postgres_command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        ]);
        run(initdb, "initdb");
        let server = postgres_command("postgres")
            .arg("-D")
            .arg(&data)
            .args([
                "-c",
                &format!("port={port}"),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .args([
                "-c",
                "unix_socket_directories=",
                "-c",
                "track_commit_timestamp=on",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let cluster = HostCluster { server, port };
        for _ in 0..600 {
            let mut ready = postgres_command("pg_isready");
            ready.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
            if ready.output().unwrap().status.success() {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the host cluster did not start");
    }

    fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for HostCluster {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.server.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = self.server.wait();
    }
}

/// Loads about `mib` MiB into table `filler` of database `src` (rows of 4 KiB,
/// uncompressed, with a primary key).
fn load(url_of: &dyn Fn(&str) -> String, mib: u64) {
    psql(&url_of("postgres"), "CREATE DATABASE src");
    let rows = mib * 1024 / 4;
    psql(
        &url_of("src"),
        &format!(
            "CREATE TABLE filler(id int PRIMARY KEY, payload text NOT NULL); \
             ALTER TABLE filler ALTER COLUMN payload SET STORAGE EXTERNAL; \
             INSERT INTO filler SELECT n, repeat(md5(n::text), 125) FROM generate_series(1, {rows}) n;"
        ),
    );
}

/// Writes `mib` MiB more into `filler` (new rows), with no checkpoint after them.
fn write_more(url: &str, mib: u64, first: u64) {
    let rows = mib * 1024 / 4;
    psql(
        url,
        &format!(
            "INSERT INTO filler SELECT n, repeat(md5(n::text), 125) \
             FROM generate_series({first}, {first} + {rows} - 1) n;"
        ),
    );
}

const PROBE: &str = "SELECT length(payload) FROM filler WHERE id = 4242";

fn seconds(duration: Duration) -> String {
    format!("{:.3} s", duration.as_secs_f64())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Transactions per second of pgbench at `url`'s server: scale 10, 4 clients.
fn pgbench(host_port: u16, seconds: u64) -> f64 {
    let port = host_port.to_string();
    let mut init = postgres_command("pgbench");
    init.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        "postgres",
        "-i",
        "-s",
        "10",
        "-q",
        "postgres",
    ]);
    run(init, "pgbench -i");
    let mut bench = postgres_command("pgbench");
    bench.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        "postgres",
        "-n",
        "-c",
        "4",
        "-j",
        "2",
    ]);
    bench.args(["-T", &seconds.to_string(), "postgres"]);
    let out = run(bench, "pgbench");
    out.lines()
        .find(|line| line.starts_with("tps = "))
        .and_then(|line| line.split_whitespace().nth(2))
        .and_then(|tps| tps.parse().ok())
        .unwrap()
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
    let root = tempfile::tempdir_in(
        std::env::var("PAGEFORK_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".to_owned()),
    )
    .unwrap();
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    println!("copies of a database, until a query by primary key on the copy answers");
    for &mib in &sizes {
        let dir: PathBuf = root.path().join(format!("{mib}"));
        std::fs::create_dir_all(&dir).unwrap();
        // The host: CREATE DATABASE ... TEMPLATE, both strategies.
        let host = HostCluster::start(&dir.join("host"), free_port());
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
        let file_copy = template("FILE_COPY", "copy_file");
        let wal_log = template("WAL_LOG", "copy_wal");
        drop(host);

        // pagefork: a branch and an endpoint on it.
        let served = support::Served::start(&dir.join("pagefork"));
        served.post_ok("/v1/projects", r#"{"project_id": "p"}"#, 201);
        let main = served.post_ok("/v1/projects/p/branches/main/endpoint", "{}", 201);
        let port = main["endpoint"]["port"].as_u64().unwrap();
        let url_of = |db: &str| format!("postgresql://postgres@127.0.0.1:{port}/{db}");
        load(&url_of, mib);
        psql(&url_of("postgres"), "CHECKPOINT");
        let branch = |name: &str| {
            let started = Instant::now();
            served.post_ok(
                "/v1/projects/p/branches",
                &format!(r#"{{"branch_id": "{name}", "spec": {{"no_expiry": true}}}}"#),
                201,
            );
            let branched = started.elapsed();
            let endpoint = served.post_ok(
                &format!("/v1/projects/p/branches/{name}/endpoint"),
                "{}",
                201,
            );
            let port = endpoint["endpoint"]["port"].as_u64().unwrap();
            psql(
                &format!("postgresql://postgres@127.0.0.1:{port}/src"),
                PROBE,
            );
            (branched, started.elapsed())
        };
        let (branched, answered) = branch("copy");
        // Right after heavy writes: the endpoint replays what was written since the last
        // checkpoint; then the same with a checkpoint first (what a caller can ask for).
        write_more(&url_of("src"), mib / 4, mib * 1024 / 4 + 1);
        let (_, after_writes) = branch("hot");
        write_more(&url_of("src"), mib / 4, mib * 1024 / 4 * 2 + 1);
        let started = Instant::now();
        psql(&url_of("postgres"), "CHECKPOINT");
        let checkpoint = started.elapsed();
        let (_, after_checkpoint) = branch("checkpointed");
        drop(served);
        println!("{mib} MiB:");
        println!(
            "  CREATE DATABASE TEMPLATE, FILE_COPY      {}",
            seconds(file_copy)
        );
        println!(
            "  CREATE DATABASE TEMPLATE, WAL_LOG        {}",
            seconds(wal_log)
        );
        println!(
            "  pagefork branch + endpoint               {} (the branch itself {}); FILE_COPY / pagefork {:.2}, WAL_LOG / pagefork {:.2}",
            seconds(answered),
            seconds(branched),
            file_copy.as_secs_f64() / answered.as_secs_f64(),
            wal_log.as_secs_f64() / answered.as_secs_f64()
        );
        println!(
            "  right after {} MiB of writes             {} (replaying them); after a CHECKPOINT ({}): {}",
            mib / 4,
            seconds(after_writes),
            seconds(checkpoint),
            seconds(after_checkpoint)
        );
    }

    // pgbench on an endpoint against the host cluster.
    let dir = root.path().join("pgbench");
    let host = HostCluster::start(&dir.join("host"), free_port());
    let host_tps = pgbench(host.port, pgbench_seconds);
    drop(host);
    let served = support::Served::start(&dir.join("pagefork"));
    served.post_ok("/v1/projects", r#"{"project_id": "p"}"#, 201);
    let main = served.post_ok("/v1/projects/p/branches/main/endpoint", "{}", 201);
    let port = u16::try_from(main["endpoint"]["port"].as_u64().unwrap()).unwrap();
    let endpoint_tps = pgbench(port, pgbench_seconds);
    drop(served);
    println!(
        "pgbench scale 10, 4 clients, {pgbench_seconds} s: endpoint {endpoint_tps:.0} tps, host {host_tps:.0} tps, ratio {:.2}",
        endpoint_tps / host_tps
    );
}
