//! `pagefork demo --postgres`: the seed's Backstage scenario in SQL on a real Postgres,
//! on endpoints of branches, each step measured and checked.
//!
//! Steps: a Backstage-like catalog (`final_entities`, 32 rows; `refresh_state`, about
//! 63 MB) on `main`; a branch with a one-hour TTL and an endpoint on it; a migration on
//! the branch (a column, an index) while `main`'s schema stays as it was (schema diff);
//! a time noted; `DELETE FROM final_entities` on `main`; a branch at the noted time with
//! an endpoint that counts 32 rows and says what it recovered to; then `main` restored in
//! place at that time and counted again. Every figure printed was measured in this run,
//! beside Lakebase's published ones; a check that fails fails the demo.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use pagefork_engine::{At, Backup, BranchOptions, Config, Expiry, Store, Timestamp};
use serde_json::json;

use super::command::Local;
use super::schema::{SchemaDiff, dump_schema_unless};
use super::{EndpointSpec, PgBin, Place, finish_unless};
use crate::commands::describe_time_answer;
use crate::demo::format_duration;
use crate::mount::StopSignals;
use crate::output::out;

/// Lakebase's published figures (the blog post the project grew from).
const LAKEBASE_BRANCH: &str = "1.09 s";
const LAKEBASE_PITR: &str = "3.78 s";
const LAKEBASE_SNAP: &str = "12 s back, silently";

/// The catalog: 32 entities, and about 63 MB of refresh state.
const CATALOG_SQL: &str = "
CREATE TABLE final_entities (
    entity_id text PRIMARY KEY,
    kind text NOT NULL,
    final_entity jsonb NOT NULL
);
INSERT INTO final_entities
    SELECT 'component:default/service-' || n, 'Component',
           jsonb_build_object('apiVersion', 'backstage.io/v1alpha1', 'kind', 'Component',
               'metadata', jsonb_build_object('name', 'service-' || n),
               'spec', jsonb_build_object('type', 'service', 'owner', 'team-' || n % 4))
    FROM generate_series(1, 32) AS n;
CREATE TABLE refresh_state (
    entity_ref text PRIMARY KEY,
    unprocessed_entity text NOT NULL,
    next_update_at timestamptz NOT NULL
);
-- Stored as it is, not compressed: the catalog's size is its bytes.
ALTER TABLE refresh_state ALTER COLUMN unprocessed_entity SET STORAGE EXTERNAL;
INSERT INTO refresh_state
    SELECT 'location:default/generated-' || n, repeat(md5(n::text), 120), now()
    FROM generate_series(1, 13000) AS n;
CHECKPOINT;
";

/// The migration tried on the branch.
const MIGRATION_SQL: &str = "
ALTER TABLE final_entities ADD COLUMN last_processed_at timestamptz;
CREATE INDEX final_entities_by_kind ON final_entities(kind);
";

/// Runs the demo in `data_dir`, or in a temporary directory when `None`. SIGINT or
/// SIGTERM stops it between steps or within one (a psql or an endpoint start given up):
/// its servers stopped and its branches unmounted, it fails saying so.
pub(crate) fn run(data_dir: Option<PathBuf>, json: bool) -> Result<()> {
    let pg = PgBin::find(None).context(
        "pagefork demo --postgres runs Postgres: install it (apt-get install postgresql-15 \
         postgresql-client-15), or run pagefork demo without --postgres",
    )?;
    crate::mount::check_fuse_available()?;
    // Caught before anything is mounted or started: a Ctrl-C once killed the demo, leaving
    // its Postgres servers running on mounts dead with it.
    let mut signals = StopSignals::catch()?;
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let kept = data_dir.is_some();
    let dir = data_dir.unwrap_or_else(|| temp.path().join("store"));
    let store = Store::create(&dir, Config::default())
        .with_context(|| format!("cannot create a store in {}", dir.display()))?;
    let stop = AtomicBool::new(false);
    let demo = Demo {
        store: &store,
        pg: &pg,
        json,
        stop: &stop,
    };
    let ran = signals.run_stoppable(&stop, || demo.run(&dir));
    if stop.load(Ordering::Relaxed) {
        let covered = store.checkpoint()?;
        match kept {
            true => bail!(
                "pagefork demo --postgres was stopped by a signal: its servers are stopped and \
                 its branches unmounted; the store is in {} (checkpoint at {covered})",
                dir.display()
            ),
            false => bail!(
                "pagefork demo --postgres was stopped by a signal: its servers are stopped, its \
                 branches unmounted and its temporary store removed"
            ),
        }
    }
    ran
}

