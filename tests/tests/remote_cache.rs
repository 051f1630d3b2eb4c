//! Local disk as a cache of the bucket, against a real S3 server (`s3s-fs`): a store larger
//! than its cache serves every read at every LSN correctly and never holds more than its
//! budget plus one layer file; a lazy attach downloads each layer file only when a read
//! needs it; a damaged object is refused naming its key; a fenced process evicts nothing
//! more (a newer generation may delete what its own indexes no longer list).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;

use pagefork_engine::{At, Config, EngineError, Key, LayerCacheConfig, LayerSource, Store};
use pagefork_remote::{RemoteError, RemoteLayers, RemoteLocation, Uploader};
use pagefork_tests::layered::{Expected, PAGE, check_reads, layer_dir_entries, write_rounds};
use pagefork_tests::s3::S3Server;
use pagefork_tests::{engine_config, manual_housekeeping};
use pagefork_wal::SyncMode;

fn config(source: Option<&Arc<RemoteLayers>>, budget: Option<u64>) -> Config {
    let (config, _clock) = engine_config(SyncMode::Always);
    Config {
        page_size: PAGE,
        layer_cache: source.map(|source| LayerCacheConfig {
            source: Arc::clone(source) as Arc<dyn LayerSource>,
            budget_bytes: budget,
        }),
        ..manual_housekeeping(config)
    }
}

/// A store of `rounds` rounds with a layer cache over `location`, synced.
fn synced_store(
    dir: &std::path::Path,
    location: &RemoteLocation,
    budget: Option<u64>,
    rounds: u8,
) -> (Store, Arc<RemoteLayers>, Uploader, Expected) {
    let source = RemoteLayers::new(location);
    let store = Store::create(dir, config(Some(&source), budget)).unwrap();
    let expected = write_rounds(&store, rounds);
    let mut uploader =
        Uploader::connect_with_layers(location, &store, Some(Arc::clone(&source))).unwrap();
    uploader.sync(&store).unwrap();
    (store, source, uploader, expected)
}

fn largest_layer(store: &Store) -> u64 {
    let files = store.pin_published().unwrap();
    store.unpin_published();
    files.layers.iter().map(|layer| layer.size).max().unwrap()
}

#[test]
fn a_store_larger_than_its_cache_serves_every_read_within_the_budget() {
    let server = S3Server::start();
    let location = server.location("cache/budget");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let (store, _source, mut uploader, expected) =
        synced_store(&data, &location, Some(1_000_000), 8);
    let largest = largest_layer(&store);
    let total = store.layer_cache_stats().unwrap().resident_bytes;
    let budget = 1_000_000;
    assert!(
        total > 3 * budget,
        "the store ({total} bytes) must outgrow its cache"
    );

    // The sync made every layer evictable: down to the budget now.
    let stats = store.evict_layers_over_budget().unwrap();
    assert!(stats.resident_bytes <= budget, "{stats:?}");
    assert!(stats.evicted_layers > 0);
    check_reads(&store, &expected, |store| {
        let stats = store.layer_cache_stats().unwrap();
        assert!(
            stats.resident_bytes <= budget + largest,
            "{stats:?}: over the budget by more than one layer ({largest} bytes)"
        );
    });
    let stats = store.layer_cache_stats().unwrap();
    assert!(stats.downloads > 0 && stats.evictions > 0, "{stats:?}");
    let (files, markers) = layer_dir_entries(&data);
    assert_eq!(
        (files as u64, markers as u64),
        (stats.resident_layers, stats.evicted_layers)
    );

    // New writes, a sync, and the reads again after reopening with every layer evicted.
    uploader.sync(&store).unwrap();
    store.evict_layers_to(0).unwrap();
    drop(uploader);
    drop(store);
    let source = RemoteLayers::new(&location);
    let store = Store::open_with(&data, config(Some(&source), Some(budget))).unwrap();
    check_reads(&store, &expected, |_| {});
}

