//! The settings a caller gives an endpoint (`-c name=value`): which names and values are
//! refused before anything is mounted or written, asking Postgres (`postgres -C`) about the
//! rest, and finding Postgres' refusal of one of them in the log of a server that did not
//! start.
//!
//! Invariants: a refused setting changes nothing (checked before the mount and initdb);
//! the endpoint's own settings (where it listens, which data directory and configuration
//! it runs on) are never taken from a caller; a refusal names the setting.

use std::process::Stdio;

use super::{EndpointError, EndpointSpec, MIN_PORT, PgBin, choose_port};

/// Settings an endpoint chooses itself and a caller may not give: where the server
/// listens (the answer's connection string is pagefork's, and an endpoint listens on
/// 127.0.0.1 only) and which data directory and configuration it runs on (the branch's).
/// Postgres' names are case-insensitive, so these are compared so.
const RESERVED_SETTINGS: [&str; 7] = [
    "port",
    "listen_addresses",
    "unix_socket_directories",
    "data_directory",
    "config_file",
    "hba_file",
    "ident_file",
];

/// Why `name` may not be given as a setting of an endpoint, if it may not: it is no
/// setting name (letters, digits, `_` and `.`), or the endpoint's own.
pub(crate) fn setting_name_refusal(name: &str) -> Option<String> {
    let is_a_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !is_a_name {
        return Some(format!(
            "{} is not a setting name (letters, digits, _ and .)",
            pagefork_engine::quoted(name)
        ));
    }
    RESERVED_SETTINGS
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
        .then(|| {
            format!(
                "{name} is the endpoint's own (its port is --port, or \"port\" over HTTP; it \
                 listens on 127.0.0.1 only, on the branch's data directory)"
            )
        })
}

/// Why the value of setting `name` is refused before Postgres sees it: a control character
/// (Postgres cuts a value at a newline, and its refusal then quotes half of it).
pub(crate) fn setting_value_refusal(name: &str, value: &str) -> Option<String> {
    value.chars().any(char::is_control).then(|| {
        format!(
            "the value of {} ({}) holds a control character (a newline, say), which no \
             setting takes",
            pagefork_engine::quoted(name),
            pagefork_engine::quoted(value)
        )
    })
}

/// Refuses what can be refused before anything is mounted or written: a name that is no
/// setting's or is reserved, a value with a control character, a setting Postgres
/// refuses, a port out of range or in use. (`start` checks the port again when it
/// starts.)
pub(crate) fn check_spec(spec: &EndpointSpec) -> Result<(), EndpointError> {
    if let Some(message) = spec
        .settings
        .iter()
        .find_map(|(name, _)| setting_name_refusal(name))
    {
        return Err(EndpointError::RefusedSetting { message });
    }
    // Postgres cuts a value at a newline, and its refusal then quotes half of it (found
    // by a review): a control character is refused here, naming the setting.
    if let Some(message) = spec
        .settings
        .iter()
        .find_map(|(name, value)| setting_value_refusal(name, value))
    {
        return Err(EndpointError::RefusedSetting { message });
    }
    if let Some(port) = spec.port {
        if port < MIN_PORT {
            return Err(EndpointError::RefusedSetting {
                message: format!(
                    "port {port}: an endpoint's port is from {MIN_PORT} to 65535 (Postgres runs \
                     unprivileged)"
                ),
            });
        }
        choose_port(Some(port))?;
    }
    if !spec.settings.is_empty() {
        check_settings(&PgBin::find(spec.pg_bin.as_deref())?, &spec.settings)?;
    }
    Ok(())
}

