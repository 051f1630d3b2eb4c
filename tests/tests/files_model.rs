//! The file tree (`pagefork_files::FileTree`) against a plain model, on the simulated disk:
//! random creates, writes at odd offsets and lengths (holes, past 4 GiB), truncations up
//! and down, chmods, unlinks, rmdirs and renames (with the refusals each must give), with
//! reopens, files held open while unlinked, read-only views at earlier LSNs and times,
//! branches at earlier LSNs written to, and power cuts. After a cut the tree must be
//! exactly the model as of some operation no earlier than the last `sync`: every operation
//! whole or absent, in order. (A change of names is written to the log when it returns,
//! which outlives a killed process but not a power cut: `mount_basics` kills the real
//! mount for that.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pagefork_engine::sim::{SimFileSystem, TornFill};
use pagefork_engine::{
    At, BranchOptions, Clock, Config, Lsn, ManualClock, Store, SyncMode, Timestamp,
};
use pagefork_files::{
    Difference, FileChange, FileKind, FileTree, FsError, Owner, SetAttributes, TreeOptions,
};
use pagefork_tests::files_model::{
    FileOp, Model, Node, OpLimits, Outcome, SparseFile, Special, random_op,
};
use pagefork_tests::{TestRng, run_seeds};

const PAGE_SIZE: usize = 8192;

fn config(fs: &SimFileSystem, clock: &ManualClock) -> Config {
    Config {
        page_size: PAGE_SIZE,
        sync_mode: SyncMode::Always,
        clock: Arc::new(clock.clone()),
        fs: Arc::new(fs.clone()),
        housekeeping_thread: false,
        // Small thresholds, so runs go through flushes, compaction, images and WAL
        // removal; 1 MiB segments hold a 1 MiB write's commit... less its metadata.
        wal_segment_size: 2 << 20,
        checkpoint_after_bytes: 1 << 20,
        layer_flush_bytes: 256 << 10,
        memory_budget_bytes: u64::MAX,
        compact_l0_layers: 3,
        l1_layer_bytes: 512 << 10,
        image_after_deltas: 3,
        ..Config::default()
    }
}

fn options(clock: &ManualClock, at: At) -> TreeOptions {
    TreeOptions {
        read_only: at != At::Latest,
        at,
        clock: Arc::new(clock.clone()),
        ..TreeOptions::default()
    }
}

/// The name `FileOp` outcomes use for a refusal.
fn refusal(error: &FsError) -> &'static str {
    match error {
        FsError::NotFound { .. } | FsError::NoInode { .. } => "NotFound",
        FsError::Exists { .. } => "Exists",
        FsError::NotDirectory { .. } => "NotDirectory",
        FsError::IsDirectory { .. } => "IsDirectory",
        FsError::NotEmpty { .. } => "NotEmpty",
        FsError::NameTooLong { .. } => "NameTooLong",
        FsError::InvalidName { .. } => "InvalidName",
        FsError::IntoOwnSubtree { .. } => "IntoOwnSubtree",
        other => panic!("unexpected failure: {other}"),
    }
}

fn resolve(tree: &FileTree, path: &[Vec<u8>]) -> Result<u64, FsError> {
    let mut ino = tree.root();
    for name in path {
        let found = tree.lookup(ino, name)?;
        tree.forget(found.ino, 1)?;
        ino = found.ino;
    }
    Ok(ino)
}

fn split(path: &[Vec<u8>]) -> (&[Vec<u8>], &[u8]) {
    let (name, dir) = path.split_last().expect("operations name a path");
    (dir, name)
}

