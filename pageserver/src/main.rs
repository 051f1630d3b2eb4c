//! `pagefork`: the command-line program and HTTP API server.
//!
//! Not built yet: the CLI, `serve`, `demo` and `inspect` arrive with the engine. Until
//! then the program says so and exits with an error instead of pretending to work.

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-V") => println!("pagefork {version}"),
        _ => {
            eprintln!(
                "pagefork {version}: no commands yet. The write-ahead log is ready \
                 (see README: `cargo run --release -p pagefork-wal --example wal_tour`); \
                 the engine and this CLI come next."
            );
            std::process::exit(2);
        }
    }
}
