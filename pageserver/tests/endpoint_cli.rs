//! `pagefork endpoint start` as users run it: in the foreground, printing how to connect
//! once Postgres accepts connections, stopped by SIGTERM (fast shutdown, unmount,
//! checkpoint); started again, the data is there; listed and stopped by other commands
//! (`endpoint list`, `endpoint stop`). Refusals before anything starts: no
//! Postgres programs where it was told to look, a mount point that is not empty, an
//! unknown branch, a setting the endpoint chooses itself, a port below 1024 or in use;
//! none of them changes the store. Postgres ending on its own ends the
//! command with an error. Needs root, /dev/fuse and
//! postgresql-15.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;

use support::cli::{ok_json, pagefork};
use support::endpoint::{Endpoint, psql, require_postgres};
use support::mount::require_fuse;

/// Every file of the store directory with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in walk(dir) {
        files.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
    }
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[test]
fn an_endpoint_runs_in_the_foreground_and_keeps_its_data() {
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    ok_json(pagefork(&data, &["init", "--json"]));

    // Refused before anything starts, the store unchanged.
    let before = snapshot(&data);
    let missing = pagefork(
        &data,
        &["endpoint", "start", "main", "--pg-bin", "/nowhere"],
    );
    assert!(!missing.status.success());
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(
        message.contains("/nowhere") && message.contains("postgresql-15"),
        "{message}"
    );
    // So is a PAGEFORK_PG_BIN without them (found by a review: another Postgres was
    // used instead, silently).
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_pagefork"))
        .arg("--data-dir")
        .arg(&data)
        .args(["endpoint", "start", "main"])
        .env("PAGEFORK_PG_BIN", "/nowhere-env")
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && message.contains("/nowhere-env"),
        "{message}"
    );
    let occupied = root.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("file"), "x").unwrap();
    let refused = pagefork(
        &data,
        &[
            "endpoint",
            "start",
            "main",
            "--mount",
            occupied.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // A setting's value with a newline is a bad argument, exit 2, as endpoints.md says
    // (found by a review: exit 1).
    let newline = pagefork(
        &data,
        &["endpoint", "start", "main", "-c", "work_mem=4MB\nx"],
    );
    assert_eq!(newline.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&newline.stderr).contains("control character"));
    let unknown = pagefork(&data, &["endpoint", "start", "nobody"]);
    assert!(!unknown.status.success());
    // Settings an endpoint chooses itself, and ports it may not take: refused as bad
    // arguments (exit 2). A port in use: refused before the empty branch is formatted or
    // initdb runs (it once was refused only after both).
    for (args, said) in [
        (vec!["-c", "port=6000"], "port"),
        (vec!["-c", "LISTEN_ADDRESSES=*"], "LISTEN_ADDRESSES"),
        (vec!["-c", "data_directory=/tmp"], "data_directory"),
        (vec!["--port", "80"], "80"),
    ] {
        let refused = pagefork(&data, &[&["endpoint", "start", "main"], &args[..]].concat());
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(message.contains(said), "{args:?}: {message}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let in_use = pagefork(&data, &["endpoint", "start", "main", "--port", &port]);
    assert_eq!(in_use.status.code(), Some(1));
    let message = String::from_utf8_lossy(&in_use.stderr);
    assert!(
        message.contains(&port) && message.contains("in use"),
        "{message}"
    );
    drop(taken);
    assert_eq!(snapshot(&data), before, "a refused start changed the store");

    let endpoint = Endpoint::start(&data, "main", None, &["-c", "shared_buffers=16MB"]);
    assert_eq!(
        endpoint.answer["endpoint"]["initialized"], true,
        "{}",
        endpoint.answer
    );
    let url = endpoint.url();
    assert_eq!(psql(&url, "SHOW shared_buffers").unwrap(), "16MB");
    psql(
        &url,
        "CREATE TABLE kept(n int); INSERT INTO kept VALUES (42);",
    )
    .unwrap();
    assert!(endpoint.stop().success());

    let endpoint = Endpoint::start(&data, "main", None, &[]);
    assert_eq!(
        endpoint.answer["endpoint"]["initialized"], false,
        "{}",
        endpoint.answer
    );
    assert_eq!(psql(&endpoint.url(), "SELECT n FROM kept").unwrap(), "42");

    // A second start on the branch, on its port or not, names the endpoint running.
    let port = endpoint.answer["endpoint"]["port"].to_string();
    for args in [&["--port", port.as_str()][..], &[]] {
        let twice = pagefork(&data, &[&["endpoint", "start", "main"], args].concat());
        let message = String::from_utf8_lossy(&twice.stderr);
        assert!(
            !twice.status.success()
                && message.contains("has an endpoint already")
                && message.contains(&port),
            "{message}"
        );
    }
    // A command that needs the store names the endpoint holding it (found by a review: a
    // restore said only "another pagefork process").
    let held = pagefork(&data, &["branch", "create", "copy"]);
    let message = String::from_utf8_lossy(&held.stderr);
    assert!(
        held.status.code() == Some(1)
            && message.contains("pagefork endpoint start main")
            && message.contains(&format!("port {port}")),
        "{message}"
    );
    // Another command lists it and stops it (as SIGTERM would), waiting until it has.
    let listed = ok_json(pagefork(&data, &["--json", "endpoint", "list"]));
    assert_eq!(listed[0]["branch"], "main", "{listed}");
    assert_eq!(listed[0]["connection_string"], endpoint.url().as_str());
    let stopped = ok_json(pagefork(&data, &["--json", "endpoint", "stop", "main"]));
    assert_eq!(stopped["port"], endpoint.answer["endpoint"]["port"]);
    assert!(
        endpoint.wait().success(),
        "the command ends as after SIGTERM"
    );
    assert_eq!(
        ok_json(pagefork(&data, &["--json", "endpoint", "list"])),
        serde_json::json!([])
    );
    let again = pagefork(&data, &["endpoint", "stop", "main"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("has no endpoint"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let endpoint = Endpoint::start(&data, "main", None, &[]);
    assert_eq!(psql(&endpoint.url(), "SELECT n FROM kept").unwrap(), "42");

    // Postgres ending on its own ends the command, saying so, with the branch unmounted.
    let postgres = nix::unistd::Pid::from_raw(i32::try_from(endpoint.postgres_pid()).unwrap());
    nix::sys::signal::kill(postgres, nix::sys::signal::Signal::SIGQUIT).unwrap();
    let status = endpoint.wait();
    assert!(!status.success());
    let endpoint = Endpoint::start(&data, "main", None, &[]);
    assert_eq!(psql(&endpoint.url(), "SELECT n FROM kept").unwrap(), "42");
    assert!(endpoint.stop().success());

    // Schema diffs start an endpoint on a scratch branch of each side, compare, and stop
    // them: the branches compared are left as they were, and the scratch ones gone. An
    // empty side is refused, not formatted (a review found both sides of a diff left
    // formatted, even by one that failed).
    ok_json(pagefork(&data, &["--json", "branch", "create", "dev"]));
    ok_json(pagefork(
        &data,
        &[
            "--json", "branch", "create", "empty", "--from", "main", "--lsn", "0/68",
        ],
    ));
    let branches = || ok_json(pagefork(&data, &["--json", "branch", "list"]));
    let before = branches();
    // Nothing at all is written: the scratch branch of the side that is a data directory
    // was created, started on and deleted before the other side was refused (found by a
    // review: three WAL records for a refused diff).
    let files = snapshot(&data);
    let refused = pagefork(&data, &["endpoint", "schema-diff", "dev", "empty"]);
    assert_eq!(
        snapshot(&data),
        files,
        "a refused schema diff changed the store"
    );
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && message.contains("\"empty\" is not a Postgres data directory")
            && message.contains("a schema diff needs a cluster on both branches"),
        "{message}"
    );
    assert_eq!(branches(), before);
    // A tree of other files is named by what it holds (found by a review: "holds no
    // pgdata/PG_VERSION file but no pgdata/PG_VERSION").
    ok_json(pagefork(
        &data,
        &[
            "--json", "branch", "create", "files", "--from", "main", "--lsn", "0/68",
        ],
    ));
    let look = root.path().join("files-mount");
    std::fs::create_dir(&look).unwrap();
    {
        let files = support::mount::Mount::start(&data, "files", &look, &[]);
        std::fs::write(files.path("notes.txt"), b"not a database").unwrap();
    }
    let refused = pagefork(&data, &["endpoint", "schema-diff", "dev", "files"]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("its tree holds notes.txt, and no pgdata/PG_VERSION"),
        "{message}"
    );
    ok_json(pagefork(&data, &["--json", "branch", "delete", "files"]));
    let same = ok_json(pagefork(
        &data,
        &["--json", "endpoint", "schema-diff", "main", "dev"],
    ));
    assert_eq!(same["identical"], true, "{same}");
    let same = pagefork(&data, &["endpoint", "schema-diff", "main", "dev"]);
    assert_eq!(
        String::from_utf8_lossy(&same.stdout).trim(),
        "the schemas of main and dev are identical"
    );
    let dev = Endpoint::start(&data, "dev", None, &[]);
    psql(&dev.url(), "ALTER TABLE kept ADD COLUMN why text").unwrap();
    assert!(dev.stop().success());
    let changed = pagefork(&data, &["endpoint", "schema-diff", "main", "dev"]);
    assert!(changed.status.success());
    let text = String::from_utf8_lossy(&changed.stdout);
    assert!(
        text.contains("--- main (schema)") && text.contains("+    why text"),
        "{text}"
    );
    let after = branches();
    let heads = |list: &serde_json::Value| -> Vec<(String, String)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|branch| {
                (
                    branch["name"].as_str().unwrap().to_owned(),
                    branch["head"].as_str().unwrap().to_owned(),
                )
            })
            .filter(|(name, _)| name == "main" || name == "empty")
            .collect()
    };
    assert_eq!(
        heads(&after),
        heads(&before),
        "a diff changed a branch it compared"
    );
    let names = branch_names(&after);
    assert!(
        !names
            .iter()
            .any(|name| name.starts_with("pagefork-scratch")),
        "{names:?}"
    );
}

#[test]
fn the_postgres_demo_runs_the_seed_scenario_and_reports_what_it_recovered_to() {
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("demo");
    let report = ok_json(pagefork(&data, &["--json", "demo", "--postgres"]));
    let bytes = report["catalog_bytes"].as_u64().unwrap();
    assert!((55_000_000..80_000_000).contains(&bytes), "{report}");
    for figure in [
        "branch_seconds",
        "branch_endpoint_ready_seconds",
        "branch_first_query_seconds",
        "pitr_first_query_seconds",
        "restore_first_query_seconds",
    ] {
        assert!(report[figure].as_f64().unwrap() > 0.0, "{figure}: {report}");
    }
    // What each step counted, and what the time snapped to, are in the JSON too (a review
    // found a script could not check them).
    assert_eq!(
        report["rows"],
        serde_json::json!({"branch": 32, "main_after_delete": 0, "recovered": 32, "main_after_restore": 32}),
        "{report}"
    );
    assert!(
        report["schema_diff_lines"].as_u64().unwrap() > 3,
        "{report}"
    );
    assert_eq!(
        report["pitr_snapped"]["requested"], report["noted"],
        "{report}"
    );
    assert_eq!(report["pitr_snapped"]["kind"], "present", "{report}");
    // The last visible transaction committed before the noted time.
    let noted: pagefork_engine::Timestamp = report["noted"].as_str().unwrap().parse().unwrap();
    let last: pagefork_engine::Timestamp = report["pitr_last_commit"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(last <= noted, "{report}");
    // The demo's store is there to look at, with the backup of the restore.
    let branches = ok_json(pagefork(&data, &["--json", "branch", "list"]));
    let names = branch_names(&branches);
    assert!(
        names.contains(&"recovered") && names.contains(&"migration-test"),
        "{names:?}"
    );
}

/// The processes `pid` started that still run, each with its program's name.
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let listed = std::fs::read_to_string(task.unwrap().path().join("children"));
        for child in listed.unwrap_or_default().split_whitespace() {
            let child: u32 = child.parse().unwrap();
            if let Ok(comm) = std::fs::read_to_string(format!("/proc/{child}/comm")) {
                found.push((child, comm.trim().to_owned()));
            }
        }
    }
    found
}

/// The `postgres` servers `pid` started that serve an endpoint's directory (not one still
/// starting, in `/`), each with that endpoint's mount point.
fn postgres_children(pid: u32) -> Vec<(u32, std::path::PathBuf)> {
    let endpoint_mount = |server: u32| {
        let cwd = std::fs::read_link(format!("/proc/{server}/cwd")).ok()?;
        cwd.ancestors()
            .find(|dir| {
                dir.file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("pagefork-endpoint-"))
            })
            .map(|place| place.join("branch"))
    };
    children(pid)
        .into_iter()
        .filter(|(_, name)| name == "postgres")
        .filter_map(|(server, _)| Some((server, endpoint_mount(server)?)))
        .collect()
}

