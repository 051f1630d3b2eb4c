//! `pagefork serve --auth` (issue 19): only a valid EdDSA token for the route's scope
//! gets through; a missing, malformed, tampered, foreign-key, expired, not-yet-valid or
//! wrongly scoped one is a 403 (the others 401) saying which, and changes nothing. Tokens come from
//! `pagefork token create`, as users get them; the odd ones are signed here with the
//! server's own key, as an attacker who stole it (or a clock that is off) would.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::Server;
use support::cli::pagefork;

const B: &str = "/v1/projects/p/branches";

/// `pagefork token create ARGS...` on the server's data directory.
fn token(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let output = pagefork(dir, &all);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A token with these claims, signed with the server's key (or `key`).
fn signed(key_file: &Path, claims: &Value) -> String {
    let pem = std::fs::read(key_file).unwrap();
    let key = EncodingKey::from_ed_pem(&pem).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Project `p` with a page on main and a branch `victim`, made with a server token.
fn server(dir: &Path) -> Server {
    let mut server = Server::start(dir, &["--auth"]);
    server.token = Some(token(dir, &["--ttl", "10m"]));
    support::seed_victim(&server);
    server
}

fn observable(server: &Server) -> Vec<Value> {
    vec![
        server.get(B).expect(200),
        server.get("/v1/projects/p/leases").expect(200),
        server.get("/v1/projects/p/log").expect(200),
        server.get("/v1/projects").expect(200),
    ]
}

#[test]
fn every_route_needs_a_valid_token_for_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server(dir.path());
    let good = server.token.clone().unwrap();
    let key_file = dir.path().join("auth/private_key.pem");
    let other_dir = tempfile::tempdir().unwrap();
    let foreign = token(other_dir.path(), &["--ttl", "10m"]);
    let expired = signed(
        &key_file,
        &json!({"scope": "server", "iat": now() - 120, "nbf": now() - 120, "exp": now() - 60}),
    );
    let future = signed(
        &key_file,
        &json!({"scope": "server", "iat": now() + 600, "nbf": now() + 600, "exp": now() + 1200}),
    );
    let tampered = {
        let project = token(dir.path(), &["--ttl", "10m", "--project", "q"]);
        let mut parts: Vec<&str> = project.split('.').collect();
        let server_claims = good.split('.').nth(1).unwrap().to_owned();
        parts[1] = &server_claims;
        // A project token's signature over a server token's claims.
        parts.join(".")
    };
    let wrong_project = token(dir.path(), &["--ttl", "10m", "--project", "q"]);
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "token_missing"),
        (Some("garbage".into()), "token_malformed"),
        (Some(foreign), "token_invalid"),
        (Some(tampered), "token_invalid"),
        (Some(expired), "token_expired"),
        (Some(future), "token_not_yet_valid"),
        (Some(wrong_project), "token_wrong_scope"),
    ];
    let before = observable(&server);
    for (token, code) in &cases {
        server.token = token.clone();
        // A valid token for something else is forbidden (403); any other refusal asks
        // for a token (401).
        let status = if *code == "token_wrong_scope" {
            403
        } else {
            401
        };
        for (method, path, body) in support::mutating_routes() {
            let answer = server.send(method, &path, &body);
            let message = answer.expect_error(status, code);
            assert!(!message.is_empty());
        }
        server.get(B).expect_error(status, code);
        server.get("/metrics").expect_error(status, code);
        server.token = Some(good.clone());
        assert_eq!(
            observable(&server),
            before,
            "a refused request ({code}) changed something"
        );
    }
    // Open routes need no token.
    server.token = None;
    server.get("/healthz");
    assert_eq!(server.get("/healthz").status, 200);
    server.get("/v1/openapi.json").expect(200);
    // A project token reaches its project only.
    server.token = Some(token(dir.path(), &["--ttl", "10m", "--project", "p"]));
    server.get(B).expect(200);
    server.post(B, r#"{"branch_id": "mine"}"#).expect(201);
    server
        .get("/v1/projects")
        .expect_error(403, "token_wrong_scope");
    server
        .post("/v1/projects", r#"{"project_id": "r"}"#)
        .expect_error(403, "token_wrong_scope");
    server
        .get("/metrics")
        .expect_error(403, "token_wrong_scope");
    // A token that expires while in use is refused from then on.
    server.token = Some(token(dir.path(), &["--ttl", "1s"]));
    std::thread::sleep(Duration::from_millis(2100));
    let message = server.get(B).expect_error(401, "token_expired");
    assert!(message.contains("expired at"), "{message}");
}

#[test]
fn token_create_bounds_lifetimes_and_names() {
    let dir = tempfile::tempdir().unwrap();
    // Refused, and nothing made: not even the server's key (a refused lifetime once
    // exited after writing it).
    for (args, code) in [
        (vec!["token", "create", "--ttl", "31d"], 2),
        (vec!["token", "create", "--ttl", "0s"], 2),
        (vec!["token", "create", "--ttl", "500ms"], 2),
        (vec!["token", "create", "--ttl", "999999999y"], 2),
        (vec!["token", "create", "--project", "../etc"], 1),
    ] {
        let output = pagefork(dir.path(), &args);
        assert_eq!(output.status.code(), Some(code), "{args:?}");
        assert!(!output.stderr.is_empty());
        let made: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(made.is_empty(), "{args:?} changed the disk: {made:?}");
    }
    let output = pagefork(
        dir.path(),
        &[
            "--json",
            "token",
            "create",
            "--ttl",
            "15m",
            "--project",
            "shop",
        ],
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["project"], "shop");
    assert!(answer["token"].as_str().unwrap().split('.').count() == 3);
    assert!(answer["expires_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn a_server_whose_port_is_taken_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = pagefork(dir.path(), &["serve", "--auth", "--listen", &address]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    let made: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        made.is_empty(),
        "a refused start changed the disk: {made:?}"
    );
}

#[test]
fn an_open_server_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let output = pagefork(dir.path(), &["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--auth") && stderr.contains("0.0.0.0"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("projects").exists(),
        "a refused command changed the disk"
    );
    // Told explicitly, it serves there.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pagefork"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0", "--insecure-no-auth"])
        .env("PAGEFORK_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.contains("listening on http://0.0.0.0:"), "{line}");
}
