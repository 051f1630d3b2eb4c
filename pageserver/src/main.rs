//! `pagefork`: the command-line program (see `pagefork --help`).
//!
//! Errors print as one line and exit non-zero; argument errors are caught by clap before
//! the store is opened, so bad arguments never touch it.

mod bench;
mod cli;
mod commands;
mod demo;
mod inspect;
mod lifecycle;
mod recover;
mod retention;
mod serve;
mod views;

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};

fn main() {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    match run(&cli, &matches) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("pagefork: error: {error:#}");
            std::process::exit(1);
        }
    }
}

fn run(cli: &Cli, matches: &ArgMatches) -> anyhow::Result<i32> {
    let dir = cli.data_dir.as_path();
    match &cli.command {
        Command::Demo => demo::run(data_dir_given(cli, matches), cli.json).map(|()| 0),
        Command::Init { page_size, backend } => {
            commands::init(dir, *page_size, *backend, cli.json).map(|()| 0)
        }
        Command::Branch(command) => commands::branch(dir, command, cli.json).map(|()| 0),
        Command::Page(command) => commands::page(dir, command, cli.json),
        Command::LsnForTime { branch, time } => {
            commands::lsn_for_time(dir, branch, *time, cli.json).map(|()| 0)
        }
        Command::Checkpoint => commands::checkpoint(dir, cli.json).map(|()| 0),
        Command::Recover { salvage } => recover::run(dir, *salvage, cli.json),
        Command::Compact => commands::compact(dir, cli.json).map(|()| 0),
        Command::Stats => commands::stats(dir, cli.json).map(|()| 0),
        Command::Log => lifecycle::log(dir, cli.json).map(|()| 0),
        Command::Gc => retention::gc(dir, cli.json).map(|()| 0),
        Command::Lease {
            branch,
            lsn,
            duration,
        } => {
            let target = branch.as_deref().zip(*lsn);
            retention::lease(dir, target, *duration, cli.json).map(|()| 0)
        }
        Command::Bench {
            size,
            branches,
            depth,
            plot,
            backend,
        } => {
            let options = bench::BenchOptions {
                sizes: size.clone(),
                backends: backend.clone(),
                branches: *branches as usize,
                depth: *depth as usize,
                dir: data_dir_given(cli, matches),
                plot: plot.clone(),
                json: cli.json,
            };
            bench::run(&options).map(|()| 0)
        }
        Command::Serve {
            listen,
            require_expiration,
        } => {
            let options = serve::ServeOptions {
                require_expiration: *require_expiration,
            };
            serve::run(dir, *listen, options).map(|()| 0)
        }
        Command::Inspect(command) => inspect::inspect(dir, command, cli.json).map(|()| 0),
    }
}

/// The data directory, only if the user gave one (flag or environment): the demo uses a
/// temporary directory otherwise, instead of the default `./pagefork-data`.
fn data_dir_given(cli: &Cli, matches: &ArgMatches) -> Option<PathBuf> {
    match matches.value_source("data_dir") {
        Some(ValueSource::DefaultValue) | None => None,
        Some(_) => Some(cli.data_dir.clone()),
    }
}