/// Found while listing what a stop leaves behind: `demo --postgres` had no handler for
/// SIGINT or SIGTERM, so a Ctrl-C killed it and left its Postgres servers (in process
/// groups of their own, out of the Ctrl-C's reach) running on mounts dead with it. It now
/// stops them, unmounts, and fails saying so, the store kept where it was asked to be.
#[test]
fn regression_an_interrupted_postgres_demo_stops_its_servers_and_unmounts() {
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("demo");
    let demo = Background::start(&data, &["demo", "--postgres"]);
    // Interrupted while it loads the catalog through psql on main's endpoint (a start
    // stopped before it is ready leaves the branch as it was, empty).
    let mut servers = Vec::new();
    wait_until("the demo never ran psql on a Postgres of its own", || {
        servers = postgres_children(demo.pid());
        !servers.is_empty() && children(demo.pid()).iter().any(|(_, name)| name == "psql")
    });
    demo.signal(nix::sys::signal::Signal::SIGINT);
    let (status, said, errors) = demo.finish();
    assert!(
        !status.success() && errors.contains("stopped by a signal"),
        "{status:?}: {said}{errors}"
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    for (pid, dir) in &servers {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "Postgres {pid} still runs on {}",
            dir.display()
        );
        assert!(
            !mounts.contains(&format!(" {} ", dir.display())),
            "{} is still mounted",
            dir.display()
        );
    }
    // The store is there, and no longer held; main's server was shut down, not killed
    // (Postgres dies with the thread that started it, so without the stop it is killed
    // and the cluster is left "in production").
    // A signal that lands just as step 1 ends may find step 2's branch made.
    let branches = ok_json(pagefork(&data, &["--json", "branch", "list"]));
    let names = branch_names(&branches);
    assert!(
        names == ["main"] || names == ["main", "migration-test"],
        "{branches}"
    );
    let look = root.path().join("look");
    std::fs::create_dir(&look).unwrap();
    let main = support::mount::Mount::start(&data, "main", &look, &["--read-only"]);
    let control =
        std::process::Command::new(Path::new(support::endpoint::PG_BIN).join("pg_controldata"))
            .arg(main.path("pgdata"))
            .output()
            .unwrap();
    let control = format!(
        "{}{}",
        String::from_utf8_lossy(&control.stdout),
        String::from_utf8_lossy(&control.stderr)
    );
    assert!(
        control
            .lines()
            .any(|line| line.starts_with("Database cluster state:") && line.ends_with("shut down")),
        "{control}"
    );
    assert!(main.terminate().success());
}

