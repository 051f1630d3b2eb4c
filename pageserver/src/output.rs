//! Standard output for every command: `out!` writes a line as `println!` does, but hands
//! the error back instead of panicking, so a reader that goes away (`pagefork branch list
//! | head`) ends the command quietly instead of crashing it. `main` treats a closed pipe
//! as a normal end (exit 0), and prints any other error as one line (see
//! [`one_line`]).

use std::fmt;
use std::io::{ErrorKind, Write};

use anyhow::Context;

/// Writes one line (and flushes it, so lines reach a pipe as they are made).
pub(crate) fn line(text: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .context("cannot write standard output")
}

/// Writes one line on standard error, ignoring a failure: `eprintln!` panics when standard
/// error cannot be written (a log file on a full disk), and a server's thread must not
/// die of a line it could not print.
pub(crate) fn warn_line(text: fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_fmt(text)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// `eprintln!` that never panics (see [`warn_line`]).
macro_rules! warn_out {
    ($($arg:tt)*) => {
        $crate::output::warn_line(format_args!($($arg)*))
    };
}
pub(crate) use warn_out;

/// Prints a line on standard output and returns early with the error if it cannot be
/// written (use it where `?` works).
macro_rules! out {
    () => {
        $crate::output::line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))?
    };
}
pub(crate) use out;

/// Whether `error` is standard output closed by its reader.
pub(crate) fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}

/// `error` and its causes on one line, each cause once: a cause whose text the line
/// already ends with (an I/O error that its wrapper quotes) is not repeated.
pub(crate) fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// `text`, a message from another program (serde's, axum's or Postgres'), with each value
/// it names cut as [`pagefork_engine::quoted`] cuts one, to its first 64 characters: they
/// quote an unknown field's name, a wrong value, a path segment or a setting's value whole,
/// and name a field's path unquoted (reviews found 100,000-character values echoed up to
/// an HTTP message's limit, and a 5,000-character setting echoed as 2 KB). A value is
/// what is between backticks or double quotes, or else a run of characters without a
/// space or a quote.
pub(crate) fn values_cut(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(512));
    let mut quote: Option<char> = None;
    // The value so far: characters and bytes.
    let (mut chars, mut bytes) = (0, 0);
    let end_value = |out: &mut String, chars: &mut usize, bytes: &mut usize| {
        if *chars > pagefork_engine::QUOTED_PREFIX_CHARS {
            out.push_str(&format!("... ({bytes} bytes in all)"));
        }
        (*chars, *bytes) = (0, 0);
    };
    for c in text.chars() {
        let ends_value = match quote {
            Some(open) => c == open,
            None => c.is_whitespace() || c == '`' || c == '"',
        };
        if ends_value {
            end_value(&mut out, &mut chars, &mut bytes);
            out.push(c);
            quote = match quote {
                Some(_) => None,
                None => (c == '`' || c == '"').then_some(c),
            };
            continue;
        }
        if chars < pagefork_engine::QUOTED_PREFIX_CHARS {
            out.push(c);
        }
        (chars, bytes) = (chars + 1, bytes + c.len_utf8());
    }
    end_value(&mut out, &mut chars, &mut bytes);
    out
}

/// `count` and `noun`, plural unless one: `counted(1, "object")` is "1 object".
pub(crate) fn counted(count: impl Into<u64>, noun: &str) -> String {
    match count.into() {
        1 => format!("1 {noun}"),
        count if noun.ends_with("ch") || noun.ends_with('s') => format!("{count} {noun}es"),
        count => format!("{count} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_another_program_names_are_cut() {
        let long = "é".repeat(100);
        let cut = values_cut(&format!(
            "at {long} : unknown field `{long}`, \"{long} x\" ok"
        ));
        assert_eq!(cut.matches("... (200 bytes in all)").count(), 2, "{cut}");
        assert!(cut.contains("... (202 bytes in all)\" ok"), "{cut}");
        assert_eq!(
            values_cut("short `values` \"stay\""),
            "short `values` \"stay\""
        );
    }

    #[test]
    fn a_quoted_cause_is_printed_once() {
        let os = std::io::Error::from_raw_os_error(28);
        let text = os.to_string();
        let error = anyhow::Error::new(os).context(format!("write /d/wal/0: {text}"));
        let error = error.context("cannot commit");
        assert_eq!(
            one_line(&error),
            format!("cannot commit: write /d/wal/0: {text}")
        );
        assert_eq!(one_line(&error).matches("os error 28").count(), 1);
    }

    #[test]
    fn a_broken_pipe_is_recognised_through_context() {
        let error = anyhow::Error::new(std::io::Error::from(ErrorKind::BrokenPipe))
            .context("cannot write standard output");
        assert!(is_closed_pipe(&error));
        assert!(!is_closed_pipe(&anyhow::anyhow!("other")));
    }

    #[test]
    fn counts_are_plural_unless_one() {
        assert_eq!(counted(1u64, "branch"), "1 branch");
        assert_eq!(counted(0u64, "object"), "0 objects");
        assert_eq!(counted(2u64, "layer file"), "2 layer files");
        assert_eq!(counted(4u64, "branch"), "4 branches");
    }
}