#[test]
fn a_lazy_attach_downloads_a_layer_only_when_a_read_needs_it() {
    let server = S3Server::start();
    let location = server.location("cache/lazy");
    let dir = tempfile::tempdir().unwrap();
    let (store, _source, _uploader, expected) =
        synced_store(&dir.path().join("first"), &location, None, 5);
    let layers = store.layer_cache_stats().unwrap().resident_layers;
    drop(store);

    let second = dir.path().join("second");
    let report = pagefork_remote::attach_lazily(&location, &second).unwrap();
    assert_eq!(layer_dir_entries(&second), (0, layers as usize));
    assert!(
        report.downloaded_bytes < 200_000,
        "a lazy attach downloaded {} bytes",
        report.downloaded_bytes
    );
    let source = RemoteLayers::new(&location);
    let store = Store::open_with(&second, config(Some(&source), None)).unwrap();
    let stats = store.layer_cache_stats().unwrap();
    assert_eq!(
        (stats.resident_layers, stats.downloads),
        (0, 0),
        "{stats:?}"
    );

    // One page of main at its head needs only main's newest layers.
    let (branch, lsn, block, page) = expected.last().unwrap();
    let read = store
        .get_page(branch, Key::new(1, *block), At::Lsn(*lsn))
        .unwrap();
    assert_eq!(read.as_ref(), page.as_ref());
    let after_one = store.layer_cache_stats().unwrap();
    assert!(
        after_one.downloads >= 1 && after_one.downloads < layers,
        "{after_one:?} of {layers} layers"
    );
    check_reads(&store, &expected, |_| {});
    assert_eq!(
        layer_dir_entries(&second).1 as u64,
        store.layer_cache_stats().unwrap().evicted_layers
    );

    // Evicted again, and without the source, the store is refused, naming the layer.
    let stats = store.evict_layers_to(0).unwrap();
    assert_eq!(stats.evicted_layers, layers, "{stats:?}");
    drop(store);
    match Store::open_with(&second, config(None, None)) {
        Err(error) => assert!(error.to_string().contains("evicted"), "{error}"),
        Ok(_) => panic!("a store with evicted layers opened without their source"),
    }
}

#[test]
fn a_damaged_layer_object_is_refused_naming_its_key() {
    let server = S3Server::start();
    let location = server.location("cache/damaged");
    let dir = tempfile::tempdir().unwrap();
    let (store, _source, _uploader, expected) =
        synced_store(&dir.path().join("store"), &location, None, 2);
    store.evict_layers_to(0).unwrap();
    let damaged: Vec<String> = server
        .object_keys("cache/damaged/layers")
        .into_iter()
        .collect();
    assert!(!damaged.is_empty());
    for key in &damaged {
        let path = server.object_file(key);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[200] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    }
    let (branch, lsn, block, _) = &expected[0];
    match store.get_page(branch, Key::new(1, *block), At::Lsn(*lsn)) {
        Err(EngineError::LayerFetch { reason, .. }) => {
            assert!(reason.contains("cache/damaged/layers/"), "{reason}");
            assert!(reason.contains("CRC32"), "{reason}");
        }
        other => panic!("a damaged object was read: {other:?}"),
    }
    assert_eq!(layer_dir_entries(&dir.path().join("store")).0, 0);
}

#[test]
fn a_fenced_process_evicts_nothing_more() {
    let server = S3Server::start();
    let location = server.location("cache/fenced");
    let dir = tempfile::tempdir().unwrap();
    let (store, _source, mut uploader, _expected) =
        synced_store(&dir.path().join("old"), &location, None, 3);
    pagefork_remote::attach(&location, &dir.path().join("new")).unwrap();
    match uploader.sync(&store) {
        Err(RemoteError::Fenced { .. }) => {}
        other => panic!("the older process was not fenced: {other:?}"),
    }
    let before = store.layer_cache_stats().unwrap();
    let after = store.evict_layers_to(0).unwrap();
    assert_eq!(after.evictions, before.evictions, "{after:?}");
    assert_eq!(after.resident_bytes, before.resident_bytes);
}