/// Runs `op` on the tree, as the model names outcomes.
fn run(tree: &FileTree, op: &FileOp) -> Outcome {
    let owner = |mode| Owner {
        mode,
        uid: 0,
        gid: 0,
    };
    let result: Result<(), FsError> = (|| match op {
        FileOp::Create(dir, name, mode) => {
            let made = tree.create_file(resolve(tree, dir)?, name, owner(*mode))?;
            tree.forget(made.ino, 1)
        }
        FileOp::Mkdir(dir, name, mode) => {
            let made = tree.make_directory(resolve(tree, dir)?, name, owner(*mode))?;
            tree.forget(made.ino, 1)
        }
        FileOp::Symlink(dir, name, target) => {
            let made = tree.symlink(resolve(tree, dir)?, name, target, 0, 0)?;
            tree.forget(made.ino, 1)
        }
        FileOp::Mknod(dir, name, special, mode) => {
            let (kind, rdev) = special_kind(*special);
            let made = tree.make_node(resolve(tree, dir)?, name, kind, owner(*mode), rdev)?;
            tree.forget(made.ino, 1)
        }
        FileOp::Write(path, offset, data) => {
            let written = tree.write(resolve(tree, path)?, *offset, data)?;
            assert_eq!(written.bytes as usize, data.len());
            Ok(())
        }
        FileOp::Truncate(path, size) => {
            let changes = SetAttributes {
                size: Some(*size),
                ..SetAttributes::default()
            };
            tree.set_attributes(resolve(tree, path)?, changes).map(drop)
        }
        FileOp::Chmod(path, mode) => {
            let changes = SetAttributes {
                mode: Some(*mode),
                ..SetAttributes::default()
            };
            tree.set_attributes(resolve(tree, path)?, changes).map(drop)
        }
        FileOp::Unlink(path) => {
            let (dir, name) = split(path);
            tree.unlink(resolve(tree, dir)?, name)
        }
        FileOp::Rmdir(path) => {
            let (dir, name) = split(path);
            tree.remove_directory(resolve(tree, dir)?, name)
        }
        FileOp::Rename(from, to_dir, to_name) => {
            let (dir, name) = split(from);
            let (from_dir, to_dir) = (resolve(tree, dir)?, resolve(tree, to_dir)?);
            tree.rename(from_dir, name, to_dir, to_name, false)
        }
    })();
    result.map_err(|error| refusal(&error))
}

/// Asserts that the tree is exactly `model`: names, kinds, modes, link counts, sizes,
/// and the bytes around everything written (whole files up to 1 MiB).
fn check(tree: &FileTree, model: &Model, context: &str) {
    check_node(tree, tree.root(), &model.root, &format!("{context}: /"));
}

fn check_node(tree: &FileTree, ino: u64, node: &Node, path: &str) {
    let attributes = tree
        .attributes(ino)
        .unwrap_or_else(|error| panic!("{path}: {error}"));
    match node {
        Node::Dir(entries, mode) => {
            assert_eq!(attributes.kind, FileKind::Directory, "{path}");
            assert_eq!(attributes.mode, *mode, "{path}: mode");
            let listed = tree.read_dir(ino).unwrap();
            let names: Vec<&Vec<u8>> = listed.iter().map(|entry| &entry.name).collect();
            let expected: Vec<&Vec<u8>> = entries.keys().collect();
            assert_eq!(names, expected, "{path}: entries");
            let subdirs = entries
                .values()
                .filter(|node| matches!(node, Node::Dir(..)))
                .count();
            assert_eq!(attributes.nlink as usize, 2 + subdirs, "{path}: link count");
            for entry in listed {
                let child = &entries[&entry.name];
                let name = String::from_utf8_lossy(&entry.name);
                check_node(tree, entry.ino, child, &format!("{path}{name}/"));
            }
        }
        Node::File(file, mode) => {
            assert_eq!(attributes.kind, FileKind::File, "{path}");
            assert_eq!(attributes.mode, *mode, "{path}: mode");
            assert_eq!(attributes.nlink, 1, "{path}: link count");
            assert_eq!(attributes.size, file.size, "{path}: size");
            check_bytes(tree, ino, file, path);
        }
        Node::Link(target) => {
            assert_eq!(attributes.kind, FileKind::Symlink, "{path}");
            assert_eq!(&tree.read_link(ino).unwrap(), target, "{path}: target");
        }
        Node::Special(special, mode) => {
            let (kind, rdev) = special_kind(*special);
            assert_eq!((attributes.kind, attributes.rdev), (kind, rdev), "{path}");
            assert_eq!(attributes.mode, *mode, "{path}: mode");
            assert_eq!(attributes.nlink, 1, "{path}: link count");
        }
    }
}

