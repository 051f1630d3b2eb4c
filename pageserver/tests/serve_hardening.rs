//! `pagefork serve` against hostile and careless clients (issue 19): expiries past what a
//! store can hold, LSNs no state has, cross-origin and DNS-rebinding requests, bodies
//! that are not JSON, clients that stall, huge values echoed in errors, and listings of
//! many branches a page at a time. Every refusal is checked to have changed nothing.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use support::Server;

const P: &str = "/v1/projects/p";
const B: &str = "/v1/projects/p/branches";

/// A server with project `p`: main holds page 1/0, and `victim` (from main) its own
/// commit of page 1/1.
fn server_with_victim(dir: &std::path::Path, extra: &[&str]) -> Server {
    let server = Server::start(dir, extra);
    support::seed_victim(&server);
    server
}

/// Everything a refused request could have changed: branches, leases, the branch log and
/// the victim's pages.
fn observable(server: &Server) -> Vec<Value> {
    let mut state = vec![
        server.get(B).expect(200),
        server.get(&format!("{P}/leases")).expect(200),
        server.get(&format!("{P}/log")).expect(200),
    ];
    for block in 0..2 {
        let page = server.get(&format!("{B}/victim/pages/1/{block}"));
        state.push(json!([page.status, page.body.len(), page.lsn]));
    }
    state
}

fn error_code(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    value["error"].as_str().unwrap().to_owned()
}

#[test]
fn cross_origin_foreign_host_and_non_json_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_victim(dir.path(), &[]);
    let before = observable(&server);
    let host = server.address().to_owned();
    for (method, path, body) in support::mutating_routes() {
        // (headers after the request line, the status and code it must get)
        let attempts = [
            // A page on another site, posting as a browser does without a preflight.
            (
                format!("Host: {host}\nOrigin: http://evil.example\nContent-Type: text/plain"),
                403,
                "cross_origin",
            ),
            // The same with a JSON content type (a preflight would have been needed).
            (
                format!(
                    "Host: {host}\nOrigin: http://evil.example\nContent-Type: application/json"
                ),
                403,
                "cross_origin",
            ),
            // A DNS-rebinding page: same origin as far as the browser knows, foreign Host.
            (
                "Host: evil.example:7070\nContent-Type: application/json".to_owned(),
                403,
                "host_not_allowed",
            ),
            // No Origin, but not JSON: a form or a careless script.
            (
                format!("Host: {host}\nContent-Type: text/plain"),
                415,
                "unsupported_media_type",
            ),
        ];
        for (headers, status, code) in attempts {
            let head = format!("{method} {path} HTTP/1.1\n{headers}");
            let (answered, answer) = server.raw(&head, body.as_bytes());
            assert_eq!(
                (answered, error_code(&answer)),
                (status, code.to_owned()),
                "{method} {path} with {headers:?}: {answer}"
            );
        }
        // No body at all.
        let answer = server.send_bare(method, &path);
        assert!(
            matches!(answer.status, 400 | 415),
            "{method} {path} without a body: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(
            observable(&server),
            before,
            "{method} {path} changed something"
        );
    }
    // Reads through a rebound name are refused too; same-origin requests pass.
    let (status, answer) = server.raw(
        &format!("GET {B}/victim/pages/1/1 HTTP/1.1\nHost: evil.example"),
        b"",
    );
    assert_eq!(
        (status, error_code(&answer)),
        (403, "host_not_allowed".into())
    );
    let (status, _) = server.raw(
        &format!("GET {B} HTTP/1.1\nHost: {host}\nOrigin: http://{host}"),
        b"",
    );
    assert_eq!(status, 200);
    let (status, _) = server.raw(
        &format!("POST {B}/victim/reset HTTP/1.1\nHost: localhost:1\nOrigin: http://localhost:1\nContent-Type: application/json"),
        b"{}",
    );
    assert_eq!(status, 200, "a same-origin JSON request is answered");
}

