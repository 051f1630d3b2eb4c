//! Postgres 15 (Debian's, unmodified, as the `postgres` user) on a mounted branch:
//! `initdb`, pgbench's load and a short run, a clean stop and a restart from a remount;
//! then the `pagefork mount` process is SIGKILLed under a running pgbench, and Postgres
//! must start again by its ordinary crash recovery, with `pg_amcheck` finding nothing
//! wrong and the accounts' balances adding up to the history's. A branch of the stopped
//! cluster starts as a second, independent cluster. Needs root, /dev/fuse and
//! postgresql-15 (CI installs it).

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::cli::{ok_json, pagefork};
use support::mount::Mount;

const BIN: &str = "/usr/lib/postgresql/15/bin";

fn require_postgres() {
    assert!(
        Path::new(BIN).join("initdb").exists(),
        "this test runs Postgres 15 on a mount and needs Debian's postgresql-15 (apt-get install postgresql-15)"
    );
}

/// Runs a Postgres program as the `postgres` user.
fn as_postgres(program: &str, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(Path::new(BIN).join(program))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"))
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

struct Cluster {
    data: PathBuf,
    socket: PathBuf,
    port: String,
}

impl Cluster {
    fn start(&self) {
        let options = format!(
            "-k {} -p {} -c listen_addresses='' -c shared_buffers=16MB -c max_wal_size=64MB",
            self.socket.display(),
            self.port
        );
        let log = self.socket.join(format!("log-{}", self.port));
        ok(
            as_postgres(
                "pg_ctl",
                &[
                    "-D",
                    self.data.to_str().unwrap(),
                    "-o",
                    &options,
                    "-l",
                    log.to_str().unwrap(),
                    "-w",
                    "-t",
                    "120",
                    "start",
                ],
            ),
            &format!(
                "pg_ctl start (log: {})",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        );
    }

    fn stop(&self, mode: &str) {
        ok(
            as_postgres(
                "pg_ctl",
                &["-D", self.data.to_str().unwrap(), "-m", mode, "-w", "stop"],
            ),
            "pg_ctl stop",
        );
    }

    fn connection(&self) -> [String; 4] {
        [
            "-h".to_owned(),
            self.socket.to_str().unwrap().to_owned(),
            "-p".to_owned(),
            self.port.clone(),
        ]
    }

    fn sql(&self, sql: &str) -> String {
        let mut args: Vec<String> = self.connection().to_vec();
        args.extend(["-X", "-A", "-t", "-d", "postgres", "-c", sql].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(as_postgres("psql", &args), sql)
    }

    fn pgbench(&self, extra: &[&str]) -> Output {
        let mut args: Vec<String> = self.connection().to_vec();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        args.push("postgres".to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        as_postgres("pgbench", &args)
    }

    fn spawn_pgbench(&self, extra: &[&str]) -> Child {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(BIN).join("pgbench"))
            .args(self.connection())
            .args(extra)
            .arg("postgres")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Every account's balance adds up to what the history says was moved (runs use
    /// `pgbench -n`: without it pgbench empties the history before each run), and
    /// amcheck finds no damaged index or heap page.
    fn check(&self, stage: &str) {
        let balances = self.sql(
            "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts) \
             = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)",
        );
        let detail = self.sql(
            "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts), \
             (SELECT coalesce(sum(delta), 0) FROM pgbench_history), \
             (SELECT count(*) FROM pgbench_history)",
        );
        assert_eq!(
            balances, "t",
            "{stage}: balances and history disagree: {detail}"
        );
        self.sql("CREATE EXTENSION IF NOT EXISTS amcheck");
        let mut args: Vec<String> = self.connection().to_vec();
        args.extend(["--heapallindexed", "-d", "postgres"].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(as_postgres("pg_amcheck", &args), "pg_amcheck");
    }
}

#[test]
fn postgres_runs_on_a_mount_restarts_after_sigkill_and_branches() {
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    // The postgres user must reach the mount point and its socket directory.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (data, dir) = (root.path().join("data"), root.path().join("mnt"));
    let socket = root.path().join("socket");
    std::fs::create_dir(&socket).unwrap();
    ok(
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&socket)
            .output()
            .unwrap(),
        "chown",
    );
    ok_json(pagefork(&data, &["init", "--json"]));
    let mount = Mount::start(&data, "main", &dir, &[]);
    ok(
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .output()
            .unwrap(),
        "chown",
    );
    let cluster = Cluster {
        data: dir.join("pg"),
        socket: socket.clone(),
        port: "5491".to_owned(),
    };
    ok(
        as_postgres(
            "initdb",
            &[
                "-D",
                cluster.data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        ),
        "initdb",
    );
    cluster.start();
    ok(cluster.pgbench(&["-i", "-s", "2", "-q"]), "pgbench -i");
    ok(
        cluster.pgbench(&["-n", "-T", "5", "-c", "2", "-j", "2"]),
        "pgbench",
    );
    cluster.check("after a run");
    let transactions = cluster.sql("SELECT count(*) FROM pgbench_history");
    cluster.stop("fast");
    assert!(mount.terminate().success());

    let mount = Mount::start(&data, "main", &dir, &[]);
    cluster.start();
    assert_eq!(
        cluster.sql("SELECT count(*) FROM pgbench_accounts"),
        "200000"
    );
    assert_eq!(
        cluster.sql("SELECT count(*) FROM pgbench_history"),
        transactions
    );
    // SIGKILL the mount under a running pgbench: Postgres dies with it (its files are
    // gone); its postmaster is then stopped and the cluster started on a remount.
    let mut bench = cluster.spawn_pgbench(&["-n", "-T", "30", "-c", "2", "-j", "2"]);
    std::thread::sleep(Duration::from_secs(3));
    // The postmaster's PID, while its files can still be read: only this cluster is
    // stopped below, not any other Postgres on the machine.
    let postmaster = std::fs::read_to_string(cluster.data.join("postmaster.pid")).unwrap();
    let postmaster = postmaster.lines().next().unwrap().trim().to_owned();
    let dead = mount.kill();
    let _ = bench.kill();
    let _ = bench.wait();
    // The postmaster cannot read its files any more; stop it and its children the hard way.
    let _ = Command::new("pkill")
        .args(["-KILL", "-P", &postmaster])
        .status();
    let _ = Command::new("kill").args(["-KILL", &postmaster]).status();
    let alive = |args: &[&str]| {
        Command::new("pgrep")
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while alive(&["-P", &postmaster]) || Path::new(&format!("/proc/{postmaster}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "Postgres did not die with its mount"
        );
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &postmaster])
            .status();
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(dead);
    // What a dead postmaster leaves behind: its socket's lock file.
    let _ = std::fs::remove_file(socket.join(format!(".s.PGSQL.{}.lock", cluster.port)));
    let mount = Mount::start(&data, "main", &dir, &[]);
    let _ = std::fs::remove_file(cluster.data.join("postmaster.pid"));
    cluster.start();
    cluster.check("after the mount was killed");
    let after_crash: u64 = cluster
        .sql("SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    assert!(after_crash >= transactions.parse::<u64>().unwrap());
    cluster.stop("fast");
    assert!(mount.terminate().success());

    // A branch of the stopped cluster is a second cluster: changes stay on their side.
    ok_json(pagefork(&data, &["branch", "create", "trial", "--json"]));
    let trial_dir = root.path().join("trial");
    let trial_mount = Mount::start(&data, "trial", &trial_dir, &[]);
    let trial = Cluster {
        data: trial_dir.join("pg"),
        socket: socket.clone(),
        port: "5492".to_owned(),
    };
    trial.start();
    trial.sql("DROP TABLE pgbench_history");
    trial.stop("fast");
    assert!(trial_mount.terminate().success());
    let mount = Mount::start(&data, "main", &dir, &[]);
    cluster.start();
    assert_eq!(
        cluster.sql("SELECT count(*) FROM pgbench_history"),
        after_crash.to_string()
    );
    cluster.stop("fast");
    assert!(mount.terminate().success());
}
