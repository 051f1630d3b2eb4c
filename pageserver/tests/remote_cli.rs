//! `pagefork sync --remote` and `pagefork attach`, the real binary against a real S3
//! server (`s3s-fs`, credentials from the `AWS_*` variables as users give them): a store
//! synced from one data directory attaches in another with the same branches, history and
//! pages; refusals change nothing.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;
use std::process::Output;

use pagefork_tests::s3::{BUCKET, S3Server};
use serde_json::Value;
use support::cli::{ok_json, pagefork, pagefork_s3, pagefork_with_stdin};

/// `pagefork --data-dir DIR ARGS...` with the test server's credentials in the environment.
fn with_credentials(dir: &Path, args: &[&str]) -> Output {
    pagefork_s3(dir, args).output().expect("run pagefork")
}

/// `pagefork --json sync --remote URL --s3-endpoint ENDPOINT` of the store in `dir`.
fn sync_json(dir: &Path, url: &str, endpoint: &str) -> Output {
    with_credentials(
        dir,
        &["--json", "sync", "--remote", url, "--s3-endpoint", endpoint],
    )
}

/// Branches, the WAL's records, and the pages written, as the CLI shows them.
fn state(dir: &Path) -> (Value, Value, Vec<Vec<u8>>) {
    let pages = (0..4)
        .map(|block| {
            let output = pagefork(dir, &["page", "get", "feature", "7", &block.to_string()]);
            assert!(output.status.success());
            output.stdout
        })
        .collect();
    (
        ok_json(pagefork(dir, &["--json", "branch", "list"])),
        ok_json(pagefork(
            dir,
            &["--json", "inspect", "wal", "--limit", "100000"],
        )),
        pages,
    )
}