/// One run of the demo on `store`.
struct Demo<'a> {
    store: &'a Store,
    pg: &'a PgBin,
    json: bool,
    /// Set by a signal: the steps end early.
    stop: &'a AtomicBool,
}

impl Demo<'_> {
    /// The steps, in order; every endpoint started is stopped when they end, early or not
    /// (`Local`'s drop).
    fn run(&self, dir: &Path) -> Result<()> {
        let Demo {
            store, pg, json, ..
        } = *self;
        let say = |line: String| -> Result<()> {
            if !json {
                out!("{line}");
            }
            Ok(())
        };
        let spec = EndpointSpec::default();
        let psql = |url: &str, sql: &str| self.psql(url, sql);
        let start = |branch: &str| {
            self.go_on()?;
            Local::start(store, branch, Place::temporary()?, &spec, self.stop)
        };
        say(format!(
            "pagefork demo --postgres: the Lakebase experiment with a real Postgres ({}), on this disk ({})",
            pg.dir().display(),
            dir.display()
        ))?;

        // 1. The catalog on main.
        let started = Instant::now();
        let mut main = start("main")?;
        let main_url = main.url();
        psql(&main_url, CATALOG_SQL)?;
        let size = psql(&main_url, "SELECT pg_database_size('postgres')")?;
        let load = started.elapsed();
        say(format!(
            "1. main: initdb, then a Backstage catalog (32 final_entities, refresh_state), {:.1} MB in all, in {}",
            size.parse::<f64>().unwrap_or(0.0) / 1e6,
            format_duration(load)
        ))?;

        // 2. Branch with a one-hour TTL, an endpoint on it, a first query.
        let options = BranchOptions {
            expiry: Expiry::Ttl(Duration::from_secs(3600)),
            protected: false,
        };
        self.go_on()?;
        let started = Instant::now();
        store.create_branch("migration-test", "main", At::Latest, options)?;
        let branch_time = started.elapsed();
        let trial = start("migration-test")?;
        let ready = started.elapsed();
        let branch_rows = psql(&trial.url(), "SELECT count(*) FROM final_entities")?;
        let first_query = started.elapsed();
        check(branch_rows == "32", || {
            format!("the branch has {branch_rows} entities, not 32")
        })?;
        say(format!(
            "2. branch migration-test (TTL 1h): created in {}, endpoint accepting connections at {}, first query answered at {} (Lakebase: branch {LAKEBASE_BRANCH})",
            format_duration(branch_time),
            format_duration(ready),
            format_duration(first_query)
        ))?;

        // 3. The migration on the branch; main's schema is untouched.
        psql(&trial.url(), MIGRATION_SQL)?;
        let main_schema = dump_schema_unless(pg, "main", main.port(), self.stop)?;
        let trial_schema = dump_schema_unless(pg, "migration-test", trial.port(), self.stop)?;
        let diff = SchemaDiff::of("main", &main_schema, "migration-test", &trial_schema);
        let columns = psql(
            &main_url,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'final_entities'",
        )?;
        check(!diff.is_identical() && columns == "3", || {
            format!("main's schema changed with the branch's ({columns} columns)")
        })?;
        let diff_lines = diff.text().trim_end().lines().count();
        say(format!(
            "3. migration on the branch (a column, an index); main untouched; schema diff: {diff_lines} lines"
        ))?;
        trial.stop()?;

        // 4. Note the time; 5. delete the entities on main.
        std::thread::sleep(Duration::from_millis(200));
        let noted = Timestamp::from_system_time(SystemTime::now());
        std::thread::sleep(Duration::from_millis(200));
        psql(&main_url, "DELETE FROM final_entities")?;
        let left = psql(&main_url, "SELECT count(*) FROM final_entities")?;
        check(left == "0", || {
            format!("{left} entities left on main after the delete")
        })?;
        say(format!(
            "4. noted {noted}; 5. DELETE FROM final_entities on main: 0 rows left"
        ))?;

        // 6. A branch at the noted time, with an endpoint, counts 32 rows.
        self.go_on()?;
        let started = Instant::now();
        let recovered = store.create_branch(
            "recovered",
            "main",
            At::Time(noted),
            BranchOptions::default(),
        )?;
        let back = start("recovered")?;
        let recovered_rows = psql(&back.url(), "SELECT count(*) FROM final_entities")?;
        let pitr = started.elapsed();
        let last_commit = back.last_commit_time();
        check(recovered_rows == "32", || {
            format!("the recovered branch has {recovered_rows} entities")
        })?;
        let snapped = recovered
            .created_at_time
            .as_ref()
            .map_or_else(|| "?".to_owned(), describe_time_answer);
        let snapped_json = recovered
            .created_at_time
            .as_ref()
            .map(crate::views::TimeAnswerView::of);
        say(format!(
            "6. branch recovered at {noted}: 32 entities, endpoint answering in {} (Lakebase: PITR {LAKEBASE_PITR}, {LAKEBASE_SNAP}); snapped: {snapped}; last visible transaction committed {}",
            format_duration(pitr),
            last_commit.as_deref().unwrap_or("(unknown)")
        ))?;
        back.stop()?;

        // 7. Restore main in place at the noted time.
        main.stop()?;
        self.go_on()?;
        let started = Instant::now();
        let restored_to = store.restore_branch("main", "main", At::Time(noted), Backup::Default)?;
        let restore_time = started.elapsed();
        main = start("main")?;
        let restored_rows = psql(&main.url(), "SELECT count(*) FROM final_entities")?;
        let restored = started.elapsed();
        check(restored_rows == "32", || {
            format!("main has {restored_rows} entities after the restore")
        })?;
        say(format!(
            "7. main restored in place at {noted} in {} (its previous state kept as {}); endpoint answering 32 rows at {}",
            format_duration(restore_time),
            restored_to.backup.as_deref().unwrap_or("nothing"),
            format_duration(restored)
        ))?;
        main.stop()?;
        store.checkpoint()?;
        if json {
            out!(
                "{}",
                json!({
                    "catalog_bytes": size.parse::<u64>().unwrap_or(0),
                    "branch_seconds": branch_time.as_secs_f64(),
                    "branch_endpoint_ready_seconds": ready.as_secs_f64(),
                    "branch_first_query_seconds": first_query.as_secs_f64(),
                    "noted": noted.to_string(),
                    "schema_diff_lines": diff_lines,
                    // Each as its query counted it (the demo fails unless 32, 0, 32, 32).
                    "rows": {
                        "branch": count(&branch_rows),
                        "main_after_delete": count(&left),
                        "recovered": count(&recovered_rows),
                        "main_after_restore": count(&restored_rows),
                    },
                    "pitr_snapped": snapped_json,
                    "pitr_first_query_seconds": pitr.as_secs_f64(),
                    "pitr_last_commit": last_commit,
                    "restore_seconds": restore_time.as_secs_f64(),
                    "restore_first_query_seconds": restored.as_secs_f64(),
                    "lakebase": {"branch": LAKEBASE_BRANCH, "pitr": LAKEBASE_PITR, "snap": LAKEBASE_SNAP},
                })
            );
        }
        Ok(())
    }
}

