//! Postgres' own point-in-time recovery, for the comparison: a cluster archiving its WAL
//! (`archive_command`), a base backup (`pg_basebackup`), and a recovery to a time: the
//! backup copied into a new data directory, `recovery_target_time` set, the archived WAL
//! replayed up to it, the server promoted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::host::{HostCluster, give_to_postgres, postgres_command, psql, run};

/// A cluster whose WAL is archived, with a base backup once taken.
pub(crate) struct Archiving {
    cluster: Option<HostCluster>,
    dir: PathBuf,
    archive: PathBuf,
    backup: PathBuf,
}

impl Archiving {
    /// A new cluster in `dir/pgdata` archiving into `dir/archive`.
    pub(crate) fn create(dir: &Path) -> Archiving {
        let archive = dir.join("archive");
        std::fs::create_dir_all(&archive).unwrap();
        give_to_postgres(dir);
        let cluster = HostCluster::create(
            &dir.join("pgdata"),
            &[
                ("archive_mode", "on".to_owned()),
                ("archive_command", format!("cp %p {}/%f", archive.display())),
            ],
        );
        Archiving {
            cluster: Some(cluster),
            dir: dir.to_owned(),
            archive,
            backup: dir.join("backup"),
        }
    }

    fn cluster(&self) -> &HostCluster {
        self.cluster.as_ref().unwrap()
    }

    pub(crate) fn url(&self, database: &str) -> String {
        self.cluster().url(database)
    }

    /// Takes the base backup (its WAL comes from the archive).
    pub(crate) fn base_backup(&self) {
        let mut backup = postgres_command("pg_basebackup");
        backup
            .args(["-h", "127.0.0.1", "-p", &self.cluster().port.to_string()])
            .args(["-U", "postgres", "-X", "none", "-c", "fast", "-D"])
            .arg(&self.backup);
        run(backup, "pg_basebackup");
    }

    /// Switches to a new WAL segment and waits until the one before is archived, then
    /// stops the cluster: everything written is in the archive.
    pub(crate) fn archive_all_and_stop(&mut self) {
        let url = self.url("postgres");
        let segment = psql(&url, "SELECT pg_walfile_name(pg_switch_wal())");
        let deadline = Instant::now() + Duration::from_secs(120);
        while psql(
            &url,
            &format!(
                "SELECT coalesce(last_archived_wal >= '{segment}', false) FROM pg_stat_archiver"
            ),
        ) != "t"
        {
            assert!(
                Instant::now() < deadline,
                "segment {segment} was not archived"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.cluster = None;
    }

    /// Recovers the base backup to `time` (RFC 3339) in a new data directory `name`, and
    /// returns the promoted server.
    pub(crate) fn recover_to(&self, time: &str, name: &str) -> HostCluster {
        let data = self.dir.join(name);
        let mut copy = std::process::Command::new("cp");
        copy.arg("-a").arg(&self.backup).arg(&data);
        run(copy, "copy the base backup");
        std::fs::write(data.join("recovery.signal"), "").unwrap();
        // Postgres takes "YYYY-MM-DD HH:MM:SS.ffffff+00" here, not RFC 3339's T and Z.
        let time = time.replace('T', " ").replace('Z', "+00");
        let settings = format!(
            "restore_command = 'cp {}/%f %p'\nrecovery_target_time = '{time}'\nrecovery_target_action = 'promote'\n",
            self.archive.display()
        );
        let auto = data.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
        conf.push_str(&settings);
        std::fs::write(&auto, conf).unwrap();
        give_to_postgres(&data);
        let cluster = HostCluster::start(&data, &[]);
        // It accepts connections once consistent, still recovering: wait for the promotion.
        let url = cluster.url("postgres");
        while psql(&url, "SELECT pg_is_in_recovery()") != "f" {
            std::thread::sleep(Duration::from_millis(5));
        }
        cluster
    }
}
