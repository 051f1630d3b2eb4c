//! Remote storage against a real S3 server (`s3s-fs`): a store synced to a bucket
//! attaches in an empty directory and answers every read the original did at the
//! recovery point; a location is fenced once a newer process attached; damage in the
//! bucket is an error naming the object, and a failed attach leaves nothing behind.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;

use bytes::Bytes;
use pagefork_engine::{At, BranchOptions, Config, Key, Lsn, Store, Update};
use pagefork_remote::{RemoteError, Uploader, attach};
use pagefork_tests::s3::S3Server;

const PAGE: usize = 8192;

/// A page that says which branch, key and round wrote it.
fn page(branch: &str, key: Key, round: u32) -> Bytes {
    let mut bytes = vec![0u8; PAGE];
    let stamp = format!("{branch}/{}/{}/{round}", key.rel, key.block);
    bytes[..stamp.len()].copy_from_slice(stamp.as_bytes());
    for (i, byte) in bytes.iter_mut().enumerate().skip(64) {
        *byte = (i as u32 ^ round ^ key.block) as u8;
    }
    Bytes::from(bytes)
}

/// Writes `blocks` pages of relation 1 on `branch`, 64 pages a commit.
fn write_round(store: &Store, branch: &str, blocks: u32, round: u32) -> Lsn {
    let mut last = Lsn(0);
    for first in (0..blocks).step_by(64) {
        let updates = (first..(first + 64).min(blocks))
            .map(|block| {
                let key = Key::new(1, block);
                (key, Update::Image(page(branch, key, round)))
            })
            .collect();
        last = store.commit(branch, updates).unwrap().lsn;
    }
    last
}

/// Every branch's name, parent and head, and every page of relation 1 (blocks below
/// `blocks`) at latest and at each LSN in `points` where the branch can be read there.
fn everything(store: &Store, blocks: u32, points: &[Lsn]) -> Vec<String> {
    let mut seen = Vec::new();
    let mut branches = store.list_branches();
    branches.sort_by(|a, b| a.name.cmp(&b.name));
    for branch in branches {
        seen.push(format!(
            "{} {:?} {}",
            branch.name, branch.parent, branch.head
        ));
        let ats = std::iter::once(At::Latest).chain(
            points
                .iter()
                .filter(|lsn| **lsn <= branch.head)
                .map(|lsn| At::Lsn(*lsn)),
        );
        for at in ats {
            for block in 0..blocks {
                let read = store.get_page(&branch.name, Key::new(1, block), at);
                let summary = match read {
                    Ok(Some(bytes)) => format!("{:08x}", crc32fast::hash(&bytes)),
                    Ok(None) => "none".to_owned(),
                    Err(error) => format!("error {error}"),
                };
                seen.push(format!("{} {at:?} {block} {summary}", branch.name));
            }
        }
    }
    seen
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
}

#[test]
fn a_synced_store_attaches_elsewhere_with_its_branches_and_history() {
    let server = S3Server::start();
    let location = server.location("stores/one");
    let first = tempfile::tempdir().unwrap();
    let store = Store::create(first.path(), Config::default()).unwrap();
    // Realistic sizes: 8 KiB pages, default 16 MiB WAL segments; about 30 MiB written so
    // the WAL spans segments, part of it flushed to layers by a checkpoint.
    let early = write_round(&store, "main", 2048, 1);
    store
        .create_branch("feature", "main", At::Latest, BranchOptions::default())
        .unwrap();
    store.checkpoint().unwrap();
    let middle = write_round(&store, "main", 1024, 2);
    write_round(&store, "feature", 512, 3);
    store
        .create_branch("at-early", "main", At::Lsn(early), BranchOptions::default())
        .unwrap();
    let points = [early, middle];

    let mut uploader = Uploader::connect(&location, &store).unwrap();
    let report = uploader.sync(&store).unwrap();
    assert_eq!(report.generation, 1);
    assert!(report.layers > 0, "{report:?}");
    assert!(report.wal_segments >= 1, "{report:?}");
    // Every commit and branch operation acknowledged is below the recovery point.
    let newest = store
        .list_branches()
        .iter()
        .map(|b| b.head.max(b.created_lsn))
        .max();
    assert_eq!(Some(report.recovery_point), newest, "{report:?}");
    let expected = everything(&store, 2048, &points);

    let second = tempfile::tempdir().unwrap();
    let attached_dir = second.path().join("store");
    let attached = attach(&location, &attached_dir).unwrap();
    assert_eq!(attached.from_generation, 1);
    assert_eq!(attached.generation, Some(2));
    assert_eq!(attached.recovery_point, report.recovery_point);
    {
        let copy = Store::open(&attached_dir).unwrap();
        assert_eq!(everything(&copy, 2048, &points), expected);
        // The copy is a store of its own: it takes writes, and syncs as generation 2.
        write_round(&copy, "feature", 64, 4);
        let mut copy_uploader = Uploader::connect(&location, &copy).unwrap();
        assert_eq!(copy_uploader.generation(), 2);
        let again = copy_uploader.sync(&copy).unwrap();
        assert!(
            again.uploaded_objects < report.uploaded_objects,
            "{again:?} re-uploaded what was there"
        );
    }

    // The original is fenced: a newer generation attached.
    write_round(&store, "main", 64, 5);
    match uploader.sync(&store) {
        Err(RemoteError::Fenced {
            mine: 1,
            newer: 2,
            claimed_by,
            ..
        }) => assert_eq!(
            claimed_by,
            format!("an attach (process {})", std::process::id())
        ),
        other => panic!("the superseded process was not fenced: {other:?}"),
    }
}

