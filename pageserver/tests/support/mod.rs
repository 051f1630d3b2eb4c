//! A `pagefork serve` child process on a free loopback port, and a small HTTP client for
//! it (ureq: statuses are answers, not errors). `Server::start_logged`, `Server::kill` and
//! `Http` are for crash tests: a server that cannot start is an error carrying its stderr,
//! and a request the server never answered (it was killed) is an error, not a panic.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, dead_code)]

pub(crate) mod cli;
pub(crate) mod endpoint;
pub(crate) mod mount;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running server; killed when dropped (stop it with `terminate` to test shutdown).
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    pub(crate) dir: PathBuf,
    agent: ureq::Agent,
    /// Sent as `Authorization: Bearer` with every request, if set.
    pub(crate) token: Option<String>,
}

/// One answer: status, headers we look at, body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    pub(crate) lsn: Option<String>,
    pub(crate) commit_time: Option<String>,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status and returns the JSON body.
    pub(crate) fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }

    /// Asserts an error answer: status and error code.
    pub(crate) fn expect_error(&self, status: u16, code: &str) -> String {
        let body = self.expect(status);
        assert_eq!(body["error"], code, "{body}");
        body["message"].as_str().unwrap().to_owned()
    }
}

/// `pagefork --data-dir DIR serve --listen 127.0.0.1:0 EXTRA...`, its stdout piped (the
/// first line says where it listens).
fn serve_command(dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pagefork"));
    command
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("PAGEFORK_DATA_DIR")
        .env("PAGEFORK_LOG", "warn")
        .stdout(Stdio::piped());
    command
}

impl Server {
    /// Starts `pagefork --data-dir DIR serve --listen 127.0.0.1:0 EXTRA...`.
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(dir, extra, &[])
    }

    /// [`Server::start`] with `env` added to its environment (credentials, say).
    pub(crate) fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_with(dir, extra, env, Stdio::inherit())
    }

    /// [`Server::start_with_env`] with its standard error sent to `stderr`.
    pub(crate) fn start_with(
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let mut child = serve_command(dir, extra)
            .envs(env.iter().copied())
            .stderr(stderr)
            .spawn()
            .expect("start pagefork serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Server::listening(child, base, dir)
    }

    /// The server `child` that said it listens at `base`, with a client that takes any
    /// status as an answer.
    fn listening(child: Child, base: String, dir: &Path) -> Server {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Server {
            child,
            base,
            dir: dir.to_owned(),
            agent,
            token: None,
        }
    }

    fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        read_answer(response).expect("HTTP request")
    }

    /// `request` with the token, if the server has one.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// The server's process id.
    #[allow(dead_code)] // Not every test binary asks.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn get(&self, path: &str) -> Answer {
        Self::answer(
            self.authorized(self.agent.get(format!("{}{path}", self.base)))
                .call(),
        )
    }

    /// `HEAD`, which a route answers as its `GET`, without the body.
    pub(crate) fn head(&self, path: &str) -> Answer {
        Self::answer(
            self.authorized(self.agent.head(format!("{}{path}", self.base)))
                .call(),
        )
    }

    /// `DELETE` with the `{}` JSON body every mutating route takes.
    pub(crate) fn delete(&self, path: &str) -> Answer {
        self.send("DELETE", path, "{}")
    }

    /// A request without a body (a `DELETE` or `POST` as a careless client sends it).
    pub(crate) fn send_bare(&self, method: &str, path: &str) -> Answer {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "DELETE" => self.authorized(self.agent.delete(url)).call(),
            "GET" => self.authorized(self.agent.get(url)).call(),
            _ => self
                .authorized(with_body(&self.agent, method, url))
                .send_empty(),
        };
        Self::answer(request)
    }

    /// A request with a body (`POST`, `PUT`, `PATCH`), sent as JSON.
    pub(crate) fn send(&self, method: &str, path: &str, body: &str) -> Answer {
        self.send_bytes(method, path, body.as_bytes(), "application/json")
    }

    pub(crate) fn send_bytes(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        content_type: &str,
    ) -> Answer {
        let request = self.authorized(with_body(
            &self.agent,
            method,
            format!("{}{path}", self.base),
        ));
        Self::answer(request.header("content-type", content_type).send(body))
    }

    /// `PUT` of a raw page.
    pub(crate) fn put_page(&self, path: &str, page: &[u8]) -> Answer {
        self.send_bytes("PUT", path, page, "application/octet-stream")
    }

    pub(crate) fn post(&self, path: &str, body: &str) -> Answer {
        self.send("POST", path, body)
    }

    /// Sends only the head of a request announcing a body of `length` bytes, and returns
    /// the status and body of the answer (for a body too large to send: the server must
    /// refuse it from the announced length, without reading it).
    pub(crate) fn announce_body(&self, method: &str, path: &str, length: u64) -> (u16, Value) {
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"));
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        (
            status,
            serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}")),
        )
    }

    /// `host:port` the server listens on.
    pub(crate) fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Sends `head` (the request line and headers, one per line, without `Content-Length`
    /// or the blank line) and `body` exactly as given on a new connection, and returns the
    /// status and body of the answer.
    pub(crate) fn raw(&self, head: &str, body: &[u8]) -> (u16, String) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.address()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let head = head.trim_end().replace('\n', "\r\n");
        let length = body.len();
        write!(
            stream,
            "{head}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        stream.write_all(body).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"));
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        (status, body.to_owned())
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub(crate) fn terminate(mut self) -> ExitStatus {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        self.child.wait().unwrap()
    }
}

