//! What the long-running commands (`serve`, and `mount` and `endpoint start` in the
//! foreground) log to standard error: a filter of their own unless `PAGEFORK_LOG` gives
//! one. Short commands report on standard output and error themselves and set up none.
//!
//! Invariant: a foreground mount or endpoint shows at least the warnings and errors of the
//! store and the file system under it (a housekeeping cycle or a background GC that
//! failed, a request the mount could not answer), which nothing printed before.

/// For a foreground mount or endpoint: warnings and errors, without fuser's note of each
/// reply to a request the kernel dropped (a program interrupted by a signal) and its
/// second try at an unmount already made.
pub(crate) const FOREGROUND_FILTER: &str = "warn,fuser=error,fuser::reply=off,fuser::session=off";

/// Logs to standard error with `PAGEFORK_LOG`'s filter, or `default_filter`. Colours only
/// on a terminal. A line standard error does not take is dropped.
pub(crate) fn init(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAGEFORK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Otherwise a line that cannot be written (standard error a file on a full disk)
        // is reported with `eprintln!`, which panics, in whatever thread logged it: a
        // review saw the FUSE session's and the housekeeping thread die so.
        .log_internal_errors(false)
        .init();
}