/// Asserts that the file diff of `main` at `from` and branch `to` at its head is what
/// the models of the two states say: the paths added and removed exactly, and each path
/// in both (the root too) changed with at least the differences the models show (kind,
/// mode, size, bytes, target, device). A path the models agree on may differ only by its
/// pages or mtime (bytes rewritten as they were, a file replaced by one alike, a
/// directory whose entries changed), and a directory by its size.
fn check_file_diff(store: &Store, from: (Lsn, &Model), to: (&str, &Model), context: &str) {
    let ((from_lsn, before), (branch, after)) = (from, to);
    let pages = store
        .diff("main", At::Lsn(from_lsn), branch, At::Latest)
        .unwrap();
    let diff = pagefork_files::diff_trees(store, "main", branch, &pages).unwrap();
    let nodes = |model: &Model| -> BTreeMap<String, Node> {
        let text = |path: &[Vec<u8>]| -> String {
            path.iter()
                .map(|name| format!("/{}", String::from_utf8_lossy(name)))
                .collect()
        };
        std::iter::once(("/".to_owned(), model.root.clone()))
            .chain(
                model
                    .paths()
                    .into_iter()
                    .map(|(path, node)| (text(&path), node.clone())),
            )
            .collect()
    };
    let (old, new) = (nodes(before), nodes(after));
    let paths = |changes: &[FileChange]| -> Vec<String> {
        changes.iter().map(|change| change.path.clone()).collect()
    };
    let only = |one: &BTreeMap<String, Node>, other: &BTreeMap<String, Node>| -> Vec<String> {
        one.keys()
            .filter(|path| !other.contains_key(*path))
            .cloned()
            .collect()
    };
    assert_eq!(paths(&diff.added), only(&new, &old), "{context}: added");
    assert_eq!(paths(&diff.removed), only(&old, &new), "{context}: removed");
    for change in &diff.changed {
        assert!(
            old.contains_key(&change.path) && new.contains_key(&change.path),
            "{context}: {} changed but not in both states",
            change.path
        );
    }
    for (path, old_node) in &old {
        let Some(new_node) = new.get(path) else {
            continue;
        };
        let expected = model_differences(old_node, new_node);
        let got = diff
            .changed
            .iter()
            .find(|change| &change.path == path)
            .map(|change| change.differences.clone())
            .unwrap_or_default();
        let directories = matches!((old_node, new_node), (Node::Dir(..), Node::Dir(..)));
        let explained = |difference: &Difference| {
            expected.contains(difference)
                || expected.contains(&Difference::Kind)
                || matches!(difference, Difference::Content | Difference::Mtime)
                || (directories && *difference == Difference::Size)
        };
        assert!(
            expected.iter().all(|difference| got.contains(difference)) && got.iter().all(explained),
            "{context}: {path} differs by {got:?}, the models by {expected:?}"
        );
    }
}

