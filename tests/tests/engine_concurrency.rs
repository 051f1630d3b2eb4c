//! Concurrency: writers on different branches commit at the same time (sharing fsyncs)
//! while readers read; every reader sees only its branch's own writes, in order, and the
//! parent stays untouched. After reopening, everything is as it was, and replay confirms
//! commit times never decrease along the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use pagefork_engine::{At, BranchOptions, Key, Store, SyncMode, Update};
use pagefork_tests::{TEST_PAGE_SIZE, engine_config, page_of};

const WRITERS: u8 = 8;
const COMMITS_PER_WRITER: u16 = 100;
const KEYS: u32 = 8;

/// Page content: writer id, then the commit number (little-endian), then zeros.
fn page_for(writer: u8, commit: u16) -> Bytes {
    let mut page = vec![0u8; TEST_PAGE_SIZE];
    page[0] = writer;
    page[1..3].copy_from_slice(&commit.to_le_bytes());
    Bytes::from(page)
}

fn decode(page: &[u8]) -> (u8, u16) {
    (page[0], u16::from_le_bytes([page[1], page[2]]))
}

#[test]
fn writers_on_different_branches_and_readers_run_together() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), config.clone()).unwrap();
    let base = (0..KEYS)
        .map(|block| (Key::new(2, block), Update::Image(page_of(200))))
        .collect();
    store.commit("main", base).unwrap();
    for writer in 0..WRITERS {
        store
            .create_branch(
                &format!("w{writer}"),
                "main",
                At::Latest,
                BranchOptions::default(),
            )
            .unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let store = &store;
                scope.spawn(move || {
                    for commit in 0..COMMITS_PER_WRITER {
                        let key = Key::new(2, u32::from(commit) % KEYS);
                        store
                            .commit(
                                &format!("w{writer}"),
                                vec![(key, Update::Image(page_for(writer, commit)))],
                            )
                            .unwrap();
                    }
                })
            })
            .collect();
        for reader in 0..2u8 {
            let (store, done) = (&store, Arc::clone(&done));
            scope.spawn(move || {
                let mut last_seen = vec![vec![None; KEYS as usize]; WRITERS as usize];
                while !done.load(Ordering::Acquire) {
                    for block in 0..KEYS {
                        let key = Key::new(2, block);
                        let main = store.get_page("main", key, At::Latest).unwrap().unwrap();
                        assert_eq!(main[0], 200, "main is never touched by its children");
                        for writer in 0..WRITERS {
                            let page = store
                                .get_page(&format!("w{writer}"), key, At::Latest)
                                .unwrap()
                                .unwrap();
                            let seen = &mut last_seen[writer as usize][block as usize];
                            if page[0] == 200 {
                                assert!(
                                    seen.is_none(),
                                    "reader {reader}: w{writer} {key} went back to the base"
                                );
                                continue;
                            }
                            let (owner, commit) = decode(&page);
                            assert_eq!(
                                owner, writer,
                                "reader {reader}: w{writer} shows another branch's write"
                            );
                            assert!(
                                *seen <= Some(commit),
                                "reader {reader}: w{writer} {key} went back in time"
                            );
                            *seen = Some(commit);
                        }
                    }
                }
            });
        }
        for writer in writers {
            writer.join().unwrap();
        }
        done.store(true, Ordering::Release);
    });

    let check = |store: &Store| {
        for writer in 0..WRITERS {
            for block in 0..KEYS {
                let page = store
                    .get_page(&format!("w{writer}"), Key::new(2, block), At::Latest)
                    .unwrap()
                    .unwrap();
                let last_commit_on_key = (0..COMMITS_PER_WRITER)
                    .filter(|c| u32::from(*c) % KEYS == block)
                    .max()
                    .unwrap();
                assert_eq!(decode(&page), (writer, last_commit_on_key));
            }
        }
    };
    check(&store);
    drop(store);
    let reopened = Store::open_with(dir.path(), config).unwrap();
    check(&reopened);
}
