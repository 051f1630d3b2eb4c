//! Tests of catalogs that reach inside the store: a lease on a branch the catalog does
//! not list, and catalogs older builds wrote (version 5: commit points inline), which
//! open, are upgraded by the next catalog, and are refused when damaged.

mod leases {
    use std::time::Duration;

    use bytes::Bytes;

    use crate::branch::BranchId;
    use crate::checkpoint::{CATALOG_FILE_NAME, Checkpoint};
    use crate::error::EngineError;
    use crate::store::{Config, Store};

    #[test]
    fn a_catalog_lease_on_an_unlisted_branch_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            page_size: 512,
            ..Config::default()
        };
        let store = Store::create(dir.path(), config.clone()).unwrap();
        let head = store.branch_info("main").unwrap().head;
        store.lease("main", head, Duration::from_secs(60)).unwrap();
        store.checkpoint().unwrap();
        drop(store);
        let path = dir.path().join(CATALOG_FILE_NAME);
        let mut checkpoint =
            Checkpoint::decode(Bytes::from(std::fs::read(&path).unwrap()), &path).unwrap();
        assert_eq!(checkpoint.leases.len(), 1);
        checkpoint.leases[0].0 = BranchId(99);
        std::fs::write(&path, checkpoint.encode()).unwrap();
        let error = Store::open_with(dir.path(), config).unwrap_err();
        assert!(
            matches!(&error, EngineError::CorruptFile { reason, .. } if reason.contains("#99")),
            "{error}"
        );
    }
}

mod older_catalogs {
    use std::path::Path;

    use bytes::Bytes;
    use pagefork_wal::Lsn;

    use crate::checkpoint::{CATALOG_FILE_NAME, Checkpoint};
    use crate::commits::{CommitPoints, CommitRun};
    use crate::error::EngineError;
    use crate::key::Key;
    use crate::store::checkpoint::COMMITS_DIR_NAME;
    use crate::store::{Config, Store};
    use crate::update::Update;

    fn config() -> Config {
        Config {
            page_size: 512,
            ..Config::default()
        }
    }

    /// Rewrites the store's catalog in `dir` as a version-5 build wrote it: every point
    /// inline, no runs (the `commits/` directory removed), with `change` applied to
    /// main's points.
    fn as_version_5(dir: &Path, change: impl FnOnce(&mut Vec<crate::commits::CommitPoint>)) {
        let path = dir.join(CATALOG_FILE_NAME);
        let bytes = std::fs::read(&path).expect("read catalog");
        let mut checkpoint = Checkpoint::decode(Bytes::from(bytes), &path).expect("decode");
        let fs = crate::fs::StdFileSystem;
        for branch in &mut checkpoint.branches {
            let runs = branch
                .commit_runs
                .iter()
                .map(|entry| {
                    CommitRun::open(&fs, &dir.join(COMMITS_DIR_NAME), entry, branch.id)
                        .expect("open run")
                })
                .collect();
            let mut points = CommitPoints::default();
            points.restore_runs(runs, Lsn(0)).expect("runs in order");
            let mut inline = points.to_vec_up_to(Lsn::MAX);
            inline.append(&mut branch.commits);
            branch.commits = inline;
            branch.commit_runs.clear();
        }
        change(&mut checkpoint.branches[0].commits);
        std::fs::write(&path, checkpoint.encode_as(5)).expect("write catalog");
        std::fs::remove_dir_all(dir.join(COMMITS_DIR_NAME)).expect("remove runs");
    }

    fn commit(store: &Store, fill: u8) -> crate::branch::Commit {
        let page = Bytes::from(vec![fill; 512]);
        store
            .commit("main", vec![(Key::new(1, 0), Update::Image(page))])
            .expect("commit")
    }

    /// A catalog an older build wrote (version 5, points inline) opens with every point,
    /// and the next catalog moves them into a run.
    #[test]
    fn a_version_5_catalog_opens_and_the_next_catalog_moves_its_points_to_a_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(dir.path(), config()).expect("create");
        let mut commits: Vec<_> = (0..5).map(|fill| commit(&store, fill)).collect();
        store.checkpoint().expect("checkpoint");
        drop(store);
        as_version_5(dir.path(), |_| {});

        let store = Store::open_with(dir.path(), config()).expect("open a version-5 catalog");
        commits.push(commit(&store, 9));
        store.checkpoint().expect("checkpoint");
        for done in &commits {
            assert_eq!(
                store.commit_time_at("main", done.lsn).expect("time"),
                Some(done.time)
            );
        }
        let files = store.files(false).expect("files");
        let main = &files.branches[0];
        assert_eq!(main.commit_points, 6);
        assert_eq!(
            main.commit_runs.iter().map(|run| run.points).sum::<u64>(),
            6
        );
        drop(store);
        let path = dir.path().join(CATALOG_FILE_NAME);
        let bytes = std::fs::read(&path).expect("read catalog");
        assert_eq!(bytes.get(8..12), Some(&6u32.to_le_bytes()[..]));
        let checkpoint = Checkpoint::decode(Bytes::from(bytes), &path).expect("decode");
        assert!(checkpoint.branches[0].commits.is_empty());
    }

    /// Inline points out of order in a version-5 catalog are refused naming the catalog.
    #[test]
    fn a_version_5_catalog_with_points_out_of_order_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(dir.path(), config()).expect("create");
        for fill in 0..3 {
            commit(&store, fill);
        }
        store.checkpoint().expect("checkpoint");
        drop(store);
        as_version_5(dir.path(), |points| points.swap(0, 1));
        let error = Store::open_with(dir.path(), config()).expect_err("refused");
        assert!(
            matches!(&error, EngineError::CorruptFile { path, reason, .. }
                if path.ends_with(CATALOG_FILE_NAME) && reason.contains("out of order")),
            "{error}"
        );
    }
}
