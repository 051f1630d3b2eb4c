//! The few statements pagefork itself sends an endpoint (the last commit time it answers
//! with, `CHECKPOINT` before a branch), over an in-process connection: no `psql` process
//! per statement, which cost as much as the statement on a fresh server.
//!
//! Connections are TCP to 127.0.0.1 as `postgres`, as every client of an endpoint connects
//! (`trust` authentication); each call opens one and closes it.

use std::time::Duration;

use postgres::{NoTls, SimpleQueryMessage};

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `sql` (one statement, simple protocol) on the server on `port`; the first column of
/// its first row as the server prints it, `None` if it returned no row or a NULL.
pub(crate) fn first_value(port: u16, sql: &str) -> Result<Option<String>, postgres::Error> {
    let mut client = postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .application_name("pagefork")
        // pagefork's own statements run whatever limits the endpoint's settings give its
        // users' (a review's `statement_timeout` of 1 ms made every report empty).
        .options(
            "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0",
        )
        .connect_timeout(CONNECT_TIMEOUT)
        .connect(NoTls)?;
    let messages = client.simple_query(sql)?;
    let value = messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
        _ => None,
    });
    Ok(value.flatten())
}