/// What differs between two model nodes at one path, as a file diff names it.
fn model_differences(old: &Node, new: &Node) -> Vec<Difference> {
    let mode = |old_mode: &u32, new_mode: &u32| (old_mode != new_mode).then_some(Difference::Mode);
    let found: Vec<Option<Difference>> = match (old, new) {
        (Node::File(a, a_mode), Node::File(b, b_mode)) => {
            let common = a.size.min(b.size);
            let bytes_differ = a
                .probes()
                .into_iter()
                .chain(b.probes())
                .chain([(0, 2 << 20)])
                .filter(|&(at, _)| at < common)
                .any(|(at, len)| {
                    let len = len.min(common - at);
                    a.read(at, len) != b.read(at, len)
                });
            vec![
                bytes_differ.then_some(Difference::Content),
                (a.size != b.size).then_some(Difference::Size),
                mode(a_mode, b_mode),
            ]
        }
        (Node::Dir(_, a_mode), Node::Dir(_, b_mode)) => vec![mode(a_mode, b_mode)],
        (Node::Link(a), Node::Link(b)) => vec![
            (a != b).then_some(Difference::Content),
            (a.len() != b.len()).then_some(Difference::Size),
        ],
        (Node::Special(a, a_mode), Node::Special(b, b_mode)) => {
            let ((a_kind, a_rdev), (b_kind, b_rdev)) = (special_kind(*a), special_kind(*b));
            match a_kind == b_kind {
                true => vec![
                    (a_rdev != b_rdev).then_some(Difference::Device),
                    mode(a_mode, b_mode),
                ],
                false => vec![Some(Difference::Kind)],
            }
        }
        _ => vec![Some(Difference::Kind)],
    };
    found.into_iter().flatten().collect()
}

fn special_kind(special: Special) -> (FileKind, u32) {
    match special {
        Special::Fifo => (FileKind::Fifo, 0),
        Special::Socket => (FileKind::Socket, 0),
        Special::CharDevice(rdev) => (FileKind::CharDevice, rdev),
        Special::BlockDevice(rdev) => (FileKind::BlockDevice, rdev),
    }
}

fn check_bytes(tree: &FileTree, ino: u64, file: &SparseFile, path: &str) {
    if file.size <= 1 << 20 {
        let whole = tree.read(ino, 0, 2 << 20).unwrap();
        assert!(whole == file.read(0, 2 << 20), "{path}: bytes differ");
    }
    for (offset, len) in file.probes() {
        let read = tree.read(ino, offset, len as u32).unwrap();
        assert!(
            read == file.read(offset, len),
            "{path}: bytes at {offset} (+{len}) differ"
        );
    }
}

/// One operation's place in history: the head before it, the head after it, the model
/// after it and its time. Its first commit is the first after `before`.
#[derive(Clone)]
struct Step {
    before: Lsn,
    after: Lsn,
    time: Timestamp,
    model: Model,
}

fn head(store: &Store, branch: &str) -> Lsn {
    store.branch_info(branch).unwrap().head
}

