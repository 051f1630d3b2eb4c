//! What the HTTP benchmarks share: the real `pagefork serve` on a free loopback port, and
//! a client for its JSON routes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `pagefork --data-dir DIR serve --listen 127.0.0.1:0` and returns the child and
/// the base URL it printed. `PAGEFORK_BENCH_BIN` names another build of `pagefork` to
/// measure instead of this one (to compare two builds with one benchmark binary).
pub(crate) fn start_serve(dir: &Path) -> (Child, String) {
    let program = std::env::var_os("PAGEFORK_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_pagefork").into());
    let mut child = Command::new(program)
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        // Warnings and each endpoint start's split (mount, Postgres ready, answered), but
        // not fuser's note of each reply to a request the kernel dropped (pg_test_fsync's
        // alarms interrupt its writes); `PAGEFORK_LOG` set for the benchmark replaces it.
        .env(
            "PAGEFORK_LOG",
            std::env::var("PAGEFORK_LOG").unwrap_or_else(|_| {
                "warn,fuser::reply=off,fuser::session=off,pagefork::endpoint::registry=info"
                    .to_owned()
            }),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap()
        .to_owned();
    (child, base)
}

/// A running `pagefork serve`, stopped (SIGTERM) when dropped.
pub(crate) struct Served {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Served {
    /// `pagefork serve` on `data`.
    pub(crate) fn start(data: &Path) -> Served {
        let (child, base) = start_serve(data);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(3600)))
            .build()
            .into();
        Served { child, base, agent }
    }

    /// `POST path` with a JSON body: the status and the body.
    pub(crate) fn post(&self, path: &str, body: &str) -> (u16, String) {
        let mut response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    /// `DELETE path`, which must answer 200.
    pub(crate) fn delete_ok(&self, path: &str) {
        let mut response = self
            .agent
            .delete(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .force_send_body()
            .send("{}")
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        assert_eq!(status, 200, "DELETE {path}: {text}");
    }

    /// `POST path`, which must answer `expected`; its body as JSON.
    pub(crate) fn post_ok(&self, path: &str, body: &str, expected: u16) -> serde_json::Value {
        let (status, text) = self.post(path, body);
        assert_eq!(status, expected, "POST {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}
