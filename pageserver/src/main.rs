//! `pagefork`: the command-line program (see `pagefork --help`).
//!
//! Errors print as one line and exit non-zero; argument errors are caught by clap before
//! the store is opened, so bad arguments never touch it.

mod allocator;
mod auth;
mod bench;
mod cli;
mod commands;
mod demo;
mod endpoint;
mod inspect;
mod lifecycle;
mod logging;
mod mount;
mod output;
mod recover;
mod remote;
mod replication;
mod retention;
mod serve;
mod views;

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};

fn main() {
    allocator::configure();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    match run(&cli, &matches) {
        Ok(code) => std::process::exit(code),
        // The reader of standard output went away: the command's work is done.
        Err(error) if output::is_closed_pipe(&error) => std::process::exit(0),
        Err(error) => {
            crate::output::warn_out!("pagefork: error: {}", output::one_line(&error));
            std::process::exit(1);
        }
    }
}

fn run(cli: &Cli, matches: &ArgMatches) -> anyhow::Result<i32> {
    let dir = cli.data_dir.as_path();
    match &cli.command {
        Command::Demo { postgres: false } => {
            demo::run(data_dir_given(cli, matches), cli.json).map(|()| 0)
        }
        Command::Demo { postgres: true } => {
            endpoint::demo::run(data_dir_given(cli, matches), cli.json).map(|()| 0)
        }
        Command::Init {
            page_size,
            backend,
            postgres,
            pg_bin,
        } => {
            let postgres = postgres.then(|| endpoint::EndpointSpec {
                pg_bin: pg_bin.clone(),
                ..endpoint::EndpointSpec::default()
            });
            commands::init(dir, *page_size, *backend, postgres.as_ref(), cli.json).map(|()| 0)
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
        Command::Sync {
            remote: url,
            s3_endpoint,
            local_cache_bytes,
        } => remote::sync(
            dir,
            url,
            s3_endpoint.as_deref(),
            *local_cache_bytes,
            cli.json,
        )
        .map(|()| 0),
        Command::Attach {
            remote: url,
            s3_endpoint,
            no_claim,
            lazy,
        } => {
            let how = match (no_claim, lazy) {
                (true, _) => remote::AttachHow::CopyWithoutClaim,
                (false, true) => remote::AttachHow::Lazily,
                (false, false) => remote::AttachHow::Whole,
            };
            remote::attach(dir, url, s3_endpoint.as_deref(), how, cli.json).map(|()| 0)
        }
        Command::Remote(cli::RemoteCommand::Scrub {
            remote: url,
            s3_endpoint,
            min_age,
            dry_run,
        }) => remote::scrub(
            dir,
            url,
            s3_endpoint.as_deref(),
            (*min_age, *dry_run),
            cli.json,
        )
        .map(|()| 0),
        Command::Endpoint(cli::EndpointCommand::Start {
            branch,
            port,
            pg_bin,
            settings,
            mount,
        }) => {
            let spec = endpoint::EndpointSpec {
                port: *port,
                pg_bin: pg_bin.clone(),
                settings: settings.clone(),
                refuse_empty: false,
            };
            endpoint::command::run_foreground(dir, branch, mount.as_deref(), &spec, cli.json)
                .map(|()| 0)
        }
        Command::Endpoint(cli::EndpointCommand::Stop { branch }) => {
            endpoint::command::stop(dir, branch, cli.json).map(|()| 0)
        }
        Command::Endpoint(cli::EndpointCommand::List) => {
            endpoint::command::list(dir, cli.json).map(|()| 0)
        }
        Command::Endpoint(cli::EndpointCommand::SchemaDiff { from, to, pg_bin }) => {
            let spec = endpoint::EndpointSpec {
                pg_bin: pg_bin.clone(),
                ..endpoint::EndpointSpec::default()
            };
            endpoint::command::schema_diff(dir, from, to, &spec, cli.json).map(|()| 0)
        }
        Command::Mount {
            branch,
            dir: mount_point,
            read_only,
            at,
        } => {
            let spec = mount::MountSpec {
                branch: branch.clone(),
                dir: mount_point.clone(),
                read_only: *read_only,
                at: commands::at(at),
            };
            mount::run_foreground(dir, &spec, cli.json).map(|()| 0)
        }
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
            allow_hosts,
            header_timeout,
            body_timeout,
            shutdown_grace,
            auth,
            insecure_no_auth,
            mount_root,
            pg_bin,
            remote,
            s3_endpoint,
            remote_interval,
            local_cache_bytes,
        } => {
            let remote = match remote {
                Some(url) => Some(replication::RemoteOptions {
                    location: pagefork_remote::RemoteLocation::parse(url, s3_endpoint.as_deref())?,
                    interval: *remote_interval,
                    local_cache_bytes: *local_cache_bytes,
                }),
                None => None,
            };
            if !listen.ip().is_loopback() && !auth && !insecure_no_auth {
                anyhow::bail!(
                    "refusing to listen on {listen} without --auth: anyone who can reach it could read and change every branch; add --auth (clients then need a token from pagefork token create), or --insecure-no-auth to serve it open anyway"
                );
            }
            // Bound before anything is made: a port in use refuses the start with the data
            // directory as it was (no key, no directories).
            let listener = std::net::TcpListener::bind(listen)
                .map_err(|error| anyhow::anyhow!("cannot listen on {listen}: {error}"))?;
            let keys = if *auth {
                Some(std::sync::Arc::new(auth::Keys::load_or_create(dir)?))
            } else {
                None
            };
            let options = serve::ServeOptions {
                require_expiration: *require_expiration,
                allowed_hosts: serve::AllowedHosts::new(allow_hosts),
                timeouts: serve::Timeouts {
                    header: *header_timeout,
                    body: *body_timeout,
                    shutdown_grace: *shutdown_grace,
                },
                auth: keys,
                mount_root: mount_root.clone().unwrap_or_else(|| dir.join("mounts")),
                pg_bin: pg_bin.clone(),
                remote,
            };
            serve::run(dir, listener, options).map(|()| 0)
        }
        Command::Inspect(command) => inspect::inspect(dir, command, cli.json).map(|()| 0),
        Command::Token(cli::TokenCommand::Create { ttl, project }) => {
            token_create(dir, *ttl, project.as_deref(), cli.json).map(|()| 0)
        }
    }
}

/// `pagefork token create`: prints a token for the server whose data directory is `dir`.
fn token_create(
    dir: &std::path::Path,
    ttl: std::time::Duration,
    project: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let scope = match project {
        Some(project) => {
            serve::validate_project_name(project)
                .map_err(|error| anyhow::anyhow!(error.message))?;
            auth::Scope::Project(project.to_owned())
        }
        None => auth::Scope::Server,
    };
    let keys = auth::Keys::load_or_create(dir)?;
    let (token, expires) = keys.mint(&scope, ttl, std::time::SystemTime::now())?;
    if json {
        let expires_at = pagefork_engine::Timestamp(expires.saturating_mul(1_000_000));
        output::out!(
            "{}",
            serde_json::json!({"token": token, "project": project, "expires_at": expires_at.to_string()})
        );
    } else {
        output::out!("{token}");
    }
    Ok(())
}

/// The data directory, only if the user gave one (flag or environment): the demo uses a
/// temporary directory otherwise, instead of the default `./pagefork-data`.
fn data_dir_given(cli: &Cli, matches: &ArgMatches) -> Option<PathBuf> {
    match matches.value_source("data_dir") {
        Some(ValueSource::DefaultValue) | None => None,
        Some(_) => Some(cli.data_dir.clone()),
    }
}
