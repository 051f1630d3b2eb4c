//! Schema diffs: `pg_dumpall --schema-only` of two endpoints (roles, tablespaces, and
//! every database's schema), compared as a unified diff (what the seed's CI step
//! publishes for a migration tried on a branch).
//!
//! The dumps are taken from running servers over their connection strings; both come
//! from the same `pg_dumpall`, so its version header is the same on both sides and only
//! the schemas differ.

use std::process::Stdio;
use std::sync::atomic::AtomicBool;

use serde::Serialize;
use utoipa::ToSchema;

use super::{EndpointError, PgBin, finish_unless};

/// Lines of context around each change.
const CONTEXT_LINES: usize = 3;

/// Two schemas compared.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct SchemaDiff {
    from: String,
    to: String,
    /// Whether the schemas are the same.
    identical: bool,
    /// The unified diff of `pg_dumpall --schema-only` of `from` against `to` (empty when
    /// identical).
    diff: String,
}

impl SchemaDiff {
    /// Compares the schema dumps `before` (branch `from`) and `after` (branch `to`).
    pub(crate) fn of(from: &str, before: &str, to: &str, after: &str) -> SchemaDiff {
        let diff = similar::TextDiff::from_lines(before, after)
            .unified_diff()
            .context_radius(CONTEXT_LINES)
            .header(&format!("{from} (schema)"), &format!("{to} (schema)"))
            .to_string();
        SchemaDiff {
            from: from.to_owned(),
            to: to.to_owned(),
            identical: before == after,
            diff,
        }
    }

    /// Whether the schemas are the same.
    pub(crate) fn is_identical(&self) -> bool {
        self.identical
    }

    /// The diff, as `diff -u` prints it.
    pub(crate) fn text(&self) -> &str {
        &self.diff
    }
}

/// `pg_dumpall --schema-only` of the server on `port`: its roles (without passwords) and
/// tablespaces, and the schema of every database, each after its `CREATE DATABASE` (a
/// review found a database created on one branch missing from a diff of `postgres`
/// alone).
pub(crate) fn dump_schema(pg: &PgBin, branch: &str, port: u16) -> Result<String, EndpointError> {
    dump_schema_unless(pg, branch, port, &AtomicBool::new(false))
}

/// [`dump_schema`], given up (`pg_dumpall` killed) once `stop` is set: a schema diff
/// stopped by a signal does not wait for a dump that may never end.
pub(crate) fn dump_schema_unless(
    pg: &PgBin,
    branch: &str,
    port: u16,
    stop: &AtomicBool,
) -> Result<String, EndpointError> {
    let failed = |what: String| EndpointError::from(anyhow::anyhow!(what));
    let child = pg
        .command("pg_dumpall")
        .args([
            "--schema-only",
            "--no-role-passwords",
            // Never a password prompt: in a process group of its own, a read of the
            // terminal would stop it for good.
            "--no-password",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("cannot run pg_dumpall: {error}")))?;
    let output = finish_unless(child, "pg_dumpall", &format!("branch {branch:?}"), stop)?;
    if !output.status.success() {
        return Err(failed(format!(
            "pg_dumpall of branch {branch:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let dump = String::from_utf8(output.stdout).map_err(|_| {
        failed(format!(
            "pg_dumpall of branch {branch:?} printed bytes that are not UTF-8"
        ))
    })?;
    Ok(without_restrict_keys(&dump))
}

/// `dump` without its `\restrict KEY` and `\unrestrict KEY` lines: pg_dump (15.14 and
/// later) draws a new random key for each dump, which is not part of the schema.
fn without_restrict_keys(dump: &str) -> String {
    dump.lines()
        .filter(|line| !line.starts_with("\\restrict ") && !line.starts_with("\\unrestrict "))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrict_keys_are_not_part_of_a_schema() {
        let one = "--\n\\restrict abc\nCREATE TABLE t();\n\\unrestrict abc\n";
        let two = "--\n\\restrict xyz\nCREATE TABLE t();\n\\unrestrict xyz\n";
        assert_eq!(without_restrict_keys(one), without_restrict_keys(two));
        assert_eq!(without_restrict_keys(one), "--\nCREATE TABLE t();\n");
    }
}
