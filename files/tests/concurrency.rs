//! Many threads on one tree at once, as FUSE's worker threads call it: each thread owns
//! some files and checks every byte it reads back against its own copy, while the others
//! create, write, truncate, rename and unlink beside it.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;

use pagefork_engine::{Config, Store};
use pagefork_files::{FileTree, Owner, SetAttributes, TreeOptions};

const PAGE: usize = 8192;

fn rng(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn threads_writing_their_own_files_read_back_exactly_what_they_wrote() {
    let dir = tempfile::tempdir().unwrap();
    // Small thresholds: flushes, compaction, image layers and WAL removal run all along.
    let config = Config {
        layer_flush_bytes: 256 << 10,
        checkpoint_after_bytes: 1 << 20,
        compact_l0_layers: 2,
        l1_layer_bytes: 512 << 10,
        image_after_deltas: 2,
        image_after_changed_percent: 0,
        ..Config::default()
    };
    let store = Store::create(dir.path(), config).unwrap();
    let tree = Arc::new(FileTree::open(store, "main", TreeOptions::default()).unwrap());
    let owner = Owner {
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    std::thread::scope(|scope| {
        for thread in 0..8u64 {
            let tree = Arc::clone(&tree);
            scope.spawn(move || {
                let mut seed = thread + 1;
                let name = |index: u64| format!("t{thread}-f{index}").into_bytes();
                let mut files: Vec<(u64, Vec<u8>, u64)> = Vec::new();
                for index in 0..4 {
                    let made = tree.create_file(tree.root(), &name(index), owner).unwrap();
                    tree.forget(made.ino, 1).unwrap();
                    files.push((made.ino, Vec::new(), index));
                }
                for step in 0..400 {
                    let pick = (rng(&mut seed) % files.len() as u64) as usize;
                    let (ino, copy, index) = &mut files[pick];
                    match rng(&mut seed) % 10 {
                        0 => {
                            let size = rng(&mut seed) % (copy.len() as u64 + 3 * PAGE as u64);
                            tree.set_attributes(
                                *ino,
                                SetAttributes {
                                    size: Some(size),
                                    ..Default::default()
                                },
                            )
                            .unwrap();
                            copy.resize(size as usize, 0);
                        }
                        1 => {
                            let new_index = *index + 100;
                            tree.rename(
                                tree.root(),
                                &name(*index),
                                tree.root(),
                                &name(new_index),
                                false,
                            )
                            .unwrap();
                            *index = new_index;
                        }
                        2 => {
                            tree.unlink(tree.root(), &name(*index)).unwrap();
                            let made = tree.create_file(tree.root(), &name(*index), owner).unwrap();
                            tree.forget(made.ino, 1).unwrap();
                            *ino = made.ino;
                            copy.clear();
                        }
                        _ => {
                            let aligned = rng(&mut seed).is_multiple_of(2);
                            let block = rng(&mut seed) % 40;
                            let (offset, len) = if aligned {
                                (
                                    block * PAGE as u64,
                                    PAGE * (1 + (rng(&mut seed) % 3) as usize),
                                )
                            } else {
                                (
                                    block * PAGE as u64 + rng(&mut seed) % 9000,
                                    1 + (rng(&mut seed) % 20000) as usize,
                                )
                            };
                            let byte = (rng(&mut seed) % 250) as u8 + 1;
                            let data: Vec<u8> =
                                (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
                            tree.write(*ino, offset, &data).unwrap();
                            let end = offset as usize + len;
                            if copy.len() < end {
                                copy.resize(end, 0);
                            }
                            copy[offset as usize..end].copy_from_slice(&data);
                        }
                    }
                    let read = tree.read(*ino, 0, u32::MAX).unwrap();
                    assert_eq!(read.len(), copy.len(), "thread {thread} step {step}: size");
                    if read != *copy {
                        let first = read
                            .iter()
                            .zip(copy.iter())
                            .position(|(a, b)| a != b)
                            .unwrap();
                        panic!("thread {thread} step {step}: byte {first} differs");
                    }
                    assert_eq!(tree.attributes(*ino).unwrap().size, copy.len() as u64);
                }
            });
        }
    });
}