#[test]
fn the_tree_matches_the_model_through_reopens_views_branches_and_power_cuts() {
    let counts = run_seeds(12, |seed| {
        let mut rng = TestRng::new(seed);
        let fs = SimFileSystem::new(seed);
        if seed % 3 == 1 {
            fs.tear_writes(512, TornFill::Garbage);
        } else if seed % 3 == 2 {
            fs.reorder_writeback(4096, TornFill::Zeros);
        }
        let clock = ManualClock::new(Timestamp(1_790_000_000_000_000));
        let dir = std::path::Path::new(STORE_DIR);
        let mut store = Store::create(dir, config(&fs, &clock)).unwrap();
        let mut tree = FileTree::open(store.clone(), "main", options(&clock, At::Latest)).unwrap();
        let limits = OpLimits {
            max_write: u64::from(tree.max_write()).min(3 * PAGE_SIZE as u64),
            page_size: PAGE_SIZE as u64,
            far_per_mille: 15,
            path_names_only: false,
        };
        let mut model = Model::default();
        let start = head(&store, "main");
        let mut history = vec![Step {
            before: start,
            after: start,
            time: clock.now(),
            model: model.clone(),
        }];
        let mut synced = start;
        let mut held: Vec<(u64, SparseFile)> = Vec::new();
        let (mut cuts, mut views, mut branches, mut refusals) = (0, 0, 0, 0);
        for step in 0..160 {
            clock.advance(Duration::from_secs(1));
            let context = format!("seed {seed} step {step}");
            match rng.below(100) {
                0..=2 => {
                    held.clear();
                    drop(tree);
                    tree =
                        FileTree::open(store.clone(), "main", options(&clock, At::Latest)).unwrap();
                    check(&tree, &model, &format!("{context} after reopening"));
                    if rng.chance(500) {
                        // A remount's first fsync: it must cover what the tree before wrote.
                        tree.sync().unwrap();
                        synced = head(&store, "main");
                    }
                }
                3..=5 => {
                    let past = rng.pick(&history).unwrap().clone();
                    let at = if rng.chance(500) {
                        At::Lsn(past.after)
                    } else {
                        At::Time(past.time)
                    };
                    let view = FileTree::open(store.clone(), "main", options(&clock, at)).unwrap();
                    check(
                        &view,
                        &past.model,
                        &format!("{context} read-only at {at:?}"),
                    );
                    assert!(matches!(
                        view.write(view.root(), 0, b"x"),
                        Err(FsError::ReadOnly)
                    ));
                    views += 1;
                }
                6 => {
                    let past = rng.pick(&history).unwrap().clone();
                    let name = format!("b{step}");
                    store
                        .create_branch(&name, "main", At::Lsn(past.after), BranchOptions::default())
                        .unwrap();
                    let branch =
                        FileTree::open(store.clone(), &name, options(&clock, At::Latest)).unwrap();
                    check(
                        &branch,
                        &past.model,
                        &format!("{context} branch at {}", past.after),
                    );
                    let mut branch_model = past.model.clone();
                    for count in 0..rng.between(1, 4) {
                        // Often a chmod of the root, which the file diff must show too.
                        let op = match count == 0 && rng.chance(300) {
                            true => FileOp::Chmod(Vec::new(), rng.below(0o1000) as u32),
                            false => random_op(&mut rng, &branch_model, limits),
                        };
                        assert_eq!(
                            run(&branch, &op),
                            branch_model.apply(&op),
                            "{context} on the branch: {op:?}"
                        );
                        check(
                            &branch,
                            &branch_model,
                            &format!("{context} branch after {op:?}"),
                        );
                    }
                    check(
                        &tree,
                        &model,
                        &format!("{context} main after a branch's write"),
                    );
                    check_file_diff(
                        &store,
                        (past.after, &past.model),
                        (&name, &branch_model),
                        &format!("{context} diff of main at {} and {name}", past.after),
                    );
                    branches += 1;
                }
                7..=10 => {
                    tree.sync().unwrap();
                    synced = head(&store, "main");
                }
                11 if seed % 3 != 0 || seed % 2 == 0 => {
                    held.clear();
                    fs.crash();
                    drop(tree);
                    drop(store);
                    store = Store::open_with(dir, config(&fs, &clock)).unwrap();
                    let survived = head(&store, "main");
                    assert!(
                        survived >= synced,
                        "{context}: a synced operation was lost ({survived} < {synced})"
                    );
                    let mut index = 0;
                    history.retain(|past| {
                        index += 1;
                        index == 1 || past.before < survived
                    });
                    let last = history.last_mut().unwrap();
                    last.after = last.after.min(survived);
                    model = last.model.clone();
                    tree =
                        FileTree::open(store.clone(), "main", options(&clock, At::Latest)).unwrap();
                    check(
                        &tree,
                        &model,
                        &format!("{context} after a power cut at {survived}"),
                    );
                    // What survived is durable; what opening the tree committed since
                    // (freeing inodes unlinked while open) is not, until a sync.
                    synced = survived;
                    cuts += 1;
                }
                18..=20 => {
                    // Flushes, compaction, images, WAL removal, checkpoints: what the
                    // housekeeping thread does, at chosen moments.
                    store.housekeep().unwrap();
                }
                12..=14 if !held.is_empty() => {
                    let (ino, file) = held.swap_remove(rng.below(held.len() as u64) as usize);
                    check_bytes(&tree, ino, &file, &format!("{context} held inode {ino}"));
                    tree.forget(ino, 1).unwrap();
                    assert!(
                        tree.attributes(ino).is_err(),
                        "{context}: inode {ino} outlived its last reference"
                    );
                }
                15..=17 => {
                    // A file held open while its name goes: still readable, freed later.
                    let files: Vec<_> = model
                        .paths()
                        .into_iter()
                        .filter_map(|(path, node)| match node {
                            Node::File(file, _) => Some((path, file.clone())),
                            _ => None,
                        })
                        .collect();
                    if let Some((path, file)) = rng.pick(&files).cloned() {
                        let before = head(&store, "main");
                        let (dir, name) = split(&path);
                        let found = tree.lookup(resolve(&tree, dir).unwrap(), name).unwrap();
                        assert_eq!(
                            run(&tree, &FileOp::Unlink(path.clone())),
                            model.apply(&FileOp::Unlink(path))
                        );
                        held.push((found.ino, file));
                        history.push(Step {
                            before,
                            after: head(&store, "main"),
                            time: clock.now(),
                            model: model.clone(),
                        });
                    }
                }
                _ => {
                    let op = random_op(&mut rng, &model, limits);
                    let before = head(&store, "main");
                    let expected = model.apply(&op);
                    let got = run(&tree, &op);
                    assert_eq!(got, expected, "{context}: {op:?}");
                    refusals += usize::from(got.is_err());
                    history.push(Step {
                        before,
                        after: head(&store, "main"),
                        time: clock.now(),
                        model: model.clone(),
                    });
                    if step % 4 == 0 {
                        check(&tree, &model, &format!("{context} after {op:?}"));
                    }
                }
            }
        }
        check(&tree, &model, &format!("seed {seed} at the end"));
        (cuts, views, branches, refusals)
    });
    let total = |pick: fn(&(i32, i32, i32, usize)) -> usize| counts.iter().map(pick).sum::<usize>();
    let (cuts, views, branches, refusals) = (
        total(|count| count.0 as usize),
        total(|count| count.1 as usize),
        total(|count| count.2 as usize),
        total(|count| count.3),
    );
    eprintln!("power cuts {cuts}, past views {views}, branches {branches}, refusals {refusals}");
    assert!(
        cuts > 0 && views > 0 && branches > 0 && refusals > 0,
        "the generator missed a kind of step"
    );
}