impl Server {
    /// Starts `pagefork --data-dir DIR serve --listen 127.0.0.1:0 EXTRA...` with its stderr
    /// appended to `log`. A server that exits or prints no address within `limit` is an
    /// error saying how it ended, with its stderr.
    pub(crate) fn start_logged(
        dir: &Path,
        extra: &[&str],
        log: &Path,
        limit: Duration,
    ) -> Result<Server, String> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = serve_command(dir, extra)
            .stderr(stderr)
            .spawn()
            .expect("start pagefork serve");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = sender.send(read);
        });
        let line = receiver.recv_timeout(limit);
        let base = line
            .as_ref()
            .ok()
            .and_then(|read| read.as_ref().ok())
            .and_then(|line| {
                line.split_whitespace()
                    .find(|word| word.starts_with("http://"))
            })
            .map(str::to_owned);
        let Some(base) = base else {
            // Standard output ended (or said something else): it is exiting; give it a
            // moment. No line within the limit: it hangs.
            let grace = if line.is_ok() {
                Duration::from_secs(10)
            } else {
                Duration::ZERO
            };
            let how = match wait_within(&mut child, grace) {
                Some(status) => format!("exited with {status}"),
                None => format!("printed no address within {limit:?} (killed)"),
            };
            let stderr = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "pagefork serve {how} before it listened; its stderr:\n{stderr}"
            ));
        };
        Ok(Server::listening(child, base, dir))
    }

    /// Sends SIGKILL and waits for the process to end: nothing of it runs after this.
    pub(crate) fn kill(&mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }

    /// Sends SIGTERM and waits up to `limit` for the process to exit (it finishes the
    /// requests in flight and checkpoints first); `None` if it did not (it is then killed).
    pub(crate) fn terminate_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(signalled.success());
        wait_within(&mut self.child, limit)
    }

    /// A client of this server for other threads, whose requests give up after `timeout`.
    pub(crate) fn http(&self, timeout: Duration) -> Http {
        Http {
            base: self.base.clone(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .build()
                .into(),
        }
    }
}

/// Waits up to `limit` for `child` to exit; kills it (and says `None`) if it does not.
fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if started.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) struct NoAnswer {
    /// The connection was refused: the request never reached the server.
    pub(crate) refused: bool,
    pub(crate) message: String,
}

/// A server's address and an HTTP client for it, to share with threads: a request the
/// server did not answer (connection refused, reset, or cut mid-answer) is an `Err`.
#[derive(Clone)]
pub(crate) struct Http {
    pub(crate) base: String,
    agent: ureq::Agent,
}

impl Http {
    pub(crate) fn get(&self, path: &str) -> Result<Answer, NoAnswer> {
        read_answer(self.agent.get(format!("{}{path}", self.base)).call()).map_err(no_answer)
    }

    /// `DELETE` with the `{}` JSON body every mutating route takes.
    pub(crate) fn delete(&self, path: &str) -> Result<Answer, NoAnswer> {
        self.send_bytes("DELETE", path, b"{}", "application/json")
    }

    /// A request with a body (`POST`, `PUT`, `PATCH`).
    pub(crate) fn send_bytes(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        content_type: &str,
    ) -> Result<Answer, NoAnswer> {
        let request = with_body(&self.agent, method, format!("{}{path}", self.base));
        read_answer(request.header("content-type", content_type).send(body)).map_err(no_answer)
    }

    /// `POST` of a JSON body.
    pub(crate) fn post(&self, path: &str, body: &str) -> Result<Answer, NoAnswer> {
        self.send_bytes("POST", path, body.as_bytes(), "application/json")
    }

