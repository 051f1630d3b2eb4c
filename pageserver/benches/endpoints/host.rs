//! Postgres on the host's file systems, for the comparisons: its programs run as the
//! `postgres` user, clusters made with `initdb` and started with an endpoint's settings
//! (plus any given), `psql`, `pgbench`, and a loaded table to copy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A Postgres program run as the `postgres` user (the child is the program itself, so a
/// signal to it reaches Postgres).
pub(crate) fn postgres_command(program: &str) -> Command {
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

/// Runs `command`, which must succeed; its standard output, trimmed.
pub(crate) fn run(mut command: Command, what: &str) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs `sql` at `url` (as `postgres`); its unaligned output.
pub(crate) fn psql(url: &str, sql: &str) -> String {
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

/// Gives `path` (recursively) to the `postgres` user.
pub(crate) fn give_to_postgres(path: &Path) {
    let mut chown = Command::new("chown");
    chown.args(["-R", "postgres:postgres"]).arg(path);
    run(chown, "chown");
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Postgres cluster on a host directory, stopped (fast shutdown) when dropped.
pub(crate) struct HostCluster {
    server: Child,
    pub(crate) port: u16,
}

impl HostCluster {
    /// `initdb` into `data` (a new directory), then `start`.
    pub(crate) fn create(data: &Path, settings: &[(&str, String)]) -> HostCluster {
        std::fs::create_dir_all(data).unwrap();
        give_to_postgres(data.parent().unwrap());
        let mut initdb = postgres_command("initdb");
        initdb.arg("-D").arg(data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        ]);
        run(initdb, "initdb");
        HostCluster::start(data, settings)
    }

    /// Starts Postgres on the data directory `data` with an endpoint's settings and
    /// `settings`, on a free port; returns once it accepts connections (after any
    /// recovery).
    pub(crate) fn start(data: &Path, settings: &[(&str, String)]) -> HostCluster {
        let port = free_port();
        let mut command = postgres_command("postgres");
        command.arg("-D").arg(data);
        let defaults = [
            ("port", port.to_string()),
            ("listen_addresses", "127.0.0.1".to_owned()),
            ("unix_socket_directories", String::new()),
            ("track_commit_timestamp", "on".to_owned()),
        ];
        for (name, value) in defaults.iter().chain(settings) {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        let log_path = data.with_extension("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let server = command.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        let mut cluster = HostCluster { server, port };
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            let mut ready = postgres_command("pg_isready");
            ready.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
            if ready.output().unwrap().status.success() {
                return cluster;
            }
            if let Some(status) = cluster.server.try_wait().unwrap() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("Postgres on {} exited: {status}\n{log}", data.display());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("Postgres on {} did not start", data.display());
    }

    pub(crate) fn url(&self, database: &str) -> String {
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

/// Rows of `filler` per MiB (rows of 4 KiB).
const ROWS_PER_MIB: u64 = 1024 / 4;

/// The query that proves a copy answers: a row by primary key.
pub(crate) const PROBE: &str = "SELECT length(payload) FROM filler WHERE id = 4242";

/// Loads about `mib` MiB into table `filler` of a new database `src` (rows of 4 KiB,
/// uncompressed, with a primary key).
pub(crate) fn load(url_of: &dyn Fn(&str) -> String, mib: u64) {
    psql(&url_of("postgres"), "CREATE DATABASE src");
    psql(
        &url_of("src"),
        &format!(
            "CREATE TABLE filler(id int PRIMARY KEY, payload text NOT NULL); \
             ALTER TABLE filler ALTER COLUMN payload SET STORAGE EXTERNAL; \
             INSERT INTO filler SELECT n, repeat(md5(n::text), 125) FROM generate_series(1, {}) n;",
            mib * ROWS_PER_MIB
        ),
    );
}

/// Writes `mib` MiB more into `filler` (new rows after the `round`th load-sized block),
/// with no checkpoint after them.
pub(crate) fn write_more(url: &str, loaded_mib: u64, mib: u64, round: u64) {
    let first = loaded_mib * ROWS_PER_MIB * round + 1;
    psql(
        url,
        &format!(
            "INSERT INTO filler SELECT n, repeat(md5(n::text), 125) \
             FROM generate_series({first}, {}) n;",
            first + mib * ROWS_PER_MIB - 1
        ),
    );
}

/// Transactions per second of pgbench against the server on `port`: scale 10, 4 clients,
/// `seconds` long.
pub(crate) fn pgbench(port: u16, seconds: u64) -> f64 {
    let port = port.to_string();
    let connect = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres"];
    let mut init = postgres_command("pgbench");
    init.args(connect)
        .args(["-i", "-s", "10", "-q", "postgres"]);
    run(init, "pgbench -i");
    let mut bench = postgres_command("pgbench");
    bench.args(connect).args(["-n", "-c", "4", "-j", "2"]);
    bench.args(["-T", &seconds.to_string(), "postgres"]);
    let out = run(bench, "pgbench");
    out.lines()
        .find(|line| line.starts_with("tps = "))
        .and_then(|line| line.split_whitespace().nth(2))
        .and_then(|tps| tps.parse().ok())
        .unwrap()
}

/// Bytes of the files under `dir`.
pub(crate) fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}