/// Found by a review: two stores whose first syncs raced to one prefix both claimed a
/// generation, and the one fenced was told the other was an attach that might have died,
/// and to delete its marker: the live marker of another store. The refusal says who
/// claimed the generation, and that two stores need a prefix each.
#[test]
fn regression_a_store_fenced_by_another_stores_first_sync_is_told_so() {
    let server = S3Server::start();
    let location = server.location("raced");
    let (one_dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = Store::create(one_dir.path(), Config::default()).unwrap();
    let other = Store::create(other_dir.path(), Config::default()).unwrap();
    write_round(&one, "main", 8, 1);
    write_round(&other, "main", 8, 2);
    // Both connect (each claims a generation) before either publishes an index.
    let mut one_uploader = Uploader::connect(&location, &one).unwrap();
    let mut other_uploader = Uploader::connect(&location, &other).unwrap();
    let error = one_uploader.sync(&one).unwrap_err();
    match &error {
        RemoteError::Fenced {
            mine: 1,
            newer: 2,
            claimed_by,
            ..
        } => assert_eq!(
            *claimed_by,
            format!("a first sync of a store (process {})", std::process::id())
        ),
        other => panic!("not fenced: {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains("give each store a prefix of its own"),
        "{error}"
    );
    other_uploader.sync(&other).unwrap();
}

#[test]
fn damage_in_the_bucket_is_named_and_a_failed_attach_leaves_nothing() {
    let server = S3Server::start();
    let location = server.location("damaged");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    write_round(&store, "main", 256, 1);
    store.checkpoint().unwrap();
    write_round(&store, "main", 64, 2);
    Uploader::connect(&location, &store)
        .unwrap()
        .sync(&store)
        .unwrap();

    // A layer of page versions (commit runs are objects under `layers/` too).
    let layer = server
        .object_keys("damaged/layers")
        .into_iter()
        .find(|key| !key.contains(".commits."))
        .expect("a layer object");
    let file = server.object_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    let target = tempfile::tempdir().unwrap();
    let error = attach(&location, target.path()).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, RemoteError::Damaged { .. })
            && message.contains(&layer)
            && message.contains("CRC32"),
        "{message}"
    );
    assert!(
        dir_is_empty(target.path()),
        "a failed attach left files behind"
    );
    // Found by a review: the failed attach kept its generation claim, so the store that
    // writes there was fenced by a copy that does not exist. The claim is given back.
    assert_eq!(
        server.object_keys("damaged/generations"),
        vec!["damaged/generations/00000001".to_owned()]
    );
    write_round(&store, "main", 8, 3);
    Uploader::connect(&location, &store)
        .unwrap()
        .sync(&store)
        .unwrap();

    // An empty location has nothing to attach; a location of another store is refused.
    let nothing = attach(&server.location("nothing-here"), &target.path().join("x")).unwrap_err();
    assert!(matches!(nothing, RemoteError::NoIndex { .. }), "{nothing}");
    assert!(!target.path().join("x").exists());
    let other_dir = tempfile::tempdir().unwrap();
    let other = Store::create(other_dir.path(), Config::default()).unwrap();
    match Uploader::connect(&location, &other) {
        Err(RemoteError::OtherStore { .. }) => {}
        other => panic!("a second store was let into the first one's location: {other:?}"),
    }
}