/// A count psql printed, as JSON (a string if it is not a number).
fn count(printed: &str) -> serde_json::Value {
    printed
        .parse::<u64>()
        .map_or_else(|_| printed.into(), serde_json::Value::from)
}

fn check(ok: bool, why: impl FnOnce() -> String) -> Result<()> {
    if !ok {
        bail!("demo check failed: {}", why());
    }
    Ok(())
}

impl Demo<'_> {
    /// Fails once a signal asked the demo to stop.
    fn go_on(&self) -> Result<()> {
        match self.stop.load(Ordering::Relaxed) {
            true => bail!("the demo was asked to stop"),
            false => Ok(()),
        }
    }

    /// Runs the statements of `sql` one by one with psql against `url`, failing on the
    /// first error; returns what they printed. A stop kills psql.
    fn psql(&self, url: &str, sql: &str) -> Result<String> {
        use std::io::Write;
        self.go_on()?;
        let mut child = self
            .pg
            .command("psql")
            .args([
                url,
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--no-password",
                "-f",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot run psql")?;
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(sql.as_bytes())
                .context("cannot send SQL to psql")?;
        }
        let output = finish_unless(child, "psql", url, self.stop)?;
        if !output.status.success() {
            bail!(
                "psql failed on {:?}: {}",
                sql.trim().lines().next().unwrap_or_default(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}