/// Refuses `settings` Postgres would refuse, before the branch is mounted (which formats
/// an empty one) and initdb runs (a review found a refused setting leaving 70 MB of it on
/// the branch): `postgres -C` checks `-c` settings as a start does, on a scratch directory
/// holding only an empty `postgresql.conf`, in about 10 ms, paid only by a start given
/// settings. A failure that names no setting is left to the start itself to report.
fn check_settings(pg: &PgBin, settings: &[(String, String)]) -> Result<(), EndpointError> {
    let failed = |error: std::io::Error| {
        EndpointError::Failed(anyhow::anyhow!(
            "cannot make a scratch directory to check the settings in: {error}"
        ))
    };
    let scratch = tempfile::Builder::new()
        .prefix("pagefork-settings-")
        .tempdir()
        .map_err(failed)?;
    let conf = scratch.path().join("postgresql.conf");
    std::fs::write(&conf, "")
        .and_then(|()| pg.give(scratch.path()))
        .and_then(|()| pg.give(&conf))
        .map_err(failed)?;
    let mut command = pg.command("postgres");
    command.arg("-C").arg("port").arg("-D").arg(scratch.path());
    for (name, value) in settings {
        command.arg("-c").arg(format!("{name}={value}"));
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| anyhow::anyhow!("cannot run postgres -C: {error}"))?;
    match output.status.success() {
        true => Ok(()),
        false => match refused_setting(&String::from_utf8_lossy(&output.stderr), settings) {
            Some(message) => Err(EndpointError::InvalidSetting { message }),
            None => Ok(()),
        },
    }
}

/// Postgres' refusal of one of `settings`, from the end of the log of a server that did not
/// start: a `FATAL` line naming one of them in quotes as a parameter (an unknown name, a
/// value it cannot take, one out of range). Postgres checks `-c` settings before it
/// touches the data directory, so a refused one changes nothing there; asking it first
/// (`check_settings`) catches most, before anything is mounted; this catches the rest.
pub(super) fn refused_setting(log: &str, settings: &[(String, String)]) -> Option<String> {
    log.lines().find_map(|line| {
        // Postgres says most refusals as FATAL lines; a few checks of settings against
        // each other before logging starts as "postgres: ..." (a review's max_connections
        // of 2 was a 500).
        let (_, message) = line
            .split_once("FATAL:")
            .or_else(|| line.split_once("postgres: "))?;
        let lower = message.to_ascii_lowercase();
        // Named (`invalid value for parameter "work_mem"`, `requires wal_level "replica"`)
        // or quoting a given value (`could not access file "nonexistent_lib"`): a review
        // found such refusals answered 500, as a failure of the server.
        // Also a path under a given directory (`could not open log file
        // "/nowhere/postgresql.log"` for a log_directory), and a certificate or key SSL
        // needs (`ssl = on` without one): a review found both answered 500.
        let about_a_setting = settings.iter().any(|(name, value)| {
            mentions_word(&lower, &name.to_ascii_lowercase())
                || (value.len() >= 3 && message.contains(&format!("\"{value}\"")))
                || (value.starts_with('/')
                    && value.len() >= 3
                    && message.contains(&format!("\"{}/", value.trim_end_matches('/'))))
                || (name.eq_ignore_ascii_case("ssl")
                    && (lower.contains("certificate") || lower.contains("private key")))
        });
        about_a_setting.then(|| crate::output::values_cut(message.trim()))
    })
}