/// Postgres' programs, linked into a directory under `root`, with `failing` replaced by a
/// script that fails saying "FAILING: a planted failure".
fn pg_bin_with_failing(root: &Path, failing: &str) -> std::path::PathBuf {
    let script = format!("#!/bin/sh\necho '{failing}: a planted failure' >&2\nexit 1\n");
    support::endpoint::pg_bin_with(root, failing, &script)
}

/// A `pagefork` command running in the background, its output piped; killed (with the
/// Postgres it runs, which dies with it) if the test fails before it ends.
struct Background(Option<std::process::Child>);

impl Background {
    fn start(data: &Path, args: &[&str]) -> Background {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_pagefork"))
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Background(Some(child))
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits for it to end: its status, standard output and standard error.
    fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let output = self.0.take().unwrap().wait_with_output().unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `done` every 50 ms for up to a minute; fails saying `what` did not happen.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A store in `root` whose `main` is a data directory with table `kept` (one row, 7), and
/// Postgres' programs with a `postgres` that never says it is ready.
fn store_and_a_server_never_ready(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = root.join("data");
    ok_json(pagefork(&data, &["init", "--json"]));
    let endpoint = Endpoint::start(&data, "main", None, &[]);
    psql(&endpoint.url(), "CREATE TABLE kept AS SELECT 7 AS n").unwrap();
    assert!(endpoint.stop().success());
    let slow = support::endpoint::pg_bin_with(root, "postgres", "#!/bin/sh\nexec sleep 600\n");
    (data, slow)
}

/// Whether a scratch branch of a schema diff is mounted.
fn scratch_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .contains("pagefork:pagefork-scratch-")
}

/// A schema diff stopped by a signal deletes its scratch branches and unmounts them (it
/// was killed, leaving both behind); one killed outright leaves a scratch branch that
/// expires within the hour (found while making a foreground start stoppable).
#[test]
fn regression_an_interrupted_schema_diff_leaves_no_scratch_branch() {
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    let (data, slow) = store_and_a_server_never_ready(root.path());
    let scratch_branches = || -> Vec<serde_json::Value> {
        ok_json(pagefork(&data, &["--json", "branch", "list"]))
            .as_array()
            .unwrap()
            .iter()
            .filter(|branch| {
                branch["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("pagefork-scratch-")
            })
            .cloned()
            .collect()
    };
    let diff_args = ["endpoint", "schema-diff", "main", "main", "--pg-bin"];
    let diff_args = [&diff_args[..], &[slow.to_str().unwrap()]].concat();

    let diff = Background::start(&data, &diff_args);
    wait_until("no scratch branch was mounted", scratch_mounted);
    diff.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, _, said) = diff.finish();
    assert!(
        !status.success() && said.contains("stopped by a signal"),
        "{status:?}: {said}"
    );
    assert!(!scratch_mounted());
    assert_eq!(scratch_branches(), Vec::<serde_json::Value>::new());

    // Killed outright: the scratch branch stays, and expires.
    let diff = Background::start(&data, &diff_args);
    wait_until("no scratch branch was mounted", scratch_mounted);
    diff.signal(nix::sys::signal::Signal::SIGKILL);
    diff.finish();
    for line in std::fs::read_to_string("/proc/mounts").unwrap().lines() {
        if line.contains("pagefork:pagefork-scratch-") {
            let mount_point = Path::new(line.split(' ').nth(1).unwrap());
            support::mount::detach(mount_point);
            let _ = std::fs::remove_dir_all(mount_point.parent().unwrap());
        }
    }
    let left = scratch_branches();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0]["expires_at"].is_string(), "{left:?}");
}

