//! Endpoints through `pagefork serve`: Postgres 15 (Debian's, unmodified, as `postgres`)
//! started on branches over the API. Checked: the first start of an empty branch runs
//! initdb and answers a connection string that works; a branch of a running endpoint
//! starts (its stale postmaster.pid handled, its image recovered) and each endpoint sees
//! only its own writes; a branch can have its source's endpoint checkpoint first (and a
//! refused one asks nothing of Postgres); a branch at a time between two transactions has the first and not
//! the second, and the answer names the time asked, the commit it snapped to and the last
//! visible transaction's commit time; refusals (a second start, a port in use, a branch
//! holding other files, no endpoint to stop); SIGTERM stops the endpoints and what they
//! committed is there after a restart; a branch taken while pgbench writes starts, its
//! balances add up to its own history and pg_amcheck finds nothing wrong. Needs root,
//! /dev/fuse and postgresql-15 (and postgresql-client-15's pg_amcheck).

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::Server;
use support::endpoint::{pg_amcheck, require_postgres};
use support::mount::require_fuse;

const B: &str = "/v1/projects/p/branches";
const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

/// Runs `sql` through the endpoint `started` answered, returning psql's unaligned output.
fn sql(started: &Value, sql: &str) -> String {
    sql_with_options(started, sql, "")
}