#[test]
fn sync_then_attach_in_another_data_directory() {
    let server = S3Server::start();
    let url = format!("s3://{BUCKET}/cli/shop");
    let endpoint = server.endpoint();
    let root = tempfile::tempdir().unwrap();
    let first = root.path().join("first");
    // The demo's 63 MB catalog (three branches, a PITR branch), then pages of our own.
    ok_json(pagefork(&first, &["--json", "demo"]));
    ok_json(pagefork(
        &first,
        &["--json", "branch", "create", "feature", "--from", "main"],
    ));
    for block in 0..4u8 {
        let page = vec![block ^ 0x5A; 8192];
        let output = pagefork_with_stdin(
            &first,
            &["page", "put", "feature", "7", &block.to_string()],
            &page,
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let synced = ok_json(sync_json(&first, &url, &endpoint));
    assert_eq!(synced["generation"], 1);
    assert!(
        synced["uploaded_bytes"].as_u64().unwrap() > 60_000_000,
        "{synced}"
    );

    let second = root.path().join("second");
    let attached = ok_json(with_credentials(
        &second,
        &[
            "--json",
            "attach",
            "--remote",
            &url,
            "--s3-endpoint",
            &endpoint,
        ],
    ));
    assert_eq!(attached["generation"], 2);
    assert_eq!(attached["recovery_point"], synced["recovery_point"]);
    assert_eq!(attached["branches"], 4);
    assert_eq!(state(&second), state(&first));

    // A copy to inspect claims nothing: the attached copy stays the writer.
    let inspected = ok_json(with_credentials(
        &root.path().join("inspect"),
        &[
            "--json",
            "attach",
            "--remote",
            &url,
            "--s3-endpoint",
            &endpoint,
            "--no-claim",
        ],
    ));
    assert_eq!(inspected["generation"], serde_json::Value::Null);
    assert_eq!(inspected["recovery_point"], synced["recovery_point"]);
    // A second sync from the attached copy uploads only what is new: the index.
    let again = ok_json(sync_json(&second, &url, &endpoint));
    assert_eq!(again["generation"], 2);
    // The first data directory's generation is superseded: it is fenced, says so, and
    // uploads nothing (a review found each refused sync leaving a catalog and metadata).
    let keys = server.object_keys("cli/shop");
    let fenced = with_credentials(
        &first,
        &["sync", "--remote", &url, "--s3-endpoint", &endpoint],
    );
    assert!(!fenced.status.success());
    let message = String::from_utf8_lossy(&fenced.stderr);
    assert!(message.contains("superseded by generation 2"), "{message}");
    assert!(
        server
            .object_keys("cli/shop/index")
            .iter()
            .all(|key| !key.ends_with("00000003.json")),
        "a fenced process published an index"
    );
    assert_eq!(
        server.object_keys("cli/shop"),
        keys,
        "a fenced process uploaded"
    );
}

/// A server named by `AWS_ENDPOINT_URL` rather than `--s3-endpoint` is reached the same
/// way, plain HTTP included (it was refused: "URL scheme is not allowed").
#[test]
fn regression_a_plain_http_server_may_be_named_by_aws_endpoint_url() {
    let server = S3Server::start();
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    ok_json(pagefork(&store, &["--json", "init"]));
    let url = format!("s3://{BUCKET}/from-environment");
    let output = pagefork_s3(&store, &["--json", "sync", "--remote", &url])
        .env("AWS_ENDPOINT_URL", server.endpoint())
        .output()
        .unwrap();
    ok_json(output);
    assert!(
        server
            .object_keys("from-environment")
            .iter()
            .any(|key| key.contains("index")),
        "{:?}",
        server.object_keys("from-environment")
    );
}

#[test]
fn refusals_name_the_problem_and_change_nothing() {
    let server = S3Server::start();
    let endpoint = server.endpoint();
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    ok_json(pagefork(&store, &["--json", "init"]));
    let before = pagefork_tests::tree_snapshot(&store);
    let cases: [(&[&str], &str); 6] = [
        (&["sync", "--remote", "bucket/x"], "must start with s3://"),
        (&["sync", "--remote", "s3://B"], "bucket name"),
        // Found by a review: these were synced percent-encoded and never found again.
        (
            &[
                "sync",
                "--remote",
                "s3://pagefork-test/z\u{f6}",
                "--s3-endpoint",
                &endpoint,
            ],
            "the prefix holds '\u{f6}'",
        ),
        (
            &[
                "sync",
                "--remote",
                "s3://pagefork-test/50%off",
                "--s3-endpoint",
                &endpoint,
            ],
            "the prefix holds '%'",
        ),
        (
            &[
                "sync",
                "--remote",
                "s3://pagefork-test/x",
                "--s3-endpoint",
                "127.0.0.1:1",
            ],
            "http:// or https://",
        ),
        (
            &[
                "attach",
                "--remote",
                "s3://pagefork-test/x",
                "--s3-endpoint",
                &endpoint,
            ],
            "not empty",
        ),
    ];
    for (args, expected) in cases {
        let output = with_credentials(&store, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        pagefork_tests::tree_snapshot(&store),
        before,
        "a refused command changed the store"
    );
    // Nothing synced there: attach says so and leaves no directory behind.
    let missing = root.path().join("never");
    let output = with_credentials(
        &missing,
        &[
            "attach",
            "--remote",
            "s3://pagefork-test/empty",
            "--s3-endpoint",
            &endpoint,
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("holds no index"),
        "{stderr}"
    );
    assert!(!missing.exists());
    assert!(
        server.object_keys("empty").is_empty(),
        "a failed attach claimed a generation: {:?}",
        server.object_keys("empty")
    );
}

/// (layers on local disk, evicted layers) as `inspect store --no-verify` lists them.
fn residency(dir: &Path) -> (usize, usize) {
    let files = ok_json(with_credentials(
        dir,
        &["--json", "inspect", "store", "--no-verify"],
    ));
    let layers: Vec<bool> = files["branches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|branch| branch["layers"].as_array().unwrap().clone())
        .map(|layer| layer["resident"].as_bool().unwrap())
        .collect();
    let resident = layers.iter().filter(|resident| **resident).count();
    (resident, layers.len() - resident)
}

/// `inspect store` on `dir`, which reads (and checks) every layer file in full, evicted
/// ones downloaded from the location `pagefork.remote` records, must succeed.
fn inspect_every_layer(dir: &Path) {
    let checked = with_credentials(dir, &["inspect", "store"]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn a_cache_budget_evicts_and_a_lazy_attach_downloads_on_demand() {
    let server = S3Server::start();
    let url = format!("s3://{BUCKET}/cli/cached");
    let endpoint = server.endpoint();
    let root = tempfile::tempdir().unwrap();
    let first = root.path().join("first");
    ok_json(pagefork(&first, &["--json", "demo"]));
    let (layers, none) = residency(&first);
    assert!(layers > 0 && none == 0);

    let synced = ok_json(with_credentials(
        &first,
        &[
            "--json",
            "sync",
            "--remote",
            &url,
            "--s3-endpoint",
            &endpoint,
            "--local-cache-bytes",
            "0",
        ],
    ));
    assert_eq!(synced["layer_cache"]["resident_bytes"], 0, "{synced}");
    assert_eq!(residency(&first), (0, layers));
    // stats says where the copy is and how far behind, from the local state alone.
    let stats = ok_json(with_credentials(&first, &["--json", "stats"]));
    assert_eq!(stats["remote"]["location"], url.as_str(), "{stats}");
    assert_eq!(stats["remote"]["recovery_point"], synced["recovery_point"]);
    assert_eq!(stats["remote"]["lag_bytes"], 0, "{stats}");
    assert_eq!(
        stats["layer_cache"]["evicted_layers"].as_u64(),
        Some(layers as u64),
        "{stats}"
    );
    // Found by a review: a sync to another location failed (the evicted layers are not
    // here to copy) after rewriting pagefork.remote, and every read of an evicted layer
    // then looked for it there. It is refused first, and changes nothing.
    let before = pagefork_tests::tree_snapshot(&first);
    let elsewhere = format!("s3://{BUCKET}/cli/elsewhere");
    let refused = with_credentials(
        &first,
        &["sync", "--remote", &elsewhere, "--s3-endpoint", &endpoint],
    );
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && message.contains(&format!("evicted to {url}")),
        "{message}"
    );
    assert_eq!(pagefork_tests::tree_snapshot(&first), before);
    assert!(server.object_keys("cli/elsewhere").is_empty());
    // Found by a review: recover called a store with evicted layers damaged beyond
    // salvage; it opens it as every command does, through the recorded location.
    let recovered = with_credentials(&first, &["--json", "recover"]);
    assert_eq!(
        recovered.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&recovered.stdout),
        String::from_utf8_lossy(&recovered.stderr)
    );
    // Found by a review: a store whose evicted layers could not be read was called clean
    // with nothing more said. The answer says which layers it did not read.
    let answer: serde_json::Value = serde_json::from_slice(&recovered.stdout).unwrap();
    assert_eq!(answer["evicted_layers_not_read"], layers, "{answer}");
    let said = with_credentials(&first, &["recover"]);
    let said = String::from_utf8_lossy(&said.stdout);
    assert!(
        said.contains(&format!(
            "{layers} layer files evicted to remote storage were not read"
        )),
        "{said}"
    );
    // Any command reads evicted layers back from the location pagefork.remote records:
    // inspect store reads (and checks) every layer file in full.
    inspect_every_layer(&first);
    assert_eq!(residency(&first), (layers, 0));

    // A lazy attach downloads the catalog and the WAL, no layer file.
    let second = root.path().join("second");
    let attached = ok_json(with_credentials(
        &second,
        &[
            "--json",
            "attach",
            "--remote",
            &url,
            "--s3-endpoint",
            &endpoint,
            "--lazy",
        ],
    ));
    assert!(
        attached["downloaded_bytes"].as_u64().unwrap()
            < synced["uploaded_bytes"].as_u64().unwrap() / 4,
        "{attached} after {synced}"
    );
    assert_eq!(residency(&second), (0, layers));
    let listed = |dir: &Path| ok_json(with_credentials(dir, &["--json", "branch", "list"]));
    assert_eq!(listed(&second), listed(&first));
    inspect_every_layer(&second);
    assert_eq!(residency(&second), (layers, 0));
}

/// Found by a review: a layer object deleted from the bucket by hand (or by a lifecycle
/// rule) while the index still listed it was evicted from local disk all the same by
/// `sync --local-cache-bytes 0`, and the data was gone from both places. A layer is now
/// evicted only if its object is in the bucket at its size.
#[test]
fn regression_a_layer_missing_from_the_bucket_is_not_evicted() {
    let server = S3Server::start();
    let url = format!("s3://{BUCKET}/cli/missing");
    let endpoint = server.endpoint();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    ok_json(pagefork(&dir, &["--json", "demo"]));
    let sync = |extra: &[&str]| {
        let args = [
            &[
                "--json",
                "sync",
                "--remote",
                &url,
                "--s3-endpoint",
                &endpoint,
            ][..],
            extra,
        ]
        .concat();
        ok_json(with_credentials(&dir, &args))
    };
    sync(&[]);
    let (layers, none) = residency(&dir);
    assert!(layers > 0 && none == 0);
    // A layer of page versions (commit runs are objects under `layers/` too).
    let gone: Vec<String> = server
        .object_keys("cli/missing/layers")
        .into_iter()
        .filter(|key| !key.contains(".commits."))
        .take(1)
        .collect();
    assert_eq!(gone.len(), 1, "no layer object to delete");
    std::fs::remove_file(server.object_file(&gone[0])).unwrap();

    sync(&["--local-cache-bytes", "0"]);
    assert_eq!(
        residency(&dir),
        (1, layers - 1),
        "the missing layer was evicted"
    );
    inspect_every_layer(&dir);
}

/// Found by a review: `remote scrub` of a prefix removed every object of a store synced
/// to a prefix inside it (its generation marker, index, catalog and WAL), as "objects no
/// index lists". Scrub now considers only keys of its own layout.
#[test]
fn regression_scrub_leaves_a_store_synced_inside_its_prefix_alone() {
    let server = S3Server::start();
    let endpoint = server.endpoint();
    let root = tempfile::tempdir().unwrap();
    let (outer, inner) = (root.path().join("outer"), root.path().join("inner"));
    ok_json(pagefork(&outer, &["--json", "init"]));
    ok_json(pagefork(&inner, &["--json", "init"]));
    let page = root.path().join("page");
    std::fs::write(&page, vec![7u8; 8192]).unwrap();
    for dir in [&outer, &inner] {
        let put = pagefork(
            dir,
            &[
                "page",
                "put",
                "main",
                "1",
                "0",
                "--file",
                page.to_str().unwrap(),
            ],
        );
        assert!(put.status.success());
    }
    let outer_url = format!("s3://{BUCKET}/nest");
    let inner_url = format!("s3://{BUCKET}/nest/layers/x");
    for (dir, url) in [(&outer, &outer_url), (&inner, &inner_url)] {
        ok_json(with_credentials(
            dir,
            &[
                "--json",
                "sync",
                "--remote",
                url,
                "--s3-endpoint",
                &endpoint,
            ],
        ));
    }
    let inner_keys = server.object_keys("nest/layers/x");
    assert!(!inner_keys.is_empty());
    let scrubbed = ok_json(with_credentials(
        &outer,
        &[
            "--json",
            "remote",
            "scrub",
            "--remote",
            &outer_url,
            "--s3-endpoint",
            &endpoint,
            "--min-age",
            "0s",
        ],
    ));
    assert_eq!(scrubbed["unlisted"], serde_json::json!([]), "{scrubbed}");
    assert_eq!(server.object_keys("nest/layers/x"), inner_keys);
    // Without --s3-endpoint, the server the --data-dir store recorded for the location
    // (found by a review: a scrub went to AWS itself, as sync once did).
    let again = ok_json(with_credentials(
        &outer,
        &[
            "--json",
            "remote",
            "scrub",
            "--remote",
            &outer_url,
            "--min-age",
            "0s",
            "--dry-run",
        ],
    ));
    assert_eq!(again["unlisted"], serde_json::json!([]), "{again}");
    assert_eq!(again["listed"], scrubbed["listed"], "{again}");
    let attached = root.path().join("attached");
    ok_json(with_credentials(
        &attached,
        &[
            "--json",
            "attach",
            "--remote",
            &inner_url,
            "--s3-endpoint",
            &endpoint,
        ],
    ));
    let read = pagefork(&attached, &["page", "get", "main", "1", "0"]);
    assert_eq!(read.stdout, vec![7u8; 8192]);
}

/// Found by a review: a stale copy of a store's directory (a disk snapshot, `cp -a`)
/// synced over the location and rolled it back, deleting what the newer index listed;
/// and a directory fenced at a location took it back by syncing elsewhere first (its
/// state file then named the other location, so the old one looked new to it). A
/// directory now publishes over an index only if it published it (or attached from it),
/// and syncs to a location holding the store only if it holds a generation there.
#[test]
fn regression_a_stale_copy_or_a_fenced_directory_cannot_roll_a_location_back() {
    let server = S3Server::start();
    let endpoint = server.endpoint();
    let root = tempfile::tempdir().unwrap();
    let page = |fill: u8| {
        let path = root.path().join(format!("page-{fill}"));
        std::fs::write(&path, vec![fill; 8192]).unwrap();
        path
    };
    let put = |dir: &Path, block: &str, fill: u8| {
        let file = page(fill);
        let put = pagefork(
            dir,
            &[
                "page",
                "put",
                "main",
                "1",
                block,
                "--file",
                file.to_str().unwrap(),
            ],
        );
        assert!(put.status.success());
    };
    let sync = |dir: &Path, url: &str| {
        with_credentials(
            dir,
            &[
                "--json",
                "sync",
                "--remote",
                url,
                "--s3-endpoint",
                &endpoint,
            ],
        )
    };
    let refused_as_not_ours = |output: Output| {
        assert!(!output.status.success());
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains("did not publish"), "{message}");
    };

    // A stale copy of the directory.
    let url = format!("s3://{BUCKET}/roll");
    let (store, stale) = (root.path().join("store"), root.path().join("stale"));
    ok_json(pagefork(&store, &["--json", "init"]));
    put(&store, "0", 1);
    ok_json(sync(&store, &url));
    let copied = std::process::Command::new("cp")
        .args(["-a", store.to_str().unwrap(), stale.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    put(&store, "1", 2);
    let newer = ok_json(sync(&store, &url));
    let keys = server.object_keys("roll");
    put(&stale, "1", 3);
    refused_as_not_ours(sync(&stale, &url));
    assert_eq!(
        server.object_keys("roll"),
        keys,
        "a refused sync changed the bucket"
    );
    put(&store, "2", 4);
    let after = ok_json(sync(&store, &url));
    assert!(
        after["recovery_point"] != newer["recovery_point"],
        "{after}"
    );

    // A fenced directory syncing elsewhere, then back.
    let url = format!("s3://{BUCKET}/fence");
    let elsewhere = format!("s3://{BUCKET}/fence-elsewhere");
    let (old, new) = (root.path().join("old"), root.path().join("new"));
    ok_json(pagefork(&old, &["--json", "init"]));
    put(&old, "0", 5);
    ok_json(sync(&old, &url));
    ok_json(with_credentials(
        &new,
        &[
            "--json",
            "attach",
            "--remote",
            &url,
            "--s3-endpoint",
            &endpoint,
        ],
    ));
    put(&new, "1", 6);
    ok_json(sync(&new, &url));
    put(&old, "1", 7);
    assert!(
        !sync(&old, &url).status.success(),
        "a fenced directory synced"
    );
    ok_json(sync(&old, &elsewhere));
    refused_as_not_ours(sync(&old, &url));
    put(&new, "2", 8);
    ok_json(sync(&new, &url));
    let attached = root.path().join("attached");
    ok_json(with_credentials(
        &attached,
        &[
            "--json",
            "attach",
            "--remote",
            &url,
            "--s3-endpoint",
            &endpoint,
            "--no-claim",
        ],
    ));
    let read = pagefork(&attached, &["page", "get", "main", "1", "1"]);
    assert_eq!(read.stdout, vec![6u8; 8192], "the location was rolled back");
}

/// Found by a review: `sync --remote URL` without `--s3-endpoint` went to AWS itself, not
/// to the server the store's `pagefork.remote` records for that location (which every
/// other command reads evicted layers from); and a sync naming the server's new address
/// after it moved did not record it, so reads of evicted layers kept going to the old one.
#[test]
fn regression_sync_uses_the_recorded_server_and_records_a_new_one() {
    let mut server = S3Server::start();
    let url = format!("s3://{BUCKET}/cli/moved");
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    ok_json(pagefork(&store, &["--json", "demo"]));
    let sync = |endpoint: Option<&str>| {
        let mut args = vec![
            "--json",
            "sync",
            "--remote",
            &url,
            "--local-cache-bytes",
            "0",
        ];
        if let Some(endpoint) = endpoint {
            args.extend(["--s3-endpoint", endpoint]);
        }
        ok_json(with_credentials(&store, &args))
    };
    let old = server.endpoint();
    sync(Some(&old));
    sync(None);
    // The server moves to another port.
    server.stop();
    let held = std::net::TcpListener::bind(old.trim_start_matches("http://")).unwrap();
    server.restart();
    drop(held);
    let new = server.endpoint();
    assert_ne!(new, old);
    sync(Some(&new));
    assert_eq!(residency(&store).0, 0, "every layer is evicted");
    // Every layer read back, from the server's new address.
    inspect_every_layer(&store);
}

/// Found by a review: an attach killed (or cut off from the server) before it could give
/// its generation back leaves its marker, and the writer was fenced by it for good, with
/// no way out said. The refusal now names the marker, and deleting it (once sure the
/// attach is gone) lets the writer sync on. The killed attach's marker is played by a
/// copy of the writer's own.
#[test]
fn regression_a_writer_fenced_by_a_dead_attach_is_told_the_way_out() {
    let server = S3Server::start();
    let url = format!("s3://{BUCKET}/cli/dead-attach");
    let endpoint = server.endpoint();
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    ok_json(pagefork(&store, &["--json", "init"]));
    let sync = || sync_json(&store, &url, &endpoint);
    assert_eq!(ok_json(sync())["generation"], 1);
    let marker = server.object_file("cli/dead-attach/generations/00000002");
    std::fs::copy(
        server.object_file("cli/dead-attach/generations/00000001"),
        &marker,
    )
    .unwrap();
    let fenced = sync();
    let message = String::from_utf8_lossy(&fenced.stderr);
    assert!(
        !fenced.status.success() && message.contains("delete generations/00000002"),
        "{message}"
    );
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(ok_json(sync())["generation"], 1);
}

/// Found by a review: each `pagefork sync` (a new process each time) uploaded the
/// metadata file and the catalog again under new keys, published a new index and deleted
/// the copies it replaced, with nothing changed; a backup check (`attach --no-claim`)
/// running meanwhile found objects its index listed gone and called the backup damaged.
/// A sync with nothing new now uploads, publishes and deletes nothing, and one after a
/// commit uploads only the log it gained.
#[test]
fn regression_a_sync_with_nothing_new_uploads_nothing() {
    let server = S3Server::start();
    let url = format!("s3://{BUCKET}/cli/quiet");
    let endpoint = server.endpoint();
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    ok_json(pagefork(&store, &["--json", "init"]));
    let put = |block: &str| {
        let output = pagefork_with_stdin(&store, &["page", "put", "main", "7", block], &[7; 8192]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let sync = || ok_json(sync_json(&store, &url, &endpoint));
    put("0");
    assert!(sync()["uploaded_objects"].as_u64().unwrap() > 0);
    let objects = || {
        // Each object's key and a hash of its bytes (a failure prints a short list).
        let mut files: Vec<(String, u64)> = server
            .object_keys("cli/quiet")
            .into_iter()
            .map(|key| {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(server.object_file(&key))
                    .unwrap()
                    .hash(&mut hasher);
                (key, hasher.finish())
            })
            .collect();
        files.sort();
        files
    };
    let before = objects();
    let again = sync();
    assert_eq!(
        (&again["uploaded_objects"], &again["deleted_objects"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "{again}"
    );
    assert_eq!(
        objects(),
        before,
        "a sync with nothing new changed the bucket"
    );
    put("1");
    let after_commit = sync();
    assert_eq!(after_commit["uploaded_objects"], 1, "{after_commit}");
    assert_eq!(after_commit["deleted_objects"], 0, "{after_commit}");
    // The copy attached from it holds the commit.
    let copy = root.path().join("copy");
    ok_json(with_credentials(
        &copy,
        &[
            "--json",
            "attach",
            "--remote",
            &url,
            "--s3-endpoint",
            &endpoint,
            "--no-claim",
        ],
    ));
    let page = pagefork(&copy, &["page", "get", "main", "7", "1"]);
    assert_eq!(page.stdout, vec![7; 8192]);
}