/// Found by a review: a start still waiting for Postgres (crash recovery may take
/// minutes) was invisible to `endpoint list` and `endpoint stop` until it was ready, and
/// SIGTERM waited for that too. It is listed as starting now, and a stop abandons it.
#[test]
fn regression_a_start_waiting_for_postgres_is_listed_and_can_be_stopped() {
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    let (data, slow) = store_and_a_server_never_ready(root.path());
    let command = Background::start(
        &data,
        &[
            "endpoint",
            "start",
            "main",
            "--pg-bin",
            slow.to_str().unwrap(),
        ],
    );
    let list = || ok_json(pagefork(&data, &["--json", "endpoint", "list"]));
    wait_until("the start is not listed", || list()[0]["starting"] == true);
    let listed = list();
    assert_eq!(listed[0]["branch"], "main", "{listed}");
    assert_eq!(listed[0]["command_pid"], command.pid(), "{listed}");
    let text = pagefork(&data, &["endpoint", "list"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("main  starting"), "{text}");
    let twice = pagefork(&data, &["endpoint", "start", "main"]);
    let message = String::from_utf8_lossy(&twice.stderr);
    assert!(
        !twice.status.success()
            && message.contains("has an endpoint starting")
            && message.contains(&command.pid().to_string()),
        "{message}"
    );

    let stopped = ok_json(pagefork(&data, &["--json", "endpoint", "stop", "main"]));
    assert_eq!(stopped["starting"], true, "{stopped}");
    let (status, said, errors) = command.finish();
    assert!(
        status.success() && said.contains("stopped before Postgres accepted connections"),
        "{said}{errors}"
    );
    assert_eq!(list(), serde_json::json!([]));
    let endpoint = Endpoint::start(&data, "main", None, &[]);
    assert_eq!(psql(&endpoint.url(), "SELECT n FROM kept").unwrap(), "7");
    assert!(endpoint.stop().success());
}

#[test]
fn init_postgres_makes_main_a_data_directory_or_leaves_no_store() {
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();

    // Refused before anything is created.
    let refused_dir = root.path().join("refused");
    let refused = pagefork(
        &refused_dir,
        &["init", "--postgres", "--pg-bin", "/nowhere"],
    );
    assert!(!refused.status.success());
    assert!(!refused_dir.exists(), "a refused init left a store behind");

    // One that fails over a stopped create's debris removes that debris too (found by a
    // review: the log stayed, and every later init refused the directory).
    let debris = root.path().join("debris");
    std::fs::create_dir_all(debris.join("wal")).unwrap();
    std::fs::write(debris.join("pagefork.creating"), b"").unwrap();
    std::fs::write(debris.join("wal/0000000000000000.wal"), b"half").unwrap();
    let broken = pg_bin_with_failing(root.path(), "initdb");
    let failed = pagefork(
        &debris,
        &["init", "--postgres", "--pg-bin", broken.to_str().unwrap()],
    );
    assert!(!failed.status.success());
    let left: Vec<_> = std::fs::read_dir(&debris).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    ok_json(pagefork(&debris, &["--json", "init"]));

    let data = root.path().join("pg");
    let created = ok_json(pagefork(&data, &["--json", "init", "--postgres"]));
    assert!(
        created["postgres"].as_str().unwrap().contains("initdb"),
        "{created}"
    );
    let endpoint = Endpoint::start(&data, "main", None, &[]);
    assert_eq!(
        endpoint.answer["endpoint"]["initialized"], false,
        "initdb ran at init: {}",
        endpoint.answer
    );
    assert_eq!(psql(&endpoint.url(), "SELECT 1").unwrap(), "1");
    assert!(endpoint.stop().success());
}

/// Found by a review: a relative `--mount` was handed to initdb and Postgres as written,
/// and they run elsewhere, so they used another directory (a whole cluster written
/// outside the branch when that directory existed); and an initdb that failed left an
/// empty `pgdata` on the branch, which then refused every later start as "not a Postgres
/// data directory". The mount point is now resolved first, and a failed initdb leaves
/// the branch empty.
#[test]
fn regression_a_relative_mount_point_and_a_failed_initdb() {
    use std::os::unix::fs::PermissionsExt;
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    // Postgres' user must reach the mount point inside it.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = root.path().join("data");
    ok_json(pagefork(&data, &["init", "--json"]));

    // Postgres' programs with an initdb that fails, then with a server that fails once
    // initdb has run: each start leaves the branch empty (the second left the whole of
    // initdb's cluster behind, found by a review), so the next one runs initdb.
    for failing in ["initdb", "postgres"] {
        let broken = pg_bin_with_failing(root.path(), failing);
        let failed = pagefork(
            &data,
            &[
                "endpoint",
                "start",
                "main",
                "--pg-bin",
                broken.to_str().unwrap(),
            ],
        );
        assert!(!failed.status.success());
        let message = String::from_utf8_lossy(&failed.stderr);
        assert!(message.contains("a planted failure"), "{message}");
    }

    // Relative to the command's directory; a directory of that name at / is not used.
    let relative = format!("pagefork-relative-mount-{}", std::process::id());
    std::fs::create_dir(root.path().join(&relative)).unwrap();
    let endpoint = Endpoint::start_in(root.path(), &data, "main", Some(Path::new(&relative)), &[]);
    assert_eq!(
        endpoint.answer["endpoint"]["initialized"], true,
        "{}",
        endpoint.answer
    );
    let url = endpoint.url();
    let served = psql(&url, "SHOW data_directory").unwrap();
    assert_eq!(
        Path::new(&served),
        root.path()
            .canonicalize()
            .unwrap()
            .join(&relative)
            .join("pgdata")
    );
    psql(&url, "CREATE TABLE kept AS SELECT 1 AS one").unwrap();
    assert!(!Path::new("/").join(&relative).exists());
    assert!(endpoint.stop().success());

    let again = Endpoint::start(&data, "main", None, &[]);
    assert_eq!(psql(&again.url(), "SELECT one FROM kept").unwrap(), "1");
    // A start killed (SIGKILL) leaves its mount dead in its temporary directory; the
    // next start detaches it and removes the directory (found by a review: only a later
    // `pagefork serve` did).
    let dead = again.kill_leaving_mount();
    let mounted = |point: &Path| {
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .contains(&format!(" {} ", point.display()))
    };
    assert!(
        mounted(&dead),
        "the killed start's mount is not there to clean up"
    );
    let again = Endpoint::start(&data, "main", None, &[]);
    assert!(!mounted(&dead), "{} is still mounted", dead.display());
    assert!(!dead.parent().unwrap().exists(), "its directory stayed");
    assert!(again.stop().success());

    // A relative --pg-bin is relative to the command's directory too (found by a review:
    // it passed the check for postgres and initdb, then every start failed with 127).
    std::os::unix::fs::symlink(support::endpoint::PG_BIN, root.path().join("pgbin")).unwrap();
    let relative_bin = Endpoint::start_in(root.path(), &data, "main", None, &["--pg-bin", "pgbin"]);
    assert_eq!(
        psql(&relative_bin.url(), "SELECT one FROM kept").unwrap(),
        "1"
    );
    assert!(relative_bin.stop().success());
}

/// Found by a review: a start refused because Postgres' user cannot reach the mount point
/// had mounted the empty branch first, which formats a file tree on it (its head moved).
#[test]
fn regression_an_unreachable_mount_point_is_refused_before_the_branch_is_mounted() {
    require_fuse();
    require_postgres();
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    // Postgres' user cannot search it.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = root.path().join("data");
    ok_json(pagefork(&data, &["init", "--json"]));
    let point = root.path().join("inner/mp");
    std::fs::create_dir_all(&point).unwrap();
    let head = || ok_json(pagefork(&data, &["--json", "branch", "show", "main"]))["head"].clone();
    let before = head();
    // Under `timeout`: a start that is not refused runs in the foreground until stopped.
    let refused = std::process::Command::new("timeout")
        .args(["60", env!("CARGO_BIN_EXE_pagefork"), "--data-dir"])
        .arg(&data)
        .args(["endpoint", "start", "main", "--mount"])
        .arg(&point)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("cannot reach"), "{message}");
    assert_eq!(head(), before, "the refused start changed the branch");
}

