//! A real S3-compatible server for tests: `s3s-fs` 0.14.1 (`cargo install --locked
//! s3s-fs@0.14.1 --features binary`, which `.ci/run` does when it is missing) on a free
//! port of 127.0.0.1, persisting to a temporary directory and checking request
//! signatures. Stopped (killed) when dropped.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pagefork_remote::RemoteLocation;

/// The access key the test server accepts.
pub const ACCESS_KEY: &str = "pagefork-test";
/// Its secret.
pub const SECRET_KEY: &str = "pagefork-test-secret";
/// The bucket every test server starts with.
pub const BUCKET: &str = "pagefork-test";

/// A running `s3s-fs` (see the module docs).
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    root: tempfile::TempDir,
    port: u16,
}

/// Where `s3s-fs` is: on `PATH` or in cargo's bin directory. Panics naming what is
/// missing and how to install it: a test never skips silently.
pub fn s3s_fs_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo/bin")));
    for dir in candidates {
        let binary = dir.join("s3s-fs");
        if binary.is_file() {
            return binary;
        }
    }
    panic!(
        "s3s-fs is missing (the S3 server the remote storage tests run against): install it with `cargo install --locked s3s-fs@0.14.1 --features binary`"
    );
}

impl S3Server {
    /// Starts a server with an empty bucket [`BUCKET`].
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().expect("a temporary directory for s3s-fs");
        std::fs::create_dir(root.path().join(BUCKET)).expect("the bucket's directory");
        let mut server = S3Server {
            child: None,
            root,
            port: 0,
        };
        server.restart();
        server
    }

    /// Starts the server again on the same data (after [`S3Server::stop`]); the port may
    /// differ only if the old one was taken meanwhile.
    pub fn restart(&mut self) {
        self.stop();
        let mut port = if self.port != 0 && port_is_free(self.port) {
            self.port
        } else {
            free_port()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = Command::new(s3s_fs_binary())
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(self.root.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("s3s-fs starts");
            // Listening, and ours: a server that could not bind the port (taken meanwhile
            // by another process) exits, and whatever answers there is not it.
            let listening = loop {
                if child.try_wait().expect("s3s-fs's status").is_some() {
                    break false;
                }
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    std::thread::sleep(Duration::from_millis(50));
                    break child.try_wait().expect("s3s-fs's status").is_none();
                }
                assert!(
                    Instant::now() < deadline,
                    "s3s-fs did not listen on port {port} within 20 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            if listening {
                self.child = Some(child);
                self.port = port;
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "s3s-fs could not listen within 20 s"
            );
            port = free_port();
        }
    }

    /// Kills the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGSTOP: connections are still accepted, and nothing is
    /// answered until [`S3Server::resume`] (a stalled server, or a network that drops
    /// replies).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("s3s-fs is running");
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill {signal} of s3s-fs failed");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3://BUCKET/prefix` on this server, with its credentials.
    pub fn location(&self, prefix: &str) -> RemoteLocation {
        RemoteLocation::parse(&format!("s3://{BUCKET}/{prefix}"), Some(&self.endpoint()))
            .expect("a valid location")
            .with_credentials(ACCESS_KEY, SECRET_KEY)
    }

    /// The file holding the object `key` (under the bucket), for tests that damage one.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// The keys of every object under `prefix/` (relative to the bucket).
    pub fn object_keys(&self, prefix: &str) -> Vec<String> {
        let base = self.root.path().join(BUCKET);
        let mut keys = Vec::new();
        let mut pending = vec![base.join(prefix)];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if let Ok(relative) = path.strip_prefix(&base) {
                    keys.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        keys.sort();
        keys
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free now, never handed out before in this process: tests run in parallel, and
/// two given the same port had one test's requests reach the other's server until that
/// one stopped (a CI run failed so, 17 s of "error sending request").
fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free port");
        if HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}