#[test]
fn allow_host_adds_names_the_server_answers_to() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--allow-host", "pagefork.test"]);
    let (status, _) = server.raw("GET /v1/projects HTTP/1.1\nHost: pagefork.test:7070", b"");
    assert_eq!(status, 200);
    let (status, answer) = server.raw("GET /v1/projects HTTP/1.1\nHost: other.test", b"");
    assert_eq!(
        (status, error_code(&answer)),
        (403, "host_not_allowed".into())
    );
}

#[test]
fn expiries_past_year_9999_are_refused_and_every_view_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_victim(dir.path(), &[]);
    let head = server.get(&format!("{B}/main")).expect(200)["head"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = observable(&server);
    let refusals = [
        (
            "POST",
            B.to_owned(),
            r#"{"branch_id": "far", "spec": {"ttl": "8000y"}}"#.to_owned(),
        ),
        (
            "POST",
            B.to_owned(),
            r#"{"branch_id": "far", "spec": {"ttl": "600000y"}}"#.to_owned(),
        ),
        (
            "PATCH",
            format!("{B}/victim"),
            r#"{"spec": {"ttl": "8000y"}}"#.to_owned(),
        ),
        (
            "POST",
            format!("{B}/main/leases"),
            format!(r#"{{"lsn": "{head}", "ttl": "8000y"}}"#),
        ),
    ];
    for (method, path, body) in refusals {
        let message = server
            .send(method, &path, &body)
            .expect_error(422, "invalid_time");
        assert!(message.contains("9999-12-31T23:59:59.999999Z"), "{message}");
        assert_eq!(observable(&server), before, "{method} {path} {body}");
    }
    // Year 10000 does not parse as a time at all.
    let message = server
        .post(
            B,
            r#"{"branch_id": "far", "spec": {"expire_time": "10000-01-01T00:00:00Z"}}"#,
        )
        .expect_error(400, "invalid_request");
    assert!(message.contains("10000-01-01"), "{message}");
    // The limit itself is held and shown.
    let created = server
        .post(
            B,
            r#"{"branch_id": "last", "spec": {"expire_time": "9999-12-31T23:59:59Z"}}"#,
        )
        .expect(201);
    assert_eq!(created["expires_at"], "9999-12-31T23:59:59.000000Z");
    let listed = server.get(B).expect(200);
    assert!(listed.to_string().contains("9999-12-31T23:59:59.000000Z"));
    server
        .send(
            "PATCH",
            &format!("{B}/victim"),
            r#"{"spec": {"expire_time": "9999-12-31T23:59:59.999999Z"}}"#,
        )
        .expect(200);
    server.get(&format!("{B}/victim")).expect(200);
}

#[test]
fn lsns_no_state_has_are_refused_as_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_victim(dir.path(), &[]);
    let victim = server.get(&format!("{B}/victim")).expect(200);
    let branch_point = victim["branch_point"].as_str().unwrap().to_owned();
    let main_created = server.get(&format!("{B}/main")).expect(200)["created_lsn"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = observable(&server);
    let lease = |branch: &str, lsn: &str| {
        (
            "POST",
            format!("{B}/{branch}/leases"),
            format!(r#"{{"lsn": "{lsn}", "ttl": "1h"}}"#),
        )
    };
    let mut refusals = vec![
        lease("main", "0/0"),
        lease("main", "0/1"),
        lease("victim", "0/1"),
        (
            "POST",
            B.to_owned(),
            r#"{"branch_id": "x", "spec": {"source_branch_lsn": "0/0"}}"#.to_owned(),
        ),
        (
            "POST",
            format!("{B}/main/restore"),
            r#"{"source_branch_lsn": "0/0"}"#.to_owned(),
        ),
    ];
    // Below the victim's branch point: a lease there is main's business.
    let below: pagefork_engine::Lsn = branch_point.parse().unwrap();
    let below = pagefork_engine::Lsn(below.0 - 8).to_string();
    refusals.push(lease("victim", &below));
    for (method, path, body) in refusals {
        let message = server
            .send(method, &path, &body)
            .expect_error(422, "invalid_lsn");
        assert!(message.contains("LSN"), "{message}");
        assert_eq!(observable(&server), before, "{method} {path} {body}");
    }
    for query in [
        "pages/1/0?lsn=0/0".to_owned(),
        "pages/1/0?lsn=0/1".to_owned(),
        "diff?from_lsn=0/0".to_owned(),
        format!(
            "pages/1/0?lsn={}",
            pagefork_engine::Lsn(main_created.parse::<pagefork_engine::Lsn>().unwrap().0 - 1)
        ),
    ] {
        server
            .get(&format!("{B}/victim/{query}"))
            .expect_error(422, "invalid_lsn");
    }
    // Below a branch point, a read sees the ancestor's history: main's page 1/0.
    let read = server.get(&format!("{B}/victim/pages/1/0?lsn={below}"));
    assert!(matches!(read.status, 200 | 404), "{}", read.status);
}

#[test]
fn errors_quote_only_a_short_prefix_of_what_they_were_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_victim(dir.path(), &[]);
    let huge = "x".repeat(60 << 20);
    let body = json!({"project_id": huge}).to_string();
    let answer = server.post("/v1/projects", &body);
    let message = answer.expect_error(400, "invalid_request");
    assert!(message.len() < 1024, "{} bytes", message.len());
    assert!(
        message.contains(&format!("{} bytes in all", huge.len())),
        "{message}"
    );
    let long = "y".repeat(100_000);
    for (method, path, body) in [
        ("POST", B.to_owned(), json!({"branch_id": long}).to_string()),
        (
            "POST",
            B.to_owned(),
            json!({"branch_id": "x", "spec": {"ttl": long}}).to_string(),
        ),
        (
            "POST",
            B.to_owned(),
            json!({"branch_id": "x", "spec": {"source_branch": long}}).to_string(),
        ),
        (
            "POST",
            format!("{B}/main/leases"),
            json!({"lsn": long}).to_string(),
        ),
    ] {
        let answer = server.send(method, &path, &body);
        assert!((400..500).contains(&answer.status), "{}", answer.status);
        let message = answer.json()["message"].as_str().unwrap().to_owned();
        assert!(message.len() < 1024, "{path}: {} bytes", message.len());
    }
    let answer = server.get(&format!("/v1/projects/{}", "z".repeat(20_000)));
    assert!(answer.body.len() < 1024, "{} bytes", answer.body.len());
}

#[test]
fn a_listing_pages_through_many_branches_and_filters_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_victim(dir.path(), &[]);
    for index in 0..120 {
        let parent = if index % 3 == 0 { "victim" } else { "main" };
        let prefix = if index % 2 == 0 { "feature" } else { "fix" };
        let body =
            json!({"branch_id": format!("{prefix}-{index:03}"), "spec": {"source_branch": parent}});
        server.post(B, &body.to_string()).expect(201);
    }
    let everything = server.get(B).expect(200);
    assert_eq!(everything["next_cursor"], Value::Null);
    let all: Vec<String> = names(&everything);
    assert_eq!(all.len(), 122);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "in name order");
    // A page at a time, with the cursor each page gives.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("{B}?limit=50&cursor={cursor}"),
            None => format!("{B}?limit=50"),
        };
        let page = server.get(&query).expect(200);
        assert!(names(&page).len() <= 50);
        paged.extend(names(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!((paged, pages), (all.clone(), 3));
    // Filters, alone, together, and with paging.
    let fixes = names(&server.get(&format!("{B}?name_prefix=fix-")).expect(200));
    assert_eq!(fixes.len(), 60);
    assert!(fixes.iter().all(|name| name.starts_with("fix-")));
    let children = names(&server.get(&format!("{B}?parent=victim")).expect(200));
    assert_eq!(children.len(), 40);
    let both = names(
        &server
            .get(&format!("{B}?parent=victim&name_prefix=feature-"))
            .expect(200),
    );
    assert_eq!(both.len(), 20);
    let first = server
        .get(&format!("{B}?parent=main&name_prefix=fix-&limit=7"))
        .expect(200);
    assert_eq!(names(&first).len(), 7);
    let rest = server
        .get(&format!(
            "{B}?parent=main&name_prefix=fix-&cursor={}",
            first["next_cursor"].as_str().unwrap()
        ))
        .expect(200);
    assert_eq!(names(&first).len() + names(&rest).len(), 40);
    for bad in [
        "limit=0",
        "limit=10001",
        "limit=ten",
        "limit=-1",
        "sort=name",
    ] {
        server
            .get(&format!("{B}?{bad}"))
            .expect_error(400, "invalid_request");
    }
}

fn names(listing: &Value) -> Vec<String> {
    listing["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|branch| branch["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A page PUT that announces 8192 bytes and sends 100, leaving the connection open.
fn stall_body(server: &Server) -> TcpStream {
    let address = server.address();
    let mut stream = stall(
        server,
        &format!(
            "PUT {B}/main/pages/1/1 HTTP/1.1\r\nHost: {address}\r\nContent-Length: 8192\r\n\r\n"
        ),
    );
    stream.write_all(&[9; 100]).unwrap();
    stream
}

/// Opens a connection to `server` and sends `text`, leaving the connection open.
fn stall(server: &Server, text: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.address()).unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    stream
}

#[test]
fn stalled_clients_cannot_hold_shutdown_past_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut server = Server::start_logged(
        dir.path(),
        // Long read timeouts: only the grace period can end these connections.
        &[
            "--header-timeout",
            "10m",
            "--body-timeout",
            "10m",
            "--shutdown-grace",
            "2s",
        ],
        &log,
        Duration::from_secs(60),
    )
    .unwrap();
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    let committed = server
        .put_page(&format!("{B}/main/pages/1/0"), &[7; 8192])
        .expect(200);
    let address = server.address().to_owned();
    // A body that never ends, a header that never ends, and an idle connection.
    let _body = stall_body(&server);
    let _header = stall(&server, &format!("GET {B} HTTP/1.1\r\nHost: 127.0"));
    let _idle = TcpStream::connect(&address).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let status = server
        .terminate_within(Duration::from_secs(60))
        .expect("pagefork serve still runs 60 s after SIGTERM with stalled clients");
    assert!(status.success(), "{status}");
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("grace period over"), "{stderr}");
    assert!(!stderr.contains("checkpoint on close failed"), "{stderr}");
    // The store was closed: the CLI opens it, and the acknowledged page is there; the
    // stalled PUT never was.
    let store = dir.path().join("projects/p");
    let output = support::cli::pagefork(&store, &["page", "get", "main", "1", "0"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, vec![7; 8192]);
    let missing = support::cli::pagefork(&store, &["page", "get", "main", "1", "1"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(committed["lsn"].is_string());
}

#[test]
fn slow_headers_and_bodies_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--header-timeout", "1s", "--body-timeout", "1s"],
    );
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    let address = server.address().to_owned();
    let mut body = stall_body(&server);
    body.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = String::new();
    body.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let mut header = stall(&server, &format!("GET {B} HTTP/1.1\r\nHost: {address}"));
    header
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut rest = Vec::new();
    // The server closes the connection (answering 408 or nothing at all).
    header.read_to_end(&mut rest).unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // Nothing was committed, and the server goes on answering.
    server
        .get(&format!("{B}/main/pages/1/1"))
        .expect_error(404, "page_not_found");
}

#[test]
fn a_full_disk_is_insufficient_storage_naming_the_file() {
    let disk = support::SmallDisk::mount(40);
    let server = Server::start(disk.path(), &[]);
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    let mut full = None;
    for block in 0..10_000u32 {
        let page: Vec<u8> = (0..8192u32)
            .map(|i| (i.wrapping_mul(block + 7) >> 3) as u8)
            .collect();
        let answer = server.put_page(&format!("{B}/main/pages/1/{block}"), &page);
        if answer.status != 200 {
            full = Some(answer);
            break;
        }
    }
    let answer = full.expect("8 MiB filled without a refusal");
    let message = answer.expect_error(507, "insufficient_storage");
    let os_error = std::io::Error::from_raw_os_error(28).to_string();
    assert_eq!(message.matches(&os_error).count(), 1, "{message}");
    assert!(
        message.contains(&disk.path().display().to_string()),
        "names the file: {message}"
    );
    server.terminate();
}

/// Found by a review of the HTTP API, each refused now, naming what was wrong, with
/// nothing changed: a leap second (`:60`) was folded back to `:59`, so it snapped before a
/// commit at `:59.2`; a branch named like a resource (`projects/p/branches/zz`) was
/// shadowed by the branch that form names. And `no_expiry: false` (which Lakebase takes)
/// counted as an expiry given beside a `ttl`: now it goes with one. A branch point by time
/// below a branch's own start, refused as an LSN the request never named, is now the
/// state of the ancestor whose history holds it, and the new branch that one's child.
#[test]
fn regression_review_refusals_name_what_was_wrong_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_victim(dir.path(), &[]);
    let main_page = server.get(&format!("{B}/main/pages/1/0"));
    let main_commit_time = main_page.commit_time.clone().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    server
        .put_page(&format!("{B}/main/pages/1/5"), &[5; 8192])
        .expect(200);
    server
        .post(B, r#"{"branch_id": "late", "spec": {"no_expiry": true}}"#)
        .expect(201);
    let before = observable(&server);
    let late_listed = server.get(&format!("{B}/late")).expect(200);

    let bad_requests = [
        (
            "POST",
            B.to_owned(),
            r#"{"branch_id": "projects/p/branches/zz"}"#.to_owned(),
            "branch_id",
        ),
        (
            "POST",
            format!("{B}/victim/rename"),
            r#"{"new_branch_id": "projects/q/branches/main"}"#.to_owned(),
            "new_branch_id",
        ),
        (
            "POST",
            format!("{B}/victim/restore"),
            r#"{"backup_name": "projects/p/branches/b"}"#.to_owned(),
            "backup_name",
        ),
        (
            "POST",
            B.to_owned(),
            r#"{"branch_id": "x", "spec": {"source_branch_time": "2026-12-05T23:39:60Z"}}"#
                .to_owned(),
            "leap second",
        ),
    ];
    for (method, path, body, named) in bad_requests {
        let message = server
            .send(method, &path, &body)
            .expect_error(400, "invalid_request");
        assert!(message.contains(named), "{body}: {message}");
        assert_eq!(observable(&server), before, "{method} {path} {body}");
    }
    server
        .get(&format!(
            "{B}/victim/lsn_by_timestamp?timestamp=2026-12-05T23:39:60.5Z"
        ))
        .expect_error(400, "invalid_request");

    server
        .post(
            B,
            r#"{"branch_id": "z", "spec": {"no_expiry": false, "ttl": "1h"}}"#,
        )
        .expect(201);
    server.delete(&format!("{B}/z")).expect(200);
    let before = observable(&server);
    let body = json!({"branch_id": "y", "spec": {"source_branch": "late",
        "source_branch_time": main_commit_time}})
    .to_string();
    let made = server.post(B, &body).expect(201);
    assert_eq!(made["parent"], "main", "{made}");
    assert_eq!(made["snap"]["requested"], main_commit_time, "{made}");
    assert_ne!(observable(&server), before);
    assert_eq!(server.get(&format!("{B}/late")).expect(200), late_listed);
}

/// Found by a review: one project that could not be opened stopped the server, leaving
/// every other project offline. Now the server starts, serves the others, answers 503
/// `project_unavailable` (naming the damage and `pagefork recover`) for that one, lists it
/// apart, refuses to create it again, and changes nothing of it. A project another
/// server holds open still stops a second server from starting.
#[test]
fn regression_a_damaged_project_is_unavailable_and_the_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_victim(dir.path(), &[]);
    server
        .post("/v1/projects", r#"{"project_id": "bad"}"#)
        .expect(201);
    server
        .post("/v1/projects", r#"{"project_id": "lost"}"#)
        .expect(201);
    assert!(server.terminate().success());
    // A store that lost its pagefork.meta is a damaged project too, not a directory to
    // skip, and is not created over (found by a review: skipped, then 500 on a create).
    std::fs::remove_file(dir.path().join("projects/lost/pagefork.meta")).unwrap();
    let bad = dir.path().join("projects/bad");
    let meta = bad.join("pagefork.meta");
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes[4] ^= 0xFF;
    std::fs::write(&meta, &bytes).unwrap();
    let before = pagefork_tests::tree_snapshot(&bad);

    let server = Server::start(dir.path(), &[]);
    let listed = server.get("/v1/projects").expect(200);
    assert_eq!(listed["projects"][0]["project_id"], "p", "{listed}");
    assert_eq!(listed["projects"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["unavailable"][0]["project_id"], "bad", "{listed}");
    assert_eq!(listed["unavailable"][1]["project_id"], "lost", "{listed}");
    server
        .post("/v1/projects", r#"{"project_id": "lost"}"#)
        .expect_error(409, "project_exists");
    let message = server
        .get("/v1/projects/lost/branches")
        .expect_error(503, "project_unavailable");
    assert!(message.contains("restore pagefork.meta"), "{message}");
    let message = server
        .get("/v1/projects/bad/branches")
        .expect_error(503, "project_unavailable");
    assert!(
        message.contains("pagefork.meta") && message.contains("recover"),
        "{message}"
    );
    server
        .post("/v1/projects", r#"{"project_id": "bad"}"#)
        .expect_error(409, "project_exists");
    server.get(&format!("{B}/victim")).expect(200);
    server
        .put_page(&format!("{B}/victim/pages/1/2"), &[3; 8192])
        .expect(200);
    // A store another process holds open is not damage: a second server on the same
    // data directory still refuses to start, naming the lock.
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_pagefork"))
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            second.kill().unwrap();
            panic!("a second server started on a data directory another one serves");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success() && stderr.contains("locked"), "{stderr}");
    assert!(server.terminate().success());
    assert_eq!(
        pagefork_tests::tree_snapshot(&bad),
        before,
        "nothing of it changed"
    );
}

/// Standard error that takes nothing (a log file on a full disk; here /dev/full) kills no
/// thread: a line that cannot be written was reported with `eprintln!`, which panics, so
/// a review saw the FUSE session's and the housekeeping thread die on a full disk. The
/// server serves and ends cleanly, and a command's error still exits 1, not with a panic.
#[test]
fn a_standard_error_that_takes_nothing_kills_no_thread() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let server = Server::start_with(&data, &[], &[("PAGEFORK_LOG", "debug")], full().into());
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    server
        .put_page(&format!("{B}/main/pages/1/0"), &[7; 8192])
        .expect(200);
    server
        .post(B, r#"{"branch_id": "b", "spec": {"no_expiry": true}}"#)
        .expect(201);
    server.get(&format!("{B}/nosuch")).expect(404);
    assert_eq!(server.terminate().code(), Some(0));
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_pagefork"))
        .arg("--data-dir")
        .arg(data.join("projects/p"))
        .args(["branch", "show", "nosuch"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
}

/// Found by a review: routes that take no query parameters took any silently, so
/// `POST .../gc?dry_run=true` ran a real GC and `DELETE .../branches/B?dry_run=true`
/// deleted the branch. A parameter a route does not take (as its OpenAPI document says)
/// is 400 on every route, naming it and what the route takes, and nothing runs.
#[test]
fn regression_a_query_parameter_a_route_does_not_take_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_victim(dir.path(), &[]);
    let before = observable(&server);
    for (method, path, body, named) in [
        ("POST", format!("{P}/gc?dry_run=true"), "{}", "dry_run"),
        ("POST", format!("{P}/compact?dry_run=1"), "{}", "dry_run"),
        (
            "DELETE",
            format!("{B}/victim?dry_run=true"),
            "{}",
            "dry_run",
        ),
        ("GET", format!("{P}/log?limit=abc"), "", "limit"),
        ("GET", format!("{B}/victim?bogus=1"), "", "bogus"),
        ("POST", format!("{B}/victim/reset?force=1"), "{}", "force"),
    ] {
        let answer = match method {
            "GET" => server.get(&path),
            _ => server.send(method, &path, body),
        };
        let message = answer.expect_error(400, "invalid_request");
        assert!(
            message.contains(named) && message.contains("it takes none"),
            "{method} {path}: {message}"
        );
        assert_eq!(observable(&server), before, "{method} {path}");
    }
    let message = server
        .put_page(&format!("{B}/victim/pages/1/0?lsn=0/68"), &[9; 8192])
        .expect_error(400, "invalid_request");
    assert!(message.contains("\"lsn\""), "{message}");
    assert_eq!(observable(&server), before);
    // A route that takes parameters names them; the ones it takes still work.
    let message = server
        .get(&format!("{B}/victim/diff?to=main&bogus=1"))
        .expect_error(400, "invalid_request");
    assert!(
        message.contains("bogus") && message.contains("from_lsn"),
        "{message}"
    );
    server.get(&format!("{B}/victim/diff?to=main")).expect(200);
    // A method the route does not take is still 405, whatever the query (schemathesis
    // found 400 for a TRACE).
    server
        .send("PATCH", &format!("{B}/victim/diff?to=main"), "{}")
        .expect_error(405, "method_not_allowed");
    // A HEAD takes what its GET takes (found by a review of the check).
    let lsn = server.get(&format!("{B}/victim/pages/1/1")).lsn.unwrap();
    let head = server.head(&format!("{B}/victim/pages/1/1?lsn={lsn}"));
    assert_eq!(head.status, 200);
    assert_eq!(head.lsn.as_deref(), Some(lsn.as_str()));
}

/// The server's peak resident memory (VmHWM), in bytes.
fn peak_memory(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A commit body of `count` drops of pages of relation 8.
fn drops(count: u32) -> String {
    let updates: Vec<Value> = (0..count)
        .map(|block| json!({"rel": 8, "block": block, "drop": true}))
        .collect();
    json!({ "updates": updates }).to_string()
}

/// Found by a review: a commit of 1.5 million small updates, 62 MiB (under the body
/// limit), had the server parse them all into JSON maps at once and hold 2 GB; three at a
/// time, 4.5 GB. A commit holds at most 65,536 updates, each parsed as it comes: the
/// long one is refused naming the limit, having cost a fraction of that, and one of
/// exactly 65,536 commits.
#[test]
fn regression_a_commit_of_millions_of_updates_is_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_victim(dir.path(), &[]);
    let before = observable(&server);
    let body = drops(1_500_000);
    assert!(body.len() < 64 << 20);
    let message = server
        .post(&format!("{B}/main/commit"), &body)
        .expect_error(400, "invalid_request");
    assert!(
        message.contains("updates: more than 65536 elements in one array"),
        "{message}"
    );
    assert_eq!(
        observable(&server),
        before,
        "a refused commit changed something"
    );
    let peak = peak_memory(&server);
    assert!(peak < 1 << 30, "the server peaked at {peak} bytes");
    let answer = server.post(&format!("{B}/main/commit"), &drops(65_536));
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
}

/// `request` sent whole on a connection of its own; the answer's status line.
fn raw_status(server: &Server, request: &str) -> String {
    let mut stream = stall(server, request);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Found by a review: of two Host headers only the first was checked, and a request in
/// absolute form (`POST http://evil.example/...`, whose host HTTP says replaces the
/// header) was answered as if it named this server: both created a branch. Both are
/// refused now, changing nothing.
#[test]
fn regression_a_second_host_or_an_absolute_target_cannot_slip_a_foreign_host_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_victim(dir.path(), &[]);
    let before = observable(&server);
    let address = server.address().to_owned();
    let body = r#"{"branch_id": "smuggled"}"#;
    let tail = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let two_hosts = format!("POST {B} HTTP/1.1\r\nHost: {address}\r\nHost: evil.example\r\n{tail}");
    assert!(raw_status(&server, &two_hosts).contains(" 400 "));
    let absolute = format!("POST http://evil.example{B} HTTP/1.1\r\nHost: {address}\r\n{tail}");
    assert!(raw_status(&server, &absolute).contains(" 403 "));
    assert_eq!(observable(&server), before);
    // The same request in absolute form naming this server is answered.
    let own = format!("POST http://{address}{B} HTTP/1.1\r\nHost: {address}\r\n{tail}");
    assert!(raw_status(&server, &own).contains(" 201 "));
}
