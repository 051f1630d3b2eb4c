//! Branch listings over HTTP at 10,000 branches (issue 19's goal: a page of 100 under
//! 5 ms, the whole listing under 50 ms), against the real `pagefork serve` on loopback:
//! the first page, a page from the middle (by cursor), a filtered page, and everything.
//! The store is made with the engine directly (10,001 branches), then served.

#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::process::Child;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pagefork_engine::{At, BranchOptions, Config, Store, SyncMode};

const BRANCHES: usize = 10_000;

struct Served {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_many_branches() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        sync_mode: SyncMode::Never,
        ..Config::default()
    };
    let store = Store::create(dir.path().join("projects/p"), config).unwrap();
    for index in 0..BRANCHES {
        let name = format!("dev/{index:05}");
        store
            .create_branch(&name, "main", At::Latest, BranchOptions::default())
            .unwrap();
    }
    store.checkpoint().unwrap();
    drop(store);
    let (child, base) = support::start_serve(dir.path());
    Served {
        child,
        base,
        _dir: dir,
    }
}

fn listing(c: &mut Criterion) {
    let served = serve_many_branches();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let get = |path: &str| -> Vec<u8> {
        agent
            .get(format!("{}/v1/projects/p/branches{path}", served.base))
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap()
    };
    let mut group = c.benchmark_group(format!("http_listing_{}_branches", BRANCHES + 1));
    group.sample_size(20);
    group.bench_function("first_page_of_100", |b| b.iter(|| get("?limit=100")));
    group.bench_function("page_of_100_from_the_middle", |b| {
        b.iter(|| get("?limit=100&cursor=dev%2F05000"))
    });
    group.bench_function("page_of_100_by_name_prefix", |b| {
        b.iter(|| get("?limit=100&name_prefix=dev%2F07"))
    });
    group.bench_function("everything", |b| b.iter(|| get("")));
    group.finish();
}

criterion_group!(benches, listing);
criterion_main!(benches);