/// `sql` on a connection started with `options` (`PGOPTIONS`: settings in force before
/// the first statement).
fn sql_with_options(started: &Value, sql: &str, options: &str) -> String {
    let url = started["endpoint"]["connection_string"].as_str().unwrap();
    let output = Command::new(PSQL)
        .args([url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGOPTIONS", options)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A server on a new data directory with project `p`: the temporary directory (the test
/// keeps it), the data directory and the server. Fails saying what is missing without
/// FUSE or Postgres.
fn server_with_project_p() -> (tempfile::TempDir, std::path::PathBuf, Server) {
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = Server::start(&data, &[]);
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    (root, data, server)
}

fn start_endpoint(server: &Server, branch: &str) -> Value {
    server
        .post(&format!("{B}/{branch}/endpoint"), "{}")
        .expect(201)
}

#[test]
fn endpoints_start_on_branches_each_with_its_own_writes_and_a_pitr_answer() {
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut server = Server::start(&data, &[]);
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    // A mount formats the tree: a state before initdb to branch from.
    std::fs::create_dir_all(data.join("mounts/main")).unwrap();
    server
        .post(&format!("{B}/main/mount"), r#"{"path": "main"}"#)
        .expect(201);
    server.delete(&format!("{B}/main/mount")).expect(200);
    std::thread::sleep(Duration::from_millis(50));
    let before_initdb = pagefork_engine::Timestamp::from_system_time(std::time::SystemTime::now());
    std::thread::sleep(Duration::from_millis(50));

    // The first start of an empty branch runs initdb.
    let main = start_endpoint(&server, "main");
    // A branch at a time before it is empty, and its start runs initdb again: the answer
    // pairs no time with the new cluster (a review found it reporting the time's state).
    let body = format!(
        r#"{{"branch_id": "before-initdb", "spec": {{"source_branch": "main", "source_branch_time": "{before_initdb}", "no_expiry": true}}}}"#
    );
    server.post(B, &body).expect(201);
    let fresh = start_endpoint(&server, "before-initdb");
    assert_eq!(fresh["endpoint"]["initialized"], true, "{fresh}");
    assert_eq!(fresh["branch_created_at"], Value::Null, "{fresh}");
    assert_eq!(fresh["last_committed_transaction"], Value::Null, "{fresh}");
    server
        .delete(&format!("{B}/before-initdb/endpoint"))
        .expect(200);
    assert_eq!(main["endpoint"]["initialized"], true, "{main}");
    assert_eq!(main["branch_created_at"], Value::Null);
    sql(&main, "CREATE TABLE t(x int); INSERT INTO t VALUES (1);");
    let listed = server.get("/v1/projects/p/endpoints").expect(200);
    assert_eq!(listed["endpoints"][0]["branch"], "main", "{listed}");
    server
        .post(&format!("{B}/main/endpoint"), "{}")
        .expect_error(409, "endpoint_running");
    // On its own port too (found by a review: that was port_in_use).
    let own_port = format!(r#"{{"port": {}}}"#, main["endpoint"]["port"]);
    server
        .post(&format!("{B}/main/endpoint"), &own_port)
        .expect_error(409, "endpoint_running");
    // The mount under it is the endpoint's: what would change main is refused, saying
    // to stop the endpoint (it said to unmount, which the endpoint's mount refuses).
    let refused = server
        .post(&format!("{B}/main/reset"), "{}")
        .expect_error(409, "branch_mounted");
    assert!(
        refused.contains("by its endpoint") && refused.contains("/main/endpoint"),
        "{refused}"
    );

    // A branch of the running endpoint starts by crash recovery, and diverges.
    server
        .post(
            B,
            r#"{"branch_id": "dev", "spec": {"source_branch": "main", "no_expiry": true}}"#,
        )
        .expect(201);
    let dev = start_endpoint(&server, "dev");
    assert_eq!(dev["endpoint"]["initialized"], false, "{dev}");
    assert_ne!(dev["endpoint"]["port"], main["endpoint"]["port"]);
    // Branched at the latest commit: the start does not ask Postgres what it last
    // committed (a connection of its own would cost the start 30-40 ms).
    assert!(dev["last_committed_transaction"].is_null(), "{dev}");
    assert!(dev["branch_created_at"].is_null(), "{dev}");
    sql(&dev, "INSERT INTO t VALUES (2);");
    sql(&main, "INSERT INTO t VALUES (10);");
    assert_eq!(sql(&main, "SELECT sum(x) FROM t"), "11");
    assert_eq!(sql(&dev, "SELECT sum(x) FROM t"), "3");

    // A branch can ask for a CHECKPOINT on its source's endpoint first (at latest only;
    // refusals ask nothing of Postgres and create nothing).
    let checkpoints = || sql(&main, "SELECT checkpoints_req FROM pg_stat_bgwriter");
    let before = checkpoints();
    let spec = |name: &str, source: &str, extra: &str| {
        format!(
            r#"{{"branch_id": "{name}", "spec": {{"source_branch": "{source}", "no_expiry": true, "checkpoint_endpoint": true{extra}}}}}"#
        )
    };
    server
        .post(B, &spec("ck", "main", r#", "source_branch_lsn": "0/1""#))
        .expect_error(400, "invalid_request");
    server
        .post(B, &spec("dev", "main", ""))
        .expect_error(409, "branch_exists");
    server
        .post(B, r#"{"branch_id": "quiet", "spec": {"no_expiry": true}}"#)
        .expect(201);
    server
        .post(B, &spec("ck", "quiet", ""))
        .expect_error(404, "no_endpoint");
    // An expiry the create refuses, refused before the CHECKPOINT too (found by a review).
    server
        .post(
            B,
            r#"{"branch_id": "ck", "spec": {"expire_time": "2020-01-01T00:00:00Z", "checkpoint_endpoint": true}}"#,
        )
        .expect_error(422, "invalid_time");
    server
        .get(&format!("{B}/ck"))
        .expect_error(404, "branch_not_found");
    assert_eq!(
        checkpoints(),
        before,
        "a refused create asked for a checkpoint"
    );
    let created = server.post(B, &spec("ck", "main", "")).expect(201);
    assert!(created["endpoint_checkpoint_ms"].is_u64(), "{created}");
    assert_eq!(
        checkpoints().parse::<u64>().unwrap(),
        before.parse::<u64>().unwrap() + 1
    );
    let ck = start_endpoint(&server, "ck");
    assert_eq!(sql(&ck, "SELECT sum(x) FROM t"), "11");
    server.delete(&format!("{B}/ck/endpoint")).expect(200);

    // A migration tried on dev: main's schema is untouched, and the schema diff says so.
    let same = server
        .get(&format!("{B}/main/schema-diff?to=dev"))
        .expect(200);
    assert_eq!(same["identical"], true, "{same}");
    sql(
        &dev,
        "ALTER TABLE t ADD COLUMN note text; CREATE INDEX t_by_note ON t(note);",
    );
    let changed = server
        .get(&format!("{B}/main/schema-diff?to=dev"))
        .expect(200);
    assert_eq!(changed["identical"], false, "{changed}");
    let diff = changed["diff"].as_str().unwrap();
    assert!(
        diff.contains("+    note text") && diff.contains("+CREATE INDEX t_by_note"),
        "{diff}"
    );
    assert_eq!(
        sql(
            &main,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 't'"
        ),
        "1"
    );
    // Found by a review: only database `postgres` was compared, so a database, a role or
    // a table elsewhere made on one branch left the schemas "identical".
    sql(&dev, "CREATE ROLE app_owner");
    sql(&dev, "CREATE DATABASE app OWNER app_owner");
    let dev_url = dev["endpoint"]["connection_string"].as_str().unwrap();
    let dev_app = format!("{}/app", dev_url.strip_suffix("/postgres").unwrap());
    let made = Command::new(PSQL)
        .args([
            &dev_app,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE TABLE users(id int)",
        ])
        .status()
        .unwrap();
    assert!(made.success());
    let elsewhere = server
        .get(&format!("{B}/main/schema-diff?to=dev"))
        .expect(200);
    let diff = elsewhere["diff"].as_str().unwrap();
    assert!(
        diff.contains("+CREATE ROLE app_owner")
            && diff.contains("+CREATE DATABASE app")
            && diff.contains("+CREATE TABLE public.users"),
        "{diff}"
    );
    // A branch that does not exist is named as such, not as one without an endpoint.
    let missing = server
        .get(&format!("{B}/main/schema-diff?to=nobody"))
        .expect_error(404, "branch_not_found");
    assert!(missing.contains("nobody"), "{missing}");

    // PITR to a time between two transactions has exactly the first.
    sql(&main, "INSERT INTO t VALUES (100);");
    std::thread::sleep(Duration::from_millis(300));
    let between = pagefork_engine::Timestamp::from_system_time(std::time::SystemTime::now());
    std::thread::sleep(Duration::from_millis(300));
    sql(&main, "INSERT INTO t VALUES (200);");
    let body = format!(
        r#"{{"branch_id": "then", "spec": {{"source_branch": "main", "source_branch_time": "{between}", "no_expiry": true}}}}"#
    );
    server.post(B, &body).expect(201);
    // The endpoint's settings limit its users, not pagefork's own question (a review's
    // statement_timeout of 1 ms left the report empty without a word).
    let then = server
        .post(
            &format!("{B}/then/endpoint"),
            r#"{"settings": {"statement_timeout": "1", "lock_timeout": "1"}}"#,
        )
        .expect(201);
    // The test's own queries lift the limits from the connection's start: a `SET` in
    // the same query string can come too late (a 1 ms timeout firing while the `SET` runs
    // was reported as "canceling statement due to user request", seen in a full run).
    let unlimited =
        |query: &str| sql_with_options(&then, query, "-c statement_timeout=0 -c lock_timeout=0");
    assert_eq!(unlimited("SELECT sum(x) FROM t"), "111");
    let created = &then["branch_created_at"];
    assert_eq!(created["requested"], between.to_string(), "{then}");
    let last = then["last_committed_transaction"].as_str().unwrap();
    let visible = unlimited(&format!(
        "SELECT '{last}'::timestamptz <= '{between}'::timestamptz"
    ));
    assert_eq!(
        visible, "t",
        "the last visible commit {last} is after {between}"
    );
    // Once the branch holds commits of its own (its start's crash recovery, then a
    // transaction), a start no longer pairs the time asked for with its own last commit
    // (found by a review: every start after a restore in place did).
    unlimited("INSERT INTO t VALUES (1000);");
    server.delete(&format!("{B}/then/endpoint")).expect(200);
    let again = start_endpoint(&server, "then");
    assert_eq!(again["branch_created_at"], Value::Null, "{again}");
    assert_eq!(again["last_committed_transaction"], Value::Null, "{again}");
    assert_eq!(sql(&again, "SELECT sum(x) FROM t"), "1111");
    server.delete(&format!("{B}/then/endpoint")).expect(200);
    // What a start writes that is no transaction keeps the answer: a start Postgres
    // refuses once running (its settings disagree with each other), then one that
    // works, then a restart (found by a review: the failed start's writes lost the
    // answer for good).
    let body = format!(
        r#"{{"branch_id": "then2", "spec": {{"source_branch": "main", "source_branch_time": "{between}", "no_expiry": true}}}}"#
    );
    server.post(B, &body).expect(201);
    let failed = server.post(
        &format!("{B}/then2/endpoint"),
        r#"{"settings": {"max_connections": "2"}}"#,
    );
    assert_ne!(failed.status, 201);
    for round in 0..2 {
        let started = start_endpoint(&server, "then2");
        assert_eq!(
            started["branch_created_at"]["requested"],
            between.to_string(),
            "round {round}: {started}"
        );
        assert!(
            started["last_committed_transaction"].is_string(),
            "{started}"
        );
        assert_eq!(sql(&started, "SELECT sum(x) FROM t"), "111");
        server.delete(&format!("{B}/then2/endpoint")).expect(200);
    }

    // Refusals.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    server
        .post(B, r#"{"branch_id": "spare", "spec": {"no_expiry": true}}"#)
        .expect(201);
    server
        .post(
            &format!("{B}/spare/endpoint"),
            &format!(r#"{{"port": {port}}}"#),
        )
        .expect_error(409, "port_in_use");
    server
        .delete(&format!("{B}/spare/endpoint"))
        .expect_error(404, "no_endpoint");
    // A branch that does not exist is named so (found by a review: "no_endpoint").
    server
        .delete(&format!("{B}/nosuch/endpoint"))
        .expect_error(404, "branch_not_found");
    let refused_name = server
        .post(
            &format!("{B}/spare/endpoint"),
            r#"{"settings": {"bad name": "1"}}"#,
        )
        .expect_error(422, "invalid_setting");
    assert!(
        refused_name.contains("not a setting name"),
        "{refused_name}"
    );
    let refused = server
        .post(
            &format!("{B}/spare/endpoint"),
            r#"{"settings": {"shared_buffers": "lots"}}"#,
        )
        .expect_error(422, "invalid_setting");
    assert!(refused.contains("shared_buffers"), "{refused}");
    server
        .post(&format!("{B}/spare/endpoint"), r#"{"port": 80}"#)
        .expect_error(400, "invalid_request");
    // Found by a review, each answered 500 after a start: a setting Postgres refuses only
    // as it starts, naming it or quoting its value; a value with a newline, which Postgres
    // cut and half quoted. Each is 422 now, naming the setting.
    for (settings, named) in [
        (r#"{"wal_level": "minimal"}"#, "wal_level"),
        (
            r#"{"shared_preload_libraries": "nonexistent_lib"}"#,
            "nonexistent_lib",
        ),
        (r#"{"work_mem": "1MB\nport=5555"}"#, "work_mem"),
        (r#"{"work_mem": "1MB\u0000"}"#, "work_mem"),
        // SSL without a certificate, and a log directory that does not exist (found by
        // this session's review).
        (r#"{"ssl": "on"}"#, "certificate"),
        (
            r#"{"logging_collector": "on", "log_directory": "/nonexistent/x"}"#,
            "/nonexistent/x",
        ),
        (r#"{"max_connections": "2"}"#, "max_connections"),
    ] {
        let refused = server
            .post(
                &format!("{B}/spare/endpoint"),
                &format!(r#"{{"settings": {settings}}}"#),
            )
            .expect_error(422, "invalid_setting");
        assert!(refused.contains(named), "{refused}");
    }
    // Where it listens and what it runs on are the endpoint's own.
    for settings in [
        r#"{"Port": "6000"}"#,
        r#"{"listen_addresses": "*"}"#,
        r#"{"data_directory": "/tmp"}"#,
        r#"{"hba_file": "/etc/passwd"}"#,
    ] {
        let refused = server
            .post(
                &format!("{B}/spare/endpoint"),
                &format!(r#"{{"settings": {settings}}}"#),
            )
            .expect_error(422, "invalid_setting");
        assert!(refused.contains("endpoint's own"), "{refused}");
    }
    // A port in use is refused before an empty branch is formatted (or initdb runs): its
    // tree is still absent after.
    server
        .post("/v1/projects", r#"{"project_id": "e"}"#)
        .expect(201);
    server
        .post(
            "/v1/projects/e/branches/main/endpoint",
            &format!(r#"{{"port": {port}}}"#),
        )
        .expect_error(409, "port_in_use");
    // So is a setting Postgres refuses (found by a review: initdb had run, and 70 MB of
    // it stayed on the branch).
    let empty_head = server.get("/v1/projects/e/branches/main").expect(200)["head"].clone();
    let refused = server
        .post(
            "/v1/projects/e/branches/main/endpoint",
            r#"{"settings": {"work_mem": "bogus"}}"#,
        )
        .expect_error(422, "invalid_setting");
    assert!(refused.contains("work_mem"), "{refused}");
    assert_eq!(
        server.get("/v1/projects/e/branches/main").expect(200)["head"],
        empty_head
    );
    std::fs::create_dir_all(data.join("mounts/e-main")).unwrap();
    server
        .post(
            "/v1/projects/e/branches/main/mount",
            r#"{"path": "e-main", "read_only": true}"#,
        )
        .expect_error(422, "no_file_tree");
    // An endpoint on a branch already mounted uses that mount, and leaves it mounted.
    std::fs::create_dir_all(data.join("mounts/spare")).unwrap();
    let mounted = server
        .post(&format!("{B}/spare/mount"), r#"{"path": "spare"}"#)
        .expect(201);
    let spare_dir = Path::new(mounted["path"].as_str().unwrap()).to_path_buf();
    let spare = start_endpoint(&server, "spare");
    assert_eq!(
        spare["endpoint"]["data_directory"],
        spare_dir.join("pgdata").display().to_string()
    );
    assert_eq!(sql(&spare, "SELECT sum(x) FROM t"), "311");
    server.delete(&format!("{B}/spare/endpoint")).expect(200);
    assert!(spare_dir.join("pgdata/PG_VERSION").exists());
    server.delete(&format!("{B}/spare/mount")).expect(200);

    // A branch whose tree holds other files is not a data directory.
    server
        .post("/v1/projects", r#"{"project_id": "q"}"#)
        .expect(201);
    std::fs::create_dir_all(data.join("mounts/files")).unwrap();
    let files = server
        .post("/v1/projects/q/branches/main/mount", r#"{"path": "files"}"#)
        .expect(201);
    std::fs::write(
        Path::new(files["path"].as_str().unwrap()).join("notes.txt"),
        "not a database",
    )
    .unwrap();
    server
        .delete("/v1/projects/q/branches/main/mount")
        .expect(200);
    let refused = server
        .post("/v1/projects/q/branches/main/endpoint", "{}")
        .expect_error(422, "not_a_data_directory");
    assert!(refused.contains("notes.txt"), "{refused}");
    assert!(
        server.get("/v1/projects/q/mounts").expect(200)["mounts"]
            .as_array()
            .unwrap()
            .is_empty(),
        "a refused start left its mount behind"
    );

    // Stopped over the API, the branch is unmounted and can be changed again.
    let stopped = server.delete(&format!("{B}/dev/endpoint")).expect(200);
    assert_eq!(stopped["branch"], "dev");
    server
        .post(&format!("{B}/dev/rename"), r#"{"new_branch_id": "dev2"}"#)
        .expect(200);

    // SIGTERM stops the endpoints; what they committed is there after a restart.
    assert!(server.terminate().success());
    server = Server::start(&data, &[]);
    let main = start_endpoint(&server, "main");
    assert_eq!(sql(&main, "SELECT sum(x) FROM t"), "311");
    let dev = start_endpoint(&server, "dev2");
    assert_eq!(sql(&dev, "SELECT sum(x) FROM t"), "3");
    assert!(server.terminate().success());
}

#[test]
fn an_endpoint_runs_from_a_private_data_directory_but_refuses_a_mount_postgres_cannot_reach() {
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let data = root.path().join("data");
    let server = Server::start(&data, &[]);
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    std::fs::create_dir_all(data.join("mounts/main")).unwrap();
    server
        .post(&format!("{B}/main/mount"), r#"{"path": "main"}"#)
        .expect(201);
    let refused = server
        .post(&format!("{B}/main/endpoint"), "{}")
        .expect_error(422, "unreachable_mount");
    assert!(
        refused.contains(&root.path().display().to_string()),
        "{refused}"
    );
    server.delete(&format!("{B}/main/mount")).expect(200);
    // Mounted by the endpoint itself, in a directory Postgres' user can reach.
    let main = start_endpoint(&server, "main");
    assert_eq!(sql(&main, "SELECT 1"), "1");
    server.delete(&format!("{B}/main/endpoint")).expect(200);
    assert!(server.terminate().success());
}

#[test]
fn a_branch_taken_while_pgbench_writes_starts_and_passes_pg_amcheck() {
    let (_root, _data, server) = server_with_project_p();
    let main = start_endpoint(&server, "main");
    let port = main["endpoint"]["port"].as_u64().unwrap().to_string();
    let pgbench = |args: &[&str]| {
        Command::new("/usr/lib/postgresql/15/bin/pgbench")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let loaded = pgbench(&["-i", "-s", "2", "-q"]);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let running = {
        let port = port.clone();
        std::thread::spawn(move || {
            Command::new("/usr/lib/postgresql/15/bin/pgbench")
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                .args(["-n", "-c", "4", "-j", "2", "-T", "4", "postgres"])
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    server
        .post(
            B,
            r#"{"branch_id": "snap", "spec": {"source_branch": "main", "no_expiry": true}}"#,
        )
        .expect(201);
    let ran = running.join().unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let snap = start_endpoint(&server, "snap");
    assert_eq!(
        sql(&snap, "SELECT count(*) FROM pgbench_accounts"),
        "200000"
    );
    let snap_history: u64 = sql(&snap, "SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    let main_history: u64 = sql(&main, "SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    assert!(
        snap_history > 0 && snap_history <= main_history,
        "{snap_history} of {main_history}"
    );
    // The branch's balances add up to its own history (every transaction whole).
    assert_eq!(
        sql(&snap, "SELECT sum(abalance) FROM pgbench_accounts"),
        sql(&snap, "SELECT coalesce(sum(delta), 0) FROM pgbench_history")
    );
    let snap_port = snap["endpoint"]["port"].as_u64().unwrap().to_string();
    pg_amcheck(&snap_port);
    assert!(server.terminate().success());
}

/// Found by a review: an endpoint whose Postgres was killed stayed listed with its dead
/// pid and its branch mounted (a delete of the branch refused) until someone stopped it;
/// and a stop with a shell in the endpoint's mount answered 409 `mount_busy` although it
/// had stopped Postgres and forgotten the endpoint. The server now ends an endpoint whose
/// Postgres exited within about a second (unmounting what it mounted), and a stop that
/// cannot unmount answers 200 naming the mount it leaves.
#[test]
fn regression_a_killed_endpoint_is_ended_and_a_stop_with_a_busy_mount_says_so() {
    let (_root, _data, server) = server_with_project_p();
    let main = start_endpoint(&server, "main");
    sql(&main, "CREATE TABLE t(x int); INSERT INTO t VALUES (1);");
    server.post(&format!("{B}/main/endpoint"), "{}").expect(409);
    server
        .post(
            B,
            r#"{"branch_id": "copy", "spec": {"source_branch": "main", "no_expiry": true}}"#,
        )
        .expect(201);
    let copy = start_endpoint(&server, "copy");
    // Its mount goes with the endpoint, and an unmount says so (found by a review: "files
    // are open").
    let refused = server
        .delete(&format!("{B}/copy/mount"))
        .expect_error(409, "endpoint_running");
    assert!(refused.contains("stop the endpoint"), "{refused}");

    // Postgres killed behind the server's back, with a backend busy in a statement that
    // does not notice its postmaster's death: the backend is killed too, and the mount
    // goes (found by a review: it ran on, held the mount and the shared memory a new
    // start needs, and an INSERT there filled the disk).
    let url = copy["endpoint"]["connection_string"].as_str().unwrap();
    let mut busy = Command::new(PSQL)
        .args([
            url,
            "-X",
            "-c",
            "DO $$ BEGIN LOOP PERFORM 1; END LOOP; END $$;",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let copy_data = copy["endpoint"]["data_directory"]
        .as_str()
        .unwrap()
        .to_owned();
    let working_there = || -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .is_ok_and(|cwd| cwd.starts_with(&copy_data))
            })
            .collect()
    };
    let counted = std::time::Instant::now() + Duration::from_secs(10);
    // The postmaster, its helpers and the busy backend.
    while sql(
        &copy,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'DO %'",
    ) != "1"
    {
        assert!(
            std::time::Instant::now() < counted,
            "the busy statement never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = copy["endpoint"]["pid"].as_i64().unwrap();
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed = server.get("/v1/projects/p/endpoints").expect(200);
        let mounts = server.get("/v1/projects/p/mounts").expect(200);
        let copy_listed = listed["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|endpoint| endpoint["branch"] == "copy");
        let copy_mounted = mounts["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|mount| mount["branch"] == "copy");
        if !copy_listed && !copy_mounted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a killed endpoint is still there: {listed} {mounts}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        working_there(),
        Vec::<i32>::new(),
        "Postgres processes left working"
    );
    let _ = busy.kill();
    let _ = busy.wait();
    server.delete(&format!("{B}/copy")).expect(200);

    // A stop with a shell in the mount: Postgres stopped, the mount left and named.
    let data_directory = main["endpoint"]["data_directory"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut holder = Command::new("sleep")
        .arg("60")
        .current_dir(&data_directory)
        .spawn()
        .unwrap();
    let stopped = server.delete(&format!("{B}/main/endpoint")).expect(200);
    let left = stopped["still_mounted"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        data_directory.starts_with(&left) && !left.is_empty(),
        "{stopped}"
    );
    assert_eq!(
        server.get("/v1/projects/p/endpoints").expect(200)["endpoints"],
        serde_json::json!([])
    );
    server.delete(&format!("{B}/main/mount")).expect(409);
    holder.kill().unwrap();
    holder.wait().unwrap();
    // An endpoint started on the mount left behind uses it, and logs beside it.
    let on_left = start_endpoint(&server, "main");
    assert_eq!(
        on_left["endpoint"]["data_directory"],
        data_directory.as_str()
    );
    server.delete(&format!("{B}/main/endpoint")).expect(200);
    server.delete(&format!("{B}/main/mount")).expect(200);
    // The first endpoint's own directory went with its mount, that log included (found
    // by a review: it stayed, holding the second endpoint's log).
    assert!(!Path::new(&left).parent().unwrap().exists(), "{left}");
    // What the endpoint committed is on the branch: a new endpoint sees it.
    let again = start_endpoint(&server, "main");
    assert_eq!(sql(&again, "SELECT x FROM t"), "1");
    server.delete(&format!("{B}/main/endpoint")).expect(200);
    assert!(server.terminate().success());
}

/// A stop and a start of one branch's endpoint at the same moment, a few rounds with the
/// start a little later each time. Found by a review: the start found no endpoint while
/// the stop was still shutting Postgres down, took the stopping endpoint's mount for a
/// user's and started a second Postgres on the data directory the first had not left (a
/// 500 a minute later, or the stop saying the mount was busy and leaving it mounted).
/// Now the start waits for the stop, or is refused while the endpoint runs.
#[test]
fn regression_a_start_racing_a_stop_waits_for_it_or_is_refused() {
    let (_root, _data, server) = server_with_project_p();
    let path = format!("{B}/main/endpoint");
    start_endpoint(&server, "main");
    for round in 0..6 {
        let (stopped, started) = std::thread::scope(|scope| {
            let stop = scope.spawn(|| server.delete(&path));
            std::thread::sleep(Duration::from_millis(round * 15));
            let started = server.post(&path, "{}");
            (stop.join().unwrap(), started)
        });
        let stopped = stopped.expect(200);
        assert_eq!(stopped["still_mounted"], Value::Null, "round {round}");
        match started.status {
            201 => {
                let started = started.json();
                assert_eq!(sql(&started, "SELECT 1"), "1", "round {round}");
            }
            // The start came first: the endpoint was running, and the stop ended it.
            409 => {
                assert_eq!(started.json()["error"], "endpoint_running", "round {round}");
                start_endpoint(&server, "main");
            }
            status => panic!(
                "round {round}: {status} {}",
                String::from_utf8_lossy(&started.body)
            ),
        }
        let listed = server.get("/v1/projects/p/endpoints").expect(200);
        assert_eq!(listed["endpoints"].as_array().unwrap().len(), 1, "{listed}");
    }
    server.delete(&path).expect(200);
    assert_eq!(
        server.get("/v1/projects/p/mounts").expect(200)["mounts"],
        serde_json::json!([])
    );
    assert!(server.terminate().success());
}

/// Found by a review: starts on four branches asking for one free port at once passed
/// the port's check together, and all but the one whose Postgres bound it failed with 500
/// "could not bind". Each is the port's refusal, 409 `port_in_use`, whichever step finds
/// it taken.
#[test]
fn regression_starts_racing_for_one_port_are_refused_as_port_in_use() {
    let (_root, _data, server) = server_with_project_p();
    start_endpoint(&server, "main");
    server.delete(&format!("{B}/main/endpoint")).expect(200);
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    for round in 0..3 {
        let names: Vec<String> = (0..4).map(|n| format!("race-{round}-{n}")).collect();
        for name in &names {
            server
                .post(B, &format!(r#"{{"branch_id": "{name}"}}"#))
                .expect(201);
        }
        let answers: Vec<_> = std::thread::scope(|scope| {
            let starts: Vec<_> = names
                .iter()
                .map(|name| {
                    let server = &server;
                    scope.spawn(move || {
                        server.post(
                            &format!("{B}/{name}/endpoint"),
                            &format!(r#"{{"port": {port}}}"#),
                        )
                    })
                })
                .collect();
            starts
                .into_iter()
                .map(|start| start.join().unwrap())
                .collect()
        });
        let mut started = 0;
        for (name, answer) in names.iter().zip(&answers) {
            match answer.status {
                201 => {
                    started += 1;
                    server.delete(&format!("{B}/{name}/endpoint")).expect(200);
                }
                _ => {
                    answer.expect_error(409, "port_in_use");
                }
            }
        }
        assert_eq!(started, 1, "round {round}");
    }
    assert!(server.terminate().success());
}

/// A stop that cannot finish (its postmaster stopped with SIGSTOP) holds up nothing but
/// its own branch: listings, another branch's start and stop, and the rest of the server
/// answer meanwhile, and the stop ends once Postgres can. A review found every endpoint
/// request, then `/healthz`, waiting behind one slow endpoint operation: they all took
/// one lock, some on the async runtime's threads.
#[test]
fn regression_a_stuck_stop_holds_up_only_its_own_branch() {
    let (_root, _data, server) = server_with_project_p();
    let main = start_endpoint(&server, "main");
    sql(&main, "CREATE TABLE t(x int)");
    for branch in ["stuck", "other"] {
        server
            .post(B, &format!(r#"{{"branch_id": "{branch}"}}"#))
            .expect(201);
    }
    let stuck = start_endpoint(&server, "stuck");
    let postmaster = stuck["endpoint"]["pid"].as_u64().unwrap().to_string();
    let signal = |name: &str| {
        assert!(
            Command::new("kill")
                .args([name, &postmaster])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let quick = server.http(Duration::from_secs(20));
    std::thread::scope(|scope| {
        let stopping = scope.spawn(|| server.delete(&format!("{B}/stuck/endpoint")));
        std::thread::sleep(Duration::from_millis(500));
        let answered = (|| {
            let mut statuses = Vec::new();
            for _ in 0..4 {
                statuses.push(quick.get("/v1/projects/p/endpoints")?.status);
            }
            statuses.push(quick.get("/healthz")?.status);
            let other = format!("{B}/other/endpoint");
            statuses.push(
                quick
                    .send_bytes("POST", &other, b"{}", "application/json")?
                    .status,
            );
            statuses.push(quick.delete(&other)?.status);
            Ok::<_, support::NoAnswer>(statuses)
        })();
        // Let the stuck one go before judging, so that nothing is left hanging.
        signal("-CONT");
        let statuses = answered.expect("a request waited behind the stuck stop");
        assert_eq!(statuses, [200, 200, 200, 200, 200, 201, 200]);
        stopping.join().unwrap().expect(200);
    });
    server.delete(&format!("{B}/main/endpoint")).expect(200);
    assert!(server.terminate().success());
}

/// A shutdown abandons a start still waiting for its server: it stops the server and
/// ends. It once waited for it (up to ten minutes of crash recovery); the CLI's start had
/// the same fault (found by a review).
#[test]
fn regression_a_shutdown_abandons_a_start_waiting_for_postgres() {
    require_fuse();
    require_postgres();
    let root = tempfile::tempdir().unwrap();
    // A server that never says it is ready (initdb, the real one, runs first).
    let slow =
        support::endpoint::pg_bin_with(root.path(), "postgres", "#!/bin/sh\nexec sleep 600\n");
    let data = root.path().join("data");
    let mut server = Server::start(&data, &["--pg-bin", slow.to_str().unwrap()]);
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    let client = server.http(Duration::from_secs(120));
    std::thread::scope(|scope| {
        let starting = scope.spawn(|| client.post(&format!("{B}/main/endpoint"), "{}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while server.get("/v1/projects/p/mounts").expect(200)["mounts"]
            .as_array()
            .unwrap()
            .is_empty()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the start never mounted"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let ended = server.terminate_within(Duration::from_secs(60));
        assert!(
            ended.is_some_and(|status| status.success()),
            "the shutdown waited for the start: {ended:?}"
        );
        // Answered 503 as the shutdown abandoned it, at the signal, within the grace (a
        // review's start outlasting the grace was cut off with no answer at all: the
        // starts were abandoned only after it).
        let answer = starting
            .join()
            .unwrap()
            .unwrap_or_else(|error| panic!("the start was not answered: {error:?}"));
        answer.expect_error(503, "shutting_down");
    });
}

/// A start on a store a full disk made refuse writes is the store's refusal (507 naming
/// the disk's error), not a 500 naming whatever file Postgres met first (a review saw
/// "cannot remove the stale postmaster.pid: Input/output error").
#[test]
fn regression_a_start_on_a_store_a_full_disk_stopped_is_insufficient_storage() {
    require_fuse();
    require_postgres();
    let disk = support::SmallDisk::mount(400);
    let server = Server::start(&disk.path().join("data"), &[]);
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    start_endpoint(&server, "main");
    server.delete(&format!("{B}/main/endpoint")).expect(200);
    server.post(B, r#"{"branch_id": "filler"}"#).expect(201);
    disk.fill();
    // The log's segment was made ahead: pages go in until the next one is needed.
    let refused = (0..20_000u32)
        .map(|block| server.put_page(&format!("{B}/filler/pages/9/{block}"), &[9; 8192]))
        .find(|answer| answer.status != 200)
        .expect("160 MiB written to a full disk");
    refused.expect_error(507, "insufficient_storage");
    let answer = server.post(&format!("{B}/main/endpoint"), "{}");
    let message = answer.expect_error(507, "insufficient_storage");
    assert!(message.contains("refuses writes"), "{message}");
    assert_eq!(
        server.get("/v1/projects/p/mounts").expect(200)["mounts"],
        serde_json::json!([])
    );
    server.terminate();
}

/// A server killed with SIGKILL leaves its endpoints' mounts dead, and perhaps Postgres
/// processes working in them: the postmaster dies with the server, but a backend waiting
/// on a lock a dead one held never notices (a review found one alive minutes later, its
/// client hanging), and each endpoint's directory stayed in the temporary directory for
/// good. The next server kills the Postgres processes working in such a mount, detaches
/// it and removes the endpoint's directory; another program working there is left alone.
/// The stuck backend is played by a copy of `sleep` named `postgres`.
#[test]
fn regression_a_restart_after_sigkill_kills_postgres_left_in_an_endpoint_mount() {
    use std::os::unix::process::ExitStatusExt;
    let (root, data, mut server) = server_with_project_p();
    let main = start_endpoint(&server, "main");
    let data_directory = Path::new(main["endpoint"]["data_directory"].as_str().unwrap());
    let place = data_directory
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let stand_in = root.path().join("postgres");
    std::fs::copy("/bin/sleep", &stand_in).unwrap();
    // Without the test's output pipes: a child left by a failed test would keep the
    // harness waiting for them.
    let spawn_in = |program: &Path| {
        Command::new(program)
            .arg("600")
            .current_dir(data_directory)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut stuck = spawn_in(&stand_in);
    let mut shell = spawn_in(Path::new("/bin/sleep"));
    server.kill();

    let server = Server::start(&data, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = stuck.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = (stuck.kill(), shell.kill());
            panic!("the stand-in for a stuck Postgres backend is still alive");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.signal(), Some(9), "{status}");
    assert!(shell.try_wait().unwrap().is_none(), "the shell was killed");
    shell.kill().unwrap();
    shell.wait().unwrap();
    assert!(!place.exists(), "{} is left", place.display());
    let again = start_endpoint(&server, "main");
    assert_eq!(sql(&again, "SELECT 1"), "1");
    server.delete(&format!("{B}/main/endpoint")).expect(200);
    assert!(server.terminate().success());
}