    /// `PUT` of a raw page.
    pub(crate) fn put_page(&self, path: &str, page: &[u8]) -> Result<Answer, NoAnswer> {
        self.send_bytes("PUT", path, page, "application/octet-stream")
    }
}

/// A `POST`, `PUT` or `PATCH` request to `url`.
fn with_body(
    agent: &ureq::Agent,
    method: &str,
    url: String,
) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
    match method {
        "POST" => agent.post(url),
        "PUT" => agent.put(url),
        "PATCH" => agent.patch(url),
        "DELETE" => agent.delete(url).force_send_body(),
        other => panic!("no body for {other}"),
    }
}

fn no_answer(error: ureq::Error) -> NoAnswer {
    let refused =
        matches!(&error, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused);
    NoAnswer {
        refused,
        message: error.to_string(),
    }
}

/// Reads a whole answer: status, the headers we look at, body.
fn read_answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, ureq::Error> {
    let mut response = response?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let (lsn, commit_time) = (header("pagefork-lsn"), header("pagefork-commit-time"));
    Ok(Answer {
        status: response.status().as_u16(),
        body: response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()?,
        lsn,
        commit_time,
    })
}

impl Drop for Server {
    /// A server still running (a test that failed half-way) is asked to stop first
    /// (SIGTERM: it stops its endpoints and unmounts what it mounted), so a failed test
    /// leaves no FUSE mount behind.
    fn drop(&mut self) {
        stop_on_drop(&mut self.child);
    }
}

/// For a `Drop`: a child still running gets SIGTERM, and SIGKILL if it has not ended
/// within 10 s; then it is waited for. Never panics (it may run while a test unwinds).
pub(crate) fn stop_on_drop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A small file system of its own (a tmpfs of a few MiB) mounted on a new temporary
/// directory, to fill up for real; unmounted when dropped. Needs root, as CI runs.
pub(crate) struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB; fails the test, saying what is missing, if it cannot.
    pub(crate) fn mount(mib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|error| panic!("this test needs the mount command: {error}"));
        assert!(
            output.status.success(),
            "this test fills a small disk and needs to mount a tmpfs (run it as root, as CI does): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        SmallDisk { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full.
    pub(crate) fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.path().join("filler")).unwrap();
        let chunk = vec![0x5a; 4096];
        while filler
            .write_all(&chunk)
            .and_then(|()| filler.sync_all())
            .is_ok()
        {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Makes project `p` on `server`: main holds page 1/0 (all 1s), and `victim` (from main)
/// its own commit of page 1/1 (all 2s); the routes of `mutating_routes` act on these.
pub(crate) fn seed_victim(server: &Server) {
    const B: &str = "/v1/projects/p/branches";
    server
        .post("/v1/projects", r#"{"project_id": "p"}"#)
        .expect(201);
    server
        .put_page(&format!("{B}/main/pages/1/0"), &[1; 8192])
        .expect(200);
    server.post(B, r#"{"branch_id": "victim"}"#).expect(201);
    server
        .put_page(&format!("{B}/victim/pages/1/1"), &[2; 8192])
        .expect(200);
}

/// Every route that changes something, with a valid body, for project `p` and its branch
/// `victim` (refusal tests send each and check nothing changed).
pub(crate) fn mutating_routes() -> Vec<(&'static str, String, String)> {
    const B: &str = "/v1/projects/p/branches";
    vec![
        (
            "POST",
            "/v1/projects".into(),
            r#"{"project_id": "q"}"#.into(),
        ),
        ("POST", B.into(), r#"{"branch_id": "new"}"#.into()),
        (
            "PATCH",
            format!("{B}/victim"),
            r#"{"spec": {"ttl": "1h"}}"#.into(),
        ),
        ("DELETE", format!("{B}/victim"), "{}".into()),
        ("POST", format!("{B}/victim/reset"), "{}".into()),
        ("POST", format!("{B}/victim/restore"), "{}".into()),
        (
            "POST",
            format!("{B}/victim/rename"),
            r#"{"new_branch_id": "v2"}"#.into(),
        ),
        ("POST", format!("{B}/victim/detach"), "{}".into()),
        (
            "POST",
            format!("{B}/victim/leases"),
            r#"{"lsn": "0/1000000", "ttl": "1h"}"#.into(),
        ),
        (
            "POST",
            format!("{B}/victim/commit"),
            r#"{"updates": [{"rel": 1, "block": 1, "drop": true}]}"#.into(),
        ),
        ("POST", "/v1/projects/p/gc".into(), "{}".into()),
        ("POST", "/v1/projects/p/compact".into(), "{}".into()),
    ]
}