/// The names in a `branch list --json` answer.
fn branch_names(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|branch| branch["name"].as_str().unwrap())
        .collect()
}

/// Found by a review: a first start killed (SIGKILL) while its initdb ran left a `pgdata`
/// that held `global/pg_control` but not yet every database, and the next start answered
/// "ready" on it (no `postgres` database; or a server restarting in a loop). initdb now
/// makes the cluster beside `pgdata` and renames it there once finished, so a start
/// killed at any moment of it leaves a branch the next start formats afresh.
#[test]
fn regression_a_start_killed_during_its_initdb_leaves_a_branch_the_next_start_formats() {
    use std::os::unix::fs::PermissionsExt;
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mount = root.path().join("mount");
    std::fs::create_dir(&mount).unwrap();
    // Killed at moments spread over initdb's run (about a second through a mount), each
    // on a store of its own.
    for delay_ms in [0, 150, 400, 800] {
        let data = root.path().join(format!("data-{delay_ms}"));
        ok_json(pagefork(&data, &["init", "--json"]));
        let mut start = std::process::Command::new(env!("CARGO_BIN_EXE_pagefork"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--json", "endpoint", "start", "main", "--mount"])
            .arg(&mount)
            .env_remove("PAGEFORK_DATA_DIR")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut initdb = None;
        wait_until("initdb to run", || {
            initdb = children(start.id())
                .into_iter()
                .find(|(_, name)| name == "initdb");
            initdb.is_some()
        });
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        start.kill().unwrap();
        start.wait().unwrap();
        // As a power cut would: initdb and its bootstrap server go too.
        if let Some((pid, _)) = initdb {
            for (child, _) in children(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        support::mount::detach(&mount);

        let endpoint = Endpoint::start(&data, "main", Some(&mount), &[]);
        let url = endpoint.url();
        assert_eq!(
            psql(
                &url,
                "SELECT count(*) FROM pg_database WHERE datname = 'postgres'"
            ),
            Ok("1".to_owned()),
            "killed {delay_ms} ms into initdb: {}",
            endpoint.answer
        );
        assert!(endpoint.stop().success());
    }
}