#[test]
fn replaced_objects_are_deleted_after_the_index_and_scrub_removes_only_unlisted_ones() {
    let server = S3Server::start();
    let location = server.location("gc");
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        compact_l0_layers: 2,
        ..Config::default()
    };
    let store = Store::create(dir.path(), config).unwrap();
    write_round(&store, "main", 512, 1);
    store.checkpoint().unwrap();
    let mut uploader = Uploader::connect(&location, &store).unwrap();
    let first = uploader.sync(&store).unwrap();
    assert_eq!(first.deleted_objects, 0);

    // Compaction replaces the L0 layers, more writes lengthen the WAL's copy: the next
    // index lists other objects, and the ones it dropped go once it is published.
    for round in 2..5 {
        write_round(&store, "main", 512, round);
        store.checkpoint().unwrap();
    }
    store.compact().unwrap();
    write_round(&store, "main", 64, 9);
    let second = uploader.sync(&store).unwrap();
    assert!(second.deleted_objects > 0, "{second:?}");
    let data: Vec<String> = ["layers", "wal", "catalogs", "meta"]
        .iter()
        .flat_map(|dir| server.object_keys(&format!("gc/{dir}")))
        .collect();
    assert_eq!(
        data.len(),
        second.layers + second.wal_segments + 2,
        "{data:?}"
    );

    // A crash between an upload and its index leaves an unlisted object: scrub lists it
    // (dry run), keeps it while young, removes it when asked, and nothing listed.
    let planted = server.object_file("gc/layers/debris.l0.00000000.g00000001");
    std::fs::write(&planted, b"an upload no index lists").unwrap();
    let young =
        pagefork_remote::scrub(&location, std::time::Duration::from_secs(3600), true).unwrap();
    assert!(young.unlisted.is_empty() && young.kept == 1, "{young:?}");
    let dry = pagefork_remote::scrub(&location, std::time::Duration::ZERO, false).unwrap();
    assert_eq!(
        dry.unlisted,
        vec!["gc/layers/debris.l0.00000000.g00000001".to_owned()]
    );
    assert!(planted.exists());
    let removed = pagefork_remote::scrub(&location, std::time::Duration::ZERO, true).unwrap();
    assert_eq!(removed.unlisted, dry.unlisted);
    assert!(!planted.exists());
    let expected = everything(&store, 512, &[]);
    let copy_dir = tempfile::tempdir().unwrap();
    attach(&location, copy_dir.path()).unwrap();
    assert_eq!(
        everything(&Store::open(copy_dir.path()).unwrap(), 512, &[]),
        expected
    );
}

#[test]
fn each_sync_uploads_only_what_the_wal_gained_and_the_pieces_attach_whole() {
    let server = S3Server::start();
    let location = server.location("pieces");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    write_round(&store, "main", 512, 1);
    let mut uploader = Uploader::connect(&location, &store).unwrap();
    let first = uploader.sync(&store).unwrap();
    assert!(first.uploaded_bytes > 512 * 8192, "{first:?}");
    // Forty small syncs, one page each: each uploads a WAL piece of about a page and the
    // index, never the segment's 4 MiB again (but once every 16 pieces, whole).
    let mut whole_again = 0;
    for round in 2..42 {
        store
            .commit(
                "main",
                vec![(
                    Key::new(1, round),
                    Update::Image(page("main", Key::new(1, round), round)),
                )],
            )
            .unwrap();
        let report = uploader.sync(&store).unwrap();
        if report.uploaded_bytes > 1 << 20 {
            whole_again += 1;
        }
    }
    assert!(
        (1..=3).contains(&whole_again),
        "{whole_again} whole uploads in 40 syncs"
    );
    let expected = everything(&store, 512, &[]);
    let copy = tempfile::tempdir().unwrap();
    attach(&location, &copy.path().join("store")).unwrap();
    assert_eq!(
        everything(&Store::open(copy.path().join("store")).unwrap(), 512, &[]),
        expected
    );
}