/// Whether `word` is in `text` with no letter, digit, `_` or `.` on either side.
fn mentions_word(text: &str, word: &str) -> bool {
    let part_of_a_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    !word.is_empty()
        && text.match_indices(word).any(|(at, _)| {
            let before = text.get(..at).and_then(|text| text.chars().next_back());
            let after = text
                .get(at + word.len()..)
                .and_then(|text| text.chars().next());
            !before.is_some_and(part_of_a_name) && !after.is_some_and(part_of_a_name)
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::{refused_setting, setting_name_refusal};

    fn settings(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|name| ((*name).to_owned(), "1".to_owned()))
            .collect()
    }

    /// The CLI's `-c` and the API's `settings` share this rule (they once had a copy each).
    #[test]
    fn setting_names_are_refused_when_malformed_or_reserved() {
        for name in [
            "work_mem",
            "auto_explain.log_min_duration",
            "Shared_Buffers",
        ] {
            assert_eq!(setting_name_refusal(name), None, "{name}");
        }
        for (name, why) in [
            ("", "not a setting name"),
            ("bad name", "not a setting name"),
            ("a=b", "not a setting name"),
            ("PORT", "endpoint's own"),
            ("hba_file", "endpoint's own"),
        ] {
            let refusal = setting_name_refusal(name).unwrap();
            assert!(refusal.contains(why), "{name}: {refusal}");
        }
    }

    #[test]
    fn a_refusal_of_a_given_setting_is_found_in_the_log() {
        let given = settings(&["bad name", "shared_buffers", "max_connections"]);
        for (line, message) in [
            (
                "2026-12-05 11:15:55.684 GMT [14148] FATAL:  unrecognized configuration parameter \"bad name\"",
                "unrecognized configuration parameter \"bad name\"",
            ),
            (
                "2026-12-05 11:15:55.703 GMT [14151] FATAL:  invalid value for parameter \"shared_buffers\": \"lots\"",
                "invalid value for parameter \"shared_buffers\": \"lots\"",
            ),
            (
                "FATAL:  -5 is outside the valid range for parameter \"max_connections\" (1 .. 262143)",
                "-5 is outside the valid range for parameter \"max_connections\" (1 .. 262143)",
            ),
        ] {
            let log = format!("LOG:  something first\n{line}\n");
            assert_eq!(refused_setting(&log, &given).as_deref(), Some(message));
        }
    }

    /// Refusals at start that name a given setting, or quote its value, without the word
    /// "parameter" (found by a review, answered 500); a long value comes back cut.
    #[test]
    fn a_refusal_naming_a_setting_or_its_value_is_found_and_cut() {
        let given = vec![
            ("wal_level".to_owned(), "minimal".to_owned()),
            (
                "shared_preload_libraries".to_owned(),
                "nonexistent_lib".to_owned(),
            ),
            ("log_directory".to_owned(), "/nonexistent/x".to_owned()),
            ("ssl".to_owned(), "on".to_owned()),
        ];
        for line in [
            "FATAL:  WAL streaming (max_wal_senders > 0) requires wal_level \"replica\" or \"logical\"",
            "FATAL:  could not access file \"nonexistent_lib\": No such file or directory",
            // A file under a given directory, and SSL's certificate (found by a review:
            // 500s).
            "FATAL:  could not open log file \"/nonexistent/x/postgresql-2026-12-06.log\": No such file or directory",
            "FATAL:  could not load server certificate file \"server.crt\": No such file or directory",
        ] {
            let (_, message) = line.split_once("FATAL:").unwrap();
            assert_eq!(
                refused_setting(line, &given).as_deref(),
                Some(message.trim()),
                "{line}"
            );
        }
        // Part of another name is not the name.
        let given = settings(&["wal_level"]);
        assert_eq!(
            refused_setting("FATAL:  max_wal_level_x is broken", &given),
            None
        );
        assert_eq!(
            refused_setting(
                "FATAL:  could not load server certificate file \"server.crt\"",
                &settings(&["work_mem"])
            ),
            None
        );
        // A check of settings against each other, said before logging starts (found by a
        // review: a 500).
        let given = settings(&["max_connections"]);
        assert_eq!(
            refused_setting(
                "postgres: superuser_reserved_connections (3) must be less than max_connections (2)",
                &given
            )
            .as_deref(),
            Some("superuser_reserved_connections (3) must be less than max_connections (2)")
        );
        let long = "x".repeat(5000);
        let given = vec![("work_mem".to_owned(), long.clone())];
        let line = format!("FATAL:  invalid value for parameter \"work_mem\": \"{long}\"");
        let message = refused_setting(&line, &given).unwrap();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("(5000 bytes in all)"), "{message}");
    }

    #[test]
    fn other_failures_are_not_taken_for_a_refused_setting() {
        let given = settings(&["shared_buffers"]);
        for log in [
            "FATAL:  data directory \"/x/pgdata\" has invalid permissions",
            "FATAL:  invalid value for parameter \"work_mem\": \"lots\"",
            "LOG:  invalid value for parameter \"shared_buffers\": \"lots\"",
            "",
        ] {
            assert_eq!(refused_setting(log, &given), None, "{log}");
        }
        assert_eq!(
            refused_setting("FATAL:  invalid value for parameter \"x\": \"y\"", &[]),
            None
        );
    }
}
