//! I/O-error loops in the style of SQLite's: a fixed workload (commits on two branches, a
//! branch creation, checkpoints, a compaction, GC, a detach) on `SimFileSystem`, run once
//! for every N with the Nth operation of one kind failing (write, sync, rename, read,
//! create, remove), once or from then on, until the workload completes without reaching
//! N.
//!
//! After the first error the workload stops, and: every acknowledged page reads back
//! right or is refused with an error, never wrong data; then the power is cut (the faults
//! cleared), the store must open, and every acknowledged commit and branch must be there,
//! each page as last acknowledged (or as the one failed commit wrote it, whole, if its
//! record reached the disk anyway).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use pagefork_engine::sim::{Fault, OpKind, SimFileSystem};
use pagefork_engine::{At, BranchOptions, Config, EngineError, Key, Store, SyncMode, Update};
use pagefork_tests::{TEST_PAGE_SIZE, engine_config, manual_housekeeping};

const DIR: &str = "/store";

fn config(fs: &SimFileSystem) -> Config {
    let (config, _clock) = engine_config(SyncMode::Always);
    let mut config = manual_housekeeping(config);
    config.fs = Arc::new(fs.clone());
    config.housekeeping_thread = false;
    config
}

fn page(fill: u8) -> Bytes {
    Bytes::from(vec![fill; TEST_PAGE_SIZE])
}

/// What the workload got acknowledged: the last page written per (branch, key), the
/// branches created, and the one commit that failed, if it did.
#[derive(Default, Debug)]
struct Acknowledged {
    pages: BTreeMap<(String, Key), u8>,
    branches: Vec<String>,
    failed_commit: Option<(String, Key, u8)>,
}

/// Runs the workload until its first error; returns the store, or `None` if it could not
/// even be created.
fn workload(fs: &SimFileSystem, acked: &mut Acknowledged) -> Option<Store> {
    let store = Store::create(DIR, config(fs)).ok()?;
    acked.branches.push("main".to_owned());
    let outcome = (|| -> pagefork_engine::Result<()> {
        for i in 0..14u8 {
            let commit = |branch: &str, key: Key, fill: u8, acked: &mut Acknowledged| {
                acked.failed_commit = Some((branch.to_owned(), key, fill));
                store.commit(branch, vec![(key, Update::Image(page(fill)))])?;
                acked.failed_commit = None;
                acked.pages.insert((branch.to_owned(), key), fill);
                Ok::<(), pagefork_engine::EngineError>(())
            };
            commit("main", Key::new(1, u32::from(i % 5)), i, acked)?;
            match i {
                3 => {
                    store.create_branch("dev", "main", At::Latest, BranchOptions::default())?;
                    acked.branches.push("dev".to_owned());
                    // dev sees main's pages as of now.
                    let inherited: Vec<(Key, u8)> = acked
                        .pages
                        .iter()
                        .filter(|((branch, _), _)| branch == "main")
                        .map(|((_, key), fill)| (*key, *fill))
                        .collect();
                    for (key, fill) in inherited {
                        acked.pages.insert(("dev".to_owned(), key), fill);
                    }
                }
                5 | 12 => {
                    store.checkpoint()?;
                }
                8 => {
                    store.compact()?;
                }
                10 => {
                    store.gc()?;
                }
                11 => {
                    store.detach_branch("dev")?;
                }
                _ => {}
            }
            if i > 3 && i % 2 == 1 {
                commit("dev", Key::new(2, u32::from(i % 3)), 100 + i, acked)?;
            }
        }
        store.checkpoint()?;
        Ok(())
    })();
    if outcome.is_ok() {
        acked.failed_commit = None;
    }
    Some(store)
}

/// Every acknowledged page reads right, or (before recovery) is refused with an error.
fn check_reads(store: &Store, acked: &Acknowledged, errors_allowed: bool, context: &str) {
    for ((branch, key), fill) in &acked.pages {
        match store.get_page(branch, *key, At::Latest) {
            Ok(Some(bytes)) => {
                let failed_write = acked
                    .failed_commit
                    .as_ref()
                    .filter(|(failed_branch, failed_key, _)| {
                        failed_branch == branch && failed_key == key
                    })
                    .map(|(_, _, failed_fill)| *failed_fill);
                let expected = bytes[..] == page(*fill)[..]
                    || failed_write.is_some_and(|failed| bytes[..] == page(failed)[..]);
                assert!(expected, "{context}: {branch} {key} reads wrong data");
            }
            Ok(None) => panic!("{context}: acknowledged {branch} {key} is missing"),
            Err(error) => assert!(errors_allowed, "{context}: {branch} {key}: {error}"),
        }
    }
}