const STORE_DIR: &str = "/store";

/// A new store on a simulated disk (seeded `seed`) whose tree holds one empty file, `f`:
/// the disk, the clock, the store, the tree and the file's inode.
fn store_with_one_file(seed: u64) -> (SimFileSystem, ManualClock, Store, FileTree, u64) {
    let fs = SimFileSystem::new(seed);
    let clock = ManualClock::new(Timestamp(1_790_000_000_000_000));
    let store = Store::create(std::path::Path::new(STORE_DIR), config(&fs, &clock)).unwrap();
    let tree = FileTree::open(store.clone(), "main", options(&clock, At::Latest)).unwrap();
    let owner = Owner {
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let file = tree
        .create_file(u64::from(pagefork_files::ROOT_INO), b"f", owner)
        .unwrap();
    (fs, clock, store, tree, file.ino)
}

/// A tree opened again in the same process started with no last commit, so its `sync`
/// returned at once and left the previous tree's unsynced writes to the next power cut
/// (seen while chasing a model-run failure once changes of names stopped syncing; the
/// model run missed it, as a reopen was never followed by a sync before other writes: it
/// now syncs after half its reopens, and fails with this bug planted back).
#[test]
fn a_sync_after_reopening_covers_the_writes_of_the_tree_before() {
    let (fs, clock, store, tree, file) = store_with_one_file(11);
    let dir = std::path::Path::new(STORE_DIR);
    tree.write(file, 0, b"written before the reopen").unwrap();
    drop(tree);
    let tree = FileTree::open(store.clone(), "main", options(&clock, At::Latest)).unwrap();
    tree.sync().unwrap();
    let synced = head(&store, "main");
    drop(tree);
    fs.crash();
    drop(store);
    let store = Store::open_with(dir, config(&fs, &clock)).unwrap();
    assert_eq!(head(&store, "main"), synced);
    let tree = FileTree::open(store.clone(), "main", options(&clock, At::Latest)).unwrap();
    let found = tree
        .lookup(u64::from(pagefork_files::ROOT_INO), b"f")
        .unwrap();
    assert_eq!(
        tree.read(found.ino, 0, 64).unwrap(),
        b"written before the reopen"
    );
}

#[test]
fn writes_reach_the_log_behind_them_without_an_fsync() {
    // A mount's writes between fsyncs: each write hands its commit to the log a
    // sixteenth of a segment at a time (128 KiB with these 2 MiB segments), written but
    // not fsynced, instead of leaving it all in memory until the next fsync.
    let (_fs, _clock, store, tree, file) = store_with_one_file(7);
    let before = store.stats();
    for index in 0..64u8 {
        tree.write(file, u64::from(index) * 65_536, &[index; 65_536])
            .unwrap();
        let head = store.branch_info("main").unwrap().head;
        let behind = head.0 - store.stats().wal_end.0;
        assert!(
            behind < (128 << 10) + (72 << 10),
            "write {index}: {behind} bytes of log not written"
        );
    }
    let after = store.stats();
    assert!(after.wal_end.0 >= before.wal_end.0 + (3 << 20));
    // Written, not fsynced: the only fsyncs close each segment the log crossed (4 MiB
    // into 2 MiB segments), so no power cut can keep a new segment and lose an old one.
    let fsyncs = after.wal_fsyncs - before.wal_fsyncs;
    assert!(fsyncs <= 3, "{fsyncs} fsyncs for 4 MiB of writes");
}

/// Found by a review: truncating or unlinking a file written at a far offset logged a
/// drop for every block below it (at 1 TiB, 2^27 drops: minutes of a frozen mount, tens
/// of gigabytes of log and memory). Now only the pages the store has are dropped: the
/// log grows by kilobytes, and the file reads as it must at every step.
#[test]
fn regression_a_sparse_file_is_truncated_and_unlinked_at_the_cost_of_its_pages() {
    let (_fs, _clock, store, tree, file) = store_with_one_file(5);
    let far = 1u64 << 40;
    tree.write(file, 0, b"head").unwrap();
    tree.write(file, far, b"tail").unwrap();
    tree.write(file, far / 2, b"middle").unwrap();
    let log_before = store.stats().wal_end;
    let shrink = |size: u64| {
        let changes = SetAttributes {
            size: Some(size),
            ..SetAttributes::default()
        };
        tree.set_attributes(file, changes).unwrap();
    };
    shrink(far / 2 + 3);
    assert_eq!(tree.read(file, far / 2, 16).unwrap(), b"mid");
    shrink(2);
    assert_eq!(tree.read(file, 0, 16).unwrap(), b"he");
    // Written again past them, the far pages are holes: their old contents were dropped
    // (a page left behind would read back, now that the file reaches past it).
    tree.write(file, far + (1 << 20), b"beyond").unwrap();
    assert_eq!(tree.read(file, far, 4).unwrap(), [0; 4]);
    assert_eq!(tree.read(file, far / 2, 6).unwrap(), [0; 6]);
    tree.write(file, far, b"again").unwrap();
    tree.unlink(u64::from(pagefork_files::ROOT_INO), b"f")
        .unwrap();
    tree.forget(file, 1).unwrap();
    let logged = store.stats().wal_end.0 - log_before.0;
    assert!(logged < 1 << 20, "{logged} bytes of log for a few pages");
}