#[test]
fn an_io_error_at_every_operation_of_every_kind_loses_nothing_acknowledged() {
    let (mut runs, mut failures) = (0, 0);
    for kind in OpKind::ALL {
        for fault in [Fault::FailOnce, Fault::FailFromThenOn] {
            for nth in 1.. {
                let fs = SimFileSystem::new(nth);
                fs.inject(kind, nth, fault);
                let mut acked = Acknowledged::default();
                let store = workload(&fs, &mut acked);
                runs += 1;
                let context = format!("{kind:?} #{nth} {fault:?}");
                if fs.op_count(kind) < nth {
                    // The workload completed without reaching the fault: this kind is done.
                    let store = store.expect("the store was created");
                    check_reads(&store, &acked, false, &context);
                    break;
                }
                failures += 1;
                let Some(store) = store else {
                    // Creating the store failed: nothing was acknowledged.
                    continue;
                };
                check_reads(&store, &acked, true, &context);
                // After the I/O error the store refuses writes until it is reopened.
                let refused = store.commit("main", vec![(Key::new(9, 9), Update::Image(page(9)))]);
                assert!(
                    matches!(refused, Err(EngineError::Poisoned { .. })),
                    "{context}: a write after an I/O error: {refused:?}"
                );
                let refused = store.checkpoint();
                assert!(
                    matches!(refused, Err(EngineError::Poisoned { .. })),
                    "{context}: a checkpoint after an I/O error: {refused:?}"
                );
                fs.clear_faults();
                fs.crash();
                drop(store);
                let reopened = Store::open_with(DIR, config(&fs))
                    .unwrap_or_else(|error| panic!("{context}: the store does not open: {error}"));
                let names: Vec<String> = reopened
                    .list_branches()
                    .into_iter()
                    .map(|info| info.name)
                    .collect();
                for branch in &acked.branches {
                    assert!(
                        names.contains(branch),
                        "{context}: branch {branch} lost: {names:?}"
                    );
                }
                check_reads(&reopened, &acked, false, &context);
                assert!(nth < 100_000, "{context}: the workload never completes");
            }
        }
    }
    eprintln!(
        "{runs} runs, {failures} with an injected I/O error: every store reopened after a power cut, nothing acknowledged lost"
    );
    assert!(failures > 200, "{failures}");
}

#[test]
fn an_fsync_error_while_publishing_poisons_the_store_until_it_is_reopened() {
    let fs = SimFileSystem::new(5);
    let store = Store::create(DIR, config(&fs)).unwrap();
    let key = Key::new(1, 1);
    let first = store
        .commit("main", vec![(key, Update::Image(page(1)))])
        .unwrap();
    // The checkpoint's first fsync (a layer file) fails; the WAL is untouched.
    fs.inject(OpKind::Sync, fs.op_count(OpKind::Sync) + 1, Fault::FailOnce);
    let failed = store.checkpoint().unwrap_err();
    assert!(failed.to_string().contains("injected"), "{failed}");
    let refused = store
        .commit("main", vec![(key, Update::Image(page(2)))])
        .unwrap_err();
    assert!(matches!(refused, EngineError::Poisoned { .. }), "{refused}");
    assert!(refused.to_string().contains("injected"), "{refused}");
    assert!(
        store
            .create_branch("dev", "main", At::Latest, BranchOptions::default())
            .is_err()
    );
    assert!(store.checkpoint().is_err());
    // Reads go on.
    assert_eq!(
        store.get_page("main", key, At::Latest).unwrap().unwrap(),
        page(1)
    );
    drop(store);
    let store = Store::open_with(DIR, config(&fs)).unwrap();
    assert_eq!(
        store
            .get_page("main", key, At::Lsn(first.lsn))
            .unwrap()
            .unwrap(),
        page(1)
    );
    store
        .commit("main", vec![(key, Update::Image(page(3)))])
        .unwrap();
    store.checkpoint().unwrap();
}
